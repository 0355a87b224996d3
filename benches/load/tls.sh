#!/usr/bin/env bash
# Load benchmark the way browsers meet the gate: HTTPS, new connections,
# HTTP/2. portal-gate against nginx and Caddy, on the upstream of run.sh.
#
#   benches/load/tls.sh                 # defaults: ROUNDS=3 DURATION=8s, ~12 minutes
#   GATES="ring=/tmp/ring/portal-gate aws=/tmp/aws/portal-gate" benches/load/tls.sh
#
# On loopback only, with one self-signed ECDSA P-256 certificate for
# 127.0.0.1 and localhost (openssl, in the temp dir) and TLS 1.3 only on
# every TLS listener, one run starts the plaintext nginx upstream of run.sh
# (the 2 KB page) and in front of it:
#   T-direct      no proxy: the upstream itself, plaintext (baseline, phase ka only)
#   T-gate:LABEL  portal-gate with a [tls] table, verified path, Bearer token
#                 (decrypt cache hit); for h2c a twin process without [tls];
#                 one pair per gate binary of GATES, each on its own ports
#   T-nginx       nginx `listen ... ssl http2` + proxy_pass (keep-alive upstream);
#                 for h2c a `listen ... http2` server without ssl
#   T-auth        the same with auth_request to run.sh's one-hop verifier block
#   T-caddy       Caddy `tls cert key` + reverse_proxy (GOMAXPROCS=1), h2c on a
#                 plain site
#   T-caddy-auth  the same with forward_auth to the same verifier block
# and drives each, interleaved per round, in the phases of PHASES:
#   ka      HTTP/1.1 keep-alive over TLS: wrk -t1 -c$CONNS (wrk offers no
#           ALPN; the servers answer HTTP/1.1)
#   new     a new TCP connection and a full TLS handshake per request: wrk
#           -t1 -c$CONNS -H 'Connection: close' (wrk reconnects whenever an
#           answer closes its connection). Left alone, wrk and h2load
#           *resume* TLS sessions on reconnect (they reuse their SSL object
#           and OpenSSL offers its last session); tls_noresume.c, compiled
#           here and LD_PRELOADed into every client, drops that session
#           before each handshake. The run checks both on a probe server
#           that logs $ssl_session_reused (machine.txt), and counts accepted
#           TCP connections per request in every run (PassiveOpens).
#   resume  (not in the default PHASES) the same, letting wrk resume: the
#           returning visitor
#   h2      HTTP/2 over TLS by ALPN: h2load -t1 -c$CONNS -m$H2_STREAMS -D $DURATION
#   h2c     HTTP/2 cleartext with prior knowledge: the same h2load on http://
#           (the gate's plain listener detects the HTTP/2 preface)
# Latency: wrk's p50/p99 and h2load's (from its per-request --log-file)
# start when a request is written, after the handshake, also in `new`.
#
# Placement as in run.sh: the client on core LOAD_CPU (0), every server on
# core SERVER_CPU (1), one nginx worker, Caddy at GOMAXPROCS=1, each gate
# one worker thread. CPU per request from /proc as in run.sh; T-auth's and
# T-caddy-auth's verifier runs in the nginx proxy process and counts.
# nginx and Caddy keep max(64, CONNS x H2_STREAMS) idle connections to the
# upstream and the verifier: with 320 streams in flight, nginx's `keepalive
# 64` of run.sh would close and reopen about one upstream connection for
# every three requests. In `new`, OpenSSL's client side of a handshake
# (wrk's) costs more than the server side: the client's core saturates
# first, so there req/s is the client's limit; CPU per request is not.
#
# Environment (defaults):
#   ROUNDS=3 DURATION=8s CONNS=32 WARMUP=2s  rounds, length and connections of every run
#   H2_STREAMS=10                            concurrent streams per connection (h2load -m)
#   PHASES="ka new h2 h2c"                   phases to run (and: resume)
#   CONFIGS="T-direct T-gate T-nginx T-auth T-caddy T-caddy-auth"
#   GATES="label=binary ..."                 gate builds side by side (e.g. ring= and aws=
#                                            for rustls's two providers), used in place;
#                                            default: portal-gate=the target/release build
#                                            (cargo build --release first unless BUILD=0)
#   LOAD_CPU=0 SERVER_CPU=1 UPSTREAM_CPU=$SERVER_CPU NICE=-10 QUIET=0.3 QUIET_MAX=10  as in run.sh
#   BUILD=1                                  0 = use the existing target/release binary
#   RESULTS=path                             also copy the TSV, summary, configs and the
#                                            client outputs there (not h2load's request logs)
#   KEEP_TMP=0                               1 = keep the temp dir
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2s}
H2_STREAMS=${H2_STREAMS:-10}
PHASES=${PHASES:-ka new h2 h2c}
CONFIGS=${CONFIGS:-T-direct T-gate T-nginx T-auth T-caddy T-caddy-auth}
GATES=${GATES:-}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
UPSTREAM_CPU=${UPSTREAM_CPU:-$SERVER_CPU}
NICE=${NICE:--10}
QUIET=${QUIET:-0.3}
QUIET_MAX=${QUIET_MAX:-10}
PG_UPSTREAM_IDLE=$((CONNS * H2_STREAMS > 64 ? CONNS * H2_STREAMS : 64))

