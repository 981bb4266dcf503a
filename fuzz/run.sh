#!/usr/bin/env bash
# Fuzzes every parser that takes outside bytes, each target for a given time, and prints the
# executions it reached.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # default: 60 s each, every target
#
# Needs the nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz from crates.io
# if missing. Starts from the committed seeds in fuzz/corpus/ and works in a temporary directory,
# so nothing is written into the checkout; a crash's input is kept in /tmp and the script fails.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
CARGO_FUZZ_VERSION=0.13.2
ALL=(udp_packet http_request http_head state_file access_lists config ws_message xbt_conf)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzzing needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION" \
    || cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus-$t" "$work/artifacts-$t"
    cp corpus/"$t"/* "$work/corpus-$t/"
    log="$work/$t.log"
    if ! cargo +nightly fuzz run "$t" "$work/corpus-$t" -- \
        -max_total_time="$secs" -artifact_prefix="$work/artifacts-$t/" -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -40 "$log"
        if [ -z "$(ls -A "$work/artifacts-$t")" ]; then
            echo "FAIL $t: cargo fuzz failed before fuzzing (see above)" >&2
            exit 1
        fi
        kept=/tmp/edgetracker-fuzz-$t-$(date +%s)
        cp -r "$work/artifacts-$t" "$kept"
        echo "FAIL $t: crashing input kept in $kept" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    printf '%-13s %12s executions in %s s, no crash\n' "$t" "$runs" "$secs"
done
