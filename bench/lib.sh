# Shared pieces of the benchmark harness (sourced by scripts/bench.sh and the
# rows in bench/rows/): settings, process handling, the upstream, narbor and the
# two nginx proxies, and result recording.
#
# Every server binds 127.0.0.1 on a free port, runs in the foreground as a
# child of the harness and is ended by its PID. Every wait is bounded.

# ---- settings (full run; scripts/bench.sh --smoke shrinks them) -------------
: "${BENCH_WORK:=/tmp/narbor-bench}"       # fixtures and scratch, reused across runs
BENCH_RESULTS=${BENCH_RESULTS:-$PWD/bench/results}
RUNS=5            # runs per measurement for the quick rows (median reported)
HIT_RUNS=7        # runs for the request-rate rows (1 and 8), the ones noise moves most
SLOW_RUNS=3       # runs per measurement for the rows that fetch whole objects cold
PUSH_RUNS=5       # runs of row 7, whose baseline (nix copy) swings most from run to run
DURATION=10       # seconds per wrk run
SMALL_NAR_MB=50
LARGE_NAR_MB=1024
STORM_NAR_MB=200
STORM_CLIENTS=32
UPSTREAM_RATE=25m # nginx limit_rate of the throttled upstream, per connection
FLEET_CLIENTS=8
CLOSURE_MB=300
MEM_DOWNLOADS=64
OBJECTS=${BENCH_OBJECTS:-1000000} # stored objects for rows 5 and 6
PUBLISH_PARTS=8    # row 7: paths in the published closure (plus a root)
PUBLISH_PART_MB=128 # row 7: MiB per path

NARBOR=$PWD/target/release/narbor
SEED=$PWD/target/release/examples/seed

# The Nix settings of the e2e tests (crates/narbor/tests/e2e/support.rs):
# offline, single-user, no substituters, no narinfo caching between runs.
export NIX_REMOTE=local
export NIX_CONFIG="build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
narinfo-cache-positive-ttl = 0
narinfo-cache-negative-ttl = 0
download-attempts = 1
connect-timeout = 5"
unset NIX_PATH

log() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }
now_ns() { date +%s%N; }
ms_since() { echo $(( ($(now_ns) - $1) / 1000000 )); }
# A note for the machine line when this is a VM that hands freed memory back
# to its host (free page reporting): there, memory touched for the first time
# since it was freed costs a fault on the host too. On the machine of
# BENCHMARKS.md, touching a fresh GiB took 0.7 to 2.9 s from one try to the
# next, and whatever writes much new data (page cache included) pays it.
page_reporting() {
  local order=/sys/module/page_reporting/parameters/page_reporting_order
  [ -r "$order" ] || return 0
  echo " (a VM handing freed memory back to its host: free page reporting, blocks of $((4 << $(cat "$order"))) KiB)"
}

# ---- processes --------------------------------------------------------------
PIDS=()
# Starts a command in the background, logging to $1; its PID is in $LAST_PID.
spawn() {
  local logfile=$1; shift
  "$@" > "$logfile" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
stop_pid() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
}

# A port no TCP socket uses, below the kernel's ephemeral range (where a
# client connection made meanwhile could take it).
free_port() {
  local port low
  low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range)
  while :; do
    port=$((10000 + RANDOM % (low - 10000)))
    ss -tanH "sport = :$port" 2>/dev/null | grep -q . || { echo "$port"; return; }
  done
}

# Waits (at most 20 s) until http://127.0.0.1:$1$2 answers with status $3 (default 200).
wait_http() {
  local port=$1 path=${2:-/nix-cache-info} want=${3:-200} deadline=$(($(now_ns) + 20000000000))
  while [ "$(now_ns)" -lt "$deadline" ]; do
    [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path")" = "$want" ] && return 0
    sleep 0.01
  done
  die "nothing answered $want on 127.0.0.1:$port$path within 20 s"
}

