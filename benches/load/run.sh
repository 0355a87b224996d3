#!/usr/bin/env bash
# Load benchmark: portal-gate against nginx, Caddy and the direct path.
#
#   benches/load/run.sh                 # defaults: ROUNDS=3 DURATION=8s, ~4 minutes
#   SCALE=1 benches/load/run.sh         # also the 1-vs-2-worker scaling section
#   SCALE=only benches/load/run.sh      # only the scaling section
#
# On loopback only, one run starts:
#   A  nginx serving a 2 KB page (the upstream; direct access = baseline)
#   B  portal-gate in front of it, public path          /pub/page.html
#   C  portal-gate, verified path, Bearer token (decrypt cache hit)
#   D  portal-gate, verified path, cache_capacity = 0 (decrypt every request)
#   E  nginx proxy_pass in front of the upstream (keepalive upstream)
#   F  nginx auth_request to a header-comparing verifier block, then proxy_pass
#   G  Caddy reverse_proxy to the same upstream (keep-alive upstream)
#   H  Caddy forward_auth to F's verifier block, then reverse_proxy
# and drives each with wrk (HTTP/1.1 keep-alive), interleaved A..H per round.
# wrk is pinned to core LOAD_CPU (0), every server to core SERVER_CPU (1);
# nginx runs one worker, Caddy runs with GOMAXPROCS=1, and portal-gate
# under `taskset -c 1` runs one worker thread (it counts the cores of its
# CPU affinity mask). F's and H's verifier runs in the nginx proxy process,
# so their proxy CPU includes it (H's is Caddy's plus that nginx's).
# HTTPS, new connections and HTTP/2: benches/load/tls.sh.
#
# Environment (defaults):
#   ROUNDS=3 DURATION=8s CONNS=32 WARMUP=2s  rounds, length and connections of the load runs
#   CONFIGS="A B C D E F G H"               which configurations to run
#   LAT1=1 LAT1_ROUNDS=2 LAT1_DURATION=3s   also a 1-connection latency pass
#   SCALE=0|1|only                           core-scaling section (see docs/benchmarks.md)
#   SCALE_QUOTA=0.3                          CPU quota per worker (cores) of the Q1/Q2 scaling gates
#   LOAD_CPU=0 SERVER_CPU=1                  cores for wrk and for the servers
#   UPSTREAM_CPU=$SERVER_CPU                 core of the upstream nginx (0: with wrk, so the
#                                            proxy under test has core 1 to itself)
#   NICE=-10                                 niceness of wrk and the servers: on a shared machine,
#                                            background builds then take less from the runs (0 = off)
#   QUIET=0.3 QUIET_MAX=10                   before each run wait up to QUIET_MAX s for a second in
#                                            which other processes use < QUIET cores (0 = never wait)
#   PROFILE="C D"  PROFILE_SECONDS=6         also perf-record these configurations' proxy process
#   PROFILE_CALLGRAPH=1 PROFILE_FREQ=499     with DWARF call graphs: inclusive time of the gate's functions
#   BUILD=1                                  0 = use the existing target/release binary
#   RESULTS=path                             also copy the raw TSV and summary there
#   KEEP_TMP=0                               1 = keep the temp dir (configs, logs, wrk outputs)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2s}
CONFIGS=${CONFIGS:-A B C D E F G H}
LAT1=${LAT1:-1}
LAT1_ROUNDS=${LAT1_ROUNDS:-2}
LAT1_DURATION=${LAT1_DURATION:-3s}
SCALE=${SCALE:-0}
SCALE_QUOTA=${SCALE_QUOTA:-0.3}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
UPSTREAM_CPU=${UPSTREAM_CPU:-$SERVER_CPU}
SCALE_CPUS=${SCALE_CPUS:-$LOAD_CPU,$SERVER_CPU}
NICE=${NICE:--10}
QUIET=${QUIET:-0.3}
QUIET_MAX=${QUIET_MAX:-10}
PROFILE=${PROFILE:-}
PROFILE_SECONDS=${PROFILE_SECONDS:-6}
PROFILE_TOP=${PROFILE_TOP:-40}
PROFILE_FREQ=${PROFILE_FREQ:-1999}
PROFILE_CALLGRAPH=${PROFILE_CALLGRAPH:-0}

