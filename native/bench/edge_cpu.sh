#!/usr/bin/env bash
# The edge's CPU per request: the core's announce, a swarm object's announce and a scrape, built
# as the Worker builds them (wasm32, Cargo profile `worker`) and run in Node, side by side with
# the same code built natively (release), swarms of 10, 1,000 and 4,000 peers.
#
#   native/bench/edge_cpu.sh [ROUNDS] [ITERATIONS]      (defaults: 3 rounds, 20000 iterations)
#
# Prints each round's nanoseconds per request (wall clock of the timed run alone, one thread),
# then per case the medians and wasm / native. Also the Worker bundle's size, if built. Needs
# what tests/run.sh installs: the wasm32 target, wasm-bindgen-cli (the version Cargo.lock pins)
# and Node (npm ci). Both runs must agree on their replies (a checksum), or the script stops.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
iterations=${2:-20000}
# shellcheck source=lib.sh
source native/bench/lib.sh
PATH="$PWD/node_modules/.bin:$PATH"

cargo build -q --release -p edgetracker-wasm-bench --bin edge-cpu-native
cargo build -q --target wasm32-unknown-unknown --profile worker -p edgetracker-wasm-bench --lib
wasm-bindgen --target nodejs --out-dir "$work/wasm" \
    target/wasm32-unknown-unknown/worker/edgetracker_wasm_bench.wasm

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); node $(node --version); $(date -u +%F)"
for case in announce object scrape; do
    for peers in 10 1000 4000; do
        : >"$work/native" && : >"$work/wasm.ns"
        for round in $(seq "$rounds"); do
            read -r n_ns n_check < <(target/release/edge-cpu-native "$case" "$peers" "$iterations")
            read -r w_ns w_check < <(node native/bench/wasm/run.cjs "$work/wasm" "$case" "$peers" "$iterations")
            if [ "$n_check" != "$w_check" ]; then
                echo "$case $peers: the replies differ (checksum $n_check natively, $w_check in wasm)" >&2
                exit 1
            fi
            echo "$n_ns" >>"$work/native"
            echo "$w_ns" >>"$work/wasm.ns"
            printf '%-8s %5s peers  round %s: native %6s ns, wasm %6s ns\n' "$case" "$peers" "$round" "$n_ns" "$w_ns"
        done
        n=$(median <"$work/native")
        w=$(median <"$work/wasm.ns")
        printf '%-8s %5s peers  median: native %6s ns, wasm %6s ns (%.1f µs), wasm / native %.2f\n' \
            "$case" "$peers" "$n" "$w" "$(echo "$w / 1000" | bc -l)" "$(echo "$w / $n" | bc -l)"
    done
done
if [ -f build/index_bg.wasm ]; then
    echo "worker bundle: build/index_bg.wasm $(wc -c <build/index_bg.wasm) bytes, $(gzip -9 -c build/index_bg.wasm | wc -c) gzipped"
fi
