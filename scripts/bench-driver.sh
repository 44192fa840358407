#!/usr/bin/env bash
# bench-driver.sh - eas-relay as a driver of the shared forwarding-relay benchmark
# (../shared/bench, see its README "Adding eas-relay as a driver"). Same contract
# as postfix-relay.sh there, so bench-all.sh can interleave it with Postfix:
#
#   BENCH_OUT=$PWD/target/bench RELAYS="postfix $PWD/scripts/bench-driver.sh" \
#     ../shared/bench/bench-all.sh          (scripts/bench.sh does exactly this)
#
# One run: build the release binary if missing or stale, write a config in a
# fresh temp dir (data_dir there, SMTP 127.0.0.1:$RELAY_PORT, HTTP on another
# loopback port, every destination domain of the alias table routed to
# 127.0.0.1:$SINK_PORT), import the alias table (gen-aliases.sh) with
# `eas-relay alias import` before the node starts, start `eas-relay serve` in its
# own cgroup (cg.sh) so its CPU and memory are measured, run run-load.sh against
# it, stop it with SIGTERM (SIGKILL after STOP_TIMEOUT), and print run-load's
# RESULT line with these fields appended:
#   queue_left  messages still in the queue after the stop (`queue list --json`, offline)
#   deferred / bounced  delivery attempts deferred / bounced (eas_deliveries_total
#               from /metrics, read just before the stop)
#   log_warn / log_error  WARN / ERROR lines in the relay's log (level "warn")
#   stop_s      time from SIGTERM to exit; relay_exit  its exit status (137 = SIGKILL)
# The RESULT line is also appended to $RESULTS.
#
# Configurations (every part of the relay that costs CPU is on or off explicitly):
#   plain      SRS, inbound verdicts, DKIM and ARC off: forwarding only
#   SRS=1      envelope senders rewritten (postsrsd format)
#   DKIM=1     inbound SPF/DKIM/DMARC/ARC verdicts (against a dnsmasq on loopback
#              in the namespace: example.org publishes SPF for 127.0.0.0/8 and
#              DMARC p=none), DKIM signing and ARC sealing. DKIM_ALGO=ed25519
#              (default): Ed25519 DKIM, ARC sealed with an RSA-2048 key that
#              signs nothing else; DKIM_ALGO=rsa: RSA-2048 DKIM and ARC.
#   SCAN_URL=http://127.0.0.1:11333  [scan] on: every message is scanned by the
#              rspamd normal worker there (/checkv2) before the 250; the caller
#              runs rspamd (scripts/bench-rspamd.sh does). The label gets "+rspamd".
#              SCAN_TIMEOUT=10s SCAN_MAX_SIZE=4MiB SCAN_FAIL=tempfail
#   AFTER_LOAD=cmd  run with bash after the load while the node is still up
#              (RELAY=127.0.0.1:$RELAY_PORT in its environment); its output goes
#              to stderr, a failure is logged and makes the run fail
#
# Usage: scripts/bench-driver.sh [ACTION]
#   run      (default) install + build if needed, then RUNS x (setup, start, load, stop, cleanup)
#   verify   small N (VERIFY_N=50) with message capture at the sink; prints a CHECK
#            line (exit 1 when its verdict is FAIL)
#   install  the Debian packages of the harness (postfix-relay.sh install: smtp-source,
#            smtp-sink, ss, unshare) and the release binary
#   build    only build the release binary (if missing or stale); prints its path
# Env: N=20000 CONCURRENCY=20 SIZE=4096 SRS=0 DKIM=0 DKIM_ALGO=ed25519
#      RELAY_PORT=2525 SINK_PORT=2526 DNS_PORT=5353
#      HTTP_PORT=RELAY_PORT+1000 RUNS=1 TIMEOUT=900 NETNS=1 KEEP=0
#      BENCH_OUT=<project>/target/bench RESULTS=$BENCH_OUT/results.txt
#      ALIASES_FILE=$BENCH_OUT/aliases.tsv BENCH_DIR=<project>/../shared/bench
#      BENCH_EAS_BIN= (use this binary, no build)  BUILD_TIMEOUT=3600
#      START_TIMEOUT=30 STOP_TIMEOUT=60 (seconds)
#      KEEP=1 keeps the temp dir (config, data, relay.log) and copies the log to
#      $BENCH_OUT/eas-relay.log.last
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
BENCH_DIR="${BENCH_DIR:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || echo "$ROOT/../shared/bench")}"
[[ -f "$BENCH_DIR/cg.sh" && -x "$BENCH_DIR/run-load.sh" ]] \
  || { echo "bench-driver: the shared harness is not at $BENCH_DIR (set BENCH_DIR)" >&2; exit 1; }
