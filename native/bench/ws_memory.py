#!/usr/bin/env python3
"""Resident memory per WebSocket and per WebTorrent peer of a running tracker.

    native/bench/ws_memory.py --binary target/release/edgetracker [--sockets 2000] [--swarms 4]

Starts the tracker on 127.0.0.1 (a port of its own, no state file, the per-client caps lifted as
loopback load needs), opens SOCKETS WebSockets, each announcing into SWARMS torrents, and prints
the tracker's resident bytes per socket and per peer (VmRSS before and after, from /proc). Stops
the tracker it started, by PID. Standard library only.
"""
import argparse
import os
import struct
import subprocess
import sys
import time

from wsclient import binary, open_socket, read_frame, send_json


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--sockets", type=int, default=2000)
    p.add_argument("--swarms", type=int, default=4)
    p.add_argument("--port", type=int, default=27101)
    a = p.parse_args()
    env = dict(os.environ)
    env.update({
        "EDGETRACKER__STATE__FILE": '""',
        "EDGETRACKER__TRACKER__MAX_PEERS_PER_ADDRESS": "1000000",
        "EDGETRACKER__WEBTORRENT__MAX_CONNECTIONS_PER_ADDRESS": "1000000",
        "EDGETRACKER__WEBTORRENT__MAX_CONNECTIONS_PER_NETWORK": "1000000",
        "EDGETRACKER__NETWORK__HTTP_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
        "EDGETRACKER__NETWORK__HTTP_MAX_CONNECTIONS_PER_NETWORK": "1000000",
    })
    tracker = subprocess.Popen(
        [a.binary, "--listen", "127.0.0.1", "--port", str(a.port), "--log-level", "warn"],
        env=env,
    )
    sockets = []
    try:
        time.sleep(1)
        before = rss_kb(tracker.pid)
        for i in range(a.sockets):
            s = open_socket(a.port)
            for t in range(a.swarms):
                send_json(s, {
                    "action": "announce", "info_hash": binary(bytes([t + 1] * 20)),
                    "peer_id": binary(struct.pack(">I", i) + bytes(16)), "left": 1000,
                    "event": "started", "numwant": 0, "offers": [],
                })
                opcode, _ = read_frame(s)
                while opcode != 1:
                    opcode, _ = read_frame(s)
            sockets.append(s)
        time.sleep(1)
        after = rss_kb(tracker.pid)
        delta = (after - before) * 1024
        peers = a.sockets * a.swarms
        print(f"{a.sockets} sockets, {peers} peers in {a.swarms} swarms: RSS {before} -> {after} KiB, "
              f"{delta / a.sockets:.0f} bytes per socket with its peers")
    finally:
        for s in sockets:
            s.close()
        tracker.terminate()
        tracker.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
