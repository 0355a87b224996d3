# shellcheck shell=bash
# Shared helpers for the scripts in benches/load (run.sh, tls.sh, ab.sh,
# memory.sh). Sourced, not run. Everything stays on 127.0.0.1; every
# process this starts is recorded by PID and stopped by PID on exit.

PG_PIDS=()   # processes we started, in start order
# Idle keep-alive connections a proxy keeps to the upstream and to the
# verifier: nginx's `keepalive`, Caddy's keepalive_idle_conns. At least
# the requests in flight, or the proxy closes and reopens connections.
PG_UPSTREAM_IDLE=${PG_UPSTREAM_IDLE:-64}
PG_CGROUPS=() # cgroups we created (pg_cpu_quota), removed on cleanup

pg_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
pg_die() { pg_log "error: $*"; exit 1; }

# The tools the scripts need, as <command>:<Debian package>; a script that
# needs more appends to PG_TOOLS before pg_need_tools.
PG_TOOLS=(nginx:nginx caddy:caddy wrk:wrk h2load:nghttp2-client curl:curl openssl:openssl
    taskset:util-linux python3:python3)

# Install the missing PG_TOOLS with apt-get (needs root).
pg_need_tools() {
    local missing=() pair
    for pair in "${PG_TOOLS[@]}"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if ((${#missing[@]})); then
        pg_log "installing ${missing[*]} with apt-get"
        [[ $(id -u) == 0 ]] || pg_die "need root to apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The run's temp dir PG_TMP (mktemp, <prefix>.XXXXXX under /tmp), world-
# readable for nginx's workers (they run as nobody and read www/), removed
# with everything started from here by pg_cleanup on exit.
pg_init_tmp() {
    PG_TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$PG_TMP"
    trap pg_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Build the release binary and copy it into the temp dir, so a concurrent
# rebuild of target/ cannot swap it in the middle of a run.
pg_build() {
    local root=$1 dest=$2
    if [[ ${BUILD:-1} == 1 ]]; then
        pg_log "cargo build --release"
        if ! (cd "$root" && cargo build --release --quiet); then
            # Others may be mid-edit in a shared tree: say so, and measure the last good build.
            [[ -x $root/target/release/portal-gate ]] || pg_die "cargo build --release failed"
            pg_log "warning: cargo build --release failed; measuring the existing target/release/portal-gate"
            PG_BUILD_NOTE="build failed, measured the previous target/release binary"
        fi
    fi
    [[ -x $root/target/release/portal-gate ]] || pg_die "no $root/target/release/portal-gate"
    cp "$root/target/release/portal-gate" "$dest"
}

# The version of one of the tools, as machine.txt shows it.
pg_tool_version() {
    case $1 in
        nginx) nginx -v 2>&1 | sed 's/^nginx version: //' ;;
        caddy) echo "$(caddy version 2>/dev/null) ($(caddy build-info 2>/dev/null | awk '$1 == "go" {print $2}'))" ;;
        wrk) wrk -v 2>&1 | head -1 | awk '{print $2}' ;;
        h2load) h2load --version 2>&1 | awk '{print $2}' ;;
        openssl) openssl version ;;
        *) echo '?' ;;
    esac
}

# The head of machine.txt: date, CPU, kernel and the versions of <tools...>.
pg_machine_info() {
    local t
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu:       $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel:    $(uname -r)"
    for t in "$@"; do printf '%-11s%s\n' "$t:" "$(pg_tool_version "$t")"; done
}

