#!/usr/bin/env bash
# Compiles contracts/*.sol with the pinned solc of tools/package.json and
# writes, for each deployable contract, abi/<Contract>.json (the ABI array,
# pretty-printed, keys sorted, entries sorted by type and signature) and
# abi/<Contract>.bin (hex creation bytecode, no 0x, one line).
#
#   scripts/build-contracts.sh [OUT_DIR]     # default: abi/ (or $EAS_ABI_OUT)
#
# The output is reproducible byte for byte: fixed compiler version and
# settings, source names relative to the repository, no CBOR metadata in the
# bytecode (so comments do not change it). tests/contracts.rs builds into a
# temporary directory and fails when abi/ differs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-${EAS_ABI_OUT:-$root/abi}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

"$root/tools/install.sh"

cd "$root"
node - "$out" <<'JS'
const fs = require("fs");
const path = require("path");
const solc = require(path.resolve("tools/node_modules/solc"));

const out = process.argv[2];
// The contracts abi/ holds (others in contracts/ are bases and interfaces).
const DEPLOYABLE = ["EAS", "EASWithoutEvents", "TestRegistry"];

const sources = {};
for (const f of fs.readdirSync("contracts").filter((f) => f.endsWith(".sol")).sort()) {
  // Normalize line endings so a CRLF checkout builds the same bytes.
  sources[`contracts/${f}`] = { content: fs.readFileSync(path.join("contracts", f), "utf8").replace(/\r\n/g, "\n") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "paris",
    viaIR: false,
    metadata: { appendCBOR: false, bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
let failed = false;
for (const e of output.errors || []) {
  process.stderr.write((e.formattedMessage || e.message) + "\n");
  if (e.severity === "error") failed = true;
}
if (failed) process.exit(1);

const sortKeys = (v) =>
  Array.isArray(v)
    ? v.map(sortKeys)
    : v && typeof v === "object"
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]))
      : v;
const typeOf = (p) => p.type; // canonical types (tuples do not occur here)
const sig = (e) => `${e.type} ${e.name || ""}(${(e.inputs || []).map(typeOf).join(",")})`;

const found = {};
for (const file of Object.keys(output.contracts || {}))
  for (const [name, c] of Object.entries(output.contracts[file])) found[name] = c;
for (const name of DEPLOYABLE) {
  const c = found[name];
  if (!c) {
    process.stderr.write(`build-contracts: contract ${name} not found in contracts/\n`);
    process.exit(1);
  }
  const abi = c.abi.slice().sort((a, b) => (sig(a) < sig(b) ? -1 : sig(a) > sig(b) ? 1 : 0));
  fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify(sortKeys(abi), null, 2) + "\n");
  fs.writeFileSync(path.join(out, `${name}.bin`), c.evm.bytecode.object + "\n");
}
process.stderr.write(`build-contracts: solc ${solc.version()} -> ${out}\n`);
JS
