#!/usr/bin/env bash
# bench-rspamd.sh - eas-relay vs Postfix with rspamd scanning every message on
# both sides (issue 12), one rspamd shared by both, runs interleaved.
#
# Everything runs in ONE private network namespace (unshare -n, loopback only):
#   rspamd 3.4 (Debian): the Debian default config (/etc/rspamd/rspamd.conf) with
#     LOCAL_CONFDIR, DBDIR, RUNDIR and LOGDIR pointed at a temp dir whose local.d /
#     override.d turn off what only works with the Internet or Redis, started once
#     as _rspamd in its own cgroup (cg.sh "rspamd"):
#       worker "normal"       127.0.0.1:$RSPAMD_NORMAL_PORT (HTTP /checkv2, eas-relay)
#       worker "rspamd_proxy" 127.0.0.1:$RSPAMD_MILTER_PORT (milter, self_scan, Postfix)
#     both with count = $RSPAMD_WORKERS; controller off (RSPAMD_CONTROLLER=1: on
#     127.0.0.1:$RSPAMD_CONTROLLER_PORT, for /stat checks). Off: rbl, surbl,
#     emails, fuzzy_check, asn, dcc, rspamd_update, url_redirector and the
#     phishtank/openphish feeds (network only); Redis-backed modules (bayes,
#     greylist, ratelimit, neural, reputation, history_redis, replies, ...) stay off
#     because no Redis server is configured. Maps on maps.rspamd.com fail to
#     download and rspamd uses the copies Debian ships. DNS: its own dnsmasq on
#     127.0.0.1:$RSPAMD_DNS_PORT (every name local: unknown ones NXDOMAIN at once;
#     example.org publishes SPF for 127.0.0.0/8 and DMARC p=none), so SPF, DKIM,
#     DMARC, ARC and hfilter run their lookups and get answers in microseconds.
#     rspamd logs every task at its Debian default level (info) into its temp dir;
#     the per-run counts of scanned messages and of actions come from that log.
#   Postfix side ("postfix"): ../shared/bench/postfix-relay.sh setup with SRS=1
#     DKIM=1 (postsrsd + opendkim), then main.cf gets rspamd's milter before
#     opendkim (smtpd_milters = inet:rspamd, inet:opendkim), then its start/stop
#     actions around run-load.sh (the same steps as its own one_run).
#   eas-relay side ("eas-relay"): scripts/bench-driver.sh run with SRS=1 DKIM=1
#     (SRS, inbound verdicts, DKIM, ARC seal) and SCAN_URL (its [scan] section:
#     timeout 10s, max_size 4MiB, fail tempfail) pointing at the normal worker.
#   "eas-relay-noscan": the same without [scan], so eas-relay's own CPU per
#     message with and without scanning is measured in the same interleaved run.
# For every repetition each side of SIDES runs once, one after the other. rspamd's
# CPU (its cgroup: main process, workers, hs_helper) and its log are read before
# and after each side's run; the RESULT line of the side gets:
#   rspamd_cpu_s      rspamd's CPU over the whole run (setup, quiet wait, load, stop):
#                     scanning plus idle housekeeping (rspamd_idle_ms_per_s in the
#                     header line of $RESULTS says how much idle costs)
#   rspamd_window_s   wall time of that window
#   rspamd_scanned    tasks rspamd logged in the window (normal + proxy workers);
#                     rspamd_scanned_normal / rspamd_scanned_proxy: per worker type
#   rspamd_actions    action:count,... of those tasks (e.g. no_action:20000)
#   relay_user_s / relay_sys_s  the relay cgroup's user and system CPU over the
#                     relay's whole life (cgroup v1: tick-sampled, approximate)
#   rspamd_died=1     only when rspamd's main process was gone after the run
# and the summary (medians per side, ratio eas-relay/postfix) goes to
# ${RESULTS%.txt}.md.
#
# Usage: scripts/bench-rspamd.sh [run|verify|install]
#   run     (default) RUNS x SIDES measured runs, then the summary
#   verify  VERIFY_N=50 messages per side with capture at the sink (CHECK lines),
#           the controller on for a /stat check, and a GTUBE message sent to each
#           scanning side after its load: it must be refused (5xx) at DATA
#   install the Debian packages (Postfix & co via postfix-relay.sh install, rspamd,
#           dnsmasq-base) and the release binary
#   summary [FILE]  the summary of a results file again
# Env: N=20000 SIZE=4096 CONCURRENCY=20 RUNS=3 TIMEOUT=900 QUIET_WAIT_S=300
#      SIDES="postfix eas-relay eas-relay-noscan" DKIM_ALGO=ed25519 (eas-relay's DKIM)
#      RSPAMD_WORKERS=2 RSPAMD_NORMAL_PORT=11333 RSPAMD_MILTER_PORT=11332
#      RSPAMD_CONTROLLER=0 RSPAMD_CONTROLLER_PORT=11334 RSPAMD_DNS_PORT=5354
#      RSPAMD_IDLE_WAIT_S=300 (wait for rspamd's start-up work, e.g. hyperscan, to end)
#      BENCH_OUT=<project>/target/bench RESULTS=$BENCH_OUT/results-rspamd-<stamp>.txt
#      BENCH_DIR=<project>/../shared/bench (read-only here)  KEEP=0 (1: keep rspamd's dir)
#      BENCH_EAS_BIN= (use this binary, no build)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
BENCH_DIR="${BENCH_DIR:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || echo "$ROOT/../shared/bench")}"
[[ -f "$BENCH_DIR/cg.sh" && -x "$BENCH_DIR/run-load.sh" && -x "$BENCH_DIR/postfix-relay.sh" ]] \
  || { echo "bench-rspamd: the shared harness is not at $BENCH_DIR (set BENCH_DIR)" >&2; exit 1; }
