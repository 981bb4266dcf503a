#!/usr/bin/env bash
# Side-by-side UDP benchmark: edgetracker against aquatic_udp and opentracker, in one run.
#
#   native/bench/udp_vs_baselines.sh [ROUNDS]        # default 3 rounds; ONLY="udp" or "mem" for one part
#
# Drives the team's tracker bench harness (../shared/bench beside the checkout, or $HARNESS):
# aquatic_udp_load_test 0.9.0 against each tracker, the tracker pinned to core 0 and the load to
# core 1, rounds interleaved (round r runs every tracker once) so that the shared machine's noise
# hits all three alike; then the memory test (1 M peers over 100 k torrents). Prints each round's
# ratios (edgetracker / baseline) and their median, which is what the README reports.
#
# Installs what is missing from the registries (apt: opentracker, wrk; crates.io:
# aquatic_udp_load_test, aquatic_udp) via the harness's install.sh. Every tracker listens on
# 127.0.0.1 only and is stopped by its PID after each run. Takes about 3 minutes per round plus
# about 2 minutes the first time (opentracker's 1 M-hash whitelist).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
ONLY=${ONLY:-"udp mem"}
HARNESS=${HARNESS:-$(cd ../shared/bench 2>/dev/null && pwd)}
[ -f "$HARNESS/udp_bench.sh" ] || { echo "bench harness not found; set HARNESS=/path/to/shared/bench" >&2; exit 2; }
source "$HARNESS/lib.sh"

command -v aquatic_udp_load_test >/dev/null && command -v aquatic_udp >/dev/null && command -v opentracker >/dev/null \
    || bash "$HARNESS/install.sh"
cargo build --release --bin edgetracker
BIN=$PWD/target/release/edgetracker

ours() { # ours PORT: a start command for the harness (fresh tracker per run, pinned to core 0)
    echo "taskset -c $TRACKER_CPU $BIN --listen 127.0.0.1 --port $1 --log-level warn >/dev/null 2>&1 & echo \$! > \$PIDFILE; sleep 0.5"
}
log_file="$BENCH_DIR/results/edgetracker-vs-baselines-$(date +%Y%m%d-%H%M%S).log"
mkdir -p "$(dirname "$log_file")"

for ((r = 1; r <= ROUNDS; r++)); do
    if [[ " $ONLY " == *" udp "* ]]; then
        "$HARNESS/udp_bench.sh" --runs 1 --label udp-edgetracker --addr 127.0.0.1:34000 --start "$(ours 34000)"
        "$HARNESS/udp_bench.sh" --runs 1 --label udp-aquatic --addr 127.0.0.1:33000 --start "$HARNESS/start_aquatic_udp.sh 127.0.0.1:33000"
        "$HARNESS/udp_bench.sh" --runs 1 --label udp-opentracker --addr 127.0.0.1:36969 --start "$HARNESS/start_opentracker.sh 127.0.0.1:36969 1000000"
    fi
    if [[ " $ONLY " == *" mem "* ]]; then
        "$HARNESS/mem_bench.sh" --runs 1 --label mem-edgetracker --addr 127.0.0.1:34000 --start "$(ours 34000)"
        "$HARNESS/mem_bench.sh" --runs 1 --label mem-aquatic --addr 127.0.0.1:33000 --start "$HARNESS/start_aquatic_udp.sh 127.0.0.1:33000"
        "$HARNESS/mem_bench.sh" --runs 1 --label mem-opentracker --addr 127.0.0.1:36969 --start "$HARNESS/start_opentracker.sh 127.0.0.1:36969 100000"
    fi
done 2>&1 | tee "$log_file" | grep --line-buffered -E '^(RESULT|run )'

python3 - "$log_file" <<'PY'
import re, statistics, sys
rounds = {}   # label -> list of (value, noise line) in round order
for line in open(sys.argv[1]):
    m = re.match(r"RESULT (udp|mem) (\S+) (responses_per_s|bytes_per_peer) (\S+) (\S+) (\S+)", line)
    if m:
        rounds.setdefault(m.group(2), []).append(float(m.group(5)))
def ratios(kind, base, higher_is_better):
    ours, theirs = rounds.get(f"{kind}-edgetracker", []), rounds.get(f"{kind}-{base}", [])
    rs = [o / t if higher_is_better else t / o for o, t in zip(ours, theirs) if o and t]
    return rs
print()
for kind, unit, better in (("udp", "responses/s", True), ("mem", "bytes/peer", False)):
    if f"{kind}-edgetracker" not in rounds:
        continue
    print(f"{kind}: {unit} per round")
    for label in ("edgetracker", "aquatic", "opentracker"):
        vals = rounds.get(f"{kind}-{label}", [])
        print(f"  {label:12s} " + " ".join(f"{v:>10,.1f}" for v in vals) + (f"   median {statistics.median(vals):,.1f}" if vals else ""))
    for base in ("aquatic", "opentracker"):
        rs = ratios(kind, base, better)
        if rs:
            what = "edgetracker / " + base if better else base + " / edgetracker (higher = edgetracker leaner)"
            print(f"  ratio {what}: " + " ".join(f"{x:.2f}" for x in rs) + f"   median {statistics.median(rs):.2f}")
print(f"\nfull log: {sys.argv[1]}")
PY
