"""A checksummed TCP transfer for tests: `serve` prints `<bytes> <sha256>` of what arrived,
`send` pushes deterministic pseudo-random bytes and prints the same of what it sent.

Run as `python -m tests.support.xfer serve HOST PORT` / `send HOST PORT NBYTES [SEED]`.
"""

from __future__ import annotations

import hashlib
import random
import socket
import sys
import time


def serve(host: str, port: int, timeout: float = 120.0) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen(1)
        ls.settimeout(timeout)
        print("listening", flush=True)
        conn, _ = ls.accept()
        conn.settimeout(timeout)
        h, n = hashlib.sha256(), 0
        with conn:
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
        print(n, h.hexdigest(), flush=True)


def send(host: str, port: int, nbytes: int, seed: int = 1, pace: float = 0.0) -> None:
    rng = random.Random(seed)
    h, left = hashlib.sha256(), nbytes
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + 30
    while True:
        try:
            s = socket.create_connection((host, port), timeout=10) if fam == socket.AF_INET else socket.socket(fam)
            if fam == socket.AF_INET6:
                s.settimeout(10)
                s.connect((host, port))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    s.settimeout(120)
    with s:
        while left:
            chunk = rng.randbytes(min(left, 1 << 16))
            s.sendall(chunk)
            h.update(chunk)
            left -= len(chunk)
            if pace:
                time.sleep(pace)
    print(nbytes, h.hexdigest(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 1,
             float(sys.argv[6]) if len(sys.argv) > 6 else 0.0)
