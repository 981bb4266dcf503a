#!/usr/bin/env bash
# HTTP announces against the field, side by side in one run: aquatic_http 0.9 and opentracker.
#
#   native/bench/http_baselines.sh [ROUNDS] [SECONDS]    # default 3 rounds of 15 s
#
# wrk (one thread, on core 1) sends announces (native/bench/announce.lua: random torrents of
# 10,000, random peer ids, numwant 50) to each tracker (on core 0) in two ways:
# - keepalive: 256 connections, each reused for request after request;
# - close: 64 connections, each request on a new one (`Connection: close`), as many clients do.
# Printed: announces per second, and per tracker CPU-second (wrk saturates its core first in
# some modes, so the second is the tracker's own cost), per round and as medians, with the
# per-round ratios edgetracker / baseline. Rounds are interleaved in a rotating order.
#
# BASE=REV adds this tracker as built at git revision REV (in a temporary worktree), as the
# tracker `edgetracker_base`: the ratio edgetracker / edgetracker_base is then a change's effect,
# measured beside the field. TRACKERS="edgetracker edgetracker_base" and MODES=close limit a run
# to those trackers and modes.
#
# Needs nothing outside the checkout. Installs what is missing: from crates.io aquatic_http
# 0.9.0 (into $BENCH_TOOLS, default ~/.cache/edgetracker-bench), from Debian wrk and opentracker
# (apt, as root; a tracker that cannot be installed is skipped). Every tracker starts empty
# (ours with no state file), listens on 127.0.0.1 only, and is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-15}
# Below the ephemeral range, which wrk's many connections sweep through.
base_port=${PORT:-24300}
AQUATIC_VERSION=0.9.0
tools=${BENCH_TOOLS:-$HOME/.cache/edgetracker-bench}
export PATH="$tools/bin:$PATH"

apt_install() {
    command -v "$1" >/dev/null && return 0
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}
apt_install wrk || { echo "wrk is needed (Debian package wrk)" >&2; exit 1; }
apt_install opentracker || echo "opentracker could not be installed: its column is skipped" >&2
# glommio-based; its default features pull a metrics crate that no longer builds on current Rust.
command -v aquatic_http >/dev/null ||
    cargo install --locked --quiet --version "$AQUATIC_VERSION" --root "$tools" \
        --no-default-features --features mimalloc aquatic_http ||
    echo "aquatic_http could not be installed: its column is skipped" >&2
trackers="edgetracker"
[ -n "${BASE:-}" ] && trackers="$trackers edgetracker_base"
command -v aquatic_http >/dev/null && trackers="$trackers aquatic_http"
command -v opentracker >/dev/null && trackers="$trackers opentracker"
trackers=${TRACKERS:-$trackers}
modes=${MODES:-keepalive close}

cargo build --release --quiet -p edgetracker-native --bin edgetracker --example bench_udp_fill
ours=$PWD/target/release/edgetracker

source "$PWD/native/bench/lib.sh"
if [ -n "${BASE:-}" ]; then
    git worktree add --detach "$work/base" "$BASE" >/dev/null 2>&1
    trap 'stop; git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
    (cd "$work/base" && CARGO_TARGET_DIR="$work/target" cargo build --release --quiet \
        -p edgetracker-native --bin edgetracker)
fi

# Debian builds opentracker to serve whitelisted torrents only: the load's torrents, listed.
target/release/examples/bench_udp_fill hashes 10000 >"$work/hashes.txt"
mkdir -m 755 "$work/ot"
cp "$work/hashes.txt" "$work/ot/whitelist.txt"
chmod 644 "$work/ot/whitelist.txt"
command -v aquatic_http >/dev/null && aquatic_http -p >"$work/aquatic.default.toml"

# The baselines' configuration files for the current $port.
configure() {
    cat >"$work/ot/opentracker.conf" <<CONF
listen.tcp 127.0.0.1:$port
listen.udp.workers 1
access.whitelist ./whitelist.txt
tracker.rootdir $work/ot
tracker.user nobody
CONF
    [ -f "$work/aquatic.default.toml" ] || return 0
    sed -e "s|^address = .*|address = \"127.0.0.1:$port\"|" \
        -e "s|^socket_workers = .*|socket_workers = 1|" -e "s|^swarm_workers = .*|swarm_workers = 1|" \
        -e "s|^enable_tls = .*|enable_tls = false|" -e "s|^keep_alive = .*|keep_alive = true|" \
        "$work/aquatic.default.toml" >"$work/aquatic.toml"
    grep -q "^address = \"127.0.0.1:$port\"" "$work/aquatic.toml" ||
        { echo "aquatic_http's printed config has no 'address' key to set" >&2; exit 1; }
}

