#!/usr/bin/env bash
# UDP A/B: this checkout's tracker against the same tracker at another commit, under aquatic's UDP
# load tester, rounds interleaved, so a change's effect on speed is a ratio from one run.
#
#   native/bench/udp_ab.sh REV [ROUNDS] [SECONDS]      # e.g. native/bench/udp_ab.sh HEAD~5 3 20
#
# Needs nothing outside the checkout: installs aquatic_udp_load_test 0.9.0 from crates.io if
# missing, builds both trackers in release mode (REV in a temporary git worktree), and runs each
# with no state file (every run starts empty), listening on 127.0.0.1 only, pinned to core 0,
# with the load on core 1. The per-address peer cap is raised: the load tester sends every peer
# from four addresses. Prints, per round, responses per second and responses per tracker
# CPU-second (the load tester saturates its core first, so the second is the tracker's speed),
# then the median ratios REV-to-checkout.
#
# UDP_THREADS=N runs both trackers with N UDP threads; TRACKER_CORES and LOAD_CORES (taskset
# lists, default 0 and 1) place them, and LOAD_SOCKETS sets the load tester's sockets (default
# 4, at most 255; more spread a load over per-thread sockets as many clients do). Where the
# tracker counts them, each run also prints its datagrams by UDP thread (from /stats). Two threads on this 2-core
# machine: UDP_THREADS=2 TRACKER_CORES=0,1 LOAD_CORES=0,1 LOAD_SOCKETS=64. REV_ENV="NAME=VALUE ..."
# runs REV's tracker with that environment too (configuration keys as EDGETRACKER__SECTION__KEY),
# so REV=HEAD compares two settings of one build:
#   REV_ENV=EDGETRACKER__NETWORK__UDP_STEERING=client UDP_THREADS=2 ... udp_ab.sh HEAD 5 15
set -euo pipefail
# shellcheck source=loopback.sh
source "$(dirname "${BASH_SOURCE[0]}")/loopback.sh"
cd "$(dirname "$0")/../.."
rev=${1:?usage: native/bench/udp_ab.sh REV [ROUNDS] [SECONDS]}
rounds=${2:-3}
secs=${3:-20}
port=${PORT:-34170}
udp_threads=${UDP_THREADS:-1}
tracker_cores=${TRACKER_CORES:-0}
load_cores=${LOAD_CORES:-1}
LOAD_TEST_VERSION=0.9.0

command -v aquatic_udp_load_test >/dev/null ||
    cargo install --locked --version "$LOAD_TEST_VERSION" aquatic_udp_load_test

work=$(mktemp -d)
cleanup() {
    # The tracker of a run cut short (runs happen in subshells: its PID is in a file).
    [ -s "$work/pid" ] && kill "$(cat "$work/pid")" 2>/dev/null || true
    git worktree remove --force "$work/rev" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== building this checkout and $rev (release)"
cargo build --release -p edgetracker-native --quiet
cp target/release/edgetracker "$work/new"
git worktree add --detach "$work/rev" "$rev" >/dev/null 2>&1
(cd "$work/rev" && CARGO_TARGET_DIR="$work/target" cargo build --release -p edgetracker-native --quiet)
cp "$work/target/release/edgetracker" "$work/old"

aquatic_udp_load_test -p >"$work/load.toml"
sed -i -e "s|^server_address = .*|server_address = \"127.0.0.1:$port\"|" \
    -e "s|^duration = .*|duration = $secs|" -e "s|^summarize_last = .*|summarize_last = 0|" \
    -e "s|^sockets_per_worker = .*|sockets_per_worker = ${LOAD_SOCKETS:-4}|" \
    "$work/load.toml"
ticks=$(getconf CLK_TCK)

# Runs one tracker binary under load; prints "responses_per_s responses_per_cpu_s".
run() {
    local bin=$1 extra=()
    [ "$bin" = "$work/old" ] && read -ra extra <<<"${REV_ENV:-}"
    # shellcheck disable=SC2046 # one word per setting
    env EDGETRACKER__STATE__FILE="" $(loopback_env "$bin") \
        EDGETRACKER__NETWORK__UDP_THREADS="$udp_threads" ${extra[@]+"${extra[@]}"} \
        taskset -c "$tracker_cores" "$bin" --listen 127.0.0.1 --port "$port" >"$work/tracker.log" 2>&1 &
    local tracker_pid=$!
    echo "$tracker_pid" >"$work/pid"
    sleep 1
    timeout $((secs + 30)) taskset -c "$load_cores" aquatic_udp_load_test -c "$work/load.toml" >"$work/load.out" 2>&1
    local cpu spread
    cpu=$(awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$tracker_pid/stat")
    # How the kernel spread the datagrams over the threads (trackers that count it: /stats).
    spread=$(curl -s "http://127.0.0.1:$port/stats?format=json" 2>/dev/null |
        grep -o '"datagrams": [0-9]*' | awk '{print $2}' | paste -sd/ || true)
    local name=checkout
    [ "$bin" = "$work/old" ] && name=$rev
    [ -z "$spread" ] || echo "  $name: datagrams by thread $spread" >&2
    kill "$tracker_pid"
    wait "$tracker_pid" 2>/dev/null || true
    : >"$work/pid"
    local rps
    rps=$(sed -n 's/^Average responses per second: //p' "$work/load.out")
    [ -n "$rps" ] || { cat "$work/load.out" "$work/tracker.log" >&2; exit 1; }
    awk -v r="$rps" -v c="$cpu" -v s="$secs" 'BEGIN { printf "%.0f %.0f\n", r, r * s / c }'
}

echo "== $rounds rounds of $secs s each; $udp_threads UDP thread(s) on cores $tracker_cores, load on cores $load_cores${REV_ENV:+; $rev with $REV_ENV}"
results=()
for r in $(seq 1 "$rounds"); do
    # Alternate which goes first, so neither always meets a warmer or cooler machine.
    if [ $((r % 2)) = 1 ]; then
        old=$(run "$work/old"); new=$(run "$work/new")
    else
        new=$(run "$work/new"); old=$(run "$work/old")
    fi
    read -r old_rps old_cpu <<<"$old"
    read -r new_rps new_cpu <<<"$new"
    line=$(awk -v a="$old_rps" -v b="$new_rps" -v c="$old_cpu" -v d="$new_cpu" \
        'BEGIN { printf "%.3f %.3f", b / a, d / c }')
    results+=("$line")
    printf 'round %d: %s %s resp/s, %s resp/CPU-s | checkout %s resp/s, %s resp/CPU-s | ratio %s\n' \
        "$r" "$rev" "$old_rps" "$old_cpu" "$new_rps" "$new_cpu" "$line"
done
printf '%s\n' "${results[@]}" | sort -n -k1 | awk '{a[NR]=$1} END {printf "median checkout/%s, responses/s: %.3f\n", "'"$rev"'", a[int((NR+1)/2)]}'
printf '%s\n' "${results[@]}" | sort -n -k2 | awk '{a[NR]=$2} END {printf "median checkout/%s, responses per tracker CPU-second: %.3f\n", "'"$rev"'", a[int((NR+1)/2)]}'
