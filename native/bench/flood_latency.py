#!/usr/bin/env python3
"""Other clients' latency while one address floods the tracker, flood by flood.

    native/bench/flood_latency.py --binary target/release/edgetracker [--seconds 10]

Starts the tracker as shipped (default configuration, no state file) on 127.0.0.1 and ::1, on a
port of its own. A probe from ::1 (another client) announces over UDP and HTTP, one request at a
time, and its latencies are taken with nothing else running, then during each flood from
127.0.0.1 alone, each bounded in time:

  udp        announces to made-up torrents as fast as one socket sends them
  http       connections opened and held silent, as many as the tracker takes
  websocket  one socket announcing with 10 offers at a time, 20 reading peers (other clients,
             127.0.0.2 onwards) in its swarm

Prints the probe's median and 99th percentile per flood, and what the tracker counted. The
tracker and the probe run on core 0, the flood in a process of its own on core 1 (a flood
sharing the probe's interpreter would hold its lock, and one sharing its core would measure the
machine, not the tracker). Stops the tracker it started, by PID. Standard library only.
"""
import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import multiprocessing
import threading
import time
import urllib.request

from wsclient import binary, open_socket, send_json


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def udp_announce_packet(conn_id, info_hash, port):
    return struct.pack(">QII20s20sQQQIIIiH", conn_id, 1, 7, info_hash, os.urandom(20), 0, 100, 0,
                       2, 0, 0, 50, port)


def udp_connect(s):
    s.send(struct.pack(">QII", 0x41727101980, 0, 7))
    reply = s.recv(64)
    return struct.unpack(">IIQ", reply[:16])[2]


def probe(port, n):
    """Latencies (ms) of n UDP and n HTTP announces from ::1, one at a time."""
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.settimeout(2)
    u.connect(("::1", port))
    conn = udp_connect(u)
    udp, http = [], []
    h = bytes([0x77] * 20)
    for i in range(n):
        t = time.perf_counter()
        u.send(udp_announce_packet(conn, h, 7000))
        u.recv(2048)
        udp.append((time.perf_counter() - t) * 1000)
        q = "info_hash=" + "%77" * 20 + "&peer_id=-PR0001-" + "%30" * 12 + "&port=7001&left=100&compact=1"
        t = time.perf_counter()
        with urllib.request.urlopen(f"http://[::1]:{port}/announce?{q}", timeout=2) as r:
            r.read()
        http.append((time.perf_counter() - t) * 1000)
    return udp, http


def flood_udp(port, until):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    s.settimeout(1)
    conn = udp_connect(s)
    s.setblocking(False)
    i = 0
    while time.monotonic() < until:
        i += 1
        try:
            s.send(udp_announce_packet(conn, struct.pack(">I", i) + bytes(16), 1000 + i % 1000))
        except BlockingIOError:
            pass
        if i % 64 == 0:
            try:
                while True:
                    s.recv(2048)
            except BlockingIOError:
                pass
        if i % 100_000 == 0:
            s.setblocking(True)
            s.settimeout(1)
            try:
                conn = udp_connect(s)
            except OSError:
                pass
            s.setblocking(False)


def flood_http(port, until):
    held = []
    while time.monotonic() < until and len(held) < 5000:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.send(b"GET ")
            held.append(c)
        except OSError:
            time.sleep(0.01)
    while time.monotonic() < until:
        time.sleep(0.1)
    for c in held:
        c.close()


def drain(s, stop):
    s.settimeout(0.5)
    while not stop.is_set():
        try:
            if not s.recv(65536):
                return
        except OSError:
            continue


def flood_websocket(port, until):
    h = binary([0x55] * 20)
    stop = threading.Event()
    victims = []
    # The reading peers are other clients (127.0.0.2 onwards): one address holds at most
    # max_peers_per_address of a swarm.
    for n in range(20):
        v = open_socket(port, f"127.0.0.{n + 2}")
        send_json(v, {"action": "announce", "info_hash": h, "peer_id": binary([n] * 20), "left": 1,
                    "event": "started", "numwant": 0, "offers": []})
        threading.Thread(target=drain, args=(v, stop), daemon=True).start()
        victims.append(v)
    f = open_socket(port)
    threading.Thread(target=drain, args=(f, stop), daemon=True).start()
    sdp = "v=0\r\n" + "a=candidate x\r\n" * 20
    while time.monotonic() < until:
        send_json(f, {"action": "announce", "info_hash": h, "peer_id": binary([99] * 20), "left": 1,
                    "numwant": 10, "offers": [{"offer_id": os.urandom(10).hex(),
                                               "offer": {"type": "offer", "sdp": sdp}}
                                              for _ in range(10)]})
    stop.set()
    for s in victims + [f]:
        s.close()


def pinned(flood, port, until):
    os.sched_setaffinity(0, {1})
    flood(port, until)


def main():
    os.sched_setaffinity(0, {0})
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--probes", type=int, default=300)
    p.add_argument("--port", type=int, default=27102)
    a = p.parse_args()
    env = dict(os.environ, EDGETRACKER__STATE__FILE='""')
    rows, counted = [], {}
    # A tracker of its own for each flood, so one flood's refusals do not follow the next.
    for kind, flood in [("none", None), ("udp", flood_udp), ("http", flood_http),
                        ("websocket", flood_websocket)]:
        tracker = subprocess.Popen(["taskset", "-c", "0", a.binary, "--listen", "127.0.0.1",
                                    "--listen", "::1", "--port", str(a.port), "--log-level", "warn"],
                                   env=env)
        try:
            time.sleep(1)
            t = None
            if flood:
                until = time.monotonic() + a.seconds
                t = multiprocessing.Process(target=pinned, args=(flood, a.port, until))
                t.start()
                time.sleep(1)
            udp, http = probe(a.port, a.probes)
            if t:
                t.join()
            rows.append((kind, udp, http))
            with urllib.request.urlopen(f"http://127.0.0.1:{a.port}/stats?format=json") as r:
                stats = json.load(r)
            ws = stats["webtorrent"]
            counted[kind] = {
                "rate_limited": stats.get("rate_limited"),
                "refused_at_cap": {k: v for k, v in stats.get("refused_at_cap", {}).items() if v},
                "http_refused_per_address": stats["http_connections"]["refused_per_address_cap"],
                "webtorrent": {k: ws.get(k) for k in ("messages", "rate_limited", "offers_forwarded",
                                                      "offers_over_budget", "messages_dropped")},
            }
        finally:
            tracker.terminate()
            tracker.wait(timeout=10)
    print(f"{'flood from 127.0.0.1':<22}{'UDP p50':>10}{'UDP p99':>10}{'HTTP p50':>10}{'HTTP p99':>10}  (ms, probe from ::1)")
    for kind, udp, http in rows:
        print(f"{kind:<22}{statistics.median(udp):>10.3f}{percentile(udp, .99):>10.3f}"
              f"{statistics.median(http):>10.3f}{percentile(http, .99):>10.3f}")
    for kind, c in counted.items():
        print(f"counted during {kind}: {json.dumps(c)}")

if __name__ == "__main__":
    sys.exit(main())
