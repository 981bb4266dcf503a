#!/usr/bin/python3
"""Real-client end-to-end test: two libtorrent peers meet only through edgetracker.

What it proves, for each tracker protocol (HTTP announce and UDP / BEP 15):

  * the tracker binary starts, listens on 127.0.0.1 and answers GET /stats;
  * a real BitTorrent client (libtorrent-rasterbar, Debian's python3-libtorrent)
    can announce to it and get a well-formed reply;
  * a second client learns the first one's address from the tracker's peer list
    (the two are separate libtorrent sessions in this one process, each with
    its own peer id, listen port and storage directory)
    -- the tracker is the *only* way the two can find each other: DHT, local
    service discovery, UPnP/NAT-PMP, peer exchange and ut_metadata are all off,
    and no peer address is ever handed to libtorrent directly;
  * the leecher downloads a random 4 MiB file from the seeder and its copy has
    the same SHA-256 as the original;
  * GET /stats still returns valid JSON afterwards (schema not checked).

Everything listens on 127.0.0.1 only, every wait is bounded in time, the tracker
child is stopped by its own PID (SIGTERM, then SIGKILL after 5 s) and all
temporary directories are removed.

Usage (libtorrent lives in Debian's interpreter, not in a pyenv one):

    /usr/bin/python3 tests/real_clients/transfer.py --binary target/release/edgetracker
    /usr/bin/python3 tests/real_clients/transfer.py --tracker-cmd "python3 t.py --port {port}"

Output: one `ok PROTO: ...` / `FAIL PROTO: ...` line per protocol, then a final
`N passed, M failed` line. Exit status 0 only if every protocol passed.
"""

import argparse
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

try:
    import libtorrent as lt
except ImportError:  # pragma: no cover - environment problem, reported clearly
    lt = None

PAYLOAD_SIZE = 4 * 1024 * 1024
PIECE_SIZE = 64 * 1024
PAYLOAD_NAME = "payload.bin"
TRACKER_READY_TIMEOUT = 15.0
TRACKER_STOP_GRACE = 5.0
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TestFailure(Exception):
    """A protocol run failed; the message is the one-line reason."""


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# Ports and the tracker child process
# --------------------------------------------------------------------------

def free_port(exclude=()):
    """A port on 127.0.0.1 that is free for both TCP and UDP right now.

    The tracker serves HTTP and UDP on one port (and a libtorrent session
    listens for TCP and uTP on one port), so the port must be free for both;
    the kernel hands out a TCP port and we check UDP can bind it too. There is
    a small window before the real owner binds it; `exclude` covers ports
    already handed out whose owner may not have bound them yet.
    """
    for _ in range(100):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            if port in exclude:
                continue
            udp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()
    raise TestFailure("could not find a port free for both TCP and UDP on 127.0.0.1")


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


