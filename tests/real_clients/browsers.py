#!/usr/bin/python3
"""Real browsers: two WebTorrent peers in headless Chromium move a file through the tracker.

What it proves, once over ws://127.0.0.1 and once over ws://[::1]:

  * webtorrent's own browser bundle (npm `webtorrent`, pinned below) announces to the tracker's
    WebSocket at /announce and gets well-formed replies;
  * a seeder in one Chromium process and a leecher in another (separate processes, profiles
    and origins) find each other only through the tracker: DHT, LSD, PEX, web seeds and STUN
    are off, so the WebRTC offer and answer can only have come through it;
  * the leecher's copy of a random 2 MiB file has the same SHA-256 as the original;
  * the tracker's /stats counted the forwarded offers and answers.

Everything listens on 127.0.0.1 / ::1, every wait is bounded, the processes started here are
stopped by their PIDs, and the temporary directories are removed.

    /usr/bin/python3 tests/real_clients/browsers.py --binary target/debug/edgetracker --bundle PATH
    /usr/bin/python3 tests/real_clients/browsers.py --bundle PATH --hosts 127.0.0.1 \
        --tracker-cmd "npx --no-install wrangler dev --local --ip 127.0.0.1 --port {port} ..."

The second form runs the Worker under `wrangler dev` instead of the native binary (its socket
and swarm Durable Objects simulated locally); its /stats counts no WebTorrent messages (they are
the objects', not the Worker's), so there the transfer alone is the proof.

`--bundle` is `dist/webtorrent.min.js` of the pinned package (tests/run.sh fetches it with
`npm pack`). Prints `ok FAMILY: ...` or `FAIL FAMILY: ...` per run, then `N passed, M failed`.
"""

import argparse
import hashlib
import http.server
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PAYLOAD_SIZE = 2 * 1024 * 1024
SEED_READY_TIMEOUT = 60.0
TRANSFER_TIMEOUT = 120.0
# Headless Chromium gathers loopback ICE candidates only with these (host addresses are
# otherwise hidden behind mDNS names, and loopback is left out).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-first-run",
    "--disable-gpu",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


class TestFailure(Exception):
    pass