for phase in $PHASES; do
    [[ $phase =~ ^(ka|new|resume|h2|h2c)$ ]] || pg_die "PHASES: unknown phase $phase"
done
PG_TOOLS+=(cc:gcc)
pg_need_tools
pg_init_tmp pg-tls
RESULTS_TSV=$PG_TMP/results.tsv
: >"$RESULTS_TSV"
mkdir -p "$PG_TMP/out"

# ---- the gate binaries ----------------------------------------------------
GATE_LABELS=()
declare -A GATE_BIN
if [[ -z $GATES ]]; then
    pg_build "$ROOT" "$PG_TMP/portal-gate"
    GATES="portal-gate=$PG_TMP/portal-gate"
fi
for g in $GATES; do
    label=${g%%=*} bin=${g#*=}
    [[ $g == *=* && $label =~ ^[A-Za-z0-9_.-]+$ ]] || pg_die "GATES: '$g' is not label=binary"
    [[ -z ${GATE_BIN[$label]:-} ]] || pg_die "GATES: label $label twice"
    [[ -x $bin ]] || pg_die "GATES: $bin is not executable"
    GATE_LABELS+=("$label")
    GATE_BIN[$label]=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
done
FIRST_GATE=${GATE_BIN[${GATE_LABELS[0]}]}

read -r -a PORTS < <(pg_free_ports $((11 + 2 * ${#GATE_LABELS[@]})))
P_UP=${PORTS[0]} P_VER=${PORTS[1]} P_PROBE=${PORTS[2]}
P_NGX=${PORTS[3]} P_NGX_C=${PORTS[4]} P_AUTH=${PORTS[5]} P_AUTH_C=${PORTS[6]}
P_CADDY=${PORTS[7]} P_CADDY_C=${PORTS[8]} P_CAUTH=${PORTS[9]} P_CAUTH_C=${PORTS[10]}

# ---- the machine, the tools, the certificate, the client shim ---------------
{
    pg_machine_info nginx caddy wrk h2load openssl
    for label in "${GATE_LABELS[@]}"; do
        bin=${GATE_BIN[$label]}
        if [[ $bin == "$PG_TMP/portal-gate" ]]; then
            printf '%-11s%s\n' "gate:" "$label = $(pg_gate_version "$ROOT" "$bin"), target/release"
        else
            printf '%-11s%s\n' "gate:" "$label = $("$bin" --version), $bin (sha256 $(sha256sum "$bin" | cut -c1-12))"
        fi
    done
    echo "loadavg:   $(cut -d' ' -f1-3 /proc/loadavg) at start"
    echo "load:      phases $PHASES; wrk -t1 -c$CONNS, h2load -t1 -c$CONNS -m$H2_STREAMS; -d $DURATION, $ROUNDS rounds; client on core $LOAD_CPU, servers on core $SERVER_CPU (upstream on $UPSTREAM_CPU), nice $NICE; nginx 1 worker, caddy GOMAXPROCS=1; $PG_UPSTREAM_IDLE idle upstream connections"
} | tee "$PG_TMP/machine.txt" >&2

pg_make_cert "$PG_TMP"
CERT=$PG_TMP/cert.pem KEY=$PG_TMP/key.pem
NORESUME=$PG_TMP/tls_noresume.so
cc -shared -fPIC -O2 -o "$NORESUME" "$HERE/tls_noresume.c" -ldl >"$PG_TMP/cc.log" 2>&1 ||
    pg_die "cc tls_noresume.c failed: $(cat "$PG_TMP/cc.log")"

# ---- the upstream, nginx, Caddy ---------------------------------------------
pg_upstream_start "$UPSTREAM_CPU" "$P_UP"
UP_PID=$PG_LAST_PID
{
    pg_nginx_head "$PG_TMP" proxy
    pg_nginx_tls "$CERT" "$KEY"
    echo "    log_format resumed '\$ssl_session_reused';"
    pg_nginx_portal_upstream "$P_UP"
    echo "    # T-nginx: TLS (HTTP/1.1, or h2 by ALPN); h2c on a port of its own."
    pg_nginx_proxy_server "$P_NGX ssl http2"
    pg_nginx_proxy_server "$P_NGX_C http2"
    echo "    # T-auth: the same behind auth_request."
    pg_nginx_auth_server "$P_AUTH ssl http2"
    pg_nginx_auth_server "$P_AUTH_C http2"
    pg_nginx_verifier "$P_VER"
    cat <<EOF
    # The resumption probe: logs "r" for a resumed session, "." for a full handshake.
    server {
        listen 127.0.0.1:$P_PROBE ssl;
        access_log $PG_TMP/probe.log resumed;
        location / { return 200 "ok\n"; }
    }
}
EOF
} >"$PG_TMP/proxy.conf"
pg_nginx_start "$SERVER_CPU" proxy
NGX_PID=$PG_LAST_PID

CADDY_PID=
if [[ " $CONFIGS " == *" T-caddy"* ]]; then
    tls=("tls $CERT $KEY {" "    protocols tls1.3" "}")
    {
        pg_caddy_head "$PG_TMP"
        pg_caddy_proxy_site "https://127.0.0.1:$P_CADDY" "$P_UP" "${tls[@]}"
        pg_caddy_proxy_site "http://127.0.0.1:$P_CADDY_C" "$P_UP"
        pg_caddy_auth_site "https://127.0.0.1:$P_CAUTH" "$P_VER" "$P_UP" "${tls[@]}"
        pg_caddy_auth_site "http://127.0.0.1:$P_CAUTH_C" "$P_VER" "$P_UP"
    } >"$PG_TMP/Caddyfile"
    pg_caddy_start "$SERVER_CPU" "$PG_TMP" "$PG_TMP/Caddyfile" "$PG_TMP/caddy.log"
    CADDY_PID=$PG_LAST_PID
fi

# ---- the gates: one TLS and one plain process per binary -------------------
SECRET=$("$FIRST_GATE" secret)
(
    umask 077
    pg_gate_config "$P_UP" "$SECRET" 10000 >"$PG_TMP/gate-plain.toml"
    pg_gate_config "$P_UP" "$SECRET" 10000 '' '[tls]' "cert = \"$CERT\"" "key = \"$KEY\"" >"$PG_TMP/gate-tls.toml"
)
TOKEN=$("$FIRST_GATE" token --config "$PG_TMP/gate-plain.toml" --email bench@example.com --ttl 3600)

# Per configuration: the URL of phases ka/new/resume/h2 (MAIN) and of h2c,
# the processes whose CPU counts, the request header, whether it gates.
declare -A URL_MAIN URL_H2C PROXY_MAIN PROXY_H2C HDR GATED
CFGS=()
for c in $CONFIGS; do
    case $c in
        T-gate) for label in "${GATE_LABELS[@]}"; do CFGS+=("T-gate:$label"); done ;;
        T-direct | T-nginx | T-auth) CFGS+=("$c") ;;
        T-caddy | T-caddy-auth) CFGS+=("$c") ;;
        *) pg_die "CONFIGS: unknown configuration $c" ;;
    esac
