"""A checksummed TCP transfer for tests: `serve` prints `<bytes> <sha256>` of what arrived,
`send` pushes deterministic pseudo-random bytes and prints the same of what it sent.
`udp-serve` / `udp-send` do the same with numbered datagrams sent in back-to-back bursts
(so that engines batch them): the receiver prints how many arrived, how many were intact,
and whether they came in order.

Run as `python -m tests.support.xfer serve HOST PORT` / `send HOST PORT NBYTES [SEED]`,
`udp-serve HOST PORT COUNT` / `udp-send HOST PORT COUNT SIZE [BURST]`.
"""

from __future__ import annotations

import hashlib
import random
import socket
import sys
import time

SO_RCVBUFFORCE = 33  # Linux; beyond rmem_max, for root


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


def datagram(i: int, size: int) -> bytes:
    """Datagram number `i`: its number, then bytes only it has."""
    return i.to_bytes(4, "big") + random.Random(i).randbytes(size - 4)


def udp_serve(host: str, port: int, count: int, timeout: float = 30.0) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        # The test's drops must be the tunnel's, not this socket's: SO_RCVBUF alone is capped
        # at net.core.rmem_max (208 KB by default), which a slow VM's burst overflows.
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        except PermissionError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((host, port))
        print("listening", flush=True)
        got, intact, in_order, last = 0, 0, True, -1
        seen: set[int] = set()
        s.settimeout(timeout)
        while got < count:
            try:
                data = s.recv(65536)
            except TimeoutError:
                break
            s.settimeout(3.0)  # once they flow, a pause this long means the rest are lost
            got += 1
            i = int.from_bytes(data[:4], "big")
            seen.add(i)
            intact += data == datagram(i, len(data))
            if in_order and i <= last:
                print(f"reordered: {i} after {last}", file=sys.stderr, flush=True)
            in_order = in_order and i > last
            last = i
        if got < count:  # which ones, for the failure message: a lost tail differs from a gap
            missing = sorted(set(range(count)) - seen)
            print(f"missing {len(missing)}: {missing[:40]}", file=sys.stderr, flush=True)
        print(got, intact, "in-order" if in_order else "reordered", flush=True)


def udp_send(host: str, port: int, count: int, size: int, burst: int = 32) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        for start in range(0, count, burst):
            for i in range(start, min(count, start + burst)):
                s.sendto(datagram(i, size), (host, port))
            time.sleep(0.01)  # the burst drains; no queue on the way overflows
    print(count, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "udp-serve":
        udp_serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "udp-send":
        udp_send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                 int(sys.argv[6]) if len(sys.argv) > 6 else 32)
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 1,
             float(sys.argv[6]) if len(sys.argv) > 6 else 0.0)
