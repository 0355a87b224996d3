#!/usr/bin/env bash
# Memory of portal-gate: resident size (VmRSS in /proc/PID/status)
#   (a) idle, just started and after 1 000 warm-up requests,
#   (b) after ENTRIES distinct tokens went through the decrypt cache
#       (cache_capacity = ENTRIES), per entry,
#   (c) holding IDLE_CONNS idle keep-alive connections (one request each), per
#       connection, over HTTP/1.1 and then over HTTP/2 (h2c), and RSS again
#       AFTER_CLOSE seconds after the client closed them (does memory come
#       back?); header_read_timeout is raised to 300s for this, since the
#       default 10s closes idle HTTP/1 connections, and max_connections to
#       2 x IDLE_CONNS (the default 10 000 would make the last ones queue),
#   (d) for comparison, an nginx proxy_pass worker holding the same
#       connections (HTTP/1.1, and HTTP/2 on an `http2` listener).
#
#   benches/load/memory.sh              # ENTRIES=100000 IDLE_CONNS=10000, ~2-3 minutes
#
# Tokens are minted through the token API (POST /auth/api/token) and sent
# with stdlib Python (benches/load/mem_client.py); all on 127.0.0.1.
# Environment: ENTRIES, IDLE_CONNS, AFTER_CLOSE ("1 10 30 60"), BUILD=0 (reuse
# target/release), GATE_BIN=path (measure that build instead, e.g. one with
# another allocator), KEEP_TMP=1, GATE_CPUS (taskset list for the gate,
# default: unpinned), RESULTS=dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

ENTRIES=${ENTRIES:-100000}
IDLE_CONNS=${IDLE_CONNS:-10000}
GATE_CPUS=${GATE_CPUS:--}
AFTER_CLOSE=${AFTER_CLOSE:-1 10 30 60} # seconds after the close at which RSS is read again
IDLE_BATCH=${IDLE_BATCH:-1} # connections opened concurrently; 1 keeps the upstream pool at one connection
CLIENT=$HERE/mem_client.py

pg_need_tools
# 10 000 sockets on each side: raise the descriptor limit (inherited by the
# gate and the Python client).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > IDLE_CONNS + 100)) || pg_die "ulimit -n is $(ulimit -n); need more than $IDLE_CONNS"

PG_TMP=$(mktemp -d /tmp/pg-mem.XXXXXX)
chmod 755 "$PG_TMP"
trap pg_cleanup EXIT
trap 'exit 130' INT TERM
BIN=$PG_TMP/portal-gate
if [[ -n ${GATE_BIN:-} ]]; then
    cp "$GATE_BIN" "$BIN"
else
    pg_build "$ROOT" "$BIN"
fi
read -r P_UP P_G1 P_G2 P_G3 P_NGX P_NGX2 < <(pg_free_ports 6)

WWW=$PG_TMP/www
pg_make_page "$WWW"
chmod -R a+rX "$WWW"
pg_nginx_upstream_conf "$PG_TMP" "$WWW" "$P_UP" >"$PG_TMP/upstream.conf"
pg_start - "$PG_TMP/upstream.out" nginx -p "$PG_TMP" -e "$PG_TMP/upstream.error.log" -c "$PG_TMP/upstream.conf"
pg_wait_http "http://127.0.0.1:$P_UP/pub/page.html"

SECRET=$("$BIN" secret)
(
    umask 077
    pg_gate_config "$P_UP" "$SECRET" "$ENTRIES" \
        '' \
        '[limits]' \
        'header_read_timeout = "300s"       # the default 10s closes idle keep-alive connections' \
        "max_connections = $((IDLE_CONNS * 2))" >"$PG_TMP/gate.toml"
)
"$BIN" check --config "$PG_TMP/gate.toml" >"$PG_TMP/check.txt" || pg_die "portal-gate check failed: $(cat "$PG_TMP/check.txt")"

# Wait for the port without sending a request (a bare TCP connect).
wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    pg_die "port $1 did not open"
}
rss() { pg_rss_kb "$1"; }
fds() { find /proc/"$1"/fd -mindepth 1 -maxdepth 1 | wc -l; }
threads() { awk '/^Threads:/ {print $2}' /proc/"$1"/status; }
kb() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }

OUT=$PG_TMP/memory.md
{
    echo "portal-gate $("$BIN" --version | awk '{print $2}') (git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')), $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)${GATE_BIN:+, build $GATE_BIN}"
    echo
} >"$OUT"