# shellcheck source=/dev/null
source "$BENCH_DIR/cg.sh"

export N="${N:-20000}" SIZE="${SIZE:-4096}" CONCURRENCY="${CONCURRENCY:-20}"
export TIMEOUT="${TIMEOUT:-900}" QUIET_WAIT_S="${QUIET_WAIT_S:-300}"
RUNS="${RUNS:-3}"
SIDES="${SIDES:-postfix eas-relay eas-relay-noscan}"
DKIM_ALGO="${DKIM_ALGO:-ed25519}"
RSPAMD_WORKERS="${RSPAMD_WORKERS:-2}"
RSPAMD_NORMAL_PORT="${RSPAMD_NORMAL_PORT:-11333}"
RSPAMD_MILTER_PORT="${RSPAMD_MILTER_PORT:-11332}"
RSPAMD_CONTROLLER="${RSPAMD_CONTROLLER:-0}"
RSPAMD_CONTROLLER_PORT="${RSPAMD_CONTROLLER_PORT:-11334}"
RSPAMD_DNS_PORT="${RSPAMD_DNS_PORT:-5354}"
RSPAMD_IDLE_WAIT_S="${RSPAMD_IDLE_WAIT_S:-300}"
RSPAMD_CG="rspamd"
RELAY_PORT="${RELAY_PORT:-2525}"
SINK_PORT="${SINK_PORT:-2526}"
KEEP="${KEEP:-0}"
export BENCH_OUT="${BENCH_OUT:-$ROOT/target/bench}"
export ALIASES_FILE="${ALIASES_FILE:-$BENCH_OUT/aliases.tsv}"
STAMP="${STAMP:-$(date +%Y%m%d-%H%M%S)}"
export RESULTS="${RESULTS:-$BENCH_OUT/results-rspamd-$STAMP.txt}"
# Postfix's instance dir (postfix-relay.sh BASE): not the harness's default, so
# a bench of another helper on this machine keeps its own
PF_BASE="${PF_BASE:-/tmp/bench-postfix-rspamd}"
GTUBE='XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'