class Tracker:
    """The tracker under test, run as a child process on 127.0.0.1:port."""

    def __init__(self, argv, port, log_path):
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.proc = None

    def start(self):
        # stdout and stderr both go to a file (never a pipe that could fill up
        # and block the tracker); we show its tail on failure.
        with open(self.log_path, "wb") as out:
            # A session of its own: a tracker command may be a launcher with children
            # (npx -> wrangler -> workerd), and stop() must end all of them, and only them.
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log(f"  tracker pid {self.proc.pid}: {shlex.join(self.argv)}")

    def stats_url(self):
        return f"http://127.0.0.1:{self.port}/stats"

    def wait_ready(self, timeout=TRACKER_READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, _ = http_get(self.stats_url(), timeout=1.0)
                if status == 200:
                    return
                last_err = f"HTTP {status}"
            except (OSError, urllib.error.URLError) as e:
                last_err = e
            time.sleep(0.1)
        raise TestFailure(f"tracker did not answer GET /stats within {timeout:.0f} s (last: {last_err})")

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise TestFailure(f"tracker exited early with status {self.proc.returncode}")

    def stats(self):
        """GET /stats and parse it; only asserts it is valid JSON."""
        try:
            status, body = http_get(self.stats_url(), timeout=5.0)
        except (OSError, urllib.error.URLError) as e:
            raise TestFailure(f"GET /stats failed: {e}")
        if status != 200:
            raise TestFailure(f"GET /stats returned HTTP {status}")
        try:
            return json.loads(body)
        except ValueError as e:
            raise TestFailure(f"GET /stats is not valid JSON ({e}): {body[:200]!r}")

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        """Stop only what we started (our child's process group): SIGTERM, then SIGKILL."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=TRACKER_STOP_GRACE)
        except subprocess.TimeoutExpired:
            log(f"  tracker pid {self.proc.pid} ignored SIGTERM for {TRACKER_STOP_GRACE:.0f} s; SIGKILL")
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=TRACKER_STOP_GRACE)
        # Launchers may exit before their children: give the rest of the group a moment.
        time.sleep(0.5)
        self._signal_group(signal.SIGKILL)
        log(f"  tracker pid {self.proc.pid} stopped, exit status {self.proc.returncode}")

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"(no tracker output: {e})"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(tracker printed nothing)"


# --------------------------------------------------------------------------
# libtorrent side
# --------------------------------------------------------------------------

def make_payload(directory):
    path = os.path.join(directory, PAYLOAD_NAME)
    data = os.urandom(PAYLOAD_SIZE)
    with open(path, "wb") as f:
        f.write(data)
    return path, hashlib.sha256(data).hexdigest()


def make_torrent(payload_path, announce_url, hybrid=False):
    """A single-file torrent with one tracker and 64 KiB pieces.

    v1-only by default: one info-hash, so one announce per client. A hybrid
    v1+v2 torrent (what libtorrent 2.x, qBittorrent 4.4+ etc. create by
    default) makes libtorrent announce once per info-hash: the SHA-1 one and
    the SHA-256 one truncated to 20 bytes.
    """
    fs = lt.file_storage()
    lt.add_files(fs, payload_path)
    flags = 0 if hybrid else lt.create_torrent.v1_only
    ct = lt.create_torrent(fs, PIECE_SIZE, flags=flags)
    ct.add_tracker(announce_url)
    ct.set_creator("edgetracker real-client test")
    lt.set_piece_hashes(ct, os.path.dirname(payload_path))
    return lt.torrent_info(lt.bdecode(lt.bencode(ct.generate())))


ALERT_MASK = (
    lt.alert.category_t.error_notification
    | lt.alert.category_t.tracker_notification
    | lt.alert.category_t.status_notification
    | lt.alert.category_t.peer_notification
    | lt.alert.category_t.connect_notification
    | lt.alert.category_t.storage_notification
) if lt else 0


def make_session(listen_port):
    settings = {
        "listen_interfaces": f"127.0.0.1:{listen_port}",
        # Peer discovery other than the tracker: all off.
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # Plain TCP between the peers: deterministic, and not what is tested here.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # Both peers are 127.0.0.1, told apart only by port.
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "min_announce_interval": 1,
        # Fail fast so a broken tracker shows up as an error alert, not a hang.
        "tracker_completion_timeout": 10,
        "tracker_receive_timeout": 5,
        "stop_tracker_timeout": 1,
        "tracker_backoff": 20,
        "alert_mask": int(ALERT_MASK),
    }
    # flags=0: no session_flags_t.add_default_plugins, i.e. no ut_pex (peer
    # exchange), ut_metadata or smart_ban extensions; and no start_default_features
    # (which would start DHT/LSD/UPnP/NAT-PMP regardless of the settings above).
    return lt.session(settings, 0)


def add_params(ti, save_path, seed):
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = save_path
    # Belt and braces on top of the session settings: per-torrent discovery off.
    flags = lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd | lt.torrent_flags.disable_pex
    if seed:
        # The file is known to be complete: skip the full recheck, pieces are
        # verified lazily as they are uploaded.
        flags |= lt.torrent_flags.seed_mode
    atp.flags = (atp.flags | flags) & ~lt.torrent_flags.paused & ~lt.torrent_flags.auto_managed
    return atp


class AlertLog:
    """Drains alerts from the sessions, keeping a timestamped transcript and,
    per session, what the tracker said (for a one-line failure reason)."""

    def __init__(self, t0):
        self.t0 = t0
        self.lines = []
        self.replies = {}        # session name -> [num_peers of each tracker reply]
        self.tracker_error = {}  # session name -> last tracker error/warning

    def pump(self, name, ses):
        # Alert objects are only valid until the next pop_alerts() on the same
        # session: use them right away, keep only strings and numbers.
        got = ses.pop_alerts()
        for a in got:
            self.lines.append(
                f"{time.monotonic() - self.t0:6.2f}s {name:7s} {type(a).__name__}: {a.message()}"
            )
            if isinstance(a, lt.tracker_reply_alert):
                self.replies.setdefault(name, []).append(a.num_peers)
            elif isinstance(a, (lt.tracker_error_alert, lt.tracker_warning_alert)):
                self.tracker_error[name] = a.message()
        return got

    def summary(self, name):
        return (f"{name}'s tracker replies had peer counts {self.replies.get(name, [])}, "
                f"last tracker error: {self.tracker_error.get(name, 'none')}")


def fmt_error(err):
    """libtorrent's {'category': ..., 'value': ...} error dict, readable."""
    if not err or not err.get("value"):
        return "none"
    value, category = err["value"], err.get("category")
    if category == "system":
        return f"{os.strerror(value)} (errno {value})"
    return f"{category} error {value}"


def describe(name, handle):
    """One-paragraph status of a torrent, for diagnostics."""
    try:
        st = handle.status()
    except Exception as e:  # handle may already be invalid
        return f"  {name}: status unavailable ({e})"
    out = [
        f"  {name}: state={st.state} progress={st.progress:.3f} peers={st.num_peers} "
        f"seeds={st.num_seeds} downloaded={st.total_payload_download} "
        f"uploaded={st.total_payload_upload} current_tracker={st.current_tracker!r} "
        f"error={st.errc.message() if st.errc.value() else 'none'}"
    ]
    try:
        # libtorrent 2.0: one entry per tracker URL, one endpoint per local
        # listen socket, and per endpoint one record per info-hash (v1, v2).
        for tr in handle.trackers():
            for ep in tr.get("endpoints", []):
                v1 = (ep.get("info_hashes") or [{}])[0]
                out.append(
                    f"    tracker {tr['url']} from {ep.get('local_address')}: "
                    f"fails={v1.get('fails')} last_error={fmt_error(v1.get('last_error'))} "
                    f"message={v1.get('message')!r} updating={v1.get('updating')} "
                    f"start_sent={v1.get('start_sent')}"
                )
    except Exception as e:
        out.append(f"    (tracker list unavailable: {e})")
    try:
        for p in handle.get_peer_info():
            out.append(f"    peer {p.ip} progress={p.progress:.3f} client={p.client!r}")
    except Exception:
        pass
    return "\n".join(out)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# One protocol run
# --------------------------------------------------------------------------

def run_protocol(proto, tracker_argv_for, timeout, verbose, hybrid):
    """Returns the success message; raises TestFailure with the reason."""
    with tempfile.TemporaryDirectory(prefix=f"edgetracker-e2e-{proto}-") as tmp:
        port = free_port()
        tracker = Tracker(tracker_argv_for(port, tmp), port, os.path.join(tmp, "tracker.log"))
        seeder = leecher = None
        seed_h = leech_h = None
        alerts = AlertLog(time.monotonic())
        try:
            tracker.start()
            tracker.wait_ready()

            seed_dir = os.path.join(tmp, "seeder")
            leech_dir = os.path.join(tmp, "leecher")
            os.mkdir(seed_dir)
            os.mkdir(leech_dir)
            payload, want_sha = make_payload(seed_dir)
            url = f"{proto}://127.0.0.1:{port}/announce"
            ti = make_torrent(payload, url, hybrid)
            ih = ti.info_hashes()
            log(f"  torrent v1 {ih.v1}" + (f" v2 {ih.v2}" if ih.has_v2() else "") + f" -> {url}")

            # Two sessions in one process. Note that libtorrent caches UDP
            # tracker connection ids process-wide, per tracker address: the
            # leecher reuses the seeder's BEP 15 connection id from another
            # source port (fine for a tracker that binds ids to the client IP).
            # Listen ports are picked by us rather than ":0", so that they are
            # known up front. The session binds asynchronously, hence `exclude`.
            seed_port = free_port(exclude={port})
            leech_port = free_port(exclude={port, seed_port})
            seeder = make_session(seed_port)
            leecher = make_session(leech_port)
            log(f"  seeder listens on 127.0.0.1:{seed_port}, leecher on 127.0.0.1:{leech_port}")

            deadline = time.monotonic() + timeout
            seed_h = seeder.add_torrent(add_params(ti, seed_dir, seed=True))

            # Seeder first: once the tracker has registered it, the leecher's
            # very first announce must already return the seeder's address.
            # (No fail-fast on a tracker error: libtorrent retries by itself,
            # and the error ends up in the failure reason if it persists.)
            while not alerts.replies.get("seeder"):
                if time.monotonic() > deadline:
                    raise TestFailure(f"seeder got no tracker reply within {timeout:.0f} s; "
                                      + alerts.summary("seeder"))
                tracker.check_alive()
                alerts.pump("seeder", seeder)
                time.sleep(0.05)
            log(f"  seeder announced ({time.monotonic() - alerts.t0:.1f} s)")

            leech_h = leecher.add_torrent(add_params(ti, leech_dir, seed=False))
            while True:
                if time.monotonic() > deadline:
                    raise TestFailure(f"leecher did not finish within {timeout:.0f} s; "
                                      + alerts.summary("leecher"))
                tracker.check_alive()
                alerts.pump("seeder", seeder)
                alerts.pump("leecher", leecher)
                if leech_h.status().is_seeding:
                    break
                time.sleep(0.1)
            log(f"  leecher finished ({time.monotonic() - alerts.t0:.1f} s)")

            # Ask libtorrent to flush the leecher's file before we read it (it
            # answers with cache_flushed_alert). With libtorrent 2.0's mmap
            # storage the data is visible anyway; this is belt and braces.
            leech_h.flush_cache()
            flush_deadline = time.monotonic() + 10
            flushed = False
            while not flushed and time.monotonic() < flush_deadline:
                for a in alerts.pump("leecher", leecher):
                    if isinstance(a, lt.cache_flushed_alert):
                        flushed = True
                time.sleep(0.05)

            got_path = os.path.join(leech_dir, PAYLOAD_NAME)
            size = os.path.getsize(got_path)
            got_sha = sha256_file(got_path)
            if size != PAYLOAD_SIZE or got_sha != want_sha:
                raise TestFailure(
                    f"leecher got {size} bytes, sha256 {got_sha} != {want_sha}"
                )

            stats = tracker.stats()
            log(f"  GET /stats: {json.dumps(stats, sort_keys=True)[:2000]}")
            if verbose:
                log("\n".join("    " + line for line in alerts.lines))
            return f"leecher got {size} bytes, sha256 matches"
        except TestFailure:
            diagnostics(seed_h, leech_h, seeder, leecher, alerts, tracker)
            raise
        except Exception as e:
            diagnostics(seed_h, leech_h, seeder, leecher, alerts, tracker)
            raise TestFailure(f"unexpected {type(e).__name__}: {e}")
        finally:
            # Sessions go first (dropping the last reference destroys them), so
            # their 'stopped' announces can reach the tracker, bounded by
            # stop_tracker_timeout. (Observed with libtorrent 2.0.8: HTTP
            # 'stopped' announces are sent at teardown, UDP ones are not.)
            # Then the tracker; the temp dir goes when the with-block exits.
            seed_h = leech_h = None
            seeder = leecher = None
            tracker.stop()
            if verbose:
                log("  tracker output (tail):")
                log("\n".join("    " + line for line in tracker.log_tail(60).splitlines()))


def diagnostics(seed_h, leech_h, seeder, leecher, alerts, tracker):
    log("  --- diagnostics ---")
    for name, ses in (("seeder", seeder), ("leecher", leecher)):
        if ses is not None:
            alerts.pump(name, ses)
    for name, h in (("seeder", seed_h), ("leecher", leech_h)):
        log(describe(name, h) if h is not None else f"  {name}: not added")
    log("  alerts (last 80):")
    for line in alerts.lines[-80:]:
        log("    " + line)
    if tracker.proc is not None and tracker.proc.poll() is not None:
        log(f"  tracker exit status: {tracker.proc.returncode}")
    log("  tracker output (tail):")
    for line in tracker.log_tail().splitlines():
        log("    " + line)
    log("  --- end diagnostics ---")


# --------------------------------------------------------------------------

def default_binary():
    for profile in ("release", "debug"):
        path = os.path.join(REPO_ROOT, "target", profile, "edgetracker")
        if os.access(path, os.X_OK):
            return path
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--binary", help="tracker binary, run as BINARY --listen 127.0.0.1 --port P "
                     "(default: target/release/edgetracker, else target/debug/edgetracker)")
    who.add_argument("--tracker-cmd", help="alternative tracker command line; {port} is replaced")
    ap.add_argument("--protocol", choices=("http", "udp", "both"), default="both")
    ap.add_argument("--timeout", type=float, default=90.0,
                    help="seconds allowed per protocol for announce + transfer (default 90)")
    ap.add_argument("--hybrid", action="store_true",
                    help="make a hybrid v1+v2 torrent (two info-hashes) instead of v1-only")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the alert transcript on success too")
    args = ap.parse_args()

    protocols = ("http", "udp") if args.protocol == "both" else (args.protocol,)

    setup_error = None
    if lt is None:
        setup_error = (f"libtorrent is not importable from {sys.executable}; install Debian's "
                       "python3-libtorrent and run this with /usr/bin/python3")
    if args.tracker_cmd:
        def tracker_argv_for(port, _tmp):
            return shlex.split(args.tracker_cmd.replace("{port}", str(port)))
    else:
        binary = args.binary or default_binary()
        if not binary or not os.access(binary, os.X_OK):
            setup_error = setup_error or f"tracker binary not found or not executable: {binary}"
        else:
            binary = os.path.abspath(binary)

        def tracker_argv_for(port, tmp):
            # The state file goes to the run's own directory: with the default (the working
            # directory's edgetracker.state) a test run would leave swarms in the checkout for
            # the user's next `cargo run` to restore.
            config = os.path.join(tmp, "tracker.toml")
            with open(config, "w") as f:
                f.write(f'[state]\nfile = "{os.path.join(tmp, "tracker.state")}"\n')
            return [binary, "--listen", "127.0.0.1", "--port", str(port), "--config", config]

    passed = failed = 0
    for proto in protocols:
        if setup_error:
            log(f"FAIL {proto}: {setup_error}")
            failed += 1
            continue
        log(f"--- {proto} (libtorrent {lt.__version__}) ---")
        started = time.monotonic()
        try:
            msg = run_protocol(proto, tracker_argv_for, args.timeout, args.verbose, args.hybrid)
        except TestFailure as e:
            log(f"FAIL {proto}: {e} ({time.monotonic() - started:.1f} s)")
            failed += 1
        else:
            log(f"ok {proto}: {msg} ({time.monotonic() - started:.1f} s)")
            passed += 1

    log(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