# "<version> (git <rev>[, src modified][, build note])" of the gate binary
# <bin> built from the checkout <root>.
pg_gate_version() {
    local root=$1 bin=$2 rev mod=
    rev=$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')
    [[ -n $(cd "$root" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && mod=', src modified'
    echo "$("$bin" --version) (git $rev$mod${PG_BUILD_NOTE:+, $PG_BUILD_NOTE})"
}

# N free TCP ports on 127.0.0.1, space-separated.
pg_free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# The 2 KB page (exactly 2048 bytes) under <www>/pub/ and <www>/priv/.
pg_make_page() {
    local www=$1
    mkdir -p "$www/pub" "$www/priv"
    python3 - "$www" <<'EOF'
import sys
head = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Release notes</title></head>\n<body>\n<h1>Release notes</h1>\n")
tail = "</body></html>\n"
para = ("<p>Version 4.2 ships faster exports, a calmer notification centre and "
        "fixes for the sync conflicts some of you reported last month.</p>\n")
body = head
while len(body) + len(para) + len(tail) + 8 <= 2048:
    body += para
body += "<!--" + "x" * (2048 - len(body) - len(tail) - 8) + "-->\n" + tail
data = body.encode()
assert len(data) == 2048, len(data)
for d in ("pub", "priv"):
    open(f"{sys.argv[1]}/{d}/page.html", "wb").write(data)
EOF
}

# Common head of an nginx config: one worker, foreground, temp paths in $dir.
pg_nginx_head() {
    local dir=$1 name=$2
    mkdir -p "$dir/$name-tmp"
    cat <<EOF
worker_processes 1;
daemon off;
pid $dir/$name.pid;
error_log $dir/$name.error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
    access_log off;
    default_type text/html;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path $dir/$name-tmp/body;
    proxy_temp_path $dir/$name-tmp/proxy;
    fastcgi_temp_path $dir/$name-tmp/fastcgi;
    uwsgi_temp_path $dir/$name-tmp/uwsgi;
    scgi_temp_path $dir/$name-tmp/scgi;
EOF
}

# The upstream: nginx serving <www> on <port>.
pg_nginx_upstream_conf() {
    local dir=$1 www=$2 port=$3
    pg_nginx_head "$dir" upstream
    cat <<EOF
    server {
        listen 127.0.0.1:$port;
        root $www;
        location / { }
        # For POST loads (ab.sh with POST_BYTES): nginx reads and discards
        # the body, and keeps the connection.
        location = /priv/form { return 200 "posted\n"; }
    }
}
EOF
}

# Check the nginx config $PG_TMP/<name>.conf and start nginx with it on
# <cpus>. Sets PG_LAST_PID (the master; pg_cpu_ticks adds its workers).
pg_nginx_start() {
    local cpus=$1 name=$2
    nginx -t -q -p "$PG_TMP" -e "$PG_TMP/nginx-t.log" -c "$PG_TMP/$name.conf" ||
        pg_die "$name.conf invalid: $(tail -3 "$PG_TMP/nginx-t.log")"
    pg_start "$cpus" "$PG_TMP/$name.out" nginx -p "$PG_TMP" -e "$PG_TMP/$name.error.log" -c "$PG_TMP/$name.conf"
}

# The upstream of every configuration: the 2 KB page under $PG_TMP/www,
# served by nginx on <port>, pinned to <cpus>. Sets PG_LAST_PID.
pg_upstream_start() {
    local cpus=$1 port=$2
    pg_make_page "$PG_TMP/www"
    chmod -R a+rX "$PG_TMP/www"
    pg_nginx_upstream_conf "$PG_TMP" "$PG_TMP/www" "$port" >"$PG_TMP/upstream.conf"
    pg_nginx_start "$cpus" upstream
}

# The nginx `portal` upstream: keep-alive connections to the page server on
# <port> (PG_UPSTREAM_IDLE of them idle, no reconnect every 1 000 requests).
pg_nginx_portal_upstream() {
    echo "    upstream portal { server 127.0.0.1:$1; keepalive $PG_UPSTREAM_IDLE; keepalive_requests 1000000; }"
}

# An nginx server block on <port> that proxies everything to `portal`.
# <port> may carry listen parameters: "8443 ssl http2", "8080 http2" (h2c).
pg_nginx_proxy_server() {
    cat <<EOF
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://portal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}

# An nginx server block on <port> (with listen parameters, as above) that
# asks the `verifier` upstream (pg_nginx_verifier) about each request with
# auth_request, then proxies it to `portal`.
pg_nginx_auth_server() {
    cat <<EOF
    server {
        listen 127.0.0.1:$1;
        location / {
            auth_request /_auth;
            proxy_pass http://portal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /_auth {
            internal;
            proxy_pass http://verifier;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}

# The minimal external verifier, a server block on <port> that answers
# 204 to `Authorization: Bearer x` and 401 to anything else, and the
# keep-alive upstream `verifier` pointing to it (one loopback hop away).
pg_nginx_verifier() {
    cat <<EOF
    upstream verifier { server 127.0.0.1:$1; keepalive $PG_UPSTREAM_IDLE; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$1;
        location / {
            if (\$http_authorization = "Bearer x") { return 204; }
            return 401;
        }
    }
EOF
}

# TLS for the `listen ... ssl` servers of an nginx http block: the
# certificate <cert> with key <key>, TLS 1.3 only. Session tickets and
# the session cache stay at nginx's defaults (tickets on, cache none).
pg_nginx_tls() {
    cat <<EOF
    ssl_certificate $1;
    ssl_certificate_key $2;
    ssl_protocols TLSv1.3;
EOF
}

# A self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost:
# <dir>/cert.pem and <dir>/key.pem (PKCS#8).
pg_make_cert() {
    local dir=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" -subj /CN=localhost \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$dir/cert.log" 2>&1 ||
        pg_die "openssl req failed: $(cat "$dir/cert.log")"
}

# What an OpenSSL client (openssl s_client, with wrk's defaults) negotiates
# with 127.0.0.1:<port> when it offers ALPN h2 and http/1.1:
# "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519 ALPN h2".
pg_tls_params() {
    openssl s_client -connect "127.0.0.1:$1" -alpn h2,http/1.1 </dev/null 2>/dev/null | awk '
        /^New, / && !v { v = $2; sub(/,$/, "", v); c = $NF }
        /^Server Temp Key:/ { g = $4; sub(/,$/, "", g) }
        /^ALPN protocol:/ { a = $3 }
        END { printf "%s %s %s ALPN %s\n", v ? v : "?", c ? c : "?", g ? g : "?", a ? a : "none" }'
}

# Caddy's global options: no admin endpoint, no automatic HTTPS, storage
# under <dir> (its autosaved config too, by pg_caddy_start's XDG dirs), only
# errors logged (Caddy keeps no access log without a `log` directive in a
# site); HTTP/1.1, HTTP/2 (by ALPN over TLS) and h2c (on plain listeners),
# no HTTP/3.
pg_caddy_head() {
    cat <<EOF
{
    admin off
    auto_https off
    storage file_system $1/caddy-data
    log {
        output stderr
        level ERROR
    }
    servers {
        protocols h1 h2 h2c
    }
}
EOF
}

# The transport of Caddy's proxy hops: keep-alive as nginx's upstream
# blocks (PG_UPSTREAM_IDLE idle connections, no limit on requests per
# connection).
pg_caddy_transport() {
    cat <<EOF
            transport http {
                keepalive 75s
                keepalive_idle_conns $PG_UPSTREAM_IDLE
                keepalive_idle_conns_per_host $PG_UPSTREAM_IDLE
            }
EOF
}

# A Caddy site on <address> (http://127.0.0.1:PORT or https://...) that
# proxies to the page server on <upstream port>. Further arguments are
# lines placed first in the site (a `tls` directive).
pg_caddy_proxy_site() {
    local addr=$1 up=$2
    shift 2
    echo "$addr {"
    echo "    bind 127.0.0.1"
    (($#)) && printf '    %s\n' "$@"
    echo "    reverse_proxy 127.0.0.1:$up {"
    pg_caddy_transport
    echo "    }"
    echo "}"
}

# Like pg_caddy_proxy_site, with forward_auth to the verifier on
# <verifier port> (pg_nginx_verifier) before the proxy: Caddy's
# counterpart of nginx auth_request.
pg_caddy_auth_site() {
    local addr=$1 ver=$2 up=$3
    shift 3
    echo "$addr {"
    echo "    bind 127.0.0.1"
    (($#)) && printf '    %s\n' "$@"
    echo "    route {"
    echo "        forward_auth 127.0.0.1:$ver {"
    echo "            uri /_auth"
    pg_caddy_transport
    echo "        }"
    echo "        reverse_proxy 127.0.0.1:$up {"
    pg_caddy_transport
    echo "        }"
    echo "    }"
    echo "}"
}

# Check the Caddyfile <file> and start Caddy with it on <cpus>, output in
# <log>: GOMAXPROCS=1 (one core, as nginx's one worker), HOME and the XDG
# directories under <dir>. One process; sets PG_LAST_PID.
pg_caddy_start() {
    local cpus=$1 dir=$2 file=$3 log=$4
    local envs=(env GOMAXPROCS=1 HOME="$dir/caddy-home" XDG_CONFIG_HOME="$dir/caddy-home/config"
        XDG_DATA_HOME="$dir/caddy-home/data")
    mkdir -p "$dir/caddy-home"
    "${envs[@]}" caddy fmt --overwrite "$file" >/dev/null 2>&1 || true # Caddy warns about anything but its own layout
    "${envs[@]}" caddy validate --adapter caddyfile --config "$file" >"$log.validate" 2>&1 ||
        pg_die "$file invalid: $(tail -3 "$log.validate")"
    pg_start "$cpus" "$log" "${envs[@]}" caddy run --adapter caddyfile --config "$file"
}

# The benches' gate config: the page server on <upstream port>, `/pub/**`
# public, `/priv/**` verified, the shared secret <secret>, a decrypt cache
# of <capacity> entries. Further arguments are TOML lines placed before
# the [upstream] table (top-level keys first, then tables such as [limits]).
pg_gate_config() {
    local port=$1 secret=$2 capacity=$3
    shift 3
    printf '%s\n' 'listen = "127.0.0.1:8080"          # overridden by --listen' 'default_access = "restricted"' "$@"
    cat <<EOF

[upstream]
url = "http://127.0.0.1:$port"

[verification]
account_id = "acct_bench"
token_ttl = "1h"
cache_capacity = $capacity

[[secrets]]
id = "bench"
value = "$secret"

[[pages]]
path = "/pub/**"
access = "public"

[[pages]]
path = "/priv/**"
access = "verified"
EOF
}

# Check the gate config <config> with <bin> (dies with its complaint).
pg_gate_check() {
    local bin=$1 cfg=$2 out
    out=$("$bin" check --config "$cfg" 2>&1) || pg_die "portal-gate check $cfg failed: $out"
}

# Serve <config> with the gate <bin> on 127.0.0.1:<port>, pinned to <cpus>,
# at RUST_LOG=warn (at `info` the access log would be measured too); its
# log in $PG_TMP/gate-<port>.log. Further arguments go to `serve`. Sets
# PG_LAST_PID.
pg_gate_start() {
    local cpus=$1 bin=$2 cfg=$3 port=$4
    shift 4
    pg_start "$cpus" "$PG_TMP/gate-$port.log" env RUST_LOG=warn "$bin" serve --config "$cfg" --listen "127.0.0.1:$port" "$@"
}

# The worker threads of the gate process <pid>: the main thread is worker
# 0, the others are named pg-worker-N (0 when the process is gone).
pg_gate_workers() {
    [[ -d /proc/$1/task ]] || { echo 0; return; }
    cat /proc/"$1"/task/*/comm 2>/dev/null | awk '/^pg-worker-/ {n++} END {print n + 1}'
}

# Start a command in the background, pinned with taskset to <cpus> (or
# unpinned if <cpus> is "-"), at niceness $NICE, stdout+stderr to <log>.
# Sets PG_LAST_PID (taskset and nice exec, so it is the command's PID).
pg_start() {
    local cpus=$1 log=$2
    shift 2
    local nice=(nice -n "${NICE:-0}")
    if [[ $cpus == - ]]; then
        "${nice[@]}" "$@" >"$log" 2>&1 &
    else
        taskset -c "$cpus" "${nice[@]}" "$@" >"$log" 2>&1 &
    fi
    PG_LAST_PID=$!
    PG_PIDS+=("$PG_LAST_PID")
}

# Child PIDs of a process (nginx master -> workers).
pg_children() {
    cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' || true
}

# Stop one process we started: SIGTERM, wait up to 10 s, then SIGKILL it
# and its children (by PID).
pg_stop() {
    local pid=$1 kids i
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(pg_children "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
    fi
    wait "$pid" 2>/dev/null || true
}

pg_cleanup() {
    local i g
    for ((i = ${#PG_PIDS[@]} - 1; i >= 0; i--)); do
        pg_stop "${PG_PIDS[i]}"
    done
    PG_PIDS=()
    # The quota cgroups are empty once their processes have stopped.
    for g in "${PG_CGROUPS[@]}"; do rmdir "$g" 2>/dev/null || true; done
    PG_CGROUPS=()
    if [[ -n ${PG_TMP:-} && -d $PG_TMP && ${KEEP_TMP:-0} != 1 ]]; then
        rm -rf "$PG_TMP"
    fi
}

# Wait until <url> answers at all (any status), up to 10 s. Further
# arguments go to curl (-k, --http2-prior-knowledge).
pg_wait_http() {
    local url=$1 i
    shift
    for ((i = 0; i < 100; i++)); do
        if curl -s -o /dev/null --max-time 1 "$@" "$url"; then return 0; fi
        sleep 0.1
    done
    pg_die "$url did not come up"
}

# Expect <status> and, for 200, a 2048-byte body from <url> [curl args...].
pg_expect() {
    local want=$1 url=$2
    shift 2
    local got
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$@" "$url")
    if [[ $want == 200 ]]; then
        [[ $got == "200 2048" ]] || pg_die "$url: expected 200 with 2048 bytes, got '$got'"
    else
        [[ ${got%% *} == "$want" ]] || pg_die "$url: expected $want, got '$got'"
    fi
}

# "utime stime" in clock ticks of a process (all its threads) and its
# children (nginx workers). Children's CPU is read live, not from cutime.
pg_cpu_ticks() {
    local u=0 s=0 p q pair
    for p in "$@"; do
        for q in "$p" $(pg_children "$p"); do
            [[ -r /proc/$q/stat ]] || continue
            # fields after the ")" : state is $1, utime is $12, stime $13
            pair=$(sed 's/.*) //' /proc/"$q"/stat | awk '{print $12, $13}')
            u=$((u + ${pair% *}))
            s=$((s + ${pair#* }))
        done
    done
    echo "$u $s"
}

pg_rss_kb() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status; }

# Busy (non-idle, non-iowait) clock ticks of the whole machine, all cores.
pg_busy_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# Wait (up to <max> seconds) until the machine is quiet: less than
# <threshold> cores busy over one second while our servers are idle.
# Other people's builds and fuzzers share the two cores; a run that starts
# in a busy second measures them too. Prints the busy cores last seen.
pg_wait_quiet() {
    local threshold=$1 max=$2 waited=0 b0 b1 busy tck
    tck=$(getconf CLK_TCK)
    while :; do
        b0=$(pg_busy_ticks)
        sleep 1
        b1=$(pg_busy_ticks)
        busy=$(awk -v d=$((b1 - b0)) -v t="$tck" 'BEGIN {printf "%.2f", d / t}')
        if awk -v b="$busy" -v t="$threshold" 'BEGIN {exit !(b < t)}' || ((waited >= max)); then
            echo "$busy"
            return 0
        fi
        waited=$((waited + 1))
    done
}

# "voluntary nonvoluntary" context switches of a process's threads and its
# children's threads.
pg_ctxt() {
    local p q
    for p in "$@"; do
        for q in "$p" $(pg_children "$p"); do
            cat /proc/"$q"/task/*/status 2>/dev/null
        done
    done | awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v + 0, n + 0}'
}

# Cap the CPU of process <pid> (all its threads) at <cores> (e.g. 0.3) with
# a cgroup of its own named <name>: cgroup v1's cpu controller or cgroup
# v2's cpu.max. Needs root; returns 1 (and changes nothing) when no cpu
# controller is writable here.
pg_cpu_quota() {
    local name=$1 cores=$2 pid=$3 dir quota t
    quota=$(awk -v c="$cores" 'BEGIN {printf "%d", c * 100000}')
    if [[ -w /sys/fs/cgroup/cpu/cgroup.procs || -w /sys/fs/cgroup/cpu/tasks ]]; then
        dir=/sys/fs/cgroup/cpu/pg-$name-$$
        mkdir "$dir" 2>/dev/null || return 1
        PG_CGROUPS+=("$dir")
        echo 100000 >"$dir/cpu.cfs_period_us" && echo "$quota" >"$dir/cpu.cfs_quota_us" || return 1
        for t in /proc/"$pid"/task/*; do echo "${t##*/}" >"$dir/tasks" || return 1; done
    elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
        dir=/sys/fs/cgroup/pg-$name-$$
        mkdir "$dir" 2>/dev/null || return 1
        PG_CGROUPS+=("$dir")
        echo "$quota 100000" >"$dir/cpu.max" && echo "$pid" >"$dir/cgroup.procs" || return 1
    else
        return 1
    fi
}


# Accepted TCP connections so far in this network namespace (PassiveOpens
# of /proc/net/snmp): around a run, how many connections the client made.
pg_tcp_accepts() {
    awk '$1 == "Tcp:" { if (!c) { for (i = 2; i <= NF; i++) if ($i == "PassiveOpens") c = i } else print $c }' /proc/net/snmp
}

# Before a recorded run: wait for a quiet second (pg_wait_quiet with $QUIET
# and $QUIET_MAX; QUIET_MAX=0 never waits), and say so when none came.
pg_settle() {
    local busy
    [[ ${QUIET_MAX:-10} != 0 ]] || return 0
    busy=$(pg_wait_quiet "${QUIET:-0.3}" "${QUIET_MAX:-10}")
    if awk -v b="$busy" -v t="${QUIET:-0.3}" 'BEGIN {exit !(b >= t)}'; then
        pg_log "  (machine still busy: $busy cores used by others; running anyway)"
    fi
}

# Run a load client (wrk or h2load) on core $LOAD_CPU at niceness $NICE,
# its output in <out>, and measure around it. Sets PG_M_CLIENT (the
# client's user+system seconds), PG_M_PROXY and PG_M_PROXY_SYS (clock ticks
# of the proxy processes <proxy pids>, children included: all, and kernel
# only), PG_M_UP (ticks of the upstream <upstream pid>), PG_M_BUSY (busy
# ticks of the whole machine) and PG_M_ACCEPTS (TCP connections accepted).
pg_measure() { # <out> "<proxy pids>" <upstream pid> <command...>
    local out=$1 up=$3 proxy=() rc=0 pu0 ps0 pu1 ps1 uu0 us0 uu1 us1 b0 b1 a0 a1
    read -r -a proxy <<<"$2"
    shift 3
    read -r pu0 ps0 < <(pg_cpu_ticks "${proxy[@]}")
    read -r uu0 us0 < <(pg_cpu_ticks "$up")
    a0=$(pg_tcp_accepts)
    b0=$(pg_busy_ticks)
    local TIMEFORMAT='%U %S'
    { time taskset -c "$LOAD_CPU" nice -n "$NICE" "$@" >"$out"; } 2>"$out.time" || rc=$?
    b1=$(pg_busy_ticks)
    a1=$(pg_tcp_accepts)
    read -r uu1 us1 < <(pg_cpu_ticks "$up")
    read -r pu1 ps1 < <(pg_cpu_ticks "${proxy[@]}")
    ((rc == 0)) || pg_log "warning: $1 exited with status $rc: $(head -c 300 "$out.time")"
    PG_M_CLIENT=$(tail -1 "$out.time" | awk '{print $1 + $2}')
    PG_M_PROXY=$((pu1 + ps1 - pu0 - ps0)) PG_M_PROXY_SYS=$((ps1 - ps0))
    PG_M_UP=$((uu1 + us1 - uu0 - us0)) PG_M_BUSY=$((b1 - b0)) PG_M_ACCEPTS=$((a1 - a0))
}

# p50 and p99 (µs, nearest rank) of the answered requests in an h2load
# --log-file (start time, status, µs to the end of the response).
pg_log_percentiles() {
    awk -F'\t' '$2 > 0 {print $3}' "$1" | sort -n | awk '
        function rank(p, i) { i = int(p * NR); if (i < p * NR) i++; return i < 1 ? 1 : i }
        { v[NR] = $1 }
        END { if (NR) print v[rank(0.50)], v[rank(0.99)]; else print 0, 0 }'
}

# One TSV row, in the columns of summarize.py's FIELDS, from the output
# <out> of a client run by pg_measure: wrk --latency, or h2load (whose
# per-request log <out>.log, if any, gives p50 and p99).
pg_client_row() { # <phase> <cfg> <round> <conns> <out>
    local phase=$1 cfg=$2 round=$3 conns=$4 out=$5 pct="0 0"
    [[ -s $out.log ]] && pct=$(pg_log_percentiles "$out.log")
    awk -v phase="$phase" -v cfg="$cfg" -v round="$round" -v conns="$conns" -v tck="$(getconf CLK_TCK)" \
        -v client="$PG_M_CLIENT" -v px="$PG_M_PROXY" -v pxs="$PG_M_PROXY_SYS" -v up="$PG_M_UP" \
        -v busy="$PG_M_BUSY" -v acc="$PG_M_ACCEPTS" -v lp50="${pct% *}" -v lp99="${pct#* }" '
        function us(v) {
            sub(/,$/, "", v)
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return (v + 0) * 1000
            if (v ~ /m$/) return (v + 0) * 60e6
            if (v ~ /s$/) return (v + 0) * 1e6
            return v + 0
        }
        # wrk
        /^ +Latency +[0-9]/ { mean = us($2); max = us($4) }
        /^ +50%/ { p50 = us($2) }
        /^ +99%/ { p99 = us($2) }
        / requests in / { req = $1; wall = us($4) / 1e6 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx/ { non = $NF }
        /Socket errors/ { s = $0; gsub(/[^0-9 ]/, " ", s); n = split(s, a, " "); for (i = 1; i <= n; i++) err += a[i] }
        # h2load
        /^finished in / { wall = us($3) / 1e6; rps = $4; p50 = lp50; p99 = lp99 }
        /^requests: / { req = $6; err = $10 + $12 + $14 }
        /^status codes: / { non = $5 + $7 + $9 }
        /^time for request: / { mean = us($6); max = us($5) }
        END {
            printf "%s\t%s\t%s\t%s\t%.2f\t%.1f\t%.1f\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.3f\t%.2f\t%.2f\t%d\t%.1f\t%.1f\n",
                phase, cfg, round, conns, rps, p50, p99, req, non, err, client, px / tck, up / tck,
                (wall ? wall : 1e-9), busy / tck, pxs / tck, acc, mean, max
        }' "$out"
}

# The console line of a pg_client_row row.
pg_row_log() {
    awk -F'\t' '{other = ($15 - $11 - $12 - $13) / $14
        printf "  %-5s %-14s round %s: %9.0f req/s  p50 %7.0f us  p99 %7.0f us  errors %d  conns/req %.2f  other processes %.2f cores\n",
            $1, $2, $3, $5, $6, $7, $9 + $10, ($8 ? $17 / $8 : 0), (other > 0 ? other : 0)}' <<<"$1" >&2
}