log() { echo "[bench-rspamd $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
wait_listen() {  # PORT WHAT PID SECONDS: until PORT listens, or PID died, or time is up
  local end=$((SECONDS + $4))
  until listening "$1"; do
    kill -0 "$3" 2>/dev/null || die "$2 exited before listening on $1"
    (( SECONDS < end )) || die "$2 did not listen on 127.0.0.1:$1 within $4 s"
    sleep 0.2
  done
}

case "$BENCH_OUT/" in
  "$BENCH_DIR"/*) die "BENCH_OUT=$BENCH_OUT is inside the shared harness; use a folder of your own" ;;
esac

# ------------------------------------------------------------------ install
install() {
  "$BENCH_DIR/postfix-relay.sh" install
  local pkgs=()
  command -v rspamd >/dev/null || pkgs+=(rspamd)
  command -v dnsmasq >/dev/null || pkgs+=(dnsmasq-base)
  if (( ${#pkgs[@]} )); then
    # no system-wide rspamd started by the package scripts (as postfix-relay.sh does)
    local tmp_policy=0 rc=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; tmp_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 || rc=$?
    (( tmp_policy )) && rm -f /usr/sbin/policy-rc.d
    (( rc == 0 )) || die "apt-get install ${pkgs[*]} failed"
  fi
  id _rspamd >/dev/null 2>&1 || die "user _rspamd missing (Debian's rspamd package creates it)"
  if [[ " $SIDES " == *" eas-relay"* ]]; then
    BIN="${BENCH_EAS_BIN:-$("$HERE/bench-driver.sh" build)}"
  fi
}

# ------------------------------------------------------------------ rspamd
RS=""; RSPAMD_PID=""; RDNS_PID=""

rspamd_config() {  # the local.d / override.d of the Debian config, in $RS/etc
  mkdir -p "$RS/etc/local.d" "$RS/etc/override.d" "$RS/db" "$RS/run" "$RS/log" "$RS/hs"
  cat > "$RS/etc/local.d/options.inc" <<EOF
# generated by scripts/bench-rspamd.sh: lookups go to this bench's dnsmasq only
dns { nameserver = ["127.0.0.1:$RSPAMD_DNS_PORT"]; timeout = 1s; retransmits = 2; }
hs_cache_dir = "$RS/hs/";
EOF
  cat > "$RS/etc/override.d/worker-normal.inc" <<EOF
bind_socket = "127.0.0.1:$RSPAMD_NORMAL_PORT";
count = $RSPAMD_WORKERS;
mime = true;
EOF
  # Debian's worker-proxy.inc with self_scan: the proxy scans in-process (no
  # hop to a normal worker), as for a milter-only setup
  cat > "$RS/etc/override.d/worker-proxy.inc" <<EOF
bind_socket = "127.0.0.1:$RSPAMD_MILTER_PORT";
count = $RSPAMD_WORKERS;
milter = yes;
timeout = 120s;
upstream "local" { default = yes; self_scan = yes; }
max_retries = 5;
discard_on_reject = false;
quarantine_on_reject = false;
spam_header = "X-Spam";
reject_message = "Spam message rejected";
EOF
  local cc=-1; [[ "$RSPAMD_CONTROLLER" == 1 ]] && cc=1
  cat > "$RS/etc/override.d/worker-controller.inc" <<EOF
bind_socket = "127.0.0.1:$RSPAMD_CONTROLLER_PORT";
count = $cc;
secure_ip = "127.0.0.1";
EOF
  local m
  for m in rbl surbl emails fuzzy_check asn dcc rspamd_update url_redirector; do
    printf '# network-only: off in the offline bench\nenabled = false;\n' > "$RS/etc/local.d/$m.conf"
  done
  printf 'phishtank_enabled = false;\nopenphish_enabled = false;\n' > "$RS/etc/local.d/phishing.conf"
  chown -R _rspamd:_rspamd "$RS/db" "$RS/run" "$RS/log" "$RS/hs"
  chmod 755 "$RS"; chmod -R a+rX "$RS/etc"
}

rspamd_vars() {
  printf '%s\n' "--var=LOCAL_CONFDIR=$RS/etc" "--var=DBDIR=$RS/db" "--var=RUNDIR=$RS/run" "--var=LOGDIR=$RS/log"
}

rspamd_start() {
  local p
  for p in "$RSPAMD_NORMAL_PORT" "$RSPAMD_MILTER_PORT" "$RSPAMD_CONTROLLER_PORT"; do
    listening "$p" && die "port $p already in use"
  done
  ss -Hlun "sport = :$RSPAMD_DNS_PORT" 2>/dev/null | grep -q . && die "port $RSPAMD_DNS_PORT (DNS) already in use"
  RS=$(mktemp -d /tmp/bench-rspamd.XXXXXX)
  rspamd_config
  local vars; mapfile -t vars < <(rspamd_vars)
  local ct
  # (in the netns rspamadm complains that resolv.conf has no nameserver: rspamd
  # itself takes its nameserver from options.inc)
  ct=$(rspamadm "${vars[@]}" configtest -c /etc/rspamd/rspamd.conf 2>&1) || die "rspamadm configtest failed: $ct"
  dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll --user=root \
    --bind-interfaces --listen-address=127.0.0.1 --port="$RSPAMD_DNS_PORT" --local=/#/ \
    --txt-record=example.org,"v=spf1 ip4:127.0.0.0/8 -all" \
    --txt-record=_dmarc.example.org,"v=DMARC1; p=none" \
    --log-facility=- >> "$RS/log/dnsmasq.log" 2>&1 &
  RDNS_PID=$!
  cg_destroy "$RSPAMD_CG"; cg_create "$RSPAMD_CG"
  local t0=$SECONDS
  # -f: stays in the foreground, so $! is rspamd's main process
  ( cg_enter "$RSPAMD_CG" && exec rspamd -f -u _rspamd -g _rspamd -c /etc/rspamd/rspamd.conf "${vars[@]}" ) \
    >> "$RS/log/stdout.log" 2>&1 &
  RSPAMD_PID=$!
  wait_listen "$RSPAMD_NORMAL_PORT" "rspamd (normal worker; $RS/log)" "$RSPAMD_PID" 180
  wait_listen "$RSPAMD_MILTER_PORT" "rspamd (proxy worker)" "$RSPAMD_PID" 60
  # start-up work (hyperscan compilation in hs_helper, map loads) must be over
  # before anything is measured: until rspamd uses < 2% of a core over 3 s
  local a b end=$((SECONDS + RSPAMD_IDLE_WAIT_S))
  while :; do
    a=$(cg_cpu_ns "$RSPAMD_CG"); sleep 3; b=$(cg_cpu_ns "$RSPAMD_CG")
    (( b - a < 60000000 )) && break
    (( SECONDS < end )) || { log "rspamd still busy after ${RSPAMD_IDLE_WAIT_S}s, going on"; break; }
  done
  a=$(cg_cpu_ns "$RSPAMD_CG"); sleep 10; b=$(cg_cpu_ns "$RSPAMD_CG")
  RSPAMD_IDLE=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", (b - a) / 1e6 / 10 }')
  RSPAMD_PROCS=$(ps -o args= -p "$(cg_procs "$RSPAMD_CG" | paste -sd,)" | sed 's/^rspamd: //; s/ process.*//' | sort | uniq -c \
    | awk '{ printf "%s%s=%s", (NR > 1 ? "," : ""), $2, $1 }')
  log "rspamd up in $((SECONDS - t0)) s (pid $RSPAMD_PID, $RS): processes $RSPAMD_PROCS; idle ${RSPAMD_IDLE} ms CPU/s"
}