done
i=11
for label in "${GATE_LABELS[@]}"; do
    bin=${GATE_BIN[$label]} cfg=T-gate:$label
    pg_gate_check "$bin" "$PG_TMP/gate-tls.toml"
    pg_gate_check "$bin" "$PG_TMP/gate-plain.toml"
    pg_gate_start "$SERVER_CPU" "$bin" "$PG_TMP/gate-tls.toml" "${PORTS[i]}"
    URL_MAIN[$cfg]=https://127.0.0.1:${PORTS[i]}/priv/page.html PROXY_MAIN[$cfg]=$PG_LAST_PID
    pg_gate_start "$SERVER_CPU" "$bin" "$PG_TMP/gate-plain.toml" "${PORTS[i + 1]}"
    URL_H2C[$cfg]=http://127.0.0.1:${PORTS[i + 1]}/priv/page.html PROXY_H2C[$cfg]=$PG_LAST_PID
    HDR[$cfg]="Authorization: Bearer $TOKEN" GATED[$cfg]=1
    i=$((i + 2))
done
URL_MAIN[T-direct]=http://127.0.0.1:$P_UP/priv/page.html PROXY_MAIN[T-direct]=
URL_MAIN[T-nginx]=https://127.0.0.1:$P_NGX/priv/page.html PROXY_MAIN[T-nginx]=$NGX_PID
URL_H2C[T-nginx]=http://127.0.0.1:$P_NGX_C/priv/page.html PROXY_H2C[T-nginx]=$NGX_PID
URL_MAIN[T-auth]=https://127.0.0.1:$P_AUTH/priv/page.html PROXY_MAIN[T-auth]=$NGX_PID
URL_H2C[T-auth]=http://127.0.0.1:$P_AUTH_C/priv/page.html PROXY_H2C[T-auth]=$NGX_PID
HDR[T-auth]="Authorization: Bearer x" GATED[T-auth]=1
if [[ -n $CADDY_PID ]]; then
    URL_MAIN[T-caddy]=https://127.0.0.1:$P_CADDY/priv/page.html PROXY_MAIN[T-caddy]=$CADDY_PID
    URL_H2C[T-caddy]=http://127.0.0.1:$P_CADDY_C/priv/page.html PROXY_H2C[T-caddy]=$CADDY_PID
    # The verifier is a server block of the nginx proxy: its CPU counts too.
    URL_MAIN[T-caddy-auth]=https://127.0.0.1:$P_CAUTH/priv/page.html PROXY_MAIN[T-caddy-auth]="$CADDY_PID $NGX_PID"
    URL_H2C[T-caddy-auth]=http://127.0.0.1:$P_CAUTH_C/priv/page.html PROXY_H2C[T-caddy-auth]="$CADDY_PID $NGX_PID"
    HDR[T-caddy-auth]="Authorization: Bearer x" GATED[T-caddy-auth]=1
