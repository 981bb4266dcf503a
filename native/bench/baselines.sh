#!/usr/bin/env bash
# edgetracker against the field, side by side in one run: aquatic_udp 0.9 (its mio backend, and
# its io_uring backend where the kernel allows io_uring) and opentracker.
#
#   native/bench/baselines.sh [ROUNDS] [SECONDS]     # default 3 rounds of 20 s; ONLY="udp", "mem", "tail"
#
# - udp: aquatic_udp_load_test 0.9.0 (defaults: 1 M torrents, 2 M peers) against each tracker
#   for SECONDS; responses per second, and responses per tracker CPU-second (when the load tester
#   saturates its core before a tracker does, the second is the tracker's own speed); then the
#   tracker's CPU per response split into user space and kernel (microseconds): the kernel's part
#   is the floor no tracker code can go below while it uses the kernel's sockets.
# - mem: 1 M peers over 100 k torrents announced over UDP (native/examples/bench_udp_fill.rs),
#   and tail: 1 M peers over 500 k torrents (two each, the long tail of small swarms),
#   then the tracker's resident memory growth per peer.
# Rounds are interleaved (round r runs every tracker once, in a rotating order) so that the
# shared machine's noise hits all alike; each round prints its ratios, and the end their medians.
#
# Needs nothing outside the checkout. Installs what is missing from the registries: from
# crates.io aquatic_udp_load_test and aquatic_udp 0.9.0 (into $BENCH_TOOLS, default
# ~/.cache/edgetracker-bench; the io_uring build into its uring/ folder), from Debian opentracker (apt, as root; without it that column is
# skipped). Every tracker starts empty (ours with no state file), listens on 127.0.0.1 only, is
# pinned to core 0 with the load on core 1, and is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-20}
only=${ONLY:-"udp mem tail"}
port=${PORT:-34270}
AQUATIC_VERSION=0.9.0
tools=${BENCH_TOOLS:-$HOME/.cache/edgetracker-bench}
export PATH="$tools/bin:$PATH"

install() { cargo install --locked --quiet --version "$AQUATIC_VERSION" --root "$tools" "$@"; }
command -v aquatic_udp_load_test >/dev/null || install aquatic_udp_load_test
# aquatic_udp's default features pull a metrics crate that no longer builds on current Rust;
# prometheus export is not needed to measure it.
command -v aquatic_udp >/dev/null || install --no-default-features --features mimalloc aquatic_udp
# aquatic's io_uring backend (its fastest, +21 % over mio by aquatic's own account): a separate
# build, since the feature makes io_uring the default. Whether the kernel lets it run is tried
# below, once the trackers can be started.
uring_bin=$tools/uring/bin/aquatic_udp
[ -x "$uring_bin" ] || cargo install --locked --quiet --version "$AQUATIC_VERSION" \
    --root "$tools/uring" --no-default-features --features "mimalloc io-uring" aquatic_udp
if ! command -v opentracker >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opentracker >/dev/null ||
        echo "opentracker could not be installed: its column is skipped" >&2
fi
trackers="edgetracker aquatic_udp aquatic_uring"
command -v opentracker >/dev/null && trackers="$trackers opentracker"

cargo build --release --quiet -p edgetracker-native --bin edgetracker --example bench_udp_fill
ours=$PWD/target/release/edgetracker
fill=$PWD/target/release/examples/bench_udp_fill

source "$PWD/native/bench/lib.sh"

# Debian builds opentracker to serve whitelisted torrents only: whitelist exactly the load
# tester's torrents (the filler uses the first 100 k of the same list).
"$fill" hashes 1000000 >"$work/whitelist.txt"
aquatic_udp -p >"$work/aquatic.toml"
sed -i -e "s|^socket_workers = .*|socket_workers = 1|" \
    -e "s|^address = .*|address = \"127.0.0.1:$port\"|" "$work/aquatic.toml"
grep -q "^address = \"127.0.0.1:$port\"" "$work/aquatic.toml" ||
    { echo "aquatic_udp's printed config has no 'address' key to set" >&2; exit 1; }
"$uring_bin" -p >"$work/aquatic_uring.toml"
sed -i -e "s|^socket_workers = .*|socket_workers = 1|" \
    -e "s|^address = .*|address = \"127.0.0.1:$port\"|" "$work/aquatic_uring.toml"
grep -q "^use_io_uring = true" "$work/aquatic_uring.toml" ||
    { echo "aquatic_udp's io_uring build does not default to io_uring" >&2; exit 1; }