rspamd_stop() {
  local p end
  if [[ -n "$RSPAMD_PID" ]]; then
    kill -TERM "$RSPAMD_PID" 2>/dev/null || true
    end=$((SECONDS + 30))
    while kill -0 "$RSPAMD_PID" 2>/dev/null && (( SECONDS < end )); do sleep 0.2; done
    kill -KILL "$RSPAMD_PID" 2>/dev/null || true
    wait "$RSPAMD_PID" 2>/dev/null || true
    RSPAMD_PID=""
  fi
  if [[ -n "$(_cg_dir1 "$RSPAMD_CG")" && -d "$(_cg_dir1 "$RSPAMD_CG")" ]]; then
    for p in $(cg_procs "$RSPAMD_CG"); do kill -9 "$p" 2>/dev/null || true; done   # stragglers (ours)
    for _ in $(seq 50); do [[ -z "$(cg_procs "$RSPAMD_CG")" ]] && break; sleep 0.1; done
    cg_destroy "$RSPAMD_CG"
  fi
  if [[ -n "$RDNS_PID" ]]; then kill "$RDNS_PID" 2>/dev/null || true; wait "$RDNS_PID" 2>/dev/null || true; RDNS_PID=""; fi
  if [[ -n "$RS" && -d "$RS" ]]; then
    cp "$RS/log/rspamd.log" "$BENCH_OUT/rspamd.log.last" 2>/dev/null || true
    if [[ "$KEEP" == 1 ]]; then log "kept $RS"; else rm -rf "$RS"; fi
    RS=""
  fi
}

SNAP=""
rspamd_snap() { SNAP="$(cg_cpu_ns "$RSPAMD_CG") $(stat -c %s "$RS/log/rspamd.log" 2>/dev/null || echo 0) $EPOCHREALTIME"; }
# the fields appended to a RESULT line: what rspamd did since rspamd_snap
rspamd_fields() {
  local c0 o0 t0 c1
  read -r c0 o0 t0 <<< "$SNAP"
  sleep 1   # the log line of the last task is written after its reply
  c1=$(cg_cpu_ns "$RSPAMD_CG")
  tail -c "+$((o0 + 1))" "$RS/log/rspamd.log" | awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$EPOCHREALTIME" '
    /rspamd_task_write_log/ {
      n++
      if ($0 ~ /\(normal\)/) nn++; else if ($0 ~ /\(rspamd_proxy\)/) np++
      if (match($0, /\(default: [A-Z] \([^)]*\)/)) { a = substr($0, RSTART + 13, RLENGTH - 14); gsub(/ /, "_", a); act[a]++ }
    }
    END {
      s = ""; for (a in act) s = s (s == "" ? "" : ",") a ":" act[a]
      printf "rspamd_cpu_s=%.2f rspamd_window_s=%.1f rspamd_scanned=%d rspamd_scanned_normal=%d rspamd_scanned_proxy=%d rspamd_actions=%s\n",
        (c1 - c0) / 1e9, t1 - t0, n, nn, np, (s == "" ? "none" : s)
    }'
}

# user and system CPU of a relay's cgroup, split (run-load.sh reports only the
# sum): cg_split_sampler NAME FILE writes "user_ns sys_ns" of group NAME to FILE
# every 0.5 s while the group exists, until FILE.stop appears (bounded); the
# last value is the relay's whole life (start to stop, a little more than the
# load window), taken before its driver removes the group. Only builtins and
# sleep in the loop: the sampler's own CPU is noise in the measured window.
cg_split_sampler() {
  local d u s k v end=$((SECONDS + TIMEOUT + 900))
  d="$(_cg_dir1 "$1")"
  while [[ ! -e "$2.stop" ]] && (( SECONDS < end )); do
    u=""; s=""
    if [[ -r "$d/cpu.stat" ]]; then
      while read -r k v; do
        case "$k" in user_usec) u=$((v * 1000)) ;; system_usec) s=$((v * 1000)) ;; esac
      done < "$d/cpu.stat"
    elif [[ -r "$d/cpuacct.usage_user" ]]; then
      read -r u < "$d/cpuacct.usage_user" || true; read -r s < "$d/cpuacct.usage_sys" || true
    fi
    [[ -z "$u" || -z "$s" ]] || echo "$u $s" > "$2"
    sleep 0.5
  done
}