pg_need_tools
pg_init_tmp pg-load
RESULTS_TSV=$PG_TMP/results.tsv
: >"$RESULTS_TSV"

BIN=$PG_TMP/portal-gate
pg_build "$ROOT" "$BIN"

read -r P_UP P_NGX P_AUTH P_VER P_CADDY P_CAUTH P_GATE P_GATE0 P_S1 P_S2 P_Q1 P_Q2 < <(pg_free_ports 12)

# ---- the machine and the tools -------------------------------------------
{
    pg_machine_info nginx caddy wrk
    echo "gate:      $(pg_gate_version "$ROOT" "$BIN")"
    echo "loadavg:   $(cut -d' ' -f1-3 /proc/loadavg) at start"
    echo "load:      wrk -t1 -c$CONNS -d$DURATION --latency, $ROUNDS rounds, wrk on core $LOAD_CPU, servers on core $SERVER_CPU (upstream on $UPSTREAM_CPU), nice $NICE; nginx 1 worker, caddy GOMAXPROCS=1"
} | tee "$PG_TMP/machine.txt" >&2

# ---- the upstream and the nginx proxies -----------------------------------
pg_upstream_start "$UPSTREAM_CPU" "$P_UP"
UP_PID=$PG_LAST_PID
{
    pg_nginx_head "$PG_TMP" proxy
    pg_nginx_portal_upstream "$P_UP"
    echo "    # E: plain reverse proxy."
    pg_nginx_proxy_server "$P_NGX"
    echo "    # F: auth_request to the verifier, then the same proxy."
    pg_nginx_auth_server "$P_AUTH"
    pg_nginx_verifier "$P_VER"
    echo "}"
} >"$PG_TMP/proxy.conf"
pg_nginx_start "$SERVER_CPU" proxy
NGX_PID=$PG_LAST_PID

# ---- Caddy: G reverse_proxy, H forward_auth to the same verifier ------------
CADDY_PID=
if [[ " $CONFIGS " == *" G "* || " $CONFIGS " == *" H "* ]] && [[ $SCALE != only ]]; then
    {
        pg_caddy_head "$PG_TMP"
        pg_caddy_proxy_site "http://127.0.0.1:$P_CADDY" "$P_UP"
        pg_caddy_auth_site "http://127.0.0.1:$P_CAUTH" "$P_VER" "$P_UP"
    } >"$PG_TMP/Caddyfile"
    pg_caddy_start "$SERVER_CPU" "$PG_TMP" "$PG_TMP/Caddyfile" "$PG_TMP/caddy.log"
    CADDY_PID=$PG_LAST_PID
fi

# ---- portal-gate ----------------------------------------------------------
SECRET=$("$BIN" secret)
gate_config() { pg_gate_config "$P_UP" "$SECRET" "$1"; } # <cache_capacity>
(umask 077 && gate_config 10000 >"$PG_TMP/gate.toml" && gate_config 0 >"$PG_TMP/gate-nocache.toml")
pg_gate_check "$BIN" "$PG_TMP/gate.toml"
pg_gate_check "$BIN" "$PG_TMP/gate-nocache.toml"
TOKEN=$("$BIN" token --config "$PG_TMP/gate.toml" --email bench@example.com --ttl 3600)

start_gate() { # <cpus> <port> <config> [serve args...]
    local cpus=$1 port=$2 cfg=$3
    shift 3
    pg_gate_start "$cpus" "$BIN" "$cfg" "$port" "$@"
}

