#!/usr/bin/env bash
# The one test command: every test of the project, on a fresh machine.
#
#   tests/run.sh
#
# Installs what it needs first, skipping what is already there: the wasm32 target, Debian's
# python3-libtorrent (real clients) and chromium (stats page screenshot, WebTorrent browsers), wasm-bindgen-cli (the version Cargo.lock pins), wasm-pack and
# worker-build from crates.io, the npm packages of package-lock.json (Miniflare, wrangler,
# Node 22 for wrangler, esbuild and wasm-opt for worker-build), and webtorrent's browser bundle
# (npm pack). Nothing is fetched from anywhere
# else: worker-build and wasm-pack are pointed at these tools instead of downloading their own.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
has_version() { "$1" --version 2>/dev/null | grep -Eqx "($1 )?$2"; }  # worker-build prints the bare version

WORKER_BUILD_VERSION=0.8.7
WASM_PACK_VERSION=0.15.1
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)

step "prerequisites"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
# Debian packages: real BitTorrent clients, and a browser for the stats page's screenshot test.
missing=()
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || missing+=(python3-libtorrent)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# Without it the screenshot test would skip itself; here a missing browser is a failure.
export EDGETRACKER_REQUIRE_CHROMIUM=1
# One target dir for the three tools: they share most of their dependencies.
tools_target=${CARGO_TARGET_DIR_TOOLS:-${TMPDIR:-/tmp}/edgetracker-tools-target}
# wasm-bindgen-cli must equal the locked wasm-bindgen; its --locked build fails, so without it.
has_version wasm-bindgen "$WASM_BINDGEN_VERSION" || cargo install --target-dir "$tools_target" wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
has_version worker-build "$WORKER_BUILD_VERSION" || cargo install --target-dir "$tools_target" worker-build --version "$WORKER_BUILD_VERSION"
has_version wasm-pack "$WASM_PACK_VERSION" || cargo install --target-dir "$tools_target" wasm-pack --version "$WASM_PACK_VERSION"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
fi
export PATH="$PWD/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN=wasm-bindgen ESBUILD_BIN=esbuild WASM_OPT_BIN=wasm-opt
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

# What the tests must not create or change in the checkout (compared at the end).
checkout_leftovers() { ls -la --time-style=full-iso edgetracker.state* .wrangler tests/edge/.wrangler 2>/dev/null || true; }
leftovers_before=$(checkout_leftovers)

step "unit, property and integration tests (real sockets on 127.0.0.1 and ::1)"
cargo test --workspace

step "the core's tests, vectors included, as wasm32 in Node (wasm-pack test --node)"
wasm-pack test --node

step "real BitTorrent clients move a file through the native tracker (HTTP and UDP)"
cargo build -p edgetracker-native
/usr/bin/python3 tests/real_clients/transfer.py --binary target/debug/edgetracker --protocol both

step "two WebTorrent browsers (headless Chromium) move a file through the native tracker over WebRTC"
# webtorrent's own browser bundle, from the npm registry: the package's tarball only (`npm pack`,
# no install scripts, none of its Node dependencies), pinned by version and checksum.
WEBTORRENT_VERSION=3.0.21
WEBTORRENT_INTEGRITY=sha512-PFgLphma0dsUWmbWrZ016Cja+j+3D3DXuhk09A5u9qVAzH1T4Vj1VZd8j+zb8sDwPv7NA7+qgPtDEN4iFd6wdw==
webtorrent_dir=${TMPDIR:-/tmp}/edgetracker-tools-npm/webtorrent-$WEBTORRENT_VERSION
if [ ! -f "$webtorrent_dir/package/dist/webtorrent.min.js" ]; then
    mkdir -p "$webtorrent_dir"
    (cd "$webtorrent_dir" && npm pack "webtorrent@$WEBTORRENT_VERSION" --json --silent >pack.json)
    grep -q "\"integrity\": \"$WEBTORRENT_INTEGRITY\"" "$webtorrent_dir/pack.json" ||
        { echo "webtorrent $WEBTORRENT_VERSION: unexpected checksum" >&2; exit 1; }
    tar -xzf "$webtorrent_dir/webtorrent-$WEBTORRENT_VERSION.tgz" -C "$webtorrent_dir"
fi
/usr/bin/python3 tests/real_clients/browsers.py --binary target/debug/edgetracker \
    --bundle "$webtorrent_dir/package/dist/webtorrent.min.js"

step "the Worker: build it, then drive it in Miniflare (KV and SQLite-backed Durable Objects in memory)"
worker-build --profile worker
printf 'worker bundle: index_bg.wasm %s bytes, %s gzipped\n' "$(wc -c <build/index_bg.wasm)" "$(gzip -9 -c build/index_bg.wasm | wc -c)"
npm test

# `wrangler dev` on wrangler.toml itself, with the Worker built already (no [build]), the config
# copied to a temporary directory, because wrangler keeps its .wrangler/ work files beside the
# config: nothing is written into the checkout. Prints the command for the tests' --tracker-cmd.
wrangler_dev() {
    sed -e "s|^main = .*|main = \"$PWD/build/worker/shim.mjs\"|" -e '/^\[build\]$/,/^command = /d' \
        wrangler.toml >"$1/wrangler.toml"
    echo "npx --no-install wrangler dev --config $1/wrangler.toml --local --ip 127.0.0.1 --port {port} --persist-to $1/data ${2:-}"
}

for store in durable-object kv; do
    step "real BitTorrent clients move a file through the Worker under wrangler dev (HTTP, SWARM_STORE=$store)"
    state=$(mktemp -d)
    # (Assigned first: set -e stops at a failing assignment, not at a failing argument.)
    dev=$(wrangler_dev "$state" "--var SWARM_STORE:$store")
    /usr/bin/python3 tests/real_clients/transfer.py --protocol http --tracker-cmd "$dev"
    rm -rf "$state"
done

step "two WebTorrent browsers (headless Chromium) move a file through the Worker under wrangler dev"
state=$(mktemp -d)
dev=$(wrangler_dev "$state")
/usr/bin/python3 tests/real_clients/browsers.py --bundle "$webtorrent_dir/package/dist/webtorrent.min.js" \
    --hosts 127.0.0.1 --ready-timeout 60 --tracker-cmd "$dev"
rm -rf "$state"

step "the tests left nothing in the checkout"
# A state file there would be restored by the user's next `cargo run`; .wrangler/ is wrangler's.
if [ "$(checkout_leftovers)" != "$leftovers_before" ]; then
    printf 'the tests wrote into the checkout:\n%s\n' "$(checkout_leftovers)"
    exit 1
fi
echo "none"