# ---- (a) idle, and (b) the decrypt cache ----------------------------------
pg_start "$GATE_CPUS" "$PG_TMP/gate1.log" env RUST_LOG=warn "$BIN" serve --config "$PG_TMP/gate.toml" --listen "127.0.0.1:$P_G1"
G1=$PG_LAST_PID
wait_port "$P_G1"
sleep 0.5
RSS_START=$(rss "$G1")
python3 "$CLIENT" get 127.0.0.1 "$P_G1" /pub/page.html 1000
sleep 0.5
RSS_WARM=$(rss "$G1")
pg_log "(a) idle: $RSS_START KiB at start, $RSS_WARM KiB after 1 000 requests; $(threads "$G1") threads"

pg_log "(b) minting $ENTRIES tokens through the token API"
python3 "$CLIENT" mint 127.0.0.1 "$P_G1" "$SECRET" "$ENTRIES" "$PG_TMP/tokens.txt"
RSS_MINTED=$(rss "$G1")
TOKEN_LEN=$(head -1 "$PG_TMP/tokens.txt" | tr -d '\n' | wc -c)
pg_log "(b) sending each token once: GET /priv/page.html"
OK=$(python3 "$CLIENT" verify 127.0.0.1 "$P_G1" "$PG_TMP/tokens.txt" /priv/page.html)
((OK == ENTRIES)) || pg_die "only $OK of $ENTRIES verified requests answered 200"
sleep 0.5
RSS_CACHED=$(rss "$G1")
PER_ENTRY=$(awk -v a="$RSS_CACHED" -v b="$RSS_MINTED" -v n="$ENTRIES" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}')
pg_log "(b) $RSS_MINTED KiB after minting, $RSS_CACHED KiB after $ENTRIES cached tokens: $PER_ENTRY bytes per entry"
pg_stop "$G1"

