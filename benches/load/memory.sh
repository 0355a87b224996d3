#!/usr/bin/env bash
# Memory of portal-gate: resident size (VmRSS in /proc/PID/status)
#   (a) idle, just started and after 1 000 warm-up requests,
#   (b) after ENTRIES distinct tokens went through the decrypt cache
#       (cache_capacity = ENTRIES), per entry,
#   (c) holding IDLE_CONNS idle keep-alive connections (one request each), per
#       connection; header_read_timeout is raised to 300s for this, since the
#       default 10s closes idle HTTP/1 connections, and max_connections to
#       2 x IDLE_CONNS (the default 10 000 would make the last ones queue),
#   (d) for comparison, an nginx proxy_pass worker holding the same connections.
#
#   benches/load/memory.sh              # ENTRIES=100000 IDLE_CONNS=10000, ~2-3 minutes
#
# Tokens are minted through the token API (POST /auth/api/token) and sent
# with stdlib Python (benches/load/mem_client.py); all on 127.0.0.1.
# Environment: ENTRIES, IDLE_CONNS, BUILD=0 (reuse target/release), KEEP_TMP=1,
# GATE_CPUS (taskset list for the gate, default: unpinned), RESULTS=dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

ENTRIES=${ENTRIES:-100000}
IDLE_CONNS=${IDLE_CONNS:-10000}
GATE_CPUS=${GATE_CPUS:--}
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
pg_build "$ROOT" "$BIN"
read -r P_UP P_G1 P_G2 P_NGX < <(pg_free_ports 4)

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
    echo "portal-gate $("$BIN" --version | awk '{print $2}') (git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')), $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), glibc malloc"
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

# ---- (c) idle keep-alive connections --------------------------------------
pg_start "$GATE_CPUS" "$PG_TMP/gate2.log" env RUST_LOG=warn "$BIN" serve --config "$PG_TMP/gate.toml" --listen "127.0.0.1:$P_G2"
G2=$PG_LAST_PID
wait_port "$P_G2"
python3 "$CLIENT" get 127.0.0.1 "$P_G2" /pub/page.html 1000
sleep 5 # let the upstream pool's idle connection expire (pool_idle_timeout 4s)
RSS_BEFORE=$(rss "$G2")
FDS_BEFORE=$(fds "$G2")
pg_log "(c) opening $IDLE_CONNS keep-alive connections, one request each"
coproc HOLDER { exec python3 "$CLIENT" idle 127.0.0.1 "$P_G2" /pub/page.html "$IDLE_CONNS" "$IDLE_BATCH" 2>"$PG_TMP/idle.err"; }
HOLDER_PID_SAVED=$HOLDER_PID
PG_PIDS+=("$HOLDER_PID_SAVED")
read -r READY <&"${HOLDER[0]}" || pg_die "the idle client failed: $(cat "$PG_TMP/idle.err")"
[[ $READY == ready ]] || pg_die "the idle client said '$READY'"
sleep 6 # again let the upstream pool drain: what is left is per client connection
RSS_HELD=$(rss "$G2")
FDS_HELD=$(fds "$G2")
PER_CONN=$(awk -v a="$RSS_HELD" -v b="$RSS_BEFORE" -v n="$IDLE_CONNS" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}')
pg_log "(c) $RSS_BEFORE KiB before, $RSS_HELD KiB with $IDLE_CONNS idle connections ($FDS_HELD fds): $PER_CONN bytes per connection"
eval "exec ${HOLDER[1]}>&-" # close the client's stdin: it closes its sockets and exits
wait "$HOLDER_PID_SAVED" 2>/dev/null || true
HELD_MSG=$(tail -1 "$PG_TMP/idle.err")
sleep 1
RSS_AFTER=$(rss "$G2")
FDS_AFTER=$(fds "$G2")

# ---- (d) for comparison: nginx proxy_pass holding the same connections ----
{
    pg_nginx_head "$PG_TMP" proxy
    pg_nginx_portal_upstream "$P_UP"
    pg_nginx_proxy_server "$P_NGX"
    echo "}"
} >"$PG_TMP/proxy.conf"
pg_start - "$PG_TMP/proxy.out" nginx -p "$PG_TMP" -e "$PG_TMP/proxy.error.log" -c "$PG_TMP/proxy.conf"
NGX=$PG_LAST_PID
pg_wait_http "http://127.0.0.1:$P_NGX/pub/page.html"
python3 "$CLIENT" get 127.0.0.1 "$P_NGX" /pub/page.html 1000
NGX_WORKER=$(pg_children "$NGX" | head -1)
NGX_BEFORE=$(rss "$NGX_WORKER")
pg_log "(d) nginx proxy_pass: opening $IDLE_CONNS keep-alive connections, one request each"
coproc HOLDER2 { exec python3 "$CLIENT" idle 127.0.0.1 "$P_NGX" /pub/page.html "$IDLE_CONNS" "$IDLE_BATCH" 2>"$PG_TMP/idle2.err"; }
HOLDER2_PID_SAVED=$HOLDER2_PID
PG_PIDS+=("$HOLDER2_PID_SAVED")
read -r READY <&"${HOLDER2[0]}" || pg_die "the idle client failed: $(cat "$PG_TMP/idle2.err")"
sleep 1
NGX_HELD=$(rss "$NGX_WORKER")
NGX_PER_CONN=$(awk -v a="$NGX_HELD" -v b="$NGX_BEFORE" -v n="$IDLE_CONNS" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}')
eval "exec ${HOLDER2[1]}>&-"
wait "$HOLDER2_PID_SAVED" 2>/dev/null || true
pg_log "(d) nginx worker: $NGX_BEFORE KiB before, $NGX_HELD KiB with $IDLE_CONNS idle connections: $NGX_PER_CONN bytes per connection"

{
    echo "| measurement | VmRSS | per unit |"
    echo "|---|---:|---:|"
    echo "| (a) idle, just started | $(kb "$RSS_START") | – |"
    echo "| (a) idle, after 1 000 requests | $(kb "$RSS_WARM") | – |"
    echo "| (b) after minting $ENTRIES tokens through the API | $(kb "$RSS_MINTED") | – |"
    echo "| (b) after $ENTRIES distinct tokens went through the cache (capacity $ENTRIES) | $(kb "$RSS_CACHED") | $PER_ENTRY B per entry (token $TOKEN_LEN B) |"
    echo "| (c) before: warm, no client connection | $(kb "$RSS_BEFORE") ($FDS_BEFORE fds) | – |"
    echo "| (c) $IDLE_CONNS idle keep-alive connections | $(kb "$RSS_HELD") ($FDS_HELD fds) | $PER_CONN B per connection |"
    echo "| (c) after the client closed them | $(kb "$RSS_AFTER") ($FDS_AFTER fds) | – |"
    echo "| (d) nginx proxy_pass worker, warm | $(kb "$NGX_BEFORE") | – |"
    echo "| (d) nginx proxy_pass worker, $IDLE_CONNS idle keep-alive connections | $(kb "$NGX_HELD") | $NGX_PER_CONN B per connection |"
    echo
    echo "Idle client at the end: $HELD_MSG"
} >>"$OUT"
echo
cat "$OUT"
if [[ -n ${RESULTS:-} ]]; then
    mkdir -p "$RESULTS"
    cp "$OUT" "$RESULTS"/
fi