mkdir -m 755 "$work/ot"
cp "$work/whitelist.txt" "$work/ot/whitelist.txt"
chmod 644 "$work/ot/whitelist.txt"
cat >"$work/ot/opentracker.conf" <<EOF
listen.udp.workers 1
listen.udp 127.0.0.1:$port
listen.tcp 127.0.0.1:$port
access.whitelist ./whitelist.txt
tracker.rootdir $work/ot
tracker.user nobody
EOF
aquatic_udp_load_test -p >"$work/load.toml"
sed -i -e "s|^server_address = .*|server_address = \"127.0.0.1:$port\"|" \
    -e "s|^duration = .*|duration = $secs|" -e "s|^summarize_last = .*|summarize_last = 0|" \
    "$work/load.toml"

# start NAME: the tracker on core 0, its PID in $work/pid, once it answers UDP.
start() {
    case $1 in
    edgetracker)
        # The load tester sends every peer from four addresses: lift the per-address caps.
        # shellcheck disable=SC2046 # one word per setting
        env EDGETRACKER__STATE__FILE="" $(loopback_env "$ours") \
            taskset -c 0 "$ours" --listen 127.0.0.1 --port "$port" --log-level warn \
            >"$work/tracker.log" 2>&1 &
        ;;
    aquatic_udp) taskset -c 0 aquatic_udp -c "$work/aquatic.toml" >"$work/tracker.log" 2>&1 & ;;
    aquatic_uring) taskset -c 0 "$uring_bin" -c "$work/aquatic_uring.toml" >"$work/tracker.log" 2>&1 & ;;
    opentracker)
        (cd "$work/ot" && exec taskset -c 0 opentracker -f "$work/ot/opentracker.conf") \
            >"$work/tracker.log" 2>&1 &
        ;;
    esac
    echo $! >"$work/pid"
    for _ in $(seq 100); do
        ss -Hlnu "sport = :$port" | grep -q . && break
        sleep 0.1
    done
    sleep 1 # opentracker reads its whitelist after binding
    kill -0 "$(cat "$work/pid")" 2>/dev/null || { cat "$work/tracker.log" >&2; exit 1; }
}


# The kernel may refuse io_uring (kernel.io_uring_disabled, a container's seccomp filter): try
# aquatic's io_uring build once, and leave its column out if it does not stay up.
if ! (start aquatic_uring) >/dev/null 2>&1; then
    echo "aquatic_udp's io_uring build did not start (io_uring refused?): its column is skipped" >&2
    trackers=${trackers/ aquatic_uring/}
fi
stop

# udp NAME: "responses_per_s responses_per_tracker_cpu_s user_us_per_response kernel_us_per_response"
udp() {
    start "$1"
    local cpu0 cpu1 rps
    cpu0=$(cpu_split)
    timeout $((secs + 60)) taskset -c 1 aquatic_udp_load_test -c "$work/load.toml" >"$work/load.out" 2>&1
    cpu1=$(cpu_split)
    stop
    rps=$(sed -n 's/^Average responses per second: //p' "$work/load.out")
    [ -n "$rps" ] || { cat "$work/load.out" "$work/tracker.log" >&2; exit 1; }
    echo "$cpu0 $cpu1" | awk -v r="$rps" -v s="$secs" '{
        n = r * s; u = $3 - $1; k = $4 - $2
        printf "%.0f %.0f %.2f %.2f\n", r, n / (u + k), u / n * 1e6, k / n * 1e6 }'
}

# mem NAME [TORRENTS]: resident bytes per peer after 1 M peers over TORRENTS (100 k) torrents.
mem() {
    start "$1"
    local before after
    before=$(rss_kb)
    taskset -c 1 "$fill" fill "127.0.0.1:$port" 1000000 "${2:-100000}" >"$work/fill.out" 2>&1 ||
        { cat "$work/fill.out" "$work/tracker.log" >&2; stop; exit 1; }
    after=$(rss_kb)
    stop
    awk -v a="$after" -v b="$before" 'BEGIN { printf "%.1f\n", (a - b) * 1024 / 1000000 }'
}

tail() { mem "$1" 500000; }

measure() { "$1" "$2"; }
echo "== $rounds rounds; trackers: $trackers; tracker on core 0, load on core 1"
run_rounds "$rounds" "$trackers" "$only"

echo
for kind in $only; do
    case $kind in
    udp)
        summarize udp 1 "responses/s (higher is better)"
        summarize udp 2 "responses per tracker CPU-second (higher is better)"
        summarize udp 3 "user-space CPU per response, microseconds (lower is better)" lower
        summarize udp 4 "kernel CPU per response, microseconds (lower is better)" lower
        ;;
    mem) summarize mem 1 "resident bytes per peer, 1 M peers over 100 k torrents (lower is better)" lower ;;
    tail) summarize tail 1 "resident bytes per peer, 1 M peers over 500 k torrents (lower is better)" lower ;;
    esac
done