# ---- (c) idle keep-alive connections, and what comes back ------------------
# hold <label> <pid> <port> <mode>: open IDLE_CONNS connections to <port>
# with one request each (mode idle: HTTP/1.1, idle2: HTTP/2 over h2c) and
# keep them while reading <pid>'s RSS; then close them and read it again
# AFTER_CLOSE (seconds after the close, cumulative). Sets HOLD_BEFORE,
# HOLD_HELD, HOLD_FDS, HOLD_PER_CONN, HOLD_AFTER ("t:KiB ..."), HOLD_MSG.
hold() {
    local label=$1 pid=$2 port=$3 mode=$4 ready t waited=0
    HOLD_BEFORE=$(rss "$pid")
    pg_log "$label: opening $IDLE_CONNS connections ($mode), one request each"
    coproc HOLDER { exec python3 "$CLIENT" "$mode" 127.0.0.1 "$port" /pub/page.html "$IDLE_CONNS" "$IDLE_BATCH" 2>"$PG_TMP/$label.err"; }
    local holder=$HOLDER_PID
    PG_PIDS+=("$holder")
    read -r ready <&"${HOLDER[0]}" || pg_die "the idle client failed: $(cat "$PG_TMP/$label.err")"
    [[ $ready == ready ]] || pg_die "the idle client said '$ready'"
    sleep 6 # let the upstream pool drain: what is left is per client connection
    HOLD_HELD=$(rss "$pid")
    HOLD_FDS=$(fds "$pid")
    HOLD_PER_CONN=$(awk -v a="$HOLD_HELD" -v b="$HOLD_BEFORE" -v n="$IDLE_CONNS" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}')
    pg_log "$label: $HOLD_BEFORE KiB before, $HOLD_HELD KiB held ($HOLD_FDS fds): $HOLD_PER_CONN bytes per connection"
    eval "exec ${HOLDER[1]}>&-" # close the client's stdin: it closes its sockets and exits
    wait "$holder" 2>/dev/null || true
    HOLD_MSG=$(tail -1 "$PG_TMP/$label.err")
    HOLD_AFTER=""
    for t in $AFTER_CLOSE; do
        sleep $((t - waited))
        waited=$t
        HOLD_AFTER+="$t:$(rss "$pid") "
    done
    pg_log "$label: after the close (s:KiB): $HOLD_AFTER"
}
# "+1 s 20.1 MiB, +10 s ..." from HOLD_AFTER.
after_list() {
    local item out=()
    for item in $1; do out+=("+${item%%:*} s $(kb "${item#*:}")"); done
    local IFS=, joined
    joined="${out[*]}"
    echo "${joined//,/, }"
}

pg_start "$GATE_CPUS" "$PG_TMP/gate2.log" env RUST_LOG=warn "$BIN" serve --config "$PG_TMP/gate.toml" --listen "127.0.0.1:$P_G2"
G2=$PG_LAST_PID
wait_port "$P_G2"
python3 "$CLIENT" get 127.0.0.1 "$P_G2" /pub/page.html 1000
sleep 5 # let the upstream pool's idle connection expire (pool_idle_timeout 4s)
hold "c-h1" "$G2" "$P_G2" idle
H1=("$HOLD_BEFORE" "$HOLD_HELD" "$HOLD_FDS" "$HOLD_PER_CONN" "$HOLD_AFTER" "$HOLD_MSG")
pg_stop "$G2"

pg_start "$GATE_CPUS" "$PG_TMP/gate3.log" env RUST_LOG=warn "$BIN" serve --config "$PG_TMP/gate.toml" --listen "127.0.0.1:$P_G3"
G3=$PG_LAST_PID
wait_port "$P_G3"
python3 "$CLIENT" get 127.0.0.1 "$P_G3" /pub/page.html 1000
sleep 5
hold "c-h2" "$G3" "$P_G3" idle2
H2=("$HOLD_BEFORE" "$HOLD_HELD" "$HOLD_FDS" "$HOLD_PER_CONN" "$HOLD_AFTER" "$HOLD_MSG")
pg_stop "$G3"

# ---- (d) for comparison: nginx proxy_pass holding the same connections ----
{
    pg_nginx_head "$PG_TMP" proxy
    pg_nginx_portal_upstream "$P_UP"
    pg_nginx_proxy_server "$P_NGX"
    # The same proxy over h2c (nginx 1.22's spelling of `http2 on`).
    pg_nginx_proxy_server "$P_NGX2" | sed "s|listen 127.0.0.1:$P_NGX2;|listen 127.0.0.1:$P_NGX2 http2;|"
    echo "}"
} >"$PG_TMP/proxy.conf"
pg_start - "$PG_TMP/proxy.out" nginx -p "$PG_TMP" -e "$PG_TMP/proxy.error.log" -c "$PG_TMP/proxy.conf"
NGX=$PG_LAST_PID
pg_wait_http "http://127.0.0.1:$P_NGX/pub/page.html"
python3 "$CLIENT" get 127.0.0.1 "$P_NGX" /pub/page.html 1000
NGX_WORKER=$(pg_children "$NGX" | head -1)
AFTER_CLOSE=1 hold "d-h1" "$NGX_WORKER" "$P_NGX" idle
N1=("$HOLD_BEFORE" "$HOLD_HELD" "$HOLD_PER_CONN")
AFTER_CLOSE=1 hold "d-h2" "$NGX_WORKER" "$P_NGX2" idle2
N2=("$HOLD_BEFORE" "$HOLD_HELD" "$HOLD_PER_CONN")

{
    echo "| measurement | VmRSS | per unit |"
    echo "|---|---:|---:|"
    echo "| (a) idle, just started | $(kb "$RSS_START") | – |"
    echo "| (a) idle, after 1 000 requests | $(kb "$RSS_WARM") | – |"
    echo "| (b) after minting $ENTRIES tokens through the API | $(kb "$RSS_MINTED") | – |"
    echo "| (b) after $ENTRIES distinct tokens went through the cache (capacity $ENTRIES) | $(kb "$RSS_CACHED") | $PER_ENTRY B per entry (token $TOKEN_LEN B) |"
    echo "| (c) HTTP/1.1, before: warm, no client connection | $(kb "${H1[0]}") | – |"
    echo "| (c) HTTP/1.1, $IDLE_CONNS idle keep-alive connections | $(kb "${H1[1]}") (${H1[2]} fds) | ${H1[3]} B per connection |"
    echo "| (c) HTTP/1.1, after the client closed them | $(after_list "${H1[4]}") | – |"
    echo "| (c) HTTP/2 (h2c), before | $(kb "${H2[0]}") | – |"
    echo "| (c) HTTP/2 (h2c), $IDLE_CONNS idle connections | $(kb "${H2[1]}") (${H2[2]} fds) | ${H2[3]} B per connection |"
    echo "| (c) HTTP/2 (h2c), after the client closed them | $(after_list "${H2[4]}") | – |"
    echo "| (d) nginx proxy_pass worker, warm | $(kb "${N1[0]}") | – |"
    echo "| (d) nginx proxy_pass worker, $IDLE_CONNS idle HTTP/1.1 keep-alive connections | $(kb "${N1[1]}") | ${N1[2]} B per connection |"
    echo "| (d) nginx proxy_pass worker, $IDLE_CONNS idle HTTP/2 (h2c) connections | $(kb "${N2[1]}") (from $(kb "${N2[0]}")) | ${N2[2]} B per connection |"
    echo
    echo "Idle clients at the end: HTTP/1.1: ${H1[5]}; HTTP/2: ${H2[5]}"
} >>"$OUT"
echo
cat "$OUT"
if [[ -n ${RESULTS:-} ]]; then
    mkdir -p "$RESULTS"
    cp "$OUT" "$RESULTS"/
fi
