#!/usr/bin/env python3
"""Resident memory per WebSocket and per WebTorrent peer of a running tracker.

    native/bench/ws_memory.py --binary target/release/edgetracker [--sockets 2000] [--swarms 4]

Starts the tracker on 127.0.0.1 (a port of its own, no state file, the per-client caps lifted as
loopback load needs), opens SOCKETS WebSockets, each announcing into SWARMS torrents, and prints
the tracker's resident bytes per socket and per peer (VmRSS before and after, from /proc). Stops
the tracker it started, by PID. Standard library only.
"""
import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def frame(text):
    """A masked client text frame."""
    data = text.encode()
    mask = os.urandom(4)
    head = bytearray([0x81])
    if len(data) < 126:
        head.append(0x80 | len(data))
    else:
        head.append(0x80 | 126)
        head += struct.pack(">H", len(data))
    return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def read_frame(s):
    """One server frame's payload (servers do not mask)."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf
    b0, b1 = exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", exact(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", exact(8))[0]
    return b0 & 0x0F, exact(n)


def open_socket(port):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET /announce HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1024)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    return s


def binary(b):
    return "".join(chr(x) for x in b)


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
                s.sendall(frame(json.dumps({
                    "action": "announce", "info_hash": binary(bytes([t + 1] * 20)),
                    "peer_id": binary(struct.pack(">I", i) + bytes(16)), "left": 1000,
                    "event": "started", "numwant": 0, "offers": [],
                })))
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