# CPU time (user + system, ms) used so far by a process and its children
# (nginx's workers), from /proc.
tree_cpu_ms() {
  local pid total=0 tick
  tick=$(getconf CLK_TCK)
  for pid in "$1" $(pgrep -P "$1"); do
    total=$((total + $(awk -v t="$tick" '{printf "%d", ($14 + $15) * 1000 / t}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# Peak and current RSS (KiB) of a process, from /proc.
peak_rss_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# turns RUN SYSTEM...: the systems in the order they take their turns in run
# RUN, rotated by one place each run, so that none always goes first or last.
turns() {
  local run=$1 i
  shift
  for ((i = 0; i < $#; i++)); do
    echo "${@:$(((run - 1 + i) % $# + 1)):1}"
  done
}

# ---- results ----------------------------------------------------------------
# Folds a directory of per-client outputs into one file DIR.txt (a line per
# client: its file name, then its output), so the results stay a few files.
fold_dir() {
  local f
  for f in "$1"/*; do printf '%s %s\n' "$(basename "$f" .txt)" "$(cat "$f")"; done > "$1.txt"
  rm -rf "$1"
}

# One line per measurement: row, metric, system, value.
record() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$BENCH_RESULTS/summary.tsv"
  log "row $1 $2 $3 = $4"
}

# A target for a metric: KIND is ratio_ge or ratio_le (narbor / the row's
# baseline, nginx-tuned for rows 1-6, >= or <= VALUE),
# le or eq (narbor's own median <= or == VALUE).
target() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$BENCH_RESULTS/targets.tsv"
}
# A row that could not be measured, and why.
pending() {
  printf '%s\t%s\n' "$1" "$2" >> "$BENCH_RESULTS/pending.tsv"
  log "row $1 not measured: $2"
}

# ---- the upstream: a plain nginx, no caching --------------------------------
# Two servers over the same files: fast (row 1, 2 warm-up) and throttled to
# $UPSTREAM_RATE per connection (the cold rows). The access log records the
# bytes sent per request, which is how the cold rows count upstream traffic.
UP_PORT= UP_SLOW_PORT=
NGINX_USER=()
if [ "$(id -u)" = 0 ]; then
  # nginx runs unprivileged: as nobody, not as a root master.
  NGINX_USER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi

nginx_common() { # $1 = prefix dir
  cat <<EOF
daemon off;
worker_processes auto;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_temp_paths() { # $1 = prefix dir
  cat <<EOF
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
  fastcgi_temp_path $1/tmp/fastcgi;
  uwsgi_temp_path $1/tmp/uwsgi;
  scgi_temp_path $1/tmp/scgi;
  types { text/x-nix-narinfo narinfo; application/x-nix-nar nar; }
  default_type application/octet-stream;
EOF
}

# Runs nginx with config $2 in prefix dir $1 (fresh), in the foreground.
start_nginx() {
  local dir=$1 conf=$2
  chmod 755 "$dir"
  mkdir -p "$dir/tmp"
  [ ${#NGINX_USER[@]} = 0 ] || chown -R 65534:65534 "$dir"
  "${NGINX_USER[@]}" nginx -t -q -p "$dir" -c "$conf" -e "$dir/error.log" \
    || die "nginx rejects $conf: $(cat "$dir/error.log")"
  spawn "$dir/stderr.log" "${NGINX_USER[@]}" nginx -p "$dir" -c "$conf" -e "$dir/error.log"
}

start_upstream() {
  local dir=$BENCH_WORK/run/upstream
  rm -rf "$dir"; mkdir -p "$dir"
  UP_PORT=$(free_port); UP_SLOW_PORT=$(free_port)
  {
    nginx_common "$dir"
    echo "http {"
    nginx_temp_paths "$dir"
    cat <<EOF
  log_format bytes '\$server_port \$status \$body_bytes_sent \$uri';
  access_log $dir/access.log bytes;
  sendfile on;
  tcp_nopush on;
  server { listen 127.0.0.1:$UP_PORT; root $BENCH_WORK/upstream; }
  server { listen 127.0.0.1:$UP_SLOW_PORT; root $BENCH_WORK/upstream; limit_rate $UPSTREAM_RATE; }
}
EOF
  } > "$dir/nginx.conf"
  start_nginx "$dir" "$dir/nginx.conf"
  wait_http "$UP_PORT"
  wait_http "$UP_SLOW_PORT"
  UP_LOG=$dir/access.log
}

# Where the upstream access log ends now; pass it to upstream_bytes_since.
upstream_log_mark() { wc -l < "$UP_LOG"; }
# Body bytes the upstream sent for NARs since the mark.
upstream_bytes_since() {
  sleep 0.3 # nginx writes the log line when the request ends
  tail -n +"$(( $1 + 1 ))" "$UP_LOG" | awk '$4 ~ /^\/nar\// {s += $3} END {print s + 0}'
}

# ---- the systems under test -------------------------------------------------
# start_system NAME UPSTREAM_PORT [fresh]: starts narbor, nginx-module or
# nginx-tuned in front of the upstream port; its port is in $SYS_PORT and its
# PID in $SYS_PID. With "fresh" its cache starts empty.
SYS_PORT= SYS_PID=
start_system() {
  local name=$1 up=$2 fresh=${3:-} dir=$BENCH_WORK/run/$1
  [ -z "$fresh" ] || rm -rf "$dir"
  mkdir -p "$dir"
  SYS_PORT=$(free_port)
  case $name in
    narbor)
      spawn "$dir/stderr.log" "$NARBOR" serve --listen "127.0.0.1:$SYS_PORT" \
        --cache-dir "$dir/cache" --upstream "http://127.0.0.1:$up"
      ;;
    nginx-module|nginx-tuned)
      mkdir -p "$dir/cache"
      "nginx_conf_${name#nginx-}" "$dir" "$SYS_PORT" "$up" > "$dir/nginx.conf"
      start_nginx "$dir" "$dir/nginx.conf"
      ;;
    *) die "unknown system $name" ;;
  esac
  SYS_PID=$LAST_PID
  wait_http "$SYS_PORT"
}
stop_system() { stop_pid "$SYS_PID"; }

# As numtide/nixos-passthru-cache (modules/nixos/nixos-passthru-cache/default.nix)
# configures nginx, the established NixOS pull-through cache module. Reproduced:
# worker_processes auto; services.nginx.recommendedOptimisation (sendfile on,
# tcp_nopush on, tcp_nodelay on, keepalive_timeout 65); proxyCachePath
# levels=1:2, keys_zone 10m (the NixOS default keysZoneSize), max_size=200G,
# inactive=30d, use_temp_path=off; the location "/" with proxy_cache,
# proxy_cache_use_stale error timeout http_500..504, proxy_cache_valid 200 60m
# and 404 1m, proxy_http_version 1.1, the proxy_set_header lines, the timeouts
# and buffers (proxy_buffer_size 16k, proxy_buffers 4 32k,
# proxy_busy_buffers_size 64k), add_header X-Cache-Status; the static
# "=/nix-cache-info". NixOS's default access log is kept (to a file).
# Not reproduced: TLS/ACME and the resolver (the upstream here is a loopback
# http address instead of https://cache.nixos.org).
nginx_conf_module() {
  local dir=$1 port=$2 up=$3
  printf 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n' > "$dir/nix-cache-info"
  nginx_common "$dir"
  echo "http {"
  nginx_temp_paths "$dir"
  cat <<EOF
  access_log $dir/access.log;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  proxy_cache_path $dir/cache levels=1:2 use_temp_path=off keys_zone=nixos-passthru-cache:10m max_size=200G inactive=30d;
  server {
    listen 127.0.0.1:$port;
    location =/nix-cache-info {
      alias $dir/nix-cache-info;
      add_header Content-Type text/x-nix-cache-info;
    }
    location / {
      proxy_pass http://127.0.0.1:$up;
      proxy_cache nixos-passthru-cache;
      proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504;
      proxy_cache_valid 200 60m;
      proxy_cache_valid 404 1m;
      proxy_set_header Host "cache.nixos.org";
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_http_version 1.1;
      proxy_headers_hash_max_size 512;
      proxy_headers_hash_bucket_size 128;
      proxy_connect_timeout 60s;
      proxy_send_timeout 60s;
      proxy_read_timeout 60s;
      proxy_buffering on;
      proxy_buffer_size 16k;
      proxy_buffers 4 32k;
      proxy_busy_buffers_size 64k;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
}
EOF
}

# The module's configuration tuned as well as we know how: one fetch per object
# (proxy_cache_lock, waiting as long as a fill takes), upstream keep-alive,
# sendfile with large chunks, bigger proxy buffers, no access log.
nginx_conf_tuned() {
  local dir=$1 port=$2 up=$3
  printf 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n' > "$dir/nix-cache-info"
  nginx_common "$dir"
  echo "http {"
  nginx_temp_paths "$dir"
  cat <<EOF
  access_log off;
  sendfile on;
  sendfile_max_chunk 2m;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 100000;
  proxy_cache_path $dir/cache levels=1:2 use_temp_path=off keys_zone=nixos-passthru-cache:64m max_size=200G inactive=30d;
  upstream upstream_cache {
    server 127.0.0.1:$up;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$port;
    location =/nix-cache-info {
      alias $dir/nix-cache-info;
      add_header Content-Type text/x-nix-cache-info;
    }
    location / {
      proxy_pass http://upstream_cache;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host "cache.nixos.org";
      proxy_cache nixos-passthru-cache;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 1h;
      proxy_cache_lock_age 1h;
      proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
      proxy_cache_valid 200 60m;
      proxy_cache_valid 404 1m;
      proxy_buffering on;
      proxy_buffer_size 64k;
      proxy_buffers 16 256k;
      proxy_busy_buffers_size 512k;
      proxy_read_timeout 1h;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
}
EOF
}

SYSTEMS=(narbor nginx-module nginx-tuned)

# The x-cache-status a system answers for a path.
cache_status() {
  curl -s --max-time 600 -o /dev/null -D - "http://127.0.0.1:$1$2" | awk -F': *' 'tolower($1) == "x-cache-status" {gsub(/\r/, "", $2); print $2}'
}
# Fetches a path until the system answers it from its cache (at most 5 tries).
warm() {
  local port=$1 path=$2 i
  for i in 1 2 3 4 5; do
    case $(cache_status "$port" "$path") in HIT) return 0 ;; esac
  done
  die "127.0.0.1:$port never answered $path from its cache"
}
