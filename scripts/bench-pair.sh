#!/usr/bin/env bash
# bench-pair.sh - two eas-relay cluster nodes behind one load against one node
# under the same load (issue 13, "Speed": msgs/s of the pair and CPU per message).
#
#   BENCH_OUT=$PWD/target/bench scripts/bench-pair.sh          (RUNS=3: one, pair, one, pair, ...)
#   BENCH_EAS_BIN=target/debug/eas-relay N=400 RUNS=1 scripts/bench-pair.sh   (a smoke run)
#
# Once per invocation, in a private network namespace (loopback only, as
# bench-driver.sh): a PostgreSQL of its own (initdb in a temp dir as the
# unprivileged $PG_USER, `postgres` on 127.0.0.1:$PG_PORT with its socket in
# that dir, in its own cgroup), stopped and removed at the end. Then RUNS
# times, interleaved, a run of each mode:
#   one   node A alone (cluster mode on its own fresh database); all the load to A
#   pair  nodes A and B (cluster mode, distinct node_id, data_dir and ports, one
#         fresh database); the load split by the client, half of the messages
#         to each node (as senders spread over two MX hosts)
# Each run: a fresh database `eas_<run>`, the alias table of the shared harness
# (gen-aliases.sh) imported once with node A's CLI before A starts (`cluster
# init` migrates the schema, then `alias import`: cluster mode writes
# PostgreSQL first), the node(s) started, each in its own cgroup
# (cg.sh); B takes its replica from the database at its first start; the load
# begins once every node answers RCPT 250 for the first and the last alias of
# the table. The load is run-load.sh's (same job plan: smtp-source -N jobs of
# consecutive aliases, CONCURRENCY at a time, one message per connection, into
# one smtp-sink that every destination domain is routed to), except that each
# job names the node it talks to; run-load.sh itself drives one address only.
# The run ends when the sink counted N (bounded by TIMEOUT and STALL_S).
#
# Per run, one RESULT line (summarize.sh reads it; relay=eas-relay-one-<cfg> or
# eas-relay-pair-<cfg>) with run-load's fields and:
#   cpu_s        user+sys CPU of the node cgroups together during the load window
#   cpu_a_s / cpu_b_s  each node's; cpu_ms_per_msg = 1000 cpu_s / N
#   pg_cpu_s     PostgreSQL's cgroup (delivery-log rows, heartbeats, changes)
#   sent_a / sent_b  messages the load sent to each node
#   rss_peak_mb  sum of the nodes' VmHWM (peak RSS over the process's life)
#   queue_left deferred bounced log_warn log_error  as bench-driver.sh, summed
#   import_s     the alias import through A's CLI; ready_s  start to RCPT 250 on every node
# and one readable line on stderr. At the end: medians per mode and the ratio
# pair/one of the median msgs/s (SUMMARY lines), all of it in $RESULTS.
#
# Configurations as bench-driver.sh: plain (SRS, verdicts, DKIM, ARC off) unless
# SRS=1 and/or DKIM=1 (DKIM_ALGO=ed25519|rsa; a dnsmasq on loopback answers the
# verdicts' lookups); both nodes share SRS secret and DKIM keys.
#
# Usage: scripts/bench-pair.sh [run|install]
#   run      (default) install what is missing, then the runs
#   install  bench-driver.sh install (smtp-source, smtp-sink, ss, unshare, curl,
#            jq, openssl, dnsmasq; the release binary unless BENCH_EAS_BIN) and
#            Debian's postgresql (no service started)
# Env: N=20000 CONCURRENCY=20 SIZE=4096 SRS=0 DKIM=0 DKIM_ALGO=ed25519 RUNS=3
#      TIMEOUT=900 STALL_S=60 NETNS=1 KEEP=0 (1: keep the temp dir)
#      A_PORT=2525 B_PORT=2527 SINK_PORT=2526 A_HTTP=3525 B_HTTP=3527
#      PG_PORT=5433 DNS_PORT=5353 PG_USER=postgres PG_FSYNC=1 (0: fsync off)
#      QUIET_MAX=0.2 QUIET_WAIT_S=300 (wait for a quiet machine before each load)
#      START_TIMEOUT=60 READY_TIMEOUT=120 STOP_TIMEOUT=60 IMPORT_TIMEOUT=600
#      BENCH_OUT=<project>/target/bench RESULTS=$BENCH_OUT/pair-<stamp>.txt
#      ALIASES_FILE=$BENCH_OUT/aliases.tsv BENCH_DIR=<project>/../shared/bench
#      BENCH_EAS_BIN= (use this binary; default: bench-driver.sh builds the release one)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
if [[ -z "${BENCH_DIR:-}" ]]; then
  BENCH_DIR="$ROOT/../shared/bench"
  if [[ ! -d "$BENCH_DIR" ]]; then
    # a git worktree elsewhere: the harness beside the main checkout
    common=$(git -C "$ROOT" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    [[ -n "$common" && -d "$(dirname "$common")/../shared/bench" ]] && BENCH_DIR="$(dirname "$common")/../shared/bench"
  fi
fi
BENCH_DIR="$(cd "$BENCH_DIR" 2>/dev/null && pwd || echo "$BENCH_DIR")"
[[ -f "$BENCH_DIR/cg.sh" && -x "$BENCH_DIR/gen-aliases.sh" ]] \
  || { echo "bench-pair: the shared harness is not at $BENCH_DIR (set BENCH_DIR)" >&2; exit 1; }
export BENCH_DIR
# shellcheck source=/dev/null
source "$BENCH_DIR/cg.sh"

N="${N:-20000}"
CONCURRENCY="${CONCURRENCY:-20}"
SIZE="${SIZE:-4096}"
SRS="${SRS:-0}"
DKIM="${DKIM:-0}"
DKIM_ALGO="${DKIM_ALGO:-ed25519}"
RUNS="${RUNS:-3}"
TIMEOUT="${TIMEOUT:-900}"
STALL_S="${STALL_S:-60}"
NETNS="${NETNS:-1}"
KEEP="${KEEP:-0}"
A_PORT="${A_PORT:-2525}"
B_PORT="${B_PORT:-2527}"
SINK_PORT="${SINK_PORT:-2526}"
A_HTTP="${A_HTTP:-3525}"
B_HTTP="${B_HTTP:-3527}"
PG_PORT="${PG_PORT:-5433}"
DNS_PORT="${DNS_PORT:-5353}"
PG_USER="${PG_USER:-postgres}"
PG_FSYNC="${PG_FSYNC:-1}"
QUIET_MAX="${QUIET_MAX:-0.2}"
QUIET_WAIT_S="${QUIET_WAIT_S:-300}"
START_TIMEOUT="${START_TIMEOUT:-60}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"
STOP_TIMEOUT="${STOP_TIMEOUT:-60}"
IMPORT_TIMEOUT="${IMPORT_TIMEOUT:-600}"
BENCH_OUT="${BENCH_OUT:-$ROOT/target/bench}"
ALIASES_FILE="${ALIASES_FILE:-$BENCH_OUT/aliases.tsv}"
RESULTS="${RESULTS:-$BENCH_OUT/pair-$(date -u +%Y%m%d-%H%M%S).txt}"
RELAY_DOMAIN="${RELAY_DOMAIN:-relay.test}"
SENDER="sender@example.org"; HELO="client.example.org"; SUBJECT="benchmark message"
export BENCH_OUT ALIASES_FILE RESULTS

log() { echo "[bench-pair $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# the generated configs alone must decide (eas-relay reads EAS_RELAY_* overrides)
for v in $(compgen -e EAS_RELAY_ || true); do log "ignoring $v from the environment"; unset "$v"; done
case "$SIZE" in
  *[kK]) SIZE=$(( ${SIZE%[kK]} * 1024 )) ;;
  *[mM]) SIZE=$(( ${SIZE%[mM]} * 1024 * 1024 )) ;;
