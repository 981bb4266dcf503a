"""A minimal WebSocket client for the bench scripts (standard library only): the upgrade, masked
text frames out, unmasked frames in. Enough to drive the tracker; not a general client."""
import base64
import json
import os
import socket
import struct


def open_socket(port, source="127.0.0.1", host="127.0.0.1"):
    """A WebSocket to ws://HOST:PORT/announce from SOURCE, upgraded."""
    s = socket.create_connection((host, port), source_address=(source, 0))
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


def send_json(s, obj):
    """`obj` as JSON in one masked text frame."""
    data = json.dumps(obj).encode()
    mask = os.urandom(4)
    head = bytearray([0x81])
    if len(data) < 126:
        head.append(0x80 | len(data))
    elif len(data) < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", len(data))
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
    s.sendall(bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def read_frame(s):
    """One frame from the server (servers do not mask): its opcode and payload."""
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


def binary(b):
    """Bytes as the binary string the WebTorrent protocol carries (one character a byte)."""
    return "".join(chr(x) for x in b)