declare -A NAMES=([A]="A direct" [B]="B gate public" [C]="C gate cache hit" [D]="D gate cache off"
    [E]="E nginx proxy_pass" [F]="F nginx auth_request" [G]="G caddy reverse_proxy" [H]="H caddy forward_auth" [S1]="S1 gate 1 worker" [S2]="S2 gate 2 workers"
    [Q1]="Q1 gate 1 worker, quota" [Q2]="Q2 gate 2 workers, quota")
declare -A URL HDR PROXY
if [[ $SCALE != only ]]; then
    start_gate "$SERVER_CPU" "$P_GATE" "$PG_TMP/gate.toml"
    GATE_PID=$PG_LAST_PID
    start_gate "$SERVER_CPU" "$P_GATE0" "$PG_TMP/gate-nocache.toml"
    GATE0_PID=$PG_LAST_PID
fi
if [[ $SCALE != 0 ]]; then
    start_gate "$SCALE_CPUS" "$P_S1" "$PG_TMP/gate.toml" --threads 1
    S1_PID=$PG_LAST_PID
    start_gate "$SCALE_CPUS" "$P_S2" "$PG_TMP/gate.toml" --threads 2
    S2_PID=$PG_LAST_PID
    # The same two, each capped by a cgroup CPU quota of SCALE_QUOTA cores
    # per worker: "a core" becomes a CPU budget, which two cores can give
    # to both workers at once while wrk and the upstream still have room.
    start_gate "$SCALE_CPUS" "$P_Q1" "$PG_TMP/gate.toml" --threads 1
    Q1_PID=$PG_LAST_PID
    start_gate "$SCALE_CPUS" "$P_Q2" "$PG_TMP/gate.toml" --threads 2
    Q2_PID=$PG_LAST_PID
fi

URL[A]=http://127.0.0.1:$P_UP/priv/page.html HDR[A]="" PROXY[A]=""
pg_wait_http "${URL[A]}"
URL[E]=http://127.0.0.1:$P_NGX/priv/page.html HDR[E]="" PROXY[E]=$NGX_PID
URL[F]=http://127.0.0.1:$P_AUTH/priv/page.html HDR[F]="Authorization: Bearer x" PROXY[F]=$NGX_PID
pg_wait_http "${URL[E]}"
pg_expect 200 "${URL[A]}"
pg_expect 200 "${URL[E]}"
pg_expect 200 "${URL[F]}" -H "${HDR[F]}"
pg_expect 401 "${URL[F]}"
if [[ -n $CADDY_PID ]]; then
    URL[G]=http://127.0.0.1:$P_CADDY/priv/page.html HDR[G]="" PROXY[G]=$CADDY_PID
    # H's verifier is a server block of the nginx proxy: its CPU counts too.
    URL[H]=http://127.0.0.1:$P_CAUTH/priv/page.html HDR[H]="Authorization: Bearer x" PROXY[H]="$CADDY_PID $NGX_PID"
    pg_wait_http "${URL[G]}"
    pg_expect 200 "${URL[G]}"
    pg_expect 200 "${URL[H]}" -H "${HDR[H]}"
    pg_expect 401 "${URL[H]}"
fi
if [[ $SCALE != only ]]; then
    URL[B]=http://127.0.0.1:$P_GATE/pub/page.html HDR[B]="" PROXY[B]=$GATE_PID
    URL[C]=http://127.0.0.1:$P_GATE/priv/page.html HDR[C]="Authorization: Bearer $TOKEN" PROXY[C]=$GATE_PID
    URL[D]=http://127.0.0.1:$P_GATE0/priv/page.html HDR[D]="Authorization: Bearer $TOKEN" PROXY[D]=$GATE0_PID
    pg_wait_http "${URL[B]}"
    pg_wait_http "${URL[D]}"
    pg_expect 200 "${URL[B]}"
    pg_expect 401 "${URL[C]}"
    pg_expect 200 "${URL[C]}" -H "${HDR[C]}"
    pg_expect 200 "${URL[D]}" -H "${HDR[D]}"
    pg_log "portal-gate on core $SERVER_CPU runs $(pg_gate_workers "$GATE_PID") worker thread(s)"