# ------------------------------------------------------------------ GTUBE probe
# gtube HOST:PORT: one SMTP session sending a GTUBE message to an alias of the
# table; prints the server's answer to the end of DATA; true when it is 5xx
gtube() {
  local hp="$1" rcpt ans
  rcpt=$(awk -F'\t' 'NR == 1 { print $1 }' "$ALIASES_FILE")
  # shellcheck disable=SC2016
  ans=$(timeout 60 bash -c '
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
    rd() { local l; while IFS= read -r -t 30 l <&3; do l=${l%$'"'"'\r'"'"'}; [[ "$l" =~ ^[0-9]{3}- ]] || { printf "%s\n" "$l"; return 0; }; done; return 1; }
    rd >/dev/null || exit 1
    printf "EHLO gtube.example.org\r\n" >&3; rd >/dev/null
    printf "MAIL FROM:<sender@example.org>\r\n" >&3; rd >/dev/null
    printf "RCPT TO:<%s>\r\n" "$2" >&3; r=$(rd); [[ "$r" == 250* ]] || { echo "RCPT: $r"; exit 0; }
    printf "DATA\r\n" >&3; rd >/dev/null
    printf "From: <sender@example.org>\r\nTo: <%s>\r\nSubject: GTUBE test\r\nDate: %s\r\nMessage-ID: <gtube.%s@example.org>\r\n\r\nThis is the GTUBE, the\r\n\tGeneric\r\n\tTest for\r\n\tUnsolicited\r\n\tBulk\r\n\tEmail\r\n\r\n%s\r\n\r\n.\r\n" \
      "$2" "$(date -R)" "$RANDOM$RANDOM" "$3" >&3
    rd; printf "QUIT\r\n" >&3; rd >/dev/null || true' _ "$hp" "$rcpt" "$GTUBE") || ans="(no answer: $?)"
  log "GTUBE to $hp -> $ans"
  [[ "$ans" == 5* ]]
}

# ------------------------------------------------------------------ the sides
SIDE_OUT=""   # RESULT (and CHECK) lines of the last side run
DUMP=""       # verify: capture dir for the sink

postfix_side() {
  local rc=0 out q bounced deferred mc="$PF_BASE/etc/main.cf"
  local -a env=(BASE="$PF_BASE" SRS=1 DKIM=1 NETNS=0 RELAY_PORT="$RELAY_PORT" SINK_PORT="$SINK_PORT" KEEP=0)
  env "${env[@]}" "$BENCH_DIR/postfix-relay.sh" setup >&2
  # rspamd first: opendkim signs what rspamd let through
  grep -q '^smtpd_milters = inet:127.0.0.1:8891$' "$mc" || die "unexpected smtpd_milters in $mc"
  sed -i "s|^smtpd_milters = inet:127.0.0.1:8891\$|smtpd_milters = inet:127.0.0.1:$RSPAMD_MILTER_PORT, inet:127.0.0.1:8891|" "$mc"
  grep -q "^smtpd_milters = inet:127.0.0.1:$RSPAMD_MILTER_PORT, inet:127.0.0.1:8891\$" "$mc" || die "could not add rspamd's milter to $mc"
  sed -i "1s|\$| + rspamd milter (scripts/bench-rspamd.sh)|" "$mc"
  env "${env[@]}" "$BENCH_DIR/postfix-relay.sh" start >&2
  out=$(RELAY="127.0.0.1:$RELAY_PORT" RELAY_NAME="postfix-srs+dkim+rspamd" SINK="127.0.0.1:$SINK_PORT" \
        RELAY_CGROUP=postfix-relay EXPECT_SRS=1 EXPECT_DKIM=1 DUMP_DIR="$DUMP" KEEP_WORK=0 \
        "$BENCH_DIR/run-load.sh") || rc=$?
  if [[ -n "$DUMP" ]]; then gtube "127.0.0.1:$RELAY_PORT" || { log "Postfix did not refuse GTUBE"; rc=5; }; fi
  q=$(find "$PF_BASE/spool/active" "$PF_BASE/spool/incoming" "$PF_BASE/spool/deferred" -type f 2>/dev/null | wc -l)
  bounced=$(grep -c 'status=bounced' "$PF_BASE/log/maillog" 2>/dev/null || true)
  deferred=$(grep -c 'status=deferred' "$PF_BASE/log/maillog" 2>/dev/null || true)
  local milter_rej; milter_rej=$(grep -c 'milter-reject' "$PF_BASE/log/maillog" 2>/dev/null || true)
  if [[ -n "$DUMP" ]]; then grep -m 3 'milter-reject' "$PF_BASE/log/maillog" >&2 || true; fi
  env "${env[@]}" "$BENCH_DIR/postfix-relay.sh" teardown >&2
  (( rc == 0 )) || log "postfix side: exit $rc; queue left=$q bounced=$bounced deferred=$deferred"
  SIDE_OUT=$(printf '%s\n' "$out" | sed "/^RESULT/ s/\$/ queue_left=$q deferred=$deferred bounced=$bounced milter_reject=$milter_rej/")
  return "$rc"
}

eas_side() {  # $1 = 1: with [scan]
  local rc=0 tmp scan="" after=""
  [[ "$1" == 1 ]] && scan="http://127.0.0.1:$RSPAMD_NORMAL_PORT"
  [[ -n "$DUMP" && "$1" == 1 ]] && after="\"$SELF\" gtube"
  tmp=$(mktemp /tmp/bench-rspamd-side.XXXXXX)
  SRS=1 DKIM=1 DKIM_ALGO="$DKIM_ALGO" SCAN_URL="$scan" AFTER_LOAD="$after" RUNS=1 \
    RESULTS="$tmp.results" RELAY_PORT="$RELAY_PORT" SINK_PORT="$SINK_PORT" \
    DUMP_DIR="$DUMP" KEEP_WORK=0 BENCH_EAS_BIN="$BIN" _BENCH_IN_NETNS=1 \
    "$HERE/bench-driver.sh" run > "$tmp" || rc=$?
  SIDE_OUT=$(grep -E '^(RESULT|CHECK) ' "$tmp" || true)
  rm -f "$tmp" "$tmp.results"
  return "$rc"
}

one_side() {  # $1 = side; appends its RESULT/CHECK lines with rspamd's fields to $RESULTS
  local rc=0 f split sp u s cg=eas-relay
  [[ "$1" == postfix ]] && cg=postfix-relay
  split=$(mktemp /tmp/bench-rspamd-split.XXXXXX)
  cg_split_sampler "$cg" "$split" & sp=$!
  rspamd_snap
  case "$1" in
    postfix) postfix_side || rc=$? ;;
    eas-relay) eas_side 1 || rc=$? ;;
    eas-relay-noscan) eas_side 0 || rc=$? ;;
    *) die "unknown side $1 (postfix, eas-relay, eas-relay-noscan)" ;;
  esac
  f=$(rspamd_fields)
  touch "$split.stop"; wait "$sp" 2>/dev/null || true
  read -r u s < "$split" 2>/dev/null || true
  f="$f relay_user_s=$(awk -v x="${u:-}" 'BEGIN { if (x == "") print "na"; else printf "%.2f", x / 1e9 }')"
  f="$f relay_sys_s=$(awk -v x="${s:-}" 'BEGIN { if (x == "") print "na"; else printf "%.2f", x / 1e9 }')"
  rm -f "$split" "$split.stop"
  if ! kill -0 "$RSPAMD_PID" 2>/dev/null; then
    log "rspamd exited during side $1: $(tail -3 "$RS/log/rspamd.log" 2>/dev/null)"; f="$f rspamd_died=1"; rc=1
  fi
  printf '%s\n' "$SIDE_OUT" | sed "/^RESULT/ s/\$/ side=$1 $f/" | tee -a "$RESULTS"
  [[ -n "$SIDE_OUT" ]] || log "side $1 printed no RESULT line"
  if [[ -n "$DUMP" ]] && grep -q '^CHECK .*verdict=FAIL' <<< "$SIDE_OUT"; then rc=1; fi
  return "$rc"
}

