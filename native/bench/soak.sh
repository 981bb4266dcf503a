#!/usr/bin/env bash
# Soak: the release binary under full UDP and HTTP load with churn, recording memory and errors
# every minute. Memory should stay flat once the swarms have filled, and errors at zero.
#
#   native/bench/soak.sh [MINUTES]          # default 10
#
# Everything comes from the checkout and the registries: builds the release binary, installs
# aquatic's load testers 0.9.0 from crates.io if missing, and runs all on 127.0.0.1 only, bounded
# by `timeout`, stopping only what it started (by PID). Churn: the tracker runs with a peer
# timeout of 120 s and a sweep every 10 s, so the load testers' peers keep joining, expiring and
# coming back; their announces carry started and completed events. The state file
# lives in a temporary directory and is saved every minute, under load.
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${1:-10}
AQUATIC_VERSION=0.9.0
for tool in aquatic_udp_load_test aquatic_http_load_test; do
    command -v "$tool" >/dev/null || cargo install --locked --version "$AQUATIC_VERSION" "$tool"
done
cargo build --release -p edgetracker-native
BIN=$PWD/target/release/edgetracker

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/tracker.toml" <<EOF
[network]
listen = ["127.0.0.1"]
port = $port
# All the load comes from loopback, where a real tracker's clients are many addresses: the
# per-address caps, which would refuse most of it, are lifted; the others stay as shipped.
http_max_connections_per_address = 100000
http_max_connections_per_network = 100000
[webtorrent]
max_connections_per_address = 100000
max_connections_per_network = 100000
offers_per_minute = 0
[tracker]
new_torrents_per_minute = 0
rate_limit_per_minute = 0
announce_interval = 60
min_interval = 30
peer_timeout = 120
cleanup_interval = 10
max_peers_per_address = 1000000
[state]
file = "$work/tracker.state"
save_interval = 60
EOF
"$BIN" --config "$work/tracker.toml" --log-level warn >"$work/tracker.log" 2>&1 &
tracker=$!
pids+=("$tracker")
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/stats?format=json" >/dev/null && break
    sleep 0.2
done

seconds=$((MINUTES * 60))
aquatic_udp_load_test -p >"$work/udp.toml"
sed -i -e "s|^server_address = .*|server_address = \"127.0.0.1:$port\"|" \
    -e "s|^workers = .*|workers = 1|" -e "s|^duration = .*|duration = $seconds|" "$work/udp.toml"
aquatic_http_load_test -p >"$work/http.toml"
sed -i -e "s|^server_address = .*|server_address = \"127.0.0.1:$port\"|" \
    -e "s|^enable_tls = .*|enable_tls = false|" -e "s|^duration = .*|duration = $seconds|" "$work/http.toml"
timeout $((seconds + 30)) aquatic_udp_load_test -c "$work/udp.toml" >"$work/udp.out" 2>&1 &
pids+=("$!")
timeout $((seconds + 30)) aquatic_http_load_test -c "$work/http.toml" >"$work/http.out" 2>&1 &
pids+=("$!")

stat() {
    curl -sf "http://127.0.0.1:$port/stats?format=json" | python3 -c '
import json, sys
s = json.load(sys.stdin)
req = s["requests"]
n = sum(c["requests"] for p in req.values() for f in p.values() for c in f.values())
errors = sum(c["errors"] for p in req.values() for f in p.values() for c in f.values())
print(s["torrents"], s["peers"], n, errors, s["store_errors"], s["udp_restarts"])'
}
printf '%6s %10s %10s %10s %12s %10s %8s\n' minute rss_kb torrents peers requests errors store_err
for ((m = 1; m <= MINUTES; m++)); do
    sleep 60
    kill -0 "$tracker" || { echo "the tracker died"; tail -20 "$work/tracker.log"; exit 1; }
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$tracker/status")
    read -r torrents peers requests errors store_errors restarts < <(stat)
    printf '%6d %10s %10s %10s %12s %10s %8s\n' "$m" "$rss" "$torrents" "$peers" "$requests" "$errors" "$store_errors"
done
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$tracker/status")
echo "peak RSS ${hwm} kB; UDP thread restarts: $restarts"
echo "load testers' last report:"
grep -E "Requests out|Responses in" "$work/udp.out" | tail -2 | sed 's/^/  udp  /'
grep -E "Requests out|Responses in" "$work/http.out" | tail -2 | sed 's/^/  http /'
grep -iE "error|warn" "$work/tracker.log" | head -5 | sed 's/^/  tracker log: /' || true
