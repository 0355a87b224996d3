#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's
# callgrind: repeatable to a fraction of a percent for the same binary and
# inputs, whatever else the machine is doing (wall-clock A/B runs on this
# shared host drift by 10-20 %). Kernel time is not counted.
#
#   benches/load/instructions.sh BINARY [BINARY...]
#
# Each BINARY is a portal-gate build, a floor proxy (benches/load/floor_*.rs)
# or a wrapper script that sets environment variables and execs one (the
# variables then reach the traced program: --trace-children=yes). Each runs
# under callgrind with one worker (`--threads 1`) in front of the nginx
# upstream of run.sh; after WARM requests the counters are zeroed, then
# h2load sends REQUESTS verified GETs of the 2 KB page (Bearer token, decrypt
# cache hit) over CONNS HTTP/1.1 keep-alive connections, and the counters
# are dumped. Prints instructions per request. For where they go, run one
# build under `valgrind --tool=callgrind` without zeroing and read the file
# it writes at exit with `callgrind_annotate --inclusive=yes` (startup is a
# fraction of a percent of 20 000 requests).
#
# Environment (defaults): REQUESTS=20000 WARM=2000 CONNS=8 KEEP_TMP=0
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

REQUESTS=${REQUESTS:-20000}
WARM=${WARM:-2000}
CONNS=${CONNS:-8}

(($# >= 1)) || pg_die "usage: $0 BINARY [BINARY...]"
PG_TOOLS+=(valgrind:valgrind callgrind_control:valgrind)
pg_need_tools
pg_init_tmp pg-instr
trap pg_cleanup EXIT
trap 'exit 130' INT TERM

read -r P_UP < <(pg_free_ports 1)
pg_make_page "$PG_TMP/www"
chmod -R a+rX "$PG_TMP/www"
pg_nginx_upstream_conf "$PG_TMP" "$PG_TMP/www" "$P_UP" >"$PG_TMP/upstream.conf"
pg_start - "$PG_TMP/upstream.out" nginx -p "$PG_TMP" -e "$PG_TMP/upstream.error.log" -c "$PG_TMP/upstream.conf"
pg_wait_http "http://127.0.0.1:$P_UP/pub/page.html"

# The first binary that mints is the run's: a floor cannot (it ignores the
# token), so mint with the first one that can.
SECRET="" TOKEN=""
for bin in "$@"; do
    SECRET=$("$bin" secret 2>/dev/null) || continue
    (umask 077 && pg_gate_config "$P_UP" "$SECRET" 10000 >"$PG_TMP/gate.toml")
    TOKEN=$("$bin" token --config "$PG_TMP/gate.toml" --email bench@example.com --ttl 3600) && break
done
[[ -n $TOKEN ]] || pg_die "none of the binaries is a portal-gate build that can mint a token"

# count <binary>: instructions per request, on stdout.
count() {
    local bin=$1 port pid url out ir i
    read -r port < <(pg_free_ports 1)
    out=$PG_TMP/callgrind.$port
    pg_start - "$PG_TMP/gate-$port.log" env RUST_LOG=warn valgrind --tool=callgrind --trace-children=yes \
        --callgrind-out-file="$out.%p" "$bin" serve --config "$PG_TMP/gate.toml" --listen "127.0.0.1:$port" --threads 1
    pid=$PG_LAST_PID
    url=http://127.0.0.1:$port/priv/page.html
    for ((i = 0; i < 200; i++)); do
        curl -s -o /dev/null --max-time 2 "$url" && break
        sleep 0.2
    done
    h2load --h1 -n "$WARM" -c "$CONNS" -H "authorization: Bearer $TOKEN" "$url" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    h2load --h1 -n "$REQUESTS" -c "$CONNS" -H "authorization: Bearer $TOKEN" "$url" >"$PG_TMP/h2load.$port"
    grep -q "$REQUESTS succeeded" "$PG_TMP/h2load.$port" || pg_die "$bin: not every request succeeded: $(grep 'requests:' "$PG_TMP/h2load.$port")"
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    # The dump is the newest file (callgrind numbers each dump: .1, .2, ...).
    # shellcheck disable=SC2012
    ir=$(awk '/^(summary|totals):/ {print $2}' "$(ls -t "$out".* | head -1)" | tail -1)
    pg_stop "$pid"
    echo $((ir / REQUESTS))
}

printf '%-60s %12s\n' binary 'Ir/request'
for bin in "$@"; do
    printf '%-60s %12s\n' "$bin" "$(count "$bin")"
done
