#!/usr/bin/env bash
# WebTorrent: edgetracker's WebSocket tracker against aquatic_ws 0.9, side by side in one run.
#
#   native/bench/ws_baselines.sh [ROUNDS] [SECONDS] [CONNECTIONS]    # default 3 rounds, 15 s, 256
#
# Drives each tracker with native/examples/bench_ws_load.rs over plain ws:// (aquatic's own
# load tester speaks only wss://): CONNECTIONS browsers announcing with 10 offers each into
# 10,000 torrents and answering every offer handed to them. Reports announce replies, offers
# and answers delivered per second, the same per tracker CPU-second, and resident memory per
# connection (sampled mid-run). Rounds alternate the order; each prints its ratios, the end
# their medians.
#
# Needs nothing outside the checkout: installs aquatic_ws 0.9.0 from crates.io if missing (into
# $BENCH_TOOLS, default ~/.cache/edgetracker-bench). Both trackers listen on 127.0.0.1 only, are
# pinned to core 0 (aquatic's socket and swarm workers both) with the load on core 1, start
# empty, and are stopped by their PIDs. edgetracker runs with its per-address connection cap
# and swarms-per-connection cap lifted: every simulated browser comes from 127.0.0.1 and roams
# over many torrents.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-15}
conns=${3:-256}
port=${PORT:-34470}
tools=${BENCH_TOOLS:-$HOME/.cache/edgetracker-bench}
export PATH="$tools/bin:$PATH"
command -v aquatic_ws >/dev/null ||
    cargo install --locked --quiet --version 0.9.0 --root "$tools" --no-default-features --features mimalloc aquatic_ws
cargo build --release --quiet -p edgetracker-native --bin edgetracker --example bench_ws_load
ours=$PWD/target/release/edgetracker
load=$PWD/target/release/examples/bench_ws_load

source "$PWD/native/bench/lib.sh"
aquatic_ws -p >"$work/aquatic.toml"
sed -i -e "s|^address = .*|address = \"127.0.0.1:$port\"|" "$work/aquatic.toml"

start() {
    case $1 in
    edgetracker)
        # shellcheck disable=SC2046 # one word per setting
        env EDGETRACKER__STATE__FILE="" $(loopback_env "$ours") \
            taskset -c 0 "$ours" --listen 127.0.0.1 --port "$port" --log-level warn >"$work/tracker.log" 2>&1 &
        ;;
    aquatic_ws) (cd "$work" && exec taskset -c 0 aquatic_ws -c "$work/aquatic.toml") >"$work/tracker.log" 2>&1 & ;;
    esac
    echo $! >"$work/pid"
    for _ in $(seq 100); do
        ss -Hlnt "sport = :$port" | grep -q . && break
        sleep 0.1
    done
    kill -0 "$(cat "$work/pid")" 2>/dev/null || { cat "$work/tracker.log" >&2; exit 1; }
}

# run NAME: "announces/s offers/s answers/s messages_per_cpu_s bytes_per_connection"
run() {
    start "$1"
    local cpu0 cpu1 rss0 rss1 result
    cpu0=$(cpu_secs)
    rss0=$(rss_kb)
    taskset -c 1 timeout $((secs + 30)) "$load" "127.0.0.1:$port" "$conns" "$secs" >"$work/load.out" 2>&1 &
    local loader=$!
    sleep $((secs / 2))
    rss1=$(rss_kb)
    wait "$loader"
    cpu1=$(cpu_secs)
    stop
    result=$(grep '^RESULT' "$work/load.out") || { cat "$work/load.out" "$work/tracker.log" >&2; exit 1; }
    echo "$result" | awk -v c0="$cpu0" -v c1="$cpu1" -v s="$secs" -v r0="$rss0" -v r1="$rss1" -v n="$conns" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        if (v["errors"] > 0 || v["failed_connections"] > 0) { print "errors in the run: " $0 > "/dev/stderr" }
        msgs = (v["announces_per_s"] + v["offers_per_s"] + v["answers_per_s"]) * s / (c1 - c0)
        printf "%s %s %s %.0f %.0f\n", v["announces_per_s"], v["offers_per_s"], v["answers_per_s"], msgs, (r1 - r0) * 1024 / n
    }'
}

declare -A result
trackers="edgetracker aquatic_ws"
echo "== $rounds rounds of $secs s, $conns connections; tracker on core 0, load on core 1"
for r in $(seq 1 "$rounds"); do
    order=$trackers
    [ $((r % 2)) = 0 ] && order="aquatic_ws edgetracker"
    line="round $r:"
    for t in $order; do
        v=$(run "$t")
        result[$t]+="$v;"
        line+=" $t $v |"
    done
    echo "$line"
done

echo
field=0
for what in "announce replies/s" "offers delivered/s" "answers delivered/s" "messages out per tracker CPU-second" "resident bytes per connection"; do
    field=$((field + 1))
    ourv=$(echo "${result[edgetracker]}" | tr ';' '\n' | grep . | cut -d' ' -f"$field")
    theirs=$(echo "${result[aquatic_ws]}" | tr ';' '\n' | grep . | cut -d' ' -f"$field")
    ratios=$(paste <(echo "$ourv") <(echo "$theirs") | awk -v f="$field" '{ printf "%.2f ", (f == 5) ? ($1 > 0 ? $2 / $1 : 0) : $1 / $2 }')
    echo "$what: edgetracker $(echo $ourv) | aquatic_ws $(echo $theirs)"
    echo "  ratio (> 1: edgetracker better) per round: $ratios median $(echo $ratios | median)"
done
