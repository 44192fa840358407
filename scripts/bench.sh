#!/usr/bin/env bash
# bench.sh - eas-relay vs Postfix, side by side, in one command.
#
# Builds the release binary, then runs the shared harness's bench-all.sh with
# RELAYS="postfix <this dir>/bench-driver.sh": for every repetition, Postfix
# (../shared/bench/postfix-relay.sh run) and eas-relay (scripts/bench-driver.sh
# run) are measured one after the other (interleaved, so slow drifts of this
# shared machine hit both alike), everything on loopback in private network
# namespaces. Configs (CONFIGS): "plain" forwarding, and "srs+dkim": Postfix with
# postsrsd and opendkim (RSA-2048) against eas-relay with SRS, inbound verdicts,
# Ed25519 DKIM and an ARC seal (RSA-2048). With DKIM_RSA=1 (default) a second
# interleaved pass measures eas-relay with RSA-2048 DKIM + ARC ("srs+dkim-rsa")
# against Postfix's srs+dkim again.
# Prints the medians table (summarize.sh), the ratio eas-relay/Postfix of the
# median end-to-end msgs/s per config, and eas-relay's peak RSS.
#
# Usage: scripts/bench.sh
# Env: N=20000 SIZE=4096 CONCURRENCY=20 RUNS=3 TIMEOUT=900 (per run)
#      CONFIGS="plain srs+dkim" DKIM_RSA=1
#      QUIET_WAIT_S=300 QUIET_MAX=0.2 (each run first waits for a quiet machine)
#      BENCH_OUT=<project>/target/bench  RESULTS=$BENCH_OUT/results-eas-vs-postfix-<stamp>.txt
#      BENCH_DIR=<project>/../shared/bench (the shared harness; read-only here)
# Output files: $RESULTS (RESULT lines), ${RESULTS%.txt}.md (medians table),
#      ${RESULTS%.txt}.ratio.txt (the ratio summary printed at the end).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || echo "$ROOT/../shared/bench")}"
export BENCH_DIR

export N="${N:-20000}" SIZE="${SIZE:-4096}" CONCURRENCY="${CONCURRENCY:-20}" RUNS="${RUNS:-3}"
export TIMEOUT="${TIMEOUT:-900}" QUIET_WAIT_S="${QUIET_WAIT_S:-300}"
export BENCH_OUT="${BENCH_OUT:-$ROOT/target/bench}"
STAMP="$(date +%Y%m%d-%H%M%S)"
export RESULTS="${RESULTS:-$BENCH_OUT/results-eas-vs-postfix-$STAMP.txt}"