# start NAME: the tracker on core 0, its PID in $work/pid, once it answers an announce. Each
# start takes the next port: a tracker that closed connections leaves its port in TIME_WAIT,
# which not every tracker's listener may bind through.
start() {
    # (Each measurement runs in a subshell: the count lives in a file.)
    local runs
    runs=$(($(cat "$work/runs" 2>/dev/null || echo 0) + 1))
    echo "$runs" >"$work/runs"
    port=$((base_port + runs))
    configure
    case $1 in
    edgetracker | edgetracker_base)
        local bin=$ours
        [ "$1" = edgetracker_base ] && bin=$work/target/release/edgetracker
        # Every peer comes from 127.0.0.1: lift the per-address caps.
        # shellcheck disable=SC2046 # one word per setting
        env EDGETRACKER__STATE__FILE="" $(loopback_env "$bin") \
            taskset -c 0 "$bin" --listen 127.0.0.1 --port "$port" --log-level warn \
            >"$work/tracker.log" 2>&1 &
        ;;
    aquatic_http)
        # glommio (io_uring) wants locked memory.
        (ulimit -l unlimited 2>/dev/null || true; exec taskset -c 0 aquatic_http -c "$work/aquatic.toml") \
            >"$work/tracker.log" 2>&1 &
        ;;
    opentracker)
        (cd "$work/ot" && exec taskset -c 0 opentracker -f "$work/ot/opentracker.conf") \
            >"$work/tracker.log" 2>&1 &
        ;;
    esac
    echo $! >"$work/pid"
    local hash q
    hash=$(head -1 "$work/hashes.txt" | sed 's/../%&/g')
    q="info_hash=$hash&peer_id=-BENCH-0000000000000&port=6881&uploaded=0&downloaded=0&left=0&compact=1"
    for _ in $(seq 100); do
        curl -s -m 1 "http://127.0.0.1:$port/announce?$q" 2>/dev/null | grep -aq "5:peers" && return 0
        sleep 0.1
    done
    echo "$1 did not answer an announce" >&2
    cat "$work/tracker.log" >&2
    exit 1
}

# http NAME MODE: "announces_per_s announces_per_tracker_cpu_s"
http() {
    local conns=256 header=()
    if [ "$2" = close ]; then conns=64; header=(-H "Connection: close"); fi
    start "$1"
    local url="http://127.0.0.1:$port/announce"
    timeout 30 taskset -c 1 wrk -t1 -c"$conns" -d3s "${header[@]}" -s native/bench/announce.lua \
        "$url" -- "$work/hashes.txt" >/dev/null 2>&1 || true
    local cpu0 cpu1
    cpu0=$(cpu_secs)
    timeout $((secs + 30)) taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" "${header[@]}" \
        -s native/bench/announce.lua "$url" -- "$work/hashes.txt" >"$work/wrk.out" 2>&1
    cpu1=$(cpu_secs)
    stop
    local line
    line=$(grep '^WRK ' "$work/wrk.out") || { cat "$work/wrk.out" >&2; exit 1; }
    echo "$line" | awk -v c="$cpu1" -v c0="$cpu0" '{
        split($2, r, "="); split($3, s, "="); split($4, n, "=")
        if (n[2] > r[2] / 100) { print "too many failed replies: " $0 > "/dev/stderr"; exit 1 }
        printf "%.0f %.0f\n", r[2] / s[2], r[2] / (c - c0) }'
}

measure() { http "$2" "$1"; }
echo "== $rounds rounds of ${secs} s; trackers: $trackers; tracker on core 0, wrk on core 1"
run_rounds "$rounds" "$trackers" "$modes"

echo
for mode in $modes; do
    summarize "$mode" 1 "announces/s (higher is better)"
    summarize "$mode" 2 "announces per tracker CPU-second (higher is better)"
done
