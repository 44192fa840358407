#!/usr/bin/env bash
# bench-memory.sh - peak memory of the release relay under two loads (issue 9,
# item 9), each against a fresh relay, all on loopback in a private network
# namespace:
#
#   idle   SESSIONS (10000) SMTP sessions that read the greeting and stay idle;
#          target: peak RSS under IDLE_TARGET_MB (150)
#   large  MESSAGES (200) messages of SIZE_MB (25) MiB sent at once over as
#          many connections, each relayed (DKIM-signed) to a local sink;
#          target: peak RSS under LARGE_TARGET_MB (250) until the sink has
#          every message
#
# Peak RSS is the relay's VmHWM from /proc/<pid>/status (the high-water mark
# of its resident memory over its whole life; the page cache of the spool
# files is not part of it). Prints one line per phase:
#
#   MEMORY phase=idle sessions=10000 peak_rss_mb=.. rss_mb=.. target_mb=150 verdict=PASS
#   MEMORY phase=large messages=200 size_mb=25 peak_rss_mb=.. seconds=.. delivered=200 target_mb=250 verdict=PASS
#
# Usage: scripts/bench-memory.sh [idle|large|all]   (default all)
# Env: SESSIONS=10000 MESSAGES=200 SIZE_MB=25 IDLE_TARGET_MB=150 LARGE_TARGET_MB=250
#      RELAY_PORT=2525 SINK_PORT=2526 HTTP_PORT=3525 NETNS=1 KEEP=0 TIMEOUT=1200
#      BENCH_EAS_BIN= (use this binary; default: build the release binary if stale)
# Needs root (network namespace, file descriptor limit) and python3. Leaves
# nothing behind: the relay, the sink and the clients are stopped by PID, the
# temporary directory is removed (KEEP=1 keeps it).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"

PHASE="${1:-all}"
SESSIONS="${SESSIONS:-10000}"
MESSAGES="${MESSAGES:-200}"
SIZE_MB="${SIZE_MB:-25}"
IDLE_TARGET_MB="${IDLE_TARGET_MB:-150}"
LARGE_TARGET_MB="${LARGE_TARGET_MB:-250}"
RELAY_PORT="${RELAY_PORT:-2525}"
SINK_PORT="${SINK_PORT:-2526}"
HTTP_PORT="${HTTP_PORT:-3525}"
NETNS="${NETNS:-1}"
KEEP="${KEEP:-0}"
TIMEOUT="${TIMEOUT:-1200}"

log() { echo "[bench-memory $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for v in $(compgen -e EAS_RELAY_ || true); do log "ignoring $v from the environment"; unset "$v"; done
case "$PHASE" in idle|large|all) ;; *) die "usage: $0 [idle|large|all]" ;; esac
[[ "$(id -u)" == 0 ]] || die "must run as root (network namespace, file descriptor limit)"
command -v python3 >/dev/null || die "python3 is needed for the clients and the sink"

if [[ "${_BENCH_IN_NETNS:-0}" != 1 ]]; then
  BENCH_EAS_BIN="${BENCH_EAS_BIN:-$("$HERE/bench-driver.sh" build)}"
  export BENCH_EAS_BIN
  if [[ "$NETNS" == 1 ]]; then
    # shellcheck disable=SC2016
    exec unshare -n -- env _BENCH_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$SELF" "$@"
  fi
fi
BIN="${BENCH_EAS_BIN:?}"
[[ -x "$BIN" ]] || die "$BIN is not executable"

# one socket per session in the client and in the relay (each a process of its
# own), plus the relay's own files
need=$(( (SESSIONS > MESSAGES ? SESSIONS : MESSAGES) + 1000 ))
ulimit -n "$need" || die "cannot raise RLIMIT_NOFILE to $need"

BASE=$(mktemp -d /tmp/bench-eas-memory.XXXXXX)
PIDS=()
stop_pid() {
  local pid=$1 end=$((SECONDS + 60))
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < end )); do
    [[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ "$KEEP" == 1 ]]; then log "kept $BASE"; else rm -rf "$BASE"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
below() { awk -v k="$1" -v t="$2" 'BEGIN { exit !(k / 1024 < t) }'; }