fi
if [[ $SCALE != 0 ]]; then
    URL[S1]=http://127.0.0.1:$P_S1/priv/page.html HDR[S1]="Authorization: Bearer $TOKEN" PROXY[S1]=$S1_PID
    URL[S2]=http://127.0.0.1:$P_S2/priv/page.html HDR[S2]="Authorization: Bearer $TOKEN" PROXY[S2]=$S2_PID
    pg_wait_http "${URL[S1]}"
    pg_wait_http "${URL[S2]}"
    pg_expect 200 "${URL[S1]}" -H "${HDR[S1]}"
    pg_expect 200 "${URL[S2]}" -H "${HDR[S2]}"
    w1=$(pg_gate_workers "$S1_PID") w2=$(pg_gate_workers "$S2_PID")
    pg_log "--threads 1 -> $w1 worker(s), --threads 2 -> $w2 worker(s)"
    [[ $w1 == 1 && $w2 == 2 ]] || pg_log "warning: --threads not honoured; the scaling section compares nothing"
    echo "scale:     --threads 1 -> $w1 worker thread(s), --threads 2 -> $w2" >>"$PG_TMP/machine.txt"
    SCALE_CFGS=(S1 S2)
    q2=$(awk -v q="$SCALE_QUOTA" 'BEGIN {print 2 * q}')
    pg_wait_http "http://127.0.0.1:$P_Q1/"
    pg_wait_http "http://127.0.0.1:$P_Q2/"
    if pg_cpu_quota q1 "$SCALE_QUOTA" "$Q1_PID" && pg_cpu_quota q2 "$q2" "$Q2_PID"; then
        URL[Q1]=http://127.0.0.1:$P_Q1/priv/page.html HDR[Q1]=${HDR[S1]} PROXY[Q1]=$Q1_PID
        URL[Q2]=http://127.0.0.1:$P_Q2/priv/page.html HDR[Q2]=${HDR[S1]} PROXY[Q2]=$Q2_PID
        pg_expect 200 "${URL[Q1]}" -H "${HDR[Q1]}"
        pg_expect 200 "${URL[Q2]}" -H "${HDR[Q2]}"
        SCALE_CFGS+=(Q1 Q2)
        echo "quota:     Q1 --threads 1 capped at $SCALE_QUOTA cores, Q2 --threads 2 at $q2 cores (cgroup cpu quota)" >>"$PG_TMP/machine.txt"
    else
        pg_log "no writable cgroup cpu controller (needs root): the quota rows Q1/Q2 are skipped"
    fi
fi

# ---- one wrk run ------------------------------------------------------------
# bench <phase> <cfg> <round> <conns> <duration> [record=1]
bench() {
    local phase=$1 cfg=$2 round=$3 conns=$4 duration=$5 record=${6:-1}
    local out=$PG_TMP/wrk-$phase-$cfg-$round.txt hdr=() line
    ((record)) && pg_settle
    [[ -n ${HDR[$cfg]} ]] && hdr=(-H "${HDR[$cfg]}")
    pg_measure "$out" "${PROXY[$cfg]}" "$UP_PID" wrk -t1 -c"$conns" -d"$duration" --latency "${hdr[@]}" "${URL[$cfg]}"
    ((record)) || return 0
    line=$(pg_client_row "$phase" "$cfg" "$round" "$conns" "$out")
    echo "$line" >>"$RESULTS_TSV"
    pg_row_log "$line"
}

