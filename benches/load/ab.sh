#!/usr/bin/env bash
# A/B: several portal-gate builds against each other and nginx proxy_pass,
# in one run, on the cache-hit path (configuration C of run.sh).
#
#   benches/load/ab.sh OLD_BINARY NEW_BINARY [MORE...]
#
# For a change whose effect is smaller than the drift between runs on a
# shared machine: every build serves the same upstream in the same rounds
# (E, build 1, build 2, ..., E, build 1, ...), so compare rows of one run.
# A "binary" may be a wrapper script that sets environment variables and
# execs the real binary. Build an older commit with, for example:
#   git worktree add /tmp/old <rev> && (cd /tmp/old && cargo build --release)
# The first binary must be a portal-gate build: it mints the run's token.
# The floors (the least a proxy on hyper, or on no HTTP library, can do;
# benches/load/floor_*.rs) put the gate's cost in scale:
#   cargo build --release --bins --example floor_hyper --example floor_raw
#   benches/load/ab.sh target/release/portal-gate \
#       target/release/examples/floor_hyper target/release/examples/floor_raw
#
# Placement as in run.sh: wrk on core LOAD_CPU (0), nginx upstream, nginx
# proxy and every gate on core SERVER_CPU (1), where each gate runs one
# worker thread. Per run it prints req/s, p99, CPU per request of the proxy
# (all, and kernel only) and of the upstream, context switches per request
# (voluntary, involuntary), and TCP segments sent per request (all processes).
#
# Environment (defaults): ROUNDS=3 DURATION=5s CONNS=32 LOAD_CPU=0
# SERVER_CPU=1 NICE=-10 QUIET=0.3 QUIET_MAX=10 KEEP_TMP=0. With
# POST_BYTES=N, every request is instead a verified POST of an N-byte
# form to /priv/form, which the upstream answers with 7 bytes after
# reading the body (the cost of a request with a body, which never shares
# its upstream connection with a later one).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
NICE=${NICE:--10}
QUIET=${QUIET:-0.3}
QUIET_MAX=${QUIET_MAX:-10}
POST_BYTES=${POST_BYTES:-}

