#!/usr/bin/env bash
# The one test command: every test of the project, on a fresh machine.
#
#   tests/run.sh
#
# Installs what it needs first, skipping what is already there: the wasm32 target (the core
# must build for the Worker) and Debian's python3-libtorrent (the real-client test).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "prerequisites"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
if ! /usr/bin/python3 -c 'import libtorrent' 2>/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-libtorrent
fi

step "core builds for wasm32 (the Worker's target)"
cargo check -p edgetracker --target wasm32-unknown-unknown

step "unit, property and integration tests (real sockets on 127.0.0.1 and ::1)"
cargo test --workspace

step "real BitTorrent clients move a file through the tracker (HTTP and UDP)"
cargo build --bin edgetracker
/usr/bin/python3 tests/real_clients/transfer.py --binary target/debug/edgetracker --protocol both