# ---- the runs -------------------------------------------------------------
MAIN_CONFIGS=()
if [[ $SCALE != only ]]; then
    read -r -a MAIN_CONFIGS <<<"$CONFIGS"
    pg_log "warm-up ($WARMUP each): ${MAIN_CONFIGS[*]}"
    for cfg in "${MAIN_CONFIGS[@]}"; do bench warmup "$cfg" 0 "$CONNS" "$WARMUP" 0; done
    for ((r = 1; r <= ROUNDS; r++)); do
        pg_log "round $r/$ROUNDS: ${MAIN_CONFIGS[*]} (wrk -c$CONNS -d$DURATION)"
        for cfg in "${MAIN_CONFIGS[@]}"; do bench load "$cfg" "$r" "$CONNS" "$DURATION"; done
    done
    if [[ $LAT1 == 1 ]]; then
        for ((r = 1; r <= LAT1_ROUNDS; r++)); do
            pg_log "1-connection latency pass $r/$LAT1_ROUNDS (wrk -c1 -d$LAT1_DURATION)"
            for cfg in "${MAIN_CONFIGS[@]}"; do bench lat1 "$cfg" "$r" 1 "$LAT1_DURATION"; done
        done
    fi
fi
if [[ $SCALE != 0 ]]; then
    pg_log "scaling: ${SCALE_CFGS[*]} (S: 1 and 2 workers; Q: the same under a CPU quota of $SCALE_QUOTA cores per worker), gate on cores $SCALE_CPUS, upstream on $SERVER_CPU, wrk on $LOAD_CPU"
    for cfg in "${SCALE_CFGS[@]}"; do bench warmup "$cfg" 0 "$CONNS" "$WARMUP" 0; done
    for ((r = 1; r <= ROUNDS; r++)); do
        for cfg in "${SCALE_CFGS[@]}"; do bench scale "$cfg" "$r" "$CONNS" "$DURATION"; done
    done
fi