# shellcheck source=/dev/null
source "$BENCH_DIR/cg.sh"

N="${N:-20000}"
CONCURRENCY="${CONCURRENCY:-20}"
SIZE="${SIZE:-4096}"
SRS="${SRS:-0}"
DKIM="${DKIM:-0}"
DKIM_ALGO="${DKIM_ALGO:-ed25519}"
SCAN_URL="${SCAN_URL:-}"
SCAN_TIMEOUT="${SCAN_TIMEOUT:-10s}"
SCAN_MAX_SIZE="${SCAN_MAX_SIZE:-4MiB}"
SCAN_FAIL="${SCAN_FAIL:-tempfail}"
AFTER_LOAD="${AFTER_LOAD:-}"
DNS_PORT="${DNS_PORT:-5353}"
RELAY_PORT="${RELAY_PORT:-2525}"
SINK_PORT="${SINK_PORT:-2526}"
HTTP_PORT="${HTTP_PORT:-$((RELAY_PORT + 1000))}"
RUNS="${RUNS:-1}"
TIMEOUT="${TIMEOUT:-900}"
NETNS="${NETNS:-1}"
KEEP="${KEEP:-0}"
BENCH_OUT="${BENCH_OUT:-$ROOT/target/bench}"
RESULTS="${RESULTS:-$BENCH_OUT/results.txt}"
ALIASES_FILE="${ALIASES_FILE:-$BENCH_OUT/aliases.tsv}"
RELAY_DOMAIN="${RELAY_DOMAIN:-relay.test}"
CG_NAME="${CG_NAME:-eas-relay}"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-3600}"
START_TIMEOUT="${START_TIMEOUT:-30}"
STOP_TIMEOUT="${STOP_TIMEOUT:-60}"
export BENCH_OUT ALIASES_FILE