esac
cfg_label() {
  local l=plain
  [[ "$SRS" == 1 ]] && l=srs
  if [[ "$DKIM" == 1 ]]; then l="$l+dkim"; [[ "$DKIM_ALGO" == rsa ]] && l="$l-rsa"; fi
  echo "$l"
}
on() { if [[ "$1" == 1 ]]; then echo true; else echo false; fi; }
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
case "$BENCH_OUT/" in
  "$BENCH_DIR"/*) die "BENCH_OUT=$BENCH_OUT is inside the shared harness $BENCH_DIR; point it at a folder of your own" ;;
esac

# ------------------------------------------------------------------ install
pg_bindir() { compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1 | xargs -r dirname; }

install() {
  # smtp-source/smtp-sink, ss, unshare, curl, jq, openssl, dnsmasq and the binary
  "$HERE/bench-driver.sh" install >&2 || die "bench-driver.sh install failed"
  command -v setpriv >/dev/null || die "setpriv missing (Debian package util-linux)"
  if [[ -z "$(pg_bindir)" ]]; then
    log "installing postgresql (Debian; its service is not started)"
    local policy_added=0 rc=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_added=1
    fi
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } >&2 || rc=$?
    (( policy_added )) && rm -f /usr/sbin/policy-rc.d
    (( rc == 0 )) || die "apt-get install postgresql failed"
  fi
  id -u "$PG_USER" >/dev/null 2>&1 || die "no user $PG_USER to run PostgreSQL as (initdb refuses root)"
  BIN=$("$HERE/bench-driver.sh" build) || die "bench-driver.sh build failed"
}

# ------------------------------------------------------------------ state (trap cleans it)
BASE=""; PG_DIR=""; PG_PID=""; PG_PW=""; DNS_PID=""
declare -A NODE_PID=() NODE_EXIT=()
SINK_PID=""; SRC_PID=""
CG_PG=pair-pg; CG_LOAD=pair-load
cg_of() { echo "pair-$1"; }

# SIGTERM (or $2), bounded wait, SIGKILL; only the given PID (a child of ours)
stop_pid() {
  local pid="$1" sig="${2:-TERM}" end=$((SECONDS + STOP_TIMEOUT))
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < end )); do
      [[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; then
      log "pid $pid did not stop within ${STOP_TIMEOUT}s of SIG$sig: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  STOP_RC=0; wait "$pid" 2>/dev/null || STOP_RC=$?
}

# kills what is left in one of our cgroups, then removes it
cg_clear() {
  local d p
  d="$(_cg_dir1 "$1")"
  [[ -n "$d" && -d "$d" ]] || return 0
  for p in $(cg_procs "$1"); do kill -9 "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do [[ -z "$(cg_procs "$1")" ]] && break; sleep 0.1; done
  cg_destroy "$1"
}

stop_load() {
  local p
  for p in $SRC_PID $SINK_PID; do stop_pid "$p"; done
  SRC_PID=""; SINK_PID=""
  cg_clear "$CG_LOAD"
}

stop_node() {
  local n="$1"
  if [[ -n "${NODE_PID[$n]:-}" ]]; then
    stop_pid "${NODE_PID[$n]}"
    NODE_EXIT[$n]=$STOP_RC
    unset "NODE_PID[$n]"
  fi
  cg_clear "$(cg_of "$n")"
}

cleanup() {
  local n
  stop_load
  for n in a b; do stop_node "$n"; done
  pg_stop
  stop_pid "$DNS_PID"; DNS_PID=""
  if [[ -n "$BASE" && -d "$BASE" ]]; then
    if [[ "$KEEP" == 1 ]]; then log "kept $BASE"; else rm -rf "$BASE"; fi
  fi
  BASE=""
}

# ------------------------------------------------------------------ PostgreSQL
PGBIN=""
as_pg() { setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" --init-groups -- "$@"; }
psql_su() {  # one statement as the superuser over the socket
  "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -c "$1"
}

pg_start() {
  PGBIN="$(pg_bindir)"; [[ -n "$PGBIN" ]] || die "PostgreSQL is not installed (scripts/bench-pair.sh install)"
  listening "$PG_PORT" && die "port $PG_PORT (PostgreSQL) already in use"
  PG_DIR="$BASE/pg"
  mkdir -m 700 "$PG_DIR"; chown "$PG_USER:" "$PG_DIR"
  PG_PW=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  (cd "$PG_DIR" && as_pg "$PGBIN/initdb" -D "$PG_DIR/data" -U postgres -E UTF8 --locale=C \
     --auth-local=trust --auth-host=scram-sha-256) > "$BASE/initdb.log" 2>&1 \
    || die "initdb as $PG_USER failed: $(tail -5 "$BASE/initdb.log")"
  local durable=()
  [[ "$PG_FSYNC" == 1 ]] || durable=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
  cg_destroy "$CG_PG"; cg_create "$CG_PG"
  ( cg_enter "$CG_PG" && cd "$PG_DIR" && exec setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" \
      --init-groups -- "$PGBIN/postgres" -D "$PG_DIR/data" -k "$PG_DIR" -p "$PG_PORT" \
      -c listen_addresses=127.0.0.1 -c max_connections=60 "${durable[@]}" ) >> "$BASE/postgres.log" 2>&1 &
  PG_PID=$!
  local end=$((SECONDS + START_TIMEOUT))
  until psql_su 'SELECT 1' >/dev/null 2>&1; do
    kill -0 "$PG_PID" 2>/dev/null || { PG_PID=""; die "postgres exited at start: $(tail -5 "$BASE/postgres.log")"; }
    (( SECONDS < end )) || die "postgres did not answer within ${START_TIMEOUT}s: $(tail -5 "$BASE/postgres.log")"
    sleep 0.2
  done
  psql_su "CREATE ROLE eas LOGIN PASSWORD '$PG_PW'" || die "create role"
  log "postgres $("$PGBIN/postgres" --version | awk '{ print $3 }') up: pid $PG_PID on 127.0.0.1:$PG_PORT as $PG_USER (fsync $(on "$PG_FSYNC"))"
}

pg_stop() {
  if [[ -n "$PG_PID" ]]; then
    stop_pid "$PG_PID" INT    # fast shutdown: clients are disconnected
    PG_PID=""
  fi
  cg_clear "$CG_PG"
}

# ------------------------------------------------------------------ DNS (DKIM=1: the verdicts' lookups)
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

# ------------------------------------------------------------------ node configs
# [dkim] keys and [arc] (the same files for both nodes of a run)
dkim_config() {
  local dir="$1"
  [[ -s "$dir/ed25519.pem" ]] || openssl genpkey -algorithm ed25519 -out "$dir/ed25519.pem" 2>/dev/null || die "openssl ed25519 key"
  [[ -s "$dir/rsa.pem" ]] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/rsa.pem" 2>/dev/null || die "openssl rsa key"
  chmod 600 "$dir/ed25519.pem" "$dir/rsa.pem"
  if [[ "$DKIM_ALGO" == rsa ]]; then
    printf '[[dkim.keys]]\nselector = "bench-rsa"\nalgorithm = "rsa"\nkey = "%s"\n\n' "$dir/rsa.pem"
    printf '[arc]\nenabled = true\nselector = "bench-rsa"\n'
  else
    printf '[[dkim.keys]]\nselector = "bench-ed25519"\nalgorithm = "ed25519"\nkey = "%s"\n\n' "$dir/ed25519.pem"
    printf '[[dkim.keys]]\nselector = "bench-arc"\nalgorithm = "rsa"\nkey = "%s"\ndkim = false\n\n' "$dir/rsa.pem"
    printf '[arc]\nenabled = true\nselector = "bench-arc"\n'
  fi
}

# write_config NODE SMTP_PORT HTTP_PORT RUN_DIR DATABASE: $RUN_DIR/NODE/eas-relay.toml
# (bench-driver.sh's config, plus [cluster] and the shared SRS domain)
write_config() {
  local node="$1" port="$2" http="$3" dir="$4" db="$5" conf
  mkdir -m 700 "$dir/$node" "$dir/$node/data"
  conf="$dir/$node/eas-relay.toml"
  local conns=$(( CONCURRENCY * 10 > 1000 ? CONCURRENCY * 10 : 1000 ))
  {
    cat <<EOF
# generated by scripts/bench-pair.sh - cluster node $node ($(cfg_label))
hostname = "mx-$node.$RELAY_DOMAIN"
data_dir = "$dir/$node/data"

[log]
level = "warn"

[smtp]
listen = "127.0.0.1:$port"
max_connections = $conns
max_connections_per_network = $conns
reserved_percent = 0
max_session_time = "1d"
max_junk_commands = 1000000

[http]
listen = "127.0.0.1:$http"

[srs]
enabled = $(on "$SRS")
domain = "$RELAY_DOMAIN"
secrets = ["$SRS_SECRET"]

[auth]
enabled = $(on "$DKIM")

[dkim]
enabled = $(on "$DKIM")
domain = "$RELAY_DOMAIN"

EOF
    if [[ "$DKIM" == 1 ]]; then dkim_config "$dir"; else printf '[arc]\nenabled = false\n'; fi
    cat <<EOF

[cluster]
enabled = true
database_url = "postgres://eas:$PG_PW@127.0.0.1:$PG_PORT/$db"
node_id = "$node"

[outbound]
max_per_destination = 20
nameservers = ["127.0.0.1:$DNS_PORT"]

[outbound.routes]
EOF
    cut -f2 "$ALIASES_FILE" | tr ',' '\n' | sed -n 's/.*@//p' | sort -u \
      | awk -v p="$SINK_PORT" '{ printf "\"%s\" = \"127.0.0.1:%s\"\n", $1, p }'
  } > "$conf"
  chmod 600 "$conf"   # the SRS secret and the database password are inline
  "$BIN" config check "$conf" >&2 || die "config check failed for $conf"
}

conf_of() { echo "$RUN_DIR/$1/eas-relay.toml"; }

start_node() {  # NODE SMTP_PORT HTTP_PORT
  local n="$1" port="$2" http="$3" cg; cg="$(cg_of "$1")"
  listening "$port" && die "port $port (node $n) already in use"
  listening "$http" && die "port $http (node $n HTTP) already in use"
  cg_destroy "$cg"; cg_create "$cg"
  ( cg_enter "$cg" && NO_COLOR=1 exec "$BIN" --config "$(conf_of "$n")" serve ) >> "$RUN_DIR/$n/relay.log" 2>&1 &
  NODE_PID[$n]=$!
  local end=$((SECONDS + START_TIMEOUT))
  until listening "$port"; do
    kill -0 "${NODE_PID[$n]}" 2>/dev/null || { unset "NODE_PID[$n]"; die "node $n exited at start: $(tail -5 "$RUN_DIR/$n/relay.log")"; }
    (( SECONDS < end )) || die "node $n did not listen on 127.0.0.1:$port within ${START_TIMEOUT}s: $(tail -5 "$RUN_DIR/$n/relay.log")"
    sleep 0.1
  done
}

# the reply code of RCPT TO:<$2> at 127.0.0.1:$1 (after EHLO, MAIL FROM); "" if none
rcpt_code() {
  # shellcheck disable=SC2016
  timeout 10 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    reply() { local l; while IFS= read -r -t 5 l <&3; do [[ "${l:3:1}" == "-" ]] || { printf "%s" "${l:0:3}"; return 0; }; done; return 1; }
    [[ "$(reply)" == 220 ]] || exit 1
    printf "EHLO bench-pair.test\r\n" >&3; [[ "$(reply)" == 250 ]] || exit 1
    printf "MAIL FROM:<%s>\r\n" "$3" >&3; [[ "$(reply)" == 250 ]] || exit 1
    printf "RCPT TO:<%s>\r\n" "$2" >&3; code=$(reply) || exit 1
    printf "QUIT\r\n" >&3; reply >/dev/null || true
    printf "%s" "$code"' _ "$1" "$2" "$SENDER" 2>/dev/null || true
}

# until every node answers 250 for the first and the last alias of the table
wait_ready() {
  local first last n port end=$((SECONDS + READY_TIMEOUT))
  first=$(head -1 "$ALIASES_FILE" | cut -f1); last=$(tail -1 "$ALIASES_FILE" | cut -f1)
  for n in "$@"; do
    port=$A_PORT; [[ "$n" == b ]] && port=$B_PORT
    until [[ "$(rcpt_code "$port" "$first")" == 250 && "$(rcpt_code "$port" "$last")" == 250 ]]; do
      kill -0 "${NODE_PID[$n]}" 2>/dev/null || die "node $n exited: $(tail -5 "$RUN_DIR/$n/relay.log")"
      (( SECONDS < end )) || die "node $n did not accept RCPT $first / $last within ${READY_TIMEOUT}s (replica not synced?): $(tail -5 "$RUN_DIR/$n/relay.log")"
      sleep 0.2
    done
  done
}

# value of a Prometheus sample, e.g. 'eas_deliveries_total{outcome="deferred"}'
metric() {
  awk -v m="$2" 'index($0, m " ") == 1 { v = $NF } END { if (v == "") print "na"; else printf "%d\n", v }' "$1"
}
add_na() { if [[ "$1" == na || "$2" == na ]]; then echo na; else echo $(( $1 + $2 )); fi; }

# ------------------------------------------------------------------ the load
host_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
busy_cores() {  # busy cores over 2 s
  local a b; a=$(host_busy_ticks); sleep 2; b=$(host_busy_ticks)
  awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz / 2 }'
}
sink_msgs() {  # smtp-sink -c counter ("... mesg=N\r")
  local t; t=$(tail -c 48 "$RUN_DIR/sink.count" 2>/dev/null) || true
  [[ "$t" == *mesg=* ]] || { echo 0; return; }
  t=${t##*mesg=}; t=${t%%[!0-9]*}; echo "${t:-0}"
}
cpu_s_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

# the job plan of run-load.sh ("count suffix" lines: smtp-source -N over
# consecutive aliases, small jobs when N is small), then a node per job: in
# pair mode the one that has been sent fewer messages so far (A on a tie)
plan_jobs() {  # MODE -> $RUN_DIR/jobs ("count suffix host:port")
  awk -F'\t' -v N="$N" -v C="$CONCURRENCY" '
    match($1, /^[0-9]+/) {
      num = substr($1, 1, RLENGTH) + 0; suf = substr($1, RLENGTH + 1)
      if (!(suf in seen)) { seen[suf] = 1; order[++ns] = suf }
      have[suf, num] = 1
    }
    END {
      for (s = 1; s <= ns; s++) { k = 0; while (have[order[s], k + 1]) k++; cnt[s] = k }
      chunk = int((N + C - 1) / C)
      left = N; progress = 1
      while (left > 0 && progress) {
        progress = 0
        for (s = 1; s <= ns && left > 0; s++) {
          if (cnt[s] == 0) continue
          m = cnt[s]; if (m > chunk) m = chunk; if (m > left) m = left
          print m, order[s]; left -= m; progress = 1
        }
      }
      if (left > 0) exit 3
    }' "$ALIASES_FILE" \
  | awk -v mode="$1" -v a="127.0.0.1:$A_PORT" -v b="127.0.0.1:$B_PORT" '
      { if (mode == "pair" && sb < sa) { print $0, b; sb += $1 } else { print $0, a; sa += $1 } }' \
  > "$RUN_DIR/jobs" || die "no usable numbered aliases in $ALIASES_FILE"
  SENT_A=$(awk -v a="127.0.0.1:$A_PORT" '$3 == a { s += $1 } END { print s + 0 }' "$RUN_DIR/jobs")
  SENT_B=$(awk -v b="127.0.0.1:$B_PORT" '$3 == b { s += $1 } END { print s + 0 }' "$RUN_DIR/jobs")
}

# runs the load of MODE; sets the measurement variables M_*
load() {
  local mode="$1" nodes n
  nodes=(a); [[ "$mode" == pair ]] && nodes=(a b)
  plan_jobs "$mode"
  cg_destroy "$CG_LOAD"; cg_create "$CG_LOAD"
  listening "$SINK_PORT" && die "something already listens on sink port $SINK_PORT"
  ( cg_enter "$CG_LOAD" && exec timeout $((TIMEOUT + 120)) smtp-sink -c -u nobody "127.0.0.1:$SINK_PORT" 1024 ) \
    > "$RUN_DIR/sink.count" 2> "$RUN_DIR/sink.err" &
  SINK_PID=$!
  for _ in $(seq 100); do listening "$SINK_PORT" && break; sleep 0.05; done
  listening "$SINK_PORT" || die "smtp-sink did not start: $(cat "$RUN_DIR/sink.err")"

  M_QUIET=0
  if [[ "$QUIET_WAIT_S" != 0 ]]; then
    local q0=$SECONDS bc
    while :; do
      bc=$(busy_cores)
      awk -v b="$bc" -v m="$QUIET_MAX" 'BEGIN { exit !(b <= m) }' && break
      if (( SECONDS - q0 >= QUIET_WAIT_S )); then log "machine still busy ($bc cores), starting anyway"; break; fi
      (( M_QUIET == 0 )) && log "machine busy ($bc cores used by others), waiting up to ${QUIET_WAIT_S}s for quiet"
      sleep 3; M_QUIET=$((SECONDS - q0))
    done
  fi
  local p0=$EPOCHREALTIME
  awk 'BEGIN { s = 0; for (i = 0; i < 3000000; i++) s += i % 7; print s }' > /dev/null
  M_PROBE=$(awk -v a="$p0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')

  local base_msgs; base_msgs=$(sink_msgs)
  declare -A c0=()
  for n in "${nodes[@]}"; do c0[$n]=$(cg_cpu_ns "$(cg_of "$n")"); cg_mem_reset "$(cg_of "$n")"; done
  local pg0 lg0 hb0 t0 t1 t2
  pg0=$(cg_cpu_ns "$CG_PG"); lg0=$(cg_cpu_ns "$CG_LOAD"); hb0=$(host_busy_ticks)
  M_LOAD1=$(cut -d' ' -f1 /proc/loadavg)
  log "load: mode=$mode n=$N (A $SENT_A, B $SENT_B) size=$SIZE conc=$CONCURRENCY jobs=$(wc -l < "$RUN_DIR/jobs")"
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2016
  ( cg_enter "$CG_LOAD" && SIZE="$SIZE" SENDER="$SENDER" HELO="$HELO" SUBJECT="$SUBJECT" \
      exec timeout "$TIMEOUT" xargs -a "$RUN_DIR/jobs" -P "$CONCURRENCY" -L 1 sh -c \
      'exec smtp-source -N -s 1 -m "$1" -l "$SIZE" -f "$SENDER" -M "$HELO" -S "$SUBJECT" -t "$2" "$3"' _ ) \
    > "$RUN_DIR/source.out" 2>&1 &
  SRC_PID=$!
  local src_rc=0; wait "$SRC_PID" || src_rc=$?
  SRC_PID=""
  t1=$EPOCHREALTIME
  M_SRC_ERRORS=$(grep -c . "$RUN_DIR/source.out" || true)
  (( src_rc == 0 )) || { log "smtp-source exited rc=$src_rc; first errors:"; head -5 "$RUN_DIR/source.out" >&2; }

  local end got=0 last_got=-1 last_change=$SECONDS
  end=$(awk -v t0="$t0" -v to="$TIMEOUT" 'BEGIN { printf "%d", t0 + to }')
  while :; do
    got=$(( $(sink_msgs) - base_msgs ))
    (( got >= N )) && break
    (( ${EPOCHREALTIME%.*} >= end )) && { log "timeout: sink got $got of $N"; break; }
    if (( got != last_got )); then last_got=$got; last_change=$SECONDS
    elif (( SECONDS - last_change >= STALL_S )); then log "stalled: sink got $got of $N, no progress for ${STALL_S}s"; break; fi
    sleep 0.1
  done
  t2=$EPOCHREALTIME
  M_RECEIVED=$got
  local hb1 pg1 lg1 c1
  hb1=$(host_busy_ticks); pg1=$(cg_cpu_ns "$CG_PG"); lg1=$(cg_cpu_ns "$CG_LOAD")
  M_CPU_A=na; M_CPU_B=na; M_CPU=0; M_MEM=0; M_RSS=0
  for n in "${nodes[@]}"; do
    c1=$(cg_cpu_ns "$(cg_of "$n")")
    local s; s=$(cpu_s_between "${c0[$n]}" "$c1")
    if [[ "$n" == a ]]; then M_CPU_A=$s; else M_CPU_B=$s; fi
    M_CPU=$(awk -v x="$M_CPU" -v y="$s" 'BEGIN { printf "%.2f", x + y }')
    local mb; mb=$(cg_mem_peak "$(cg_of "$n")")
    M_MEM=$(awk -v x="$M_MEM" -v y="${mb:-0}" 'BEGIN { printf "%.1f", x + y / 1048576 }')
    local hwm; hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/${NODE_PID[$n]}/status" 2>/dev/null || echo 0)
    M_RSS=$(awk -v x="$M_RSS" -v y="${hwm:-0}" 'BEGIN { printf "%.1f", x + y / 1024 }')
  done
  M_PG_CPU=$(cpu_s_between "$pg0" "$pg1")
  M_LG_CPU=$(cpu_s_between "$lg0" "$lg1")
  M_HOST=$(awk -v a="$hb0" -v b="$hb1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')
  M_OTHER=$(awk -v h="$M_HOST" -v l="$M_LG_CPU" -v r="$M_CPU" -v p="$M_PG_CPU" 'BEGIN { printf "%.2f", h - l - r - p }')
  M_ACCEPT_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  M_AMPS=$(awk -v n="$N" -v s="$M_ACCEPT_S" 'BEGIN { printf "%.1f", n / s }')
  if (( got >= N )); then
    M_E2E=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')
    M_MPS=$(awk -v n="$N" -v s="$M_E2E" 'BEGIN { printf "%.1f", n / s }')
    M_CPU_PCT=$(awk -v c="$M_CPU" -v s="$M_E2E" 'BEGIN { printf "%.0f", 100 * c / s }')
    M_OK=1
  else
    M_E2E=timeout; M_MPS=na; M_CPU_PCT=na; M_OK=0
  fi
  stop_load
}

# ------------------------------------------------------------------ one run of a mode
RUN_SEQ=0
run_mode() {  # MODE (one|pair); sets RESULT_LINE (not a subshell: the trap must see the PIDs)
  local mode="$1" nodes n db t0 init_s import_s ready_s out
  nodes=(a); [[ "$mode" == pair ]] && nodes=(a b)
  RUN_SEQ=$((RUN_SEQ + 1))
  db="eas_r$RUN_SEQ"
  RUN_DIR="$BASE/run$RUN_SEQ-$mode"; mkdir -m 700 "$RUN_DIR"
  psql_su "CREATE DATABASE $db OWNER eas" || die "create database $db"
  write_config a "$A_PORT" "$A_HTTP" "$RUN_DIR" "$db"
  if [[ "$mode" == pair ]]; then write_config b "$B_PORT" "$B_HTTP" "$RUN_DIR" "$db"; fi
  # the table through A's CLI, before any node runs: `cluster init` on A's
  # empty store migrates the fresh database (copying nothing; the offline
  # write path does not migrate), then `alias import` writes PostgreSQL first
  t0=$EPOCHREALTIME
  out=$(timeout "$IMPORT_TIMEOUT" "$BIN" --config "$(conf_of a)" cluster init 2>&1) \
    || die "cluster init (the schema) through node a failed: $out"
  init_s=$(since "$t0")
  t0=$EPOCHREALTIME
  out=$(timeout "$IMPORT_TIMEOUT" "$BIN" --config "$(conf_of a)" alias import "$ALIASES_FILE" 2>&1) \
    || die "alias import through node a failed: $out"
  import_s=$(since "$t0")
  t0=$EPOCHREALTIME
  for n in "${nodes[@]}"; do
    local port=$A_PORT http=$A_HTTP
    [[ "$n" == b ]] && { port=$B_PORT; http=$B_HTTP; }
    start_node "$n" "$port" "$http"
  done
  wait_ready "${nodes[@]}"
  ready_s=$(since "$t0")
  log "run $RUN_SEQ ($mode): schema $init_s s, import $import_s s ($out), node(s) ${nodes[*]} ready in $ready_s s"

  load "$mode"

  local deferred=0 bounced=0 q=0 warns=0 errs=0 http v exits=""
  for n in "${nodes[@]}"; do
    http=$A_HTTP; [[ "$n" == b ]] && http=$B_HTTP
    if curl -sf --max-time 5 "http://127.0.0.1:$http/metrics" > "$RUN_DIR/$n/metrics.txt" 2>/dev/null; then
      deferred=$(add_na "$deferred" "$(metric "$RUN_DIR/$n/metrics.txt" 'eas_deliveries_total{outcome="deferred"}')")
      bounced=$(add_na "$bounced" "$(metric "$RUN_DIR/$n/metrics.txt" 'eas_deliveries_total{outcome="bounced"}')")
    else
      deferred=na; bounced=na
    fi
  done
  for n in "${nodes[@]}"; do stop_node "$n"; exits="$exits${exits:+,}${NODE_EXIT[$n]:-na}"; done
  for n in "${nodes[@]}"; do
    # what is left in each node's queue (node stopped: from its store)
    if v=$(timeout 60 "$BIN" --config "$(conf_of "$n")" --json queue list 2>>"$RUN_DIR/$n/relay.log" | jq 'length' 2>/dev/null) \
       && [[ -n "$v" ]]; then q=$(add_na "$q" "$v"); else q=na; fi
    warns=$(( warns + $(grep -c ' WARN ' "$RUN_DIR/$n/relay.log" 2>/dev/null || true) ))
    errs=$(( errs + $(grep -c ' ERROR ' "$RUN_DIR/$n/relay.log" 2>/dev/null || true) ))
    if grep -qE ' (WARN|ERROR) ' "$RUN_DIR/$n/relay.log" 2>/dev/null; then
      log "node $n log, first WARN/ERROR lines:"; grep -m 3 -E ' (WARN|ERROR) ' "$RUN_DIR/$n/relay.log" >&2 || true
    fi
  done
  [[ "$q" == 0 || "$q" == na ]] || log "queue not empty after the run: $q message(s)"
  psql_su "DROP DATABASE $db WITH (FORCE)" >/dev/null 2>&1 || log "could not drop database $db"
  [[ "$KEEP" == 1 ]] || rm -rf "$RUN_DIR"

  local cpumsg pgmsg
  cpumsg=$(awk -v c="$M_CPU" -v n="$N" 'BEGIN { printf "%.3f", 1000 * c / n }')
  pgmsg=$(awk -v c="$M_PG_CPU" -v n="$N" 'BEGIN { printf "%.3f", 1000 * c / n }')
  log "run $RUN_SEQ $mode: $M_MPS msgs/s end to end (accept $M_AMPS), relay CPU $M_CPU s (A $M_CPU_A, B $M_CPU_B) = $cpumsg ms/msg, postgres $M_PG_CPU s = $pgmsg ms/msg, received $M_RECEIVED/$N"
  RESULT_LINE="RESULT relay=eas-relay-$mode-$(cfg_label) mode=$mode nodes=${#nodes[@]} n=$N size=$SIZE conc=$CONCURRENCY accept_s=$M_ACCEPT_S e2e_s=$M_E2E msgs_per_s=$M_MPS accept_msgs_per_s=$M_AMPS received=$M_RECEIVED src_errors=$M_SRC_ERRORS cpu_s=$M_CPU cpu_pct=$M_CPU_PCT cpu_a_s=$M_CPU_A cpu_b_s=$M_CPU_B cpu_ms_per_msg=$cpumsg pg_cpu_s=$M_PG_CPU pg_ms_per_msg=$pgmsg sent_a=$SENT_A sent_b=$SENT_B rss_peak_mb=$M_RSS cg_mem_peak_mb=$M_MEM loadgen_cpu_s=$M_LG_CPU host_busy_s=$M_HOST other_cpu_s=$M_OTHER load1_before=$M_LOAD1 quiet_waited_s=$M_QUIET probe_ms=$M_PROBE queue_left=$q deferred=$deferred bounced=$bounced log_warn=$warns log_error=$errs import_s=$import_s ready_s=$ready_s relay_exit=$exits"
}

# medians per mode and the ratio pair/one, from RESULT lines on stdin
summary() {
  awk '
    function med(arr, n,    i, j, t) {
      if (n == 0) return "na"
      for (i = 2; i <= n; i++) { t = arr[i]; j = i - 1; while (j > 0 && arr[j] > t) { arr[j + 1] = arr[j]; j-- } arr[j + 1] = t }
      return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
    }
    /^RESULT / {
      delete f
      for (i = 2; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v }
      m = f["mode"]; runs[m]++; label = f["relay"]; sub(/^eas-relay-(one|pair)-/, "", label)
      if (f["msgs_per_s"] == "na") { fails[m]++; next }
      mps[m, ++c[m]] = f["msgs_per_s"]; cpu[m, c[m]] = f["cpu_ms_per_msg"]; pg[m, c[m]] = f["pg_ms_per_msg"]
    }
    END {
      for (mi = 1; mi <= 2; mi++) {
        m = mi == 1 ? "one" : "pair"; if (!runs[m]) continue
        delete a; for (i = 1; i <= c[m]; i++) a[i] = mps[m, i]; M[m] = med(a, c[m])
        delete a; for (i = 1; i <= c[m]; i++) a[i] = cpu[m, i]; C[m] = med(a, c[m])
        delete a; for (i = 1; i <= c[m]; i++) a[i] = pg[m, i]; P[m] = med(a, c[m])
        printf "SUMMARY mode=%s config=%s runs=%d failed=%d msgs_per_s_median=%s cpu_ms_per_msg_median=%s pg_ms_per_msg_median=%s\n", m, label, runs[m], fails[m] + 0, M[m], C[m], P[m]
      }
      r = (M["one"] != "" && M["one"] != "na" && M["pair"] != "" && M["pair"] != "na" && M["one"] > 0) ? sprintf("%.2f", M["pair"] / M["one"]) : "na"
      printf "SUMMARY ratio_pair_over_one=%s (median msgs/s)\n", r
    }'
}

bench() {
  local r mode rc=0
  mkdir -p "$BENCH_OUT" "$(dirname "$RESULTS")"
  [[ -s "$ALIASES_FILE" ]] || ALIASES_FILE="$ALIASES_FILE" "$BENCH_DIR/gen-aliases.sh" >/dev/null
  cg_available || die "cannot create cgroups (needed to measure the nodes)"
  BASE=$(mktemp -d /tmp/bench-pair.XXXXXX)
  chmod 711 "$BASE"   # $PG_USER reaches its own directory inside
  SRS_SECRET="bench-srs-secret-$RANDOM$RANDOM"
  log "machine: $(nproc) cpu, $(awk '/MemTotal/ { printf "%.1f GiB", $2/1048576 }' /proc/meminfo); $("$BIN" --version 2>/dev/null) ($BIN); config $(cfg_label), n=$N size=$SIZE conc=$CONCURRENCY runs=$RUNS"
  pg_start
  [[ "$DKIM" == 1 ]] && start_dns
  for r in $(seq "$RUNS"); do
    for mode in one pair; do
      log "run $r/$RUNS: $mode"
      run_mode "$mode"
      printf '%s\n' "$RESULT_LINE" | tee -a "$RESULTS"
      (( M_OK )) || rc=3
    done
  done
  grep '^RESULT ' "$RESULTS" | summary | tee -a "$RESULTS"
  log "results: $RESULTS"
  return "$rc"
}

# ------------------------------------------------------------------ dispatch
ACTION="${1:-run}"
[[ "$(id -u)" == 0 ]] || die "must run as root (cgroups, netns, smtp-sink -u nobody, PostgreSQL as $PG_USER)"
case "$DKIM_ALGO" in ed25519|rsa) ;; *) die "DKIM_ALGO must be ed25519 or rsa, not $DKIM_ALGO" ;; esac
case "$ACTION" in
  install) install ;;
  run)
    if [[ "${_BENCH_IN_NETNS:-0}" != 1 ]]; then
      install                       # packages and cargo need the network: before the netns
    else
      BIN="${BENCH_EAS_BIN:?}"
    fi
    if [[ "$NETNS" == 1 && "${_BENCH_IN_NETNS:-0}" != 1 ]]; then
      export BENCH_EAS_BIN="$BIN"
      # shellcheck disable=SC2016
      exec unshare -n -- env _BENCH_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$SELF" "$ACTION"
    fi
    trap cleanup EXIT
    trap 'log "SIGTERM: stopping what this script started"; exit 143' TERM
    trap 'log "SIGINT: stopping what this script started"; exit 130' INT
    bench
    ;;
  *) echo "usage: $0 [run|install]" >&2; exit 2 ;;
esac