def free_port(host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Site:
    """Serves the page, the bundle and the payload from a temporary directory on 127.0.0.1,
    and collects the pages' POSTed reports."""

    def __init__(self, root):
        self.reports = queue.Queue()
        reports = self.reports

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k):
                super().__init__(*a, directory=root, **k)

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                reports.put(json.loads(self.rfile.read(min(length, 1 << 20))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, key, timeout, log):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure(f"no {key!r} report within {timeout:.0f} s")
            try:
                r = self.reports.get(timeout=left)
            except queue.Empty:
                continue
            log.append(r)
            if r.get("error"):
                raise TestFailure(f"{r['role']} page: {r['error']}")
            if r.get(key):
                return r

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def stop(proc, group=False):
    """Stops a process started here (and, for a browser, the helpers in its own group)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if group:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def stats(host, port):
    """The tracker's WebTorrent counts (None where /stats has none: the Worker's)."""
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/stats?format=json"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r).get("webtorrent")


def run(args, host, tracker_port, workdir):
    site_root = os.path.join(workdir, "site")
    os.makedirs(site_root)
    shutil.copy(os.path.join(HERE, "webtorrent", "peer.html"), site_root)
    shutil.copy(args.bundle, os.path.join(site_root, "webtorrent.min.js"))
    payload = os.urandom(PAYLOAD_SIZE)
    with open(os.path.join(site_root, "fixture.bin"), "wb") as f:
        f.write(payload)
    want = hashlib.sha256(payload).hexdigest()
    tracker_url = f"ws://{'[' + host + ']' if ':' in host else host}:{tracker_port}/announce"
    before = stats(host, tracker_port)
    site = Site(site_root)
    browsers, log = [], []

    def browser(role, extra=""):
        profile = os.path.join(workdir, f"profile-{role}")
        url = (
            f"http://127.0.0.1:{site.port}/peer.html?role={role}"
            f"&tracker={urllib.parse.quote(tracker_url)}{extra}"
        )
        cmd = [args.chromium, f"--user-data-dir={profile}", *CHROMIUM_FLAGS, url]
        if os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")
        out = open(os.path.join(workdir, f"{role}.log"), "wb")
        browsers.append((role, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True), out))

    try:
        browser("seed")
        seeded = site.wait_for("ready", SEED_READY_TIMEOUT, log)
        browser("leech", "&magnet=" + urllib.parse.quote(seeded["magnet"]))
        done = site.wait_for("done", TRANSFER_TIMEOUT, log)
        if done["length"] != PAYLOAD_SIZE or done["sha256"] != want:
            raise TestFailure(f"the leecher's copy differs: {done}")
        after = stats(host, tracker_port)
        if before is None or after is None:
            return f"{PAYLOAD_SIZE} bytes, SHA-256 equal"
        offers = after["offers_forwarded"] - before["offers_forwarded"]
        answers = after["answers_forwarded"] - before["answers_forwarded"]
        if offers < 1 or answers < 1:
            raise TestFailure(f"the tracker forwarded {offers} offers and {answers} answers")
        return f"{PAYLOAD_SIZE} bytes, SHA-256 equal; {offers} offers and {answers} answers through the tracker"
    except TestFailure as e:
        for role, _, out in browsers:
            out.flush()
            with open(out.name, "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            print(f"--- {role} browser output (tail):\n{tail}", file=sys.stderr)
        print(f"--- page reports: {log}", file=sys.stderr)
        raise
    finally:
        for _, proc, out in browsers:
            stop(proc, group=True)
            out.close()
        site.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="target/debug/edgetracker")
    p.add_argument("--bundle", required=True, help="webtorrent's dist/webtorrent.min.js")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--tracker-cmd", help="run this instead of --binary; {port} is replaced")
    p.add_argument("--hosts", default="127.0.0.1,::1", help="the tracker addresses to test, by comma")
    p.add_argument("--ready-timeout", type=float, default=15.0)
    args = p.parse_args()

    port = free_port("127.0.0.1")
    env = dict(os.environ, EDGETRACKER__STATE__FILE="")
    workdir = tempfile.mkdtemp(prefix="edgetracker-browsers-")
    tracker_log = open(os.path.join(workdir, "tracker.log"), "wb")
    if args.tracker_cmd is not None and not args.tracker_cmd.strip():
        raise SystemExit("FAIL: --tracker-cmd is empty")
    if args.tracker_cmd:
        argv = shlex.split(args.tracker_cmd.replace("{port}", str(port)))
    else:
        argv = [args.binary, "--listen", "127.0.0.1", "--listen", "::1", "--port", str(port), "--log-level", "warn"]
    # A session of its own: a launcher's children (npx -> wrangler -> workerd) stop with it.
    tracker = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=tracker_log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    passed = failed = 0
    try:
        deadline = time.monotonic() + args.ready_timeout
        while True:
            try:
                stats("127.0.0.1", port)
                break
            except OSError:
                if time.monotonic() > deadline or tracker.poll() is not None:
                    failed += 1
                    raise SystemExit(f"FAIL: the tracker did not answer /stats within {args.ready_timeout:.0f} s")
                time.sleep(0.1)
        for host in args.hosts.split(","):
            run_dir = tempfile.mkdtemp(dir=workdir)
            try:
                print(f"ok {host}: {run(args, host, port, run_dir)}", flush=True)
                passed += 1
            except TestFailure as e:
                print(f"FAIL {host}: {e}", flush=True)
                failed += 1
    finally:
        stop(tracker, group=True)
        tracker_log.close()
        if failed:
            with open(tracker_log.name, "rb") as f:
                print("--- tracker output (tail):\n" + f.read()[-3000:].decode(errors="replace"), file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