# ---- optional CPU profile of the proxy process (perf, software clock) -------
PROFILE_TXT=$PG_TMP/profile.md
: >"$PROFILE_TXT"
if [[ -n ${PROFILE:-} ]]; then
    if ! command -v perf >/dev/null; then
        pg_log "PROFILE set but perf is missing: apt-get install linux-perf"
    else
        for cfg in $PROFILE; do
            [[ -n ${PROXY[$cfg]:-} ]] || { pg_log "PROFILE: $cfg has no proxy process"; continue; }
            pg_log "profiling $cfg for ${PROFILE_SECONDS}s (perf record -e cpu-clock)"
            pids=$(for p in ${PROXY[$cfg]}; do echo "$p"; pg_children "$p"; done | paste -sd,)
            cg=()
            [[ $PROFILE_CALLGRAPH == 1 ]] && cg=(--call-graph "dwarf,16384")
            taskset -c "$LOAD_CPU" perf record -q -e cpu-clock -F "$PROFILE_FREQ" "${cg[@]}" -o "$PG_TMP/perf-$cfg.data" \
                -p "$pids" -- sleep "$PROFILE_SECONDS" >"$PG_TMP/perf-$cfg.log" 2>&1 &
            perf_pid=$!
            taskset -c "$LOAD_CPU" perf stat -x, -e task-clock,context-switches,cpu-migrations \
                -o "$PG_TMP/perfstat-$cfg.csv" -p "$pids" -- sleep "$PROFILE_SECONDS" >/dev/null 2>&1 &
            stat_pid=$!
            sleep 0.2
            # shellcheck disable=SC2086 # one or two PIDs
            cs0=$(pg_ctxt ${PROXY[$cfg]})
            bench profile "$cfg" 0 "$CONNS" "$((PROFILE_SECONDS - 1))s" 0
            # shellcheck disable=SC2086
            cs1=$(pg_ctxt ${PROXY[$cfg]})
            wait "$perf_pid" || true
            wait "$stat_pid" || true
            prof_req=$(awk '/ requests in / {print $1}' "$PG_TMP/wrk-profile-$cfg-0.txt")
            # Syscalls per request: a separate short run under `perf trace -s`
            # (it slows the process down; its throughput is not recorded).
            taskset -c "$LOAD_CPU" perf trace -s -p "$pids" -o "$PG_TMP/trace-$cfg.txt" -- sleep 4 >/dev/null 2>&1 &
            perf_pid=$!
            sleep 0.5
            bench syscalls "$cfg" 0 "$CONNS" 3s 0
            wait "$perf_pid" || true
            trace_req=$(awk '/ requests in / {print $1}' "$PG_TMP/wrk-syscalls-$cfg-0.txt")
            trim() { sed -E 's/[[:space:]-]+$//' | awk -v n="$1" '!/^#/ && NF && c++ < n'; }
            {
                echo "### Profile of ${NAMES[$cfg]:-$cfg} (perf record -e cpu-clock, self time)"
                echo
                echo "By object (in a VM, kernel samples pile up where interrupts are re-enabled):"
                echo
                echo '```'
                perf report -i "$PG_TMP/perf-$cfg.data" --no-children --sort dso --stdio 2>/dev/null | trim 8 || true
                echo '```'
                echo
                echo "Top user-space symbols (percent of all samples):"
                echo
                echo '```'
                perf report -i "$PG_TMP/perf-$cfg.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
                    grep -v 'kernel.kallsyms' | trim "$PROFILE_TOP" || true
                echo '```'
                echo
                if [[ $PROFILE_CALLGRAPH == 1 ]]; then
                    echo "Inclusive time (with callees) of the gate's own functions, percent of all samples:"
                    echo
                    echo '```'
                    perf report -i "$PG_TMP/perf-$cfg.data" --children --sort symbol --stdio -g none 2>/dev/null |
                        grep -E 'portal_gate::|hyper_util::client::legacy::client::Client<C,B>::send_request|hyper::proto::h1::dispatch|tokio::runtime::scheduler::current_thread::CoreGuard::block_on|__libc_malloc|cfree|_int_free' |
                        sed -E 's/[[:space:]-]+$//' | awk -v n="$PROFILE_TOP" 'c++ < n' || true
                    echo '```'
                    echo
                fi
                echo "Scheduler events per request (perf stat over the profiled run, $prof_req requests):"
                echo
                echo '```'
                awk -F, -v req="$prof_req" '$3 ~ /context-switches|cpu-migrations/ {printf "%-18s %6.3f per request\n", $3, $1 / req}' \
                    "$PG_TMP/perfstat-$cfg.csv" || true
                awk -v a="$cs0" -v b="$cs1" -v req="$prof_req" 'BEGIN {
                    split(a, x, " "); split(b, y, " ")
                    printf "%-18s %6.3f per request\n%-18s %6.3f per request\n", "voluntary", (y[1] - x[1]) / req, "involuntary", (y[2] - x[2]) / req }'
                echo '```'
                echo
                echo "System calls per request (perf trace -s over $trace_req requests, all threads):"
                echo
                echo '```'
                awk -v req="$trace_req" '
                    $1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ && NF >= 8 { calls[$1] += $2; errs[$1] += $3 }
                    END {
                        for (s in calls) { total += calls[s]; printf "%-16s %6.2f per request (%.2f failed)\n", s, calls[s] / req, errs[s] / req }
                        printf "%-16s %6.2f per request\n", "TOTAL", total / req
                    }' "$PG_TMP/trace-$cfg.txt" | sort -k2 -rn || true
                echo '```'
                echo
            } >>"$PROFILE_TXT"
        done
    fi
fi

# ---- the summary ----------------------------------------------------------
{
    echo '```'
    cat "$PG_TMP/machine.txt"
    echo '```'
    echo
    SCALE_QUOTA=$SCALE_QUOTA python3 "$HERE/summarize.py" "$RESULTS_TSV"
    cat "$PROFILE_TXT"
} >"$PG_TMP/summary.md"
echo
cat "$PG_TMP/summary.md"
if [[ -n ${RESULTS:-} ]]; then
    mkdir -p "$RESULTS"
    cp "$RESULTS_TSV" "$PG_TMP/summary.md" "$PG_TMP/machine.txt" "$RESULTS"/
    pg_log "results copied to $RESULTS"
fi