log() { echo "[bench $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "must run as root (Postfix instance, cgroups, network namespaces)"
[[ -x "$BENCH_DIR/bench-all.sh" ]] || die "the shared harness is not at $BENCH_DIR (set BENCH_DIR)"
case "$BENCH_OUT/" in
  "$BENCH_DIR"/*) die "BENCH_OUT=$BENCH_OUT is inside the shared harness; use a folder of your own" ;;
esac
case "$RESULTS" in
  "$BENCH_DIR"/*) die "RESULTS=$RESULTS is inside the shared harness; use a folder of your own" ;;
esac
mkdir -p "$BENCH_OUT"

# 1. packages (smtp-source/sink, Postfix, ...) and the release binary, before any timing
"$BENCH_DIR/postfix-relay.sh" install
built="$("$HERE/bench-driver.sh" build)"
# a private copy: the working tree is shared, a rebuild during the comparison
# must not swap the binary between runs
export BENCH_EAS_BIN="$BENCH_OUT/eas-relay-$STAMP.bin"
cp "$built" "$BENCH_EAS_BIN"
trap 'rm -f "$BENCH_EAS_BIN"' EXIT
src="git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo na)"
[[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]] \
  || src="$src + uncommitted changes in src/"
echo "# eas-relay: $("$BENCH_EAS_BIN" --version) from $built ($src), sha256 $(sha256sum "$BENCH_EAS_BIN" | cut -c1-16)" >> "$RESULTS"
log "eas-relay binary: $built ($("$BENCH_EAS_BIN" --version), $src), run from the copy $BENCH_EAS_BIN"

# 2. the interleaved comparison; bounded: every run is bounded by its driver
#    (quiet wait + TIMEOUT + start/stop), this is the outer guard
limit=$(( RUNS * 2 * (QUIET_WAIT_S + TIMEOUT + 300) ))
log "bench-all: postfix vs eas-relay, n=$N size=$SIZE conc=$CONCURRENCY runs=$RUNS quiet_wait<=${QUIET_WAIT_S}s (all bounded by ${limit}s); results $RESULTS"
rc=0
CONFIGS="${CONFIGS:-plain srs+dkim}"
RELAYS="postfix $HERE/bench-driver.sh" SIZES="$SIZE" N_BY_SIZE="$SIZE:$N" CONFIGS="$CONFIGS" \
  DKIM_ALGO=ed25519 timeout "$((limit * 2))" "$BENCH_DIR/bench-all.sh" || rc=$?
(( rc == 0 )) || log "bench-all.sh exit $rc"
if [[ "${DKIM_RSA:-1}" == 1 && " $CONFIGS " == *" srs+dkim "* ]]; then
  log "second pass: eas-relay with RSA-2048 DKIM + ARC against Postfix srs+dkim"
  RELAYS="postfix $HERE/bench-driver.sh" SIZES="$SIZE" N_BY_SIZE="$SIZE:$N" CONFIGS="srs+dkim" \
    DKIM_ALGO=rsa timeout "$limit" "$BENCH_DIR/bench-all.sh" || rc=$?
fi
[[ -s "$RESULTS" ]] || die "no results in $RESULTS"

# 3. ratio of medians, eas-relay's peak memory, and the noise of each run
summary="${RESULTS%.txt}.ratio.txt"
awk '
function med(r, k,    n, i, j, t, a) {
  n = cnt[r, k]; if (n == 0) return ""
  for (i = 1; i <= n; i++) a[i] = v[r, k, i]
  for (i = 2; i <= n; i++) { t = a[i]; j = i - 1; while (j > 0 && a[j] > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function mx(r, k,    i, m) { m = ""; for (i = 1; i <= cnt[r, k]; i++) if (m == "" || v[r, k, i] > m) m = v[r, k, i]; return m }
function add(r, k, x) { if (x == "" || x == "na" || x == "timeout") return; v[r, k, ++cnt[r, k]] = x + 0 }
function ratio(k,    a, b) { a = med(E, k); b = med(P, k); return (a == "" || b == "" || b == 0) ? "na" : sprintf("%.2f", a / b) }
/^RESULT / {
  delete f
  for (i = 2; i <= NF; i++) { k = $i; sub(/=.*/, "", k); x = $i; sub(/^[^=]*=/, "", x); f[k] = x }
  r = f["relay"]; runs[r]++
  line[++nl] = sprintf("  %-16s e2e %8s msgs/s  accept %8s msgs/s  cpu_s %7s  rss_peak_mb %7s  probe_ms %5s  other_cpu_s %7s  quiet_waited_s %4s  load1 %5s%s",
    r, f["msgs_per_s"], f["accept_msgs_per_s"], f["cpu_s"], f["rss_peak_mb"], f["probe_ms"], f["other_cpu_s"], f["quiet_waited_s"], f["load1_before"],
    ("queue_left" in f) ? sprintf("  queue_left %s deferred %s bounced %s", f["queue_left"], f["deferred"], f["bounced"]) : "")
  if (f["e2e_s"] == "timeout" || f["e2e_s"] == "") { fail[r]++; next }
  add(r, "mps", f["msgs_per_s"]); add(r, "amps", f["accept_msgs_per_s"])
  add(r, "rss", f["rss_peak_mb"]); add(r, "pss", f["pss_peak_mb"])
  if (f["cpu_s"] != "na") add(r, "cpumsg", 1000 * f["cpu_s"] / f["n"])
}
END {
  n = split("eas-relay-plain:postfix-plain eas-relay-srs+dkim:postfix-srs+dkim eas-relay-srs+dkim-rsa:postfix-srs+dkim", pairs, " ")
  compared = 0
  for (p = 1; p <= n; p++) {
    split(pairs[p], ep, ":"); E = ep[1]; P = ep[2]
    if (cnt[E, "mps"] == 0 || cnt[P, "mps"] == 0) continue
    compared++
    printf "%s vs %s: %d eas-relay run(s) (%d failed), %d Postfix run(s) (%d failed)\n", E, P, runs[E], fail[E], runs[P], fail[P]
    printf "RATIO %s/%s median e2e msgs/s = %s  (eas-relay %s, postfix %s)\n", E, P, ratio("mps"), med(E, "mps"), med(P, "mps")
    printf "      median accept msgs/s ratio = %s  (eas-relay %s, postfix %s)\n", ratio("amps"), med(E, "amps"), med(P, "amps")
    printf "      median relay CPU ms/msg ratio = %s  (eas-relay %.2f, postfix %.2f)\n", ratio("cpumsg"), med(E, "cpumsg"), med(P, "cpumsg")
    printf "PEAK_RSS %s rss_peak_mb max=%s median=%s (pss_peak_mb max=%s); postfix PSS median=%s MB (RSS sum %s MB)\n",
      E, mx(E, "rss"), med(E, "rss"), mx(E, "pss"), med(P, "pss"), med(P, "rss")
  }
  print "per run (in order):"
  for (i = 1; i <= nl; i++) print line[i]
  if (compared == 0) exit 1
}' "$RESULTS" | tee "$summary" || rc=1
log "results: $RESULTS, table ${RESULTS%.txt}.md, summary $summary"
exit "$rc"
