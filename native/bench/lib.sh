# shellcheck shell=bash
# Helpers shared by the benchmark scripts that run one tracker at a time (baselines.sh,
# http_baselines.sh, ws_baselines.sh). Source it after setting up: it makes the work directory `$work` (removed at
# exit, with the running tracker stopped) and keeps the running tracker's PID in `$work/pid`.

# shellcheck source=loopback.sh
source "$(dirname "${BASH_SOURCE[0]}")/loopback.sh"

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
# The same split: "user system" CPU seconds.
cpu_split() { awk -v t="$ticks" '{print $14 / t, $15 / t}' "/proc/$(cat "$work/pid")/stat"; }
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$(cat "$work/pid")/status"; }

# The median of the numbers on standard input (mean of the middle two for an even count).
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Interleaved rounds, for scripts that define `measure KIND TRACKER` (printing one line of
# numbers): round r runs every kind against every tracker, the trackers in an order rotated
# each round so that no tracker always meets a warmer or cooler machine. Each round's figures
# are printed and kept in `results[KIND,TRACKER]`, separated by ";".
declare -A results
run_rounds() {
    local rounds=$1 trackers=$2 kinds=$3 r t kind line v
    for r in $(seq 1 "$rounds"); do
        set -- $trackers
        for _ in $(seq 2 "$r"); do set -- "${@:2}" "$1"; done
        for kind in $kinds; do
            line="round $r $kind:"
            for t in "$@"; do
                v=$(measure "$kind" "$t")
                results[$kind,$t]+="$v;"
                line+=" $t $v |"
            done
            echo "$line"
        done
    done
}

# summarize KIND FIELD WHAT [lower]: every tracker (of `$trackers`)'s figure FIELD of KIND per round and its
# median, then per round the ratio edgetracker / baseline (baseline / edgetracker with `lower`,
# for figures where less is better: > 1 is always edgetracker ahead) and the ratios' median.
summarize() {
    local kind=$1 field=$2 what=$3 lower=${4:-} ours vals ratios t
    echo "$kind: $what"
    ours=$(echo "${results[$kind,edgetracker]}" | tr ';' '\n' | grep . | cut -d' ' -f"$field")
    for t in $trackers; do
        vals=$(echo "${results[$kind,$t]}" | tr ';' '\n' | grep . | cut -d' ' -f"$field")
        printf '  %-12s %s   median %s\n' "$t" "$(echo $vals)" "$(echo $vals | median)"
        [ "$t" = edgetracker ] && continue
        ratios=$(paste <(echo "$ours") <(echo "$vals") | awk -v lower="$lower" \
            '{ printf "%.2f ", lower ? $2 / $1 : $1 / $2 }')
        printf '    ratio edgetracker / %s, per round: %s  median %s\n' "$t" "$ratios" "$(echo $ratios | median)"
    done
}