fi

# The configurations that run in <phase>: T-direct only in ka.
phase_cfgs() {
    local cfg
    for cfg in "${CFGS[@]}"; do
        [[ $cfg != T-direct || $1 == ka ]] && echo "$cfg"
    done
    return 0
}

# ---- every path answers as it should, over each protocol --------------------
# "<status> <bytes> <HTTP version>" of <url> [curl args].
answer() { curl -s -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "$@"; }
for cfg in "${CFGS[@]}"; do
    hdr=()
    [[ -n ${HDR[$cfg]:-} ]] && hdr=(-H "${HDR[$cfg]}")
    pg_wait_http "${URL_MAIN[$cfg]}" -k
    pg_expect 200 "${URL_MAIN[$cfg]}" -k "${hdr[@]}"
    [[ -n ${GATED[$cfg]:-} ]] && pg_expect 401 "${URL_MAIN[$cfg]}" -k
    [[ $cfg == T-direct ]] && continue
    got=$(answer -k --http2 "${hdr[@]}" "${URL_MAIN[$cfg]}")
    [[ $got == "200 2048 2" ]] || pg_die "$cfg over TLS with ALPN h2: expected '200 2048 2', got '$got'"
    pg_wait_http "${URL_H2C[$cfg]}" --http2-prior-knowledge
    got=$(answer --http2-prior-knowledge "${hdr[@]}" "${URL_H2C[$cfg]}")
    [[ $got == "200 2048 2" ]] || pg_die "$cfg over h2c: expected '200 2048 2', got '$got'"
    if [[ -n ${GATED[$cfg]:-} ]]; then
        got=$(answer --http2-prior-knowledge "${URL_H2C[$cfg]}")
        [[ $got == "401 "*" 2" ]] || pg_die "$cfg over h2c without the header: expected 401, got '$got'"
    fi