stat_check() {  # verify only: the controller's counters
  local s
  s=$(curl -sf --max-time 5 "http://127.0.0.1:$RSPAMD_CONTROLLER_PORT/stat" 2>/dev/null) || { log "controller /stat: no answer"; return 1; }
  log "controller /stat: scanned=$(jq -r .scanned <<< "$s") actions=$(jq -c .actions <<< "$s")"
}

# ------------------------------------------------------------------ the bench (inside the netns)
bench() {
  local r s rc=0 failed=0
  mkdir -p "$BENCH_OUT" "$(dirname "$RESULTS")"
  [[ -s "$ALIASES_FILE" ]] || "$BENCH_DIR/gen-aliases.sh" >/dev/null
  rspamd_start
  {
    echo "# bench-rspamd $STAMP: sides=[$SIDES] runs=$RUNS n=$N size=$SIZE conc=$CONCURRENCY dkim_algo=$DKIM_ALGO"
    echo "# machine: $(nproc) cpu ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2/1048576 }' /proc/meminfo), kernel $(uname -r)"
    echo "# rspamd $(dpkg-query -W -f '${Version}' rspamd 2>/dev/null): processes $RSPAMD_PROCS; workers normal=proxy=$RSPAMD_WORKERS; rspamd_idle_ms_per_s=$RSPAMD_IDLE"
    echo "# postfix $(dpkg-query -W -f '${Version}' postfix 2>/dev/null), postsrsd $(dpkg-query -W -f '${Version}' postsrsd 2>/dev/null), opendkim $(dpkg-query -W -f '${Version}' opendkim 2>/dev/null)"
    [[ -z "${BIN:-}" ]] || echo "# eas-relay: $("$BIN" --version 2>/dev/null) ($EAS_SRC)"
  } >> "$RESULTS"
  for r in $(seq "$RUNS"); do
    for s in $SIDES; do
      log "rep $r/$RUNS side=$s n=$N size=$SIZE conc=$CONCURRENCY"
      one_side "$s" || { rc=1; failed=$((failed + 1)); log "side $s rep $r failed"; }
    done
  done
  if [[ "$RSPAMD_CONTROLLER" == 1 ]]; then stat_check || rc=1; fi
  rspamd_stop
  summary | tee "${RESULTS%.txt}.md" || rc=1
  log "results: $RESULTS, summary ${RESULTS%.txt}.md ($failed failed side run(s))"
  return "$rc"
}

