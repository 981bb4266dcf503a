# shellcheck shell=bash
# Helpers shared by the benchmark scripts that run one tracker at a time (baselines.sh,
# ws_baselines.sh). Source it after setting up: it makes the work directory `$work` (removed at
# exit, with the running tracker stopped) and keeps the running tracker's PID in `$work/pid`.

work=$(mktemp -d)
chmod 755 "$work"
ticks=$(getconf CLK_TCK)

# Stops the tracker started last (by its PID, recorded in $work/pid), if any.
stop() {
    local pid
    pid=$(cat "$work/pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    : >"$work/pid"
}
trap 'stop; rm -rf "$work"' EXIT

# The running tracker's CPU seconds so far, and its resident memory in KiB.
cpu_secs() { awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$(cat "$work/pid")/stat"; }
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$(cat "$work/pid")/status"; }

# The median of the numbers on standard input (mean of the middle two for an even count).
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