done
for label in "${GATE_LABELS[@]}"; do
    pg_log "gate $label on core $SERVER_CPU runs $(pg_gate_workers "${PROXY_MAIN[T-gate:$label]}") worker thread(s)"
done

# ---- what the clients negotiate, and that they never resume -------------------
{
    echo "tls:       TLS 1.3 only on every server, one ECDSA P-256 certificate (self-signed); negotiated by"
    echo "           openssl s_client (OpenSSL's defaults, as wrk; offering ALPN h2,http/1.1: wrk offers none) and h2load:"
    for cfg in "${CFGS[@]}"; do
        [[ $cfg == T-direct ]] && continue
        port=${URL_MAIN[$cfg]#https://127.0.0.1:} port=${port%%/*}
        h2=$(h2load -n1 -c1 "${URL_MAIN[$cfg]}" 2>&1 | awk -F': ' '
            /^Cipher:/ { c = $2 } /^Server Temp Key:/ { k = $2 } /^Application protocol:/ { a = $2 }
            END { printf "%s %s ALPN %s", c, k, a }')
        printf '           %-16s openssl s_client: %s; h2load: %s\n' "$cfg" "$(pg_tls_params "$port")" "$h2"
    done
} | tee -a "$PG_TMP/machine.txt" >&2

# probe <client command...>: "<resumed> of <handshakes>" at the probe server
# (after a pause: nginx logs the requests in flight when the client quits).
probe() {
    : >"$PG_TMP/probe.log"
    taskset -c "$LOAD_CPU" "$@" >/dev/null 2>&1 || true
    sleep 0.5
    awk '{n++; if ($1 == "r") r++} END {printf "%d of %d", r, n}' "$PG_TMP/probe.log"
}
PROBE_URL=https://127.0.0.1:$P_PROBE/
wrk_own=$(probe wrk -t1 -c4 -d1s -H 'Connection: close' "$PROBE_URL")
wrk_shim=$(probe env LD_PRELOAD="$NORESUME" wrk -t1 -c4 -d1s -H 'Connection: close' "$PROBE_URL")
h2l_own=$(probe h2load --h1 -c4 -n200 -H 'Connection: close' "$PROBE_URL")
h2l_shim=$(probe env LD_PRELOAD="$NORESUME" h2load --h1 -c4 -n200 -H 'Connection: close' "$PROBE_URL")
{
    echo "resumed:   handshakes that resumed a session, Connection: close, at an nginx probe with tickets on:"
    echo "           wrk $wrk_own by itself, $wrk_shim with tls_noresume.so; h2load --h1 $h2l_own by itself, $h2l_shim with it"
} | tee -a "$PG_TMP/machine.txt" >&2
[[ $wrk_shim == "0 of "* && $h2l_shim == "0 of "* ]] || pg_die "tls_noresume.so did not stop session resumption"
[[ ${wrk_shim#0 of } -gt 10 ]] || pg_die "the probe saw no handshakes ($wrk_shim)"

# ---- one client run -------------------------------------------------------------
# bench <phase> <cfg> <round> <duration> [record=1]
bench() {
    local phase=$1 cfg=$2 round=$3 duration=$4 record=${5:-1}
    local out=$PG_TMP/out/$phase-${cfg//:/-}-$round.txt url=${URL_MAIN[$cfg]} pids=${PROXY_MAIN[$cfg]}
    local hdr=() pre=(env LD_PRELOAD="$NORESUME") log=() line proto
    [[ -n ${HDR[$cfg]:-} ]] && hdr=(-H "${HDR[$cfg]}")
    [[ $phase == h2c ]] && url=${URL_H2C[$cfg]} pids=${PROXY_H2C[$cfg]}
    [[ $phase == resume ]] && pre=()
    ((record)) && pg_settle
    ((record)) && log=(--log-file="$out.log")
    case $phase in
        ka) pg_measure "$out" "$pids" "$UP_PID" "${pre[@]}" wrk -t1 -c"$CONNS" -d"$duration" --latency "${hdr[@]}" "$url" ;;
        new | resume)
            pg_measure "$out" "$pids" "$UP_PID" "${pre[@]}" wrk -t1 -c"$CONNS" -d"$duration" --latency \
                -H "Connection: close" "${hdr[@]}" "$url"
            ;;
        h2 | h2c)
            pg_measure "$out" "$pids" "$UP_PID" "${pre[@]}" h2load -t1 -c"$CONNS" -m"$H2_STREAMS" -D "$duration" \
                "${log[@]}" "${hdr[@]}" "$url"
            proto=$(awk -F': ' '/^Application protocol:/ {print $2}' "$out")
            [[ $proto == "$phase" ]] || pg_log "warning: $cfg spoke '$proto' in phase $phase"
            ;;
    esac
    ((record)) || return 0
    line=$(pg_client_row "$phase" "$cfg" "$round" "$CONNS" "$out")
    echo "$line" >>"$RESULTS_TSV"
    pg_row_log "$line"
}

# ---- the runs -------------------------------------------------------------------
pg_log "warm-up ($WARMUP each): $PHASES x ${CFGS[*]}"
for phase in $PHASES; do
    for cfg in $(phase_cfgs "$phase"); do bench "$phase" "$cfg" 0 "$WARMUP" 0; done
done
for ((r = 1; r <= ROUNDS; r++)); do
    pg_log "round $r/$ROUNDS: $PHASES x ${CFGS[*]} ($DURATION each)"
    for phase in $PHASES; do
        for cfg in $(phase_cfgs "$phase"); do bench "$phase" "$cfg" "$r" "$DURATION"; done
    done
done

# ---- the summary ------------------------------------------------------------------
{
    echo '```'
    cat "$PG_TMP/machine.txt"
    echo '```'
    echo
    H2_STREAMS=$H2_STREAMS python3 "$HERE/summarize.py" --tls "$RESULTS_TSV"
} >"$PG_TMP/summary.md"
echo
cat "$PG_TMP/summary.md"
if [[ -n ${RESULTS:-} ]]; then
    mkdir -p "$RESULTS/out"
    cp "$RESULTS_TSV" "$PG_TMP/summary.md" "$PG_TMP/machine.txt" "$PG_TMP/proxy.conf" "$RESULTS"/
    [[ -f $PG_TMP/Caddyfile ]] && cp "$PG_TMP/Caddyfile" "$RESULTS"/
    find "$PG_TMP/out" -type f ! -name '*.log' -exec cp {} "$RESULTS/out/" \;
    pg_log "results copied to $RESULTS"
fi