(($# >= 1)) || pg_die "usage: $0 BINARY [BINARY...]"
BINS=()
for bin in "$@"; do
    [[ -x $bin ]] || pg_die "$bin is not executable"
    BINS+=("$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")")
done

pg_need_tools
PG_TMP=$(mktemp -d /tmp/pg-ab.XXXXXX)
chmod 755 "$PG_TMP" # the nginx workers run as nobody and read www/
trap pg_cleanup EXIT
trap 'exit 130' INT TERM
TCK=$(getconf CLK_TCK)

read -r -a PORTS < <(pg_free_ports $((${#BINS[@]} + 2)))
P_UP=${PORTS[0]} P_NGX=${PORTS[1]}

pg_make_page "$PG_TMP/www"
chmod -R a+rX "$PG_TMP/www"
pg_nginx_upstream_conf "$PG_TMP" "$PG_TMP/www" "$P_UP" >"$PG_TMP/upstream.conf"
{
    pg_nginx_head "$PG_TMP" proxy
    pg_nginx_portal_upstream "$P_UP"
    pg_nginx_proxy_server "$P_NGX"
    echo "}"
} >"$PG_TMP/proxy.conf"
pg_start "$SERVER_CPU" "$PG_TMP/upstream.out" nginx -p "$PG_TMP" -e "$PG_TMP/upstream.error.log" -c "$PG_TMP/upstream.conf"
UP_PID=$PG_LAST_PID
pg_start "$SERVER_CPU" "$PG_TMP/proxy.out" nginx -p "$PG_TMP" -e "$PG_TMP/proxy.error.log" -c "$PG_TMP/proxy.conf"
NGX_PID=$PG_LAST_PID

SECRET=$("${BINS[0]}" secret)
(umask 077 && pg_gate_config "$P_UP" "$SECRET" 10000 >"$PG_TMP/gate.toml")
TOKEN=$("${BINS[0]}" token --config "$PG_TMP/gate.toml" --email bench@example.com --ttl 3600)
HDR="Authorization: Bearer $TOKEN"
PAGE=/priv/page.html
WRK_ARGS=()
if [[ -n $POST_BYTES ]]; then
    PAGE=/priv/form
    printf 'wrk.method = "POST"\nwrk.body = string.rep("x", %d)\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n' \
        "$POST_BYTES" >"$PG_TMP/post.lua"
    WRK_ARGS=(-s "$PG_TMP/post.lua")
fi

declare -A PID URL NAME
PID[E]=$NGX_PID URL[E]=http://127.0.0.1:$P_NGX$PAGE NAME[E]="nginx proxy_pass"
CFGS=(E)
for i in "${!BINS[@]}"; do
    port=${PORTS[$((i + 2))]}
    pg_start "$SERVER_CPU" "$PG_TMP/gate-$i.log" env RUST_LOG=warn "${BINS[$i]}" serve --config "$PG_TMP/gate.toml" --listen "127.0.0.1:$port"
    PID[g$i]=$PG_LAST_PID URL[g$i]=http://127.0.0.1:$port$PAGE NAME[g$i]=${BINS[$i]}
    CFGS+=("g$i")
done
for cfg in "${CFGS[@]}"; do
    pg_wait_http "${URL[$cfg]}"
    if [[ -n $POST_BYTES ]]; then
        got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "$HDR" --data-binary "x=1" "${URL[$cfg]}")
        [[ $got == "200 7" ]] || pg_die "${URL[$cfg]}: POST expected 200 with 7 bytes, got '$got'"
    else
        pg_expect 200 "${URL[$cfg]}" -H "$HDR"
    fi
done
for i in "${!BINS[@]}"; do pg_log "g$i = ${BINS[$i]}"; done

nstat_out() { nstat -n >/dev/null 2>&1 || true; }
segs() { nstat TcpOutSegs 2>/dev/null | awk '/TcpOutSegs/ {print $2}' || echo 0; }
command -v nstat >/dev/null || pg_log "nstat missing (iproute2): segments per request show as 0"

printf '%-5s %-5s %9s %8s %8s %8s %8s %6s %6s %6s\n' round cfg req/s p99 'µs/req' 'kernel' 'up µs' 'vcs/r' 'ics/r' 'seg/r' | tee "$PG_TMP/ab.txt"
for round in $(seq "$ROUNDS"); do
    for cfg in "${CFGS[@]}"; do
        pg_wait_quiet "$QUIET" "$QUIET_MAX" >/dev/null
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "${WRK_ARGS[@]}" -H "$HDR" "${URL[$cfg]}" >/dev/null
        read -r u0 s0 < <(pg_cpu_ticks "${PID[$cfg]}")
        read -r uu0 us0 < <(pg_cpu_ticks "$UP_PID")
        read -r v0 n0 < <(pg_ctxt "${PID[$cfg]}")
        command -v nstat >/dev/null && nstat_out
        out=$(taskset -c "$LOAD_CPU" nice -n "$NICE" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "${WRK_ARGS[@]}" -H "$HDR" "${URL[$cfg]}")
        sent=$(command -v nstat >/dev/null && segs || echo 0)
        read -r u1 s1 < <(pg_cpu_ticks "${PID[$cfg]}")
        read -r uu1 us1 < <(pg_cpu_ticks "$UP_PID")
        read -r v1 n1 < <(pg_ctxt "${PID[$cfg]}")
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        grep -q 'Non-2xx\|Socket errors' <<<"$out" && pg_log "warning: $cfg had errors: $(grep 'Non-2xx\|Socket errors' <<<"$out")"
        awk -v r="$round" -v c="$cfg" -v rps="$rps" -v p99="$p99" -v n="$reqs" -v tck="$TCK" \
            -v cpu=$((u1 - u0 + s1 - s0)) -v sys=$((s1 - s0)) -v up=$((uu1 - uu0 + us1 - us0)) \
            -v v=$((v1 - v0)) -v ic=$((n1 - n0)) -v seg="$sent" \
            'BEGIN {us = 1e6 / tck; printf "%-5s %-5s %9.0f %8s %8.2f %8.2f %8.2f %6.2f %6.2f %6.2f\n",
                r, c, rps, p99, cpu * us / n, sys * us / n, up * us / n, v / n, ic / n, seg / n}' | tee -a "$PG_TMP/ab.txt"
    done
done

echo
echo "medians over $ROUNDS rounds (E = ${NAME[E]}; ratios against E in the same run):"
python3 - "$PG_TMP/ab.txt" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).read().splitlines()[1:] if line.strip()]
cfgs = list(dict.fromkeys(r[1] for r in rows))
med = {c: {k: statistics.median(float(r[i]) for r in rows if r[1] == c)
           for k, i in (("rps", 2), ("cpu", 4), ("sys", 5))} for c in cfgs}
print(f"{'cfg':<5} {'req/s':>9} {'µs/req':>8} {'kernel':>8} {'× E req/s':>10} {'× E CPU':>8}")
for c in cfgs:
    m = med[c]
    print(f"{c:<5} {m['rps']:>9.0f} {m['cpu']:>8.2f} {m['sys']:>8.2f} "
          f"{m['rps'] / med['E']['rps']:>10.2f} {m['cpu'] / med['E']['cpu']:>8.2f}")
EOF