# medians per side (the sides' RESULT lines in $RESULTS) as Markdown
summary() {
  awk '
  function med(s, k,    n, i, j, t, a) {
    n = cnt[s, k]; if (n == 0) return ""
    for (i = 1; i <= n; i++) a[i] = v[s, k, i]
    for (i = 2; i <= n; i++) { t = a[i]; j = i - 1; while (j > 0 && a[j] > t) { a[j + 1] = a[j]; j-- } a[j + 1] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function mn(s, k,    i, m) { m = ""; for (i = 1; i <= cnt[s, k]; i++) if (m == "" || v[s, k, i] < m) m = v[s, k, i]; return m }
  function mx(s, k,    i, m) { m = ""; for (i = 1; i <= cnt[s, k]; i++) if (m == "" || v[s, k, i] > m) m = v[s, k, i]; return m }
  function add(s, k, x) { if (x == "" || x == "na" || x == "timeout") return; v[s, k, ++cnt[s, k]] = x + 0 }
  function f(x, p) { return (x == "") ? "na" : sprintf(p, x) }
  /^# / { hdr[++nh] = substr($0, 3); next }
  /^RESULT / {
    delete g
    for (i = 2; i <= NF; i++) { k = $i; sub(/=.*/, "", k); x = $i; sub(/^[^=]*=/, "", x); g[k] = x }
    s = g["side"]; if (!(s in seen)) { seen[s] = 1; order[++ns] = s; name[s] = g["relay"] }
    runs[s]++
    if (g["e2e_s"] == "timeout" || g["e2e_s"] == "") { fail[s]++ } else {
      add(s, "mps", g["msgs_per_s"]); add(s, "amps", g["accept_msgs_per_s"])
      if (g["cpu_s"] != "na") add(s, "cpu", 1000 * g["cpu_s"] / g["n"])
      add(s, "rcpu", 1000 * g["rspamd_cpu_s"] / g["n"])
      if (g["cpu_s"] != "na") add(s, "tcpu", 1000 * (g["cpu_s"] + g["rspamd_cpu_s"]) / g["n"])
      add(s, "pss", g["pss_peak_mb"]); add(s, "probe", g["probe_ms"])
      if (g["relay_user_s"] != "" && g["relay_user_s"] != "na") { add(s, "usr", 1000 * g["relay_user_s"] / g["n"]); add(s, "sys", 1000 * g["relay_sys_s"] / g["n"]) }
    }
    scanned[s] = scanned[s] (scanned[s] == "" ? "" : " ") g["rspamd_scanned"] "/" g["n"]
    actions[s] = g["rspamd_actions"]
    # run-load.sh counts rspamd (not the relay, not the load generator) as
    # "other": what is left after it is the noise of other jobs
    noise = (g["other_cpu_s"] == "na") ? "na" : sprintf("%.2f", g["other_cpu_s"] - g["rspamd_cpu_s"])
    nrun[++nl] = sprintf("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", nl, s, g["msgs_per_s"], g["accept_msgs_per_s"],
      (g["cpu_s"] == "na") ? "na" : sprintf("%.2f", 1000 * g["cpu_s"] / g["n"]), sprintf("%.2f", 1000 * g["rspamd_cpu_s"] / g["n"]),
      g["rspamd_scanned"] "/" g["n"], g["rspamd_actions"], g["src_errors"], g["queue_left"], noise, g["probe_ms"])
  }
  END {
    if (ns == 0) { print "no RESULT lines"; exit 1 }
    for (i = 1; i <= nh; i++) print "    " hdr[i]
    print ""
    print "| side | relay (RESULT name) | runs (failed) | e2e msgs/s median (min-max) | accept msgs/s | relay CPU ms/msg | (user / sys, whole life) | rspamd CPU ms/msg | relay+rspamd CPU ms/msg | relay PSS MB | scanned/n per run | rspamd actions (last run) |"
    print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    for (i = 1; i <= ns; i++) {
      s = order[i]
      printf "| %s | %s | %d (%d) | %s (%s-%s) | %s | %s | %s / %s | %s | %s | %s | %s | %s |\n", s, name[s], runs[s], fail[s],
        f(med(s, "mps"), "%.1f"), f(mn(s, "mps"), "%.1f"), f(mx(s, "mps"), "%.1f"), f(med(s, "amps"), "%.1f"),
        f(med(s, "cpu"), "%.2f"), f(med(s, "usr"), "%.2f"), f(med(s, "sys"), "%.2f"), f(med(s, "rcpu"), "%.2f"), f(med(s, "tcpu"), "%.2f"), f(med(s, "pss"), "%.1f"), scanned[s], actions[s]
    }
    print ""
    if (cnt["eas-relay", "mps"] && cnt["postfix", "mps"])
      printf "RATIO eas-relay/postfix median e2e msgs/s = %.2f (target >= 3)\n", med("eas-relay", "mps") / med("postfix", "mps")
    if (cnt["eas-relay", "cpu"] && cnt["eas-relay-noscan", "cpu"])
      printf "eas-relay own CPU ms/msg with rspamd %.2f vs without %.2f (%+.1f%%; target: unchanged within noise)\n",
        med("eas-relay", "cpu"), med("eas-relay-noscan", "cpu"), 100 * (med("eas-relay", "cpu") / med("eas-relay-noscan", "cpu") - 1)
    if (cnt["eas-relay", "rcpu"] && cnt["postfix", "rcpu"])
      printf "rspamd CPU ms/msg: for eas-relay (normal worker, HTTP) %.2f, for Postfix (proxy worker, milter) %.2f\n", med("eas-relay", "rcpu"), med("postfix", "rcpu")
    print ""
    print "Per run, in order (rspamd CPU over the side run window, idle included; noise CPU s: machine busy time"
    print "in the load window left after the relay, the load generator and rspamd, i.e. other jobs on the box):"
    print ""
    print "| # | side | e2e msgs/s | accept msgs/s | relay CPU ms/msg | rspamd CPU ms/msg | scanned/n | rspamd actions | src_errors | queue_left | noise CPU s | probe_ms |"
    print "|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|"
    for (i = 1; i <= nl; i++) print nrun[i]
  }' "$RESULTS"
}

cleanup() {
  # Postfix instance of an interrupted side run (its own pid files and cgroup)
  if [[ -d "$PF_BASE" ]]; then BASE="$PF_BASE" NETNS=0 "$BENCH_DIR/postfix-relay.sh" teardown >/dev/null 2>&1 || true; fi
  rspamd_stop
}

# ------------------------------------------------------------------ dispatch
ACTION="${1:-run}"
[[ "$(id -u)" == 0 ]] || die "must run as root (rspamd as _rspamd, Postfix instance, cgroups, netns)"
case "$ACTION" in
  install) install ;;
  gtube) gtube "${RELAY:?gtube needs RELAY=host:port}" ;;
  summary) RESULTS="${2:-$RESULTS}"; summary ;;
  run|verify)
    case "$DKIM_ALGO" in ed25519|rsa) ;; *) die "DKIM_ALGO must be ed25519 or rsa, not $DKIM_ALGO" ;; esac
    if [[ "${_BENCH_IN_NETNS:-0}" != 1 ]]; then
      install   # packages and cargo need the network: before the netns
      if [[ -n "${BIN:-}" ]]; then
        # a private copy: a rebuild in the working tree must not swap the binary between runs
        mkdir -p "$BENCH_OUT"; cp "$BIN" "$BENCH_OUT/eas-relay-rspamd-$STAMP.bin"
        EAS_SRC="git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo na)"
        [[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]] \
          || EAS_SRC="$EAS_SRC + uncommitted changes in src/"
        export BENCH_EAS_BIN="$BENCH_OUT/eas-relay-rspamd-$STAMP.bin" EAS_SRC
      fi
      export STAMP
      rc=0
      # shellcheck disable=SC2016
      unshare -n -- env _BENCH_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$SELF" "$ACTION" || rc=$?
      [[ -z "${BENCH_EAS_BIN:-}" ]] || rm -f "$BENCH_EAS_BIN"
      exit "$rc"
    fi
    BIN="${BENCH_EAS_BIN:-}"; EAS_SRC="${EAS_SRC:-na}"
    if [[ " $SIDES " == *" eas-relay"* ]]; then
      [[ -x "$BIN" ]] || die "no eas-relay binary (BENCH_EAS_BIN)"
      if [[ " $SIDES " == *" eas-relay "* ]] && ! "$BIN" config check <(printf '[scan]\nenabled = true\nurl = "http://127.0.0.1:%s"\n' "$RSPAMD_NORMAL_PORT") >/dev/null 2>&1; then
        die "this eas-relay has no [scan] section yet ($("$BIN" config check <(printf '[scan]\nenabled = true\n') 2>&1 | head -2 | tr '\n' ' ')); use SIDES=\"postfix eas-relay-noscan\" until it lands"
      fi
    fi
    trap cleanup EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    if [[ "$ACTION" == verify ]]; then
      RSPAMD_CONTROLLER=1 RUNS=1 N="${VERIFY_N:-50}" QUIET_WAIT_S=0 STALL_S="${STALL_S:-20}" DUMP="$BENCH_OUT/rspamd-verify-dump"
      export N QUIET_WAIT_S STALL_S
      RESULTS="$BENCH_OUT/verify-rspamd-results.txt"
      rm -f "$RESULTS"
    fi
    bench
    ;;
  *) echo "usage: $0 [run|verify|install|summary FILE]" >&2; exit 2 ;;
esac
