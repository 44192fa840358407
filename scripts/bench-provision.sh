#!/usr/bin/env bash
# bench-provision.sh - `eas-relay dns provision --all` for many domains
# against a local redis-server.
#
# Starts redis-server on a free loopback port (temp dir, no persistence),
# writes a config whose [dns_provisioning] points at it, imports N domains
# with one alias each into a fresh store (offline, `alias import`), seeds
# half of the zones with an old EAS-server apex (A record and the ImprovMX
# SPF) so both the "new" and the "replace" paths run, then times
#
#   eas-relay dns provision --all          (first run: every zone written)
#   eas-relay dns provision --all          (second run: nothing to write)
#
# and prints
#
#   PROVISION domains=10000 first_s=.. second_s=.. written=.. unchanged=.. failed=.. target_s=10 verdict=PASS|FAIL
#
# Env: DOMAINS=10000 TARGET_S=10 KEEP=0 (1: keep the temp dir)
#      BENCH_EAS_BIN= (use this binary; default target/release/eas-relay, built if missing)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DOMAINS="${DOMAINS:-10000}"
TARGET_S="${TARGET_S:-10}"
KEEP="${KEEP:-0}"

log() { echo "[bench-provision $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# Only the generated config decides.
for v in $(env | grep -o '^EAS_RELAY_[A-Za-z0-9_]*' || true); do unset "$v"; done

command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
command -v redis-cli >/dev/null || die "redis-cli is not installed (apt-get install redis-tools)"
BIN="${BENCH_EAS_BIN:-$ROOT/target/release/eas-relay}"
if [ -z "${BENCH_EAS_BIN:-}" ] && [ ! -x "$BIN" ]; then
  log "building the release binary"
  (cd "$ROOT" && cargo build --release --bin eas-relay >&2)
fi
[ -x "$BIN" ] || die "no binary at $BIN"

WORK="$(mktemp -d)"
REDIS_PID=""
cleanup() {
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do
  redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$PORT" ping >/dev/null || die "redis-server did not start: $(cat "$WORK/redis.log")"

cat >"$WORK/eas-relay.toml" <<TOML
hostname = "mx1.relay.bench"
data_dir = "$WORK/data"

[dns_provisioning]
enabled = true
redis_url = "redis://127.0.0.1:$PORT"
tld_zones = ["country"]
mx = ["mx1.relay.bench", "mx2.relay.bench"]
TOML

log "importing $DOMAINS domains"
python3 - "$DOMAINS" >"$WORK/aliases.txt" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"hello@name{i}.country\tdest{i}@dest.bench")
PY
"$BIN" --config "$WORK/eas-relay.toml" alias import "$WORK/aliases.txt" >/dev/null

log "seeding half of the zones as the EAS server left them"
python3 - "$DOMAINS" <<'PY' | redis-cli -p "$PORT" --pipe >/dev/null
import sys
def resp(*args):
    out = f"*{len(args)}\r\n"
    for a in args:
        b = a.encode()
        out += f"${len(b)}\r\n{a}\r\n"
    return out
for i in range(0, int(sys.argv[1]), 2):
    apex = ('{"a":[{"ttl":300,"ip":"192.0.2.1"}],"txt":[{"ttl":300,"text":"v=spf1 include:spf.improvmx.com ~all"}],'
            '"mx":[{"ttl":300,"preference":0,"host":"mx1.improvmx.com."}]}')
    sys.stdout.write(resp("HSET", f"name{i}.country.", "@", apex))
PY

run() {
  local start end
  start=$(date +%s.%N)
  "$BIN" --config "$WORK/eas-relay.toml" --json dns provision --all >"$WORK/$1.json"
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.2f}')"
}
FIRST="$(run first)"
SECOND="$(run second)"
read -r WRITTEN FAILED < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["written"], len(s["failed"]))' "$WORK/first.json")
UNCHANGED="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["unchanged"])' "$WORK/second.json")"
ZONES="$(redis-cli -p "$PORT" dbsize)"
VERDICT=FAIL
python3 -c "import sys; sys.exit(0 if $FIRST < $TARGET_S and $WRITTEN == $DOMAINS and $UNCHANGED == $DOMAINS and $FAILED == 0 else 1)" && VERDICT=PASS
echo "PROVISION domains=$DOMAINS zones=$ZONES first_s=$FIRST second_s=$SECOND written=$WRITTEN unchanged=$UNCHANGED failed=$FAILED target_s=$TARGET_S verdict=$VERDICT"
[ "$VERDICT" = PASS ]