log() { echo "[eas-relay-bench $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# eas-relay takes any EAS_RELAY_* variable as a config override: the generated
# config alone must decide, so none is passed on
for v in $(compgen -e EAS_RELAY_ || true); do log "ignoring $v from the environment"; unset "$v"; done
cfg_label() {
  local l=plain
  [[ "$SRS" == 1 ]] && l=srs
  if [[ "$DKIM" == 1 ]]; then
    l="$l+dkim"
    [[ "$DKIM_ALGO" == rsa ]] && l="$l-rsa"
  fi
  [[ -n "$SCAN_URL" ]] && l="$l+rspamd"
  echo "$l"
}
on() { if [[ "$1" == 1 ]]; then echo true; else echo false; fi; }

case "$BENCH_OUT/" in
  "$BENCH_DIR"/*) die "BENCH_OUT=$BENCH_OUT is inside the shared harness $BENCH_DIR; point it at a folder of your own" ;;
esac

# ------------------------------------------------------------------ build
target_dir() {
  local d=""
  d=$(cd "$ROOT" && timeout 60 cargo metadata --no-deps --format-version 1 2>/dev/null \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || true
  if [[ -z "$d" ]]; then
    d="${CARGO_TARGET_DIR:-target}"
    [[ "$d" == /* ]] || d="$ROOT/$d"
  fi
  echo "$d"
}

# sets BIN; builds with cargo when the binary is missing or older than a source file
build() {
  if [[ -n "${BENCH_EAS_BIN:-}" ]]; then
    BIN="$BENCH_EAS_BIN"; [[ -x "$BIN" ]] || die "BENCH_EAS_BIN=$BIN is not executable"
    return 0
  fi
  command -v cargo >/dev/null || die "cargo not found (needed to build eas-relay)"
  BIN="$(target_dir)/release/eas-relay"
  local stale=""
  if [[ ! -x "$BIN" ]]; then
    stale="missing"
  else
    stale=$(cd "$ROOT" || exit 0; find src Cargo.toml Cargo.lock build.rs -newer "$BIN" -print -quit 2>/dev/null) || true
  fi
  if [[ -n "$stale" ]]; then
    log "building the release binary ($stale): cargo build --release in $ROOT"
    (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release --bin eas-relay >&2) \
      || die "cargo build --release failed"
    [[ -x "$BIN" ]] || die "build finished but $BIN is missing"
  fi
}

install() {
  # smtp-source/smtp-sink (postfix), ss, unshare, ps: the shared harness's own installer
  "$BENCH_DIR/postfix-relay.sh" install
  local pkgs=()
  command -v curl >/dev/null || pkgs+=(curl)
  command -v jq >/dev/null || pkgs+=(jq)
  command -v openssl >/dev/null || pkgs+=(openssl)
  command -v dnsmasq >/dev/null || pkgs+=(dnsmasq-base)
  if (( ${#pkgs[@]} )); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 \
      || die "apt-get install ${pkgs[*]} failed"
  fi
  build
}

# ------------------------------------------------------------------ one node
BASE=""; CONF=""; RELAY_PID=""; DNS_PID=""

# The DNS of the namespace for the inbound verdicts: every name is local
# (unknown ones NXDOMAIN at once), the load's sender domain has SPF and DMARC.
start_dns() {
  listening "$DNS_PORT" && die "port $DNS_PORT (DNS) already in use"
  dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll --user=root \
    --bind-interfaces --listen-address=127.0.0.1 --port="$DNS_PORT" --local=/#/ \
    --txt-record=example.org,"v=spf1 ip4:127.0.0.0/8 -all" \
    --txt-record=_dmarc.example.org,"v=DMARC1; p=none" \
    --log-facility=- >> "$BASE/dnsmasq.log" 2>&1 &
  DNS_PID=$!
  local end=$((SECONDS + 10))
  until ss -Hlun "sport = :$DNS_PORT" 2>/dev/null | grep -q .; do
    kill -0 "$DNS_PID" 2>/dev/null || die "dnsmasq exited: $(tail -3 "$BASE/dnsmasq.log")"
    (( SECONDS < end )) || die "dnsmasq did not listen on 127.0.0.1:$DNS_PORT"
    sleep 0.1
  done
}

stop_dns() {
  if [[ -n "$DNS_PID" ]]; then
    kill "$DNS_PID" 2>/dev/null || true
    wait "$DNS_PID" 2>/dev/null || true
    DNS_PID=""
  fi
}

# [dkim] keys and [arc] of the config for DKIM=1 (keys generated per run)
dkim_config() {
  openssl genpkey -algorithm ed25519 -out "$BASE/ed25519.pem" 2>/dev/null || die "openssl ed25519 key"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$BASE/rsa.pem" 2>/dev/null || die "openssl rsa key"
  chmod 600 "$BASE/ed25519.pem" "$BASE/rsa.pem"
  if [[ "$DKIM_ALGO" == rsa ]]; then
    printf '[[dkim.keys]]\nselector = "bench-rsa"\nalgorithm = "rsa"\nkey = "%s"\n\n' "$BASE/rsa.pem"
    printf '[arc]\nenabled = true\nselector = "bench-rsa"\n'
  else
    printf '[[dkim.keys]]\nselector = "bench-ed25519"\nalgorithm = "ed25519"\nkey = "%s"\n\n' "$BASE/ed25519.pem"
    printf '[[dkim.keys]]\nselector = "bench-arc"\nalgorithm = "rsa"\nkey = "%s"\ndkim = false\n\n' "$BASE/rsa.pem"
    printf '[arc]\nenabled = true\nselector = "bench-arc"\n'
  fi
}

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# true when 127.0.0.1:$1 greets with 220 (then says QUIT politely)
smtp_answers() {
  local line=""
  # shellcheck disable=SC2016
  line=$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    IFS= read -r -t 4 greet <&3 || exit 1
    printf "QUIT\r\n" >&3; IFS= read -r -t 4 _ <&3 || true
    printf "%s" "$greet"' _ "$1" 2>/dev/null) || return 1
  [[ "$line" == 220* ]]
}

setup() {
  BASE=$(mktemp -d /tmp/bench-eas-relay.XXXXXX)
  CONF="$BASE/eas-relay.toml"
  mkdir -p -m 700 "$BASE/data"
  [[ -s "$ALIASES_FILE" ]] || ALIASES_FILE="$ALIASES_FILE" "$BENCH_DIR/gen-aliases.sh" >/dev/null
  # load from one address: room for every concurrent session plus the ones a
  # client reopens before the server has dropped the previous one
  local conns=$(( CONCURRENCY * 10 > 1000 ? CONCURRENCY * 10 : 1000 ))
  {
    cat <<EOF
# generated by scripts/bench-driver.sh - benchmark forwarding relay ($(cfg_label))
hostname = "$RELAY_DOMAIN"
data_dir = "$BASE/data"

[log]
level = "warn"

[smtp]
listen = "127.0.0.1:$RELAY_PORT"
max_connections = $conns
# all load comes from 127.0.0.1: lift the per-network caps, the reserve
# for other networks and the session budgets
max_connections_per_network = $conns
reserved_percent = 0
max_session_time = "1d"
max_junk_commands = 1000000

[http]
listen = "127.0.0.1:$HTTP_PORT"

[srs]
enabled = $(on "$SRS")
secrets = ["bench-srs-secret-$RANDOM$RANDOM"]

[auth]
# the verdicts the ARC seal carries; lookups go to this run's dnsmasq
enabled = $(on "$DKIM")

[dkim]
enabled = $(on "$DKIM")
domain = "$RELAY_DOMAIN"

EOF
    if [[ "$DKIM" == 1 ]]; then dkim_config; else printf '[arc]\nenabled = false\n'; fi
    if [[ -n "$SCAN_URL" ]]; then
      printf '\n[scan]\nenabled = true\nurl = "%s"\ntimeout = "%s"\nmax_size = "%s"\nfail = "%s"\n' \
        "$SCAN_URL" "$SCAN_TIMEOUT" "$SCAN_MAX_SIZE" "$SCAN_FAIL"
    fi
    cat <<EOF

[outbound]
# like Postfix's default per-destination concurrency
max_per_destination = 20
nameservers = ["127.0.0.1:$DNS_PORT"]

[outbound.routes]
EOF
    # every destination domain of the alias table goes to the sink
    cut -f2 "$ALIASES_FILE" | tr ',' '\n' | sed -n 's/.*@//p' | sort -u \
      | awk -v p="$SINK_PORT" '{ printf "\"%s\" = \"127.0.0.1:%s\"\n", $1, p }'
  } > "$CONF"
  # it holds the SRS secret inline: private, as the relay asks
  chmod 600 "$CONF"
  "$BIN" config check "$CONF" >&2 || die "config check failed for $CONF"
  local t0=$EPOCHREALTIME out
  out=$(timeout 600 "$BIN" --config "$CONF" alias import "$ALIASES_FILE" 2>&1) \
    || die "alias import failed: $out"
  log "setup in $BASE: $out in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
}

start() {
  cg_available || die "cannot create cgroups (needed to measure the relay)"
  if [[ "$DKIM" == 1 ]]; then start_dns; fi
  cg_destroy "$CG_NAME"; cg_create "$CG_NAME"
  listening "$RELAY_PORT" && die "port $RELAY_PORT already in use"
  listening "$HTTP_PORT" && die "port $HTTP_PORT (HTTP) already in use"
  # the subshell moves itself into the cgroup, then becomes the relay: $! is its PID
  ( cg_enter "$CG_NAME" && NO_COLOR=1 exec "$BIN" --config "$CONF" serve ) >> "$BASE/relay.log" 2>&1 &
  RELAY_PID=$!
  echo "$RELAY_PID" > "$BASE/relay.pid"
  local end=$((SECONDS + START_TIMEOUT))
  until listening "$RELAY_PORT" && smtp_answers "$RELAY_PORT"; do
    kill -0 "$RELAY_PID" 2>/dev/null || { RELAY_PID=""; die "eas-relay exited at start: $(tail -5 "$BASE/relay.log")"; }
    (( SECONDS < end )) || die "eas-relay did not answer on 127.0.0.1:$RELAY_PORT within ${START_TIMEOUT}s: $(tail -5 "$BASE/relay.log")"
    sleep 0.1
  done
  log "relay up: eas-relay pid $RELAY_PID on 127.0.0.1:$RELAY_PORT ($(cfg_label)), cgroup $CG_NAME: $(cg_procs "$CG_NAME" | wc -l) process(es)"
}

# SIGTERM, bounded wait, SIGKILL; sets STOP_S and RELAY_EXIT. Only our own PID and cgroup.
STOP_S=na; RELAY_EXIT=na
stop() {
  local p t0=$EPOCHREALTIME end=$((SECONDS + STOP_TIMEOUT))
  if [[ -z "$RELAY_PID" && -n "$BASE" && -s "$BASE/relay.pid" ]]; then RELAY_PID=$(tr -dc 0-9 < "$BASE/relay.pid"); fi
  if [[ -n "$RELAY_PID" ]]; then
    if kill -0 "$RELAY_PID" 2>/dev/null; then
      kill -TERM "$RELAY_PID" 2>/dev/null || true
      while kill -0 "$RELAY_PID" 2>/dev/null && (( SECONDS < end )); do
        # a reaped child is gone; an unreaped one is a zombie: both count as exited
        [[ "$(awk '{ print $3 }' "/proc/$RELAY_PID/stat" 2>/dev/null)" == Z ]] && break
        sleep 0.1
      done
      if kill -0 "$RELAY_PID" 2>/dev/null && [[ "$(awk '{ print $3 }' "/proc/$RELAY_PID/stat" 2>/dev/null)" != Z ]]; then
        log "eas-relay did not stop within ${STOP_TIMEOUT}s of SIGTERM: SIGKILL"
        kill -KILL "$RELAY_PID" 2>/dev/null || true
      fi
    fi
    RELAY_EXIT=0; wait "$RELAY_PID" 2>/dev/null || RELAY_EXIT=$?
    STOP_S=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    RELAY_PID=""
    [[ -n "$BASE" ]] && rm -f "$BASE/relay.pid"
  fi
  if [[ -n "$(_cg_dir1 "$CG_NAME")" && -d "$(_cg_dir1 "$CG_NAME")" ]]; then
    for p in $(cg_procs "$CG_NAME"); do kill -9 "$p" 2>/dev/null || true; done   # stragglers (ours)
    for _ in $(seq 50); do [[ -z "$(cg_procs "$CG_NAME")" ]] && break; sleep 0.1; done
    cg_destroy "$CG_NAME"
  fi
}

cleanup() {
  stop
  stop_dns
  if [[ -n "$BASE" && -d "$BASE" ]]; then
    if [[ "$KEEP" == 1 ]]; then log "kept $BASE"; else rm -rf "$BASE"; fi
  fi
  BASE=""
}

# value of a counter/gauge sample in Prometheus text, e.g. metric 'eas_deliveries_total{outcome="deferred"}'
metric() {
  awk -v m="$2" 'index($0, m " ") == 1 { v = $NF } END { if (v == "") print "na"; else printf "%d\n", v }' "$1"
}

# ------------------------------------------------------------------ one measured run
ONE_RC=0
one_run() {  # prints the RESULT (and CHECK) lines; run-load.sh's exit status in ONE_RC
  local out rc=0
  setup
  start
  out=$(RELAY="127.0.0.1:$RELAY_PORT" RELAY_NAME="eas-relay-$(cfg_label)" SINK="127.0.0.1:$SINK_PORT" \
        N="$N" CONCURRENCY="$CONCURRENCY" SIZE="$SIZE" TIMEOUT="$TIMEOUT" RELAY_CGROUP="$CG_NAME" \
        EXPECT_SRS="$SRS" EXPECT_DKIM="$DKIM" DUMP_DIR="${DUMP_DIR:-}" KEEP_WORK="${KEEP_WORK:-0}" \
        "$BENCH_DIR/run-load.sh") || rc=$?
  if [[ -n "$AFTER_LOAD" ]]; then
    RELAY="127.0.0.1:$RELAY_PORT" timeout 120 bash -c "$AFTER_LOAD" >&2 \
      || { log "AFTER_LOAD failed: $AFTER_LOAD"; (( rc != 0 )) || rc=4; }
  fi
  # delivery outcomes while the node is up
  local deferred=na bounced=na
  if curl -sf --max-time 5 "http://127.0.0.1:$HTTP_PORT/metrics" > "$BASE/metrics.txt" 2>/dev/null; then
    deferred=$(metric "$BASE/metrics.txt" 'eas_deliveries_total{outcome="deferred"}')
    bounced=$(metric "$BASE/metrics.txt" 'eas_deliveries_total{outcome="bounced"}')
  fi
  stop
  # what is left in the queue, from the store (node stopped: offline access)
  local q=na qj
  if qj=$(timeout 60 "$BIN" --config "$CONF" --json queue list 2>>"$BASE/relay.log"); then
    q=$(printf '%s' "$qj" | jq 'length' 2>/dev/null || echo na)
    if [[ "$q" != na && "$q" != 0 ]]; then
      log "queue not empty after the run: $q message(s); first: $(printf '%s' "$qj" | jq -c '.[0] | {id, recipients}' 2>/dev/null | head -c 600)"
    fi
  fi
  local warns errs
  warns=$(grep -c ' WARN ' "$BASE/relay.log" 2>/dev/null || true)
  errs=$(grep -c ' ERROR ' "$BASE/relay.log" 2>/dev/null || true)
  if (( warns + errs > 0 )); then
    log "relay log: $warns WARN, $errs ERROR line(s); first ones:"; grep -m 5 -E ' (WARN|ERROR) ' "$BASE/relay.log" >&2 || true
  fi
  if [[ "$KEEP" == 1 ]]; then cp "$BASE/relay.log" "$BENCH_OUT/eas-relay.log.last" 2>/dev/null || true; fi
  cleanup
  (( rc == 0 )) || log "run-load.sh exit $rc; queue left=$q deferred=$deferred bounced=$bounced"
  printf '%s\n' "$out" | sed "/^RESULT/ s/\$/ queue_left=$q deferred=$deferred bounced=$bounced log_warn=$warns log_error=$errs stop_s=$STOP_S relay_exit=$RELAY_EXIT/"
  ONE_RC=$rc
}

OUT_TMP=""
bench() {
  local r rc=0
  mkdir -p "$BENCH_OUT" "$(dirname "$RESULTS")"
  log "machine: $(nproc) cpu, $(awk '/MemTotal/ { printf "%.1f GiB", $2/1048576 }' /proc/meminfo); $("$BIN" --version 2>/dev/null) ($BIN)"
  OUT_TMP=$(mktemp /tmp/bench-eas-relay-out.XXXXXX)
  for r in $(seq "$RUNS"); do
    log "run $r/$RUNS: config=$(cfg_label) n=$N size=$SIZE conc=$CONCURRENCY"
    one_run > "$OUT_TMP"
    (( ONE_RC == 0 )) || rc=$ONE_RC
    tee -a "$RESULTS" < "$OUT_TMP"
    if [[ -n "${DUMP_DIR:-}" ]] && grep -q '^CHECK .*verdict=FAIL' "$OUT_TMP"; then rc=1; fi
  done
  return "$rc"
}

verify() {
  export QUIET_WAIT_S="${QUIET_WAIT_S:-0}" STALL_S="${STALL_S:-20}"
  RESULTS="$BENCH_OUT/verify-results.txt" N="${VERIFY_N:-50}" \
    DUMP_DIR="${DUMP_DIR:-$BENCH_OUT/eas-relay-verify-dump}" KEEP_WORK=1 RUNS=1 bench
}

# ------------------------------------------------------------------ dispatch
ACTION="${1:-run}"
[[ "$(id -u)" == 0 ]] || die "must run as root (cgroups, netns, the harness's smtp-sink -u nobody)"
case "$ACTION" in
  build) build; echo "$BIN" ;;
  install) install ;;
  run|verify)
    case "$DKIM_ALGO" in ed25519|rsa) ;; *) die "DKIM_ALGO must be ed25519 or rsa, not $DKIM_ALGO" ;; esac
    if [[ "${_BENCH_IN_NETNS:-0}" != 1 ]]; then
      install                       # packages and cargo need the network: before the netns
    else
      build                         # a no-op check by now
    fi
    if [[ "$NETNS" == 1 && "${_BENCH_IN_NETNS:-0}" != 1 ]]; then
      # private network namespace: loopback only
      export BENCH_EAS_BIN="$BIN"
      # shellcheck disable=SC2016
      exec unshare -n -- env _BENCH_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$SELF" "$ACTION"
    fi
    trap 'cleanup; [[ -z "$OUT_TMP" ]] || rm -f "$OUT_TMP"' EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    case "$ACTION" in run) bench ;; verify) verify ;; esac
    ;;
  *) echo "usage: $0 [run|verify|install|build]" >&2; exit 2 ;;
esac