# ------------------------------------------------------------ helpers (python)
cat > "$BASE/sink.py" <<'EOF'
# A minimal SMTP sink: accepts everything, discards the data, counts messages.
import asyncio, os, sys
port, count_file = int(sys.argv[1]), sys.argv[2]
count = 0
async def session(reader, writer):
    global count
    writer.write(b"220 sink.test ESMTP\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                tail = b""
                while True:
                    chunk = await reader.read(1 << 18)
                    if not chunk:
                        return
                    # the relay waits for our reply after ".\r\n": it ends a read
                    tail = (tail + chunk)[-5:] if len(chunk) < 5 else chunk[-5:]
                    if tail == b"\r\n.\r\n":
                        break
                count += 1
                with open(count_file + ".tmp", "w") as f:
                    f.write(str(count))
                os.replace(count_file + ".tmp", count_file)
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(session, "127.0.0.1", port, limit=1 << 20, backlog=1024)
    async with server:
        await server.serve_forever()
asyncio.run(main())
EOF

cat > "$BASE/send.py" <<'EOF'
# Sends N messages of SIZE MiB at once, one connection each; prints a summary.
import asyncio, sys, time
port, n, size_mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
line = b"x" * 76 + b"\r\n"
head = (b"From: <sender@origin.test>\r\nTo: <big@mem.test>\r\nSubject: big\r\n"
        b"Message-ID: <%d@origin.test>\r\nDate: Thu, 3 Dec 2026 08:00:00 +0000\r\n\r\n")
body = line * ((size_mb << 20) // len(line))
async def reply(reader):
    while True:
        l = await reader.readline()
        if not l:
            raise ConnectionError("closed")
        if l[3:4] != b"-":
            return l
async def one(i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
    await reply(reader)
    for cmd, want in ((b"EHLO client.test", b"250"), (b"MAIL FROM:<sender@origin.test>", b"250"),
                      (b"RCPT TO:<big@mem.test>", b"250"), (b"DATA", b"354")):
        writer.write(cmd + b"\r\n")
        r = await reply(reader)
        if not r.startswith(want):
            raise RuntimeError("%s: %r" % (cmd, r))
    writer.write(head % i)
    view = memoryview(body)
    for at in range(0, len(body), 1 << 20):
        writer.write(view[at:at + (1 << 20)])
        await writer.drain()
    writer.write(b".\r\n")
    r = await reply(reader)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return r.startswith(b"250")
async def main():
    t0 = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    ok = sum(1 for r in results if r is True)
    errors = [repr(r) for r in results if r is not True][:3]
    print("accepted=%d seconds=%.1f errors=%s" % (ok, time.monotonic() - t0, ";".join(errors).replace(" ", "_") or "none"))
asyncio.run(main())
EOF

cat > "$BASE/idle.py" <<'EOF'
# Opens N sessions, reads each greeting, then holds them idle until killed.
import os, signal, socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
socks, failed, first = [], 0, ""
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        greeting = s.recv(512)
        if not greeting.startswith(b"220"):
            raise OSError("no greeting: %r" % greeting[:60])
        socks.append(s)
    except OSError as e:
        failed += 1
        first = first or str(e)
with open(ready + ".tmp", "w") as f:
    f.write("ok=%d failed=%d first_error=%s\n" % (len(socks), failed, first.replace(" ", "_")))
os.replace(ready + ".tmp", ready)
time.sleep(3600)
EOF

# ------------------------------------------------------------ the relay
start_relay() {
  local name=$1 data="$BASE/$1" conns=$(( SESSIONS + MESSAGES + 1000 ))
  mkdir -p "$data"
  cat > "$data.toml" <<EOF
# generated by scripts/bench-memory.sh
hostname = "relay.test"
data_dir = "$data/data"
[log]
level = "warn"
[smtp]
listen = "127.0.0.1:$RELAY_PORT"
max_connections = $conns
# all load comes from 127.0.0.1
max_connections_per_ip = $conns
max_message_size = "$(( SIZE_MB + 1 ))MiB"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[srs]
enabled = false
[auth]
# no DNS in the namespace: the body is still hashed and signed (DKIM)
enabled = false
[arc]
enabled = false
[outbound.routes]
"sink.test" = "127.0.0.1:$SINK_PORT"
EOF
  printf 'big@mem.test\tbox@sink.test\n' > "$data/aliases.tsv"
  "$BIN" config check "$data.toml" >&2 || die "config check failed"
  "$BIN" --config "$data.toml" alias import "$data/aliases.tsv" >&2 || die "alias import failed"
  NO_COLOR=1 "$BIN" --config "$data.toml" serve > "$data/relay.log" 2>&1 &
  RELAY_PID=$!
  PIDS+=("$RELAY_PID")
  local end=$((SECONDS + 60))
  until listening "$RELAY_PORT"; do
    kill -0 "$RELAY_PID" 2>/dev/null || die "relay exited at start: $(tail -5 "$data/relay.log")"
    (( SECONDS < end )) || die "relay did not listen within 60s"
    sleep 0.1
  done
  log "relay ($name) pid $RELAY_PID up, VmRSS $(mb "$(status_kb "$RELAY_PID" VmRSS)") MB"
}

phase_idle() {
  start_relay idle
  python3 "$BASE/idle.py" "$RELAY_PORT" "$SESSIONS" "$BASE/idle.ready" &
  local client=$!; PIDS+=("$client")
  local end=$((SECONDS + TIMEOUT))
  until [[ -s "$BASE/idle.ready" ]]; do
    kill -0 "$client" 2>/dev/null || die "the idle clients exited early"
    (( SECONDS < end )) || die "the idle clients did not connect within ${TIMEOUT}s"
    sleep 0.2
  done
  local ready ok hwm rss verdict=PASS
  read -r ready < "$BASE/idle.ready"
  sleep 2
  hwm=$(status_kb "$RELAY_PID" VmHWM); rss=$(status_kb "$RELAY_PID" VmRSS)
  ok=${ready#ok=}; ok=${ok%% *}
  below "$hwm" "$IDLE_TARGET_MB" || verdict=FAIL
  (( ok == SESSIONS )) || verdict=FAIL
  echo "MEMORY phase=idle sessions=$ok peak_rss_mb=$(mb "$hwm") rss_mb=$(mb "$rss") threads=$(status_kb "$RELAY_PID" Threads) target_mb=$IDLE_TARGET_MB verdict=$verdict ($ready)"
  stop_pid "$client"; stop_pid "$RELAY_PID"
}

phase_large() {
  python3 "$BASE/sink.py" "$SINK_PORT" "$BASE/sink.count" &
  PIDS+=("$!")
  start_relay large
  local t0=$SECONDS summary hwm delivered=0 verdict=PASS end
  summary=$(timeout "$TIMEOUT" python3 "$BASE/send.py" "$RELAY_PORT" "$MESSAGES" "$SIZE_MB") || die "sender failed: $summary"
  log "sent: $summary"
  end=$((SECONDS + TIMEOUT))
  while (( delivered < MESSAGES )) && (( SECONDS < end )); do
    sleep 1
    [[ -s "$BASE/sink.count" ]] && delivered=$(cat "$BASE/sink.count")
  done
  hwm=$(status_kb "$RELAY_PID" VmHWM)
  below "$hwm" "$LARGE_TARGET_MB" || verdict=FAIL
  (( delivered == MESSAGES )) || verdict=FAIL
  [[ "$summary" == "accepted=$MESSAGES "* ]] || verdict=FAIL
  echo "MEMORY phase=large messages=$MESSAGES size_mb=$SIZE_MB peak_rss_mb=$(mb "$hwm") seconds=$((SECONDS - t0)) delivered=$delivered threads=$(status_kb "$RELAY_PID" Threads) target_mb=$LARGE_TARGET_MB verdict=$verdict ($summary)"
  stop_pid "$RELAY_PID"
}

log "binary $BIN ($("$BIN" --version))"
if [[ "$PHASE" == idle || "$PHASE" == all ]]; then phase_idle; fi
if [[ "$PHASE" == large || "$PHASE" == all ]]; then phase_large; fi
