"""A test attacker for the WireGuard engine: handshake floods, replays, and pcap reading.

Run inside the attacker's namespace (`ip netns exec NS python -m tests.support.attacker
...`); it prints one JSON object with what it did. Every loop is bounded in count and in
time and stops by itself; it only ever sends to the target given on the command line,
which the tests set to an address inside their own namespaces.

    flood  --target IP --port N --pub BASE64 [--rate R] [--duration S] [--ports K]
        Handshake initiations (type 1, 148 bytes): random content and a VALID MAC1 for
        the responder's public key (so they pass the cheap check and cost the engine real
        work), MAC2 zero, paced to R per second for S seconds from K source ports. Reads
        back what the engine answers and counts the cookie replies (type 3, 64 bytes).
    replay --target IP --port N --payloads FILE [--times T]
        Sends each payload of FILE (JSON list of hex strings) T times, in order.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time

INIT_HEADER = b"\x01\x00\x00\x00"
MAX_SECONDS = 60.0  # hard bound on any run, whatever the arguments


def mac1_key(responder_public: bytes) -> bytes:
    return hashlib.blake2s(b"mac1----" + responder_public).digest()


def forged_initiation(key: bytes, body112: bytes) -> bytes:
    alpha = INIT_HEADER + body112
    return alpha + hashlib.blake2s(alpha, key=key, digest_size=16).digest() + bytes(16)


def _drain(socks: list[socket.socket], seen: dict[str, int]) -> None:
    for s in socks:
        while True:
            try:
                data = s.recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                seen["errors"] += 1
                break
            if len(data) == 64 and data[:4] == b"\x03\x00\x00\x00":
                seen["cookie_replies"] += 1
            else:
                seen["other_replies"] += 1


def flood(target: str, port: int, pub: bytes, rate: float, duration: float, nports: int) -> dict:
    duration = min(duration, MAX_SECONDS)
    total = int(rate * duration)
    key = mac1_key(pub)
    fam = socket.AF_INET6 if ":" in target else socket.AF_INET
    socks = []
    for _ in range(nports):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind(("", 0))
        s.setblocking(False)
        socks.append(s)
    dest = (target, port)
    seen = {"cookie_replies": 0, "other_replies": 0, "errors": 0}
    sent = send_errors = 0
    start = time.monotonic()
    next_drain = start + 0.05
    mac = hashlib.blake2s
    i = 0
    while sent < total:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= duration + 1.0:
            break  # could not keep up: stop on time anyway, the report says so
        due = min(total, int(rate * elapsed) + 1) - sent
        if due > 0:
            pool = os.urandom(112 * due)
            for j in range(due):
                alpha = INIT_HEADER + pool[112 * j:112 * (j + 1)]
                msg = alpha + mac(alpha, key=key, digest_size=16).digest() + bytes(16)
                try:
                    socks[i].sendto(msg, dest)
                    sent += 1
                except (BlockingIOError, InterruptedError):
                    send_errors += 1
                    sent += 1  # paced by attempts: a full buffer must not make us spin
                i = (i + 1) % nports
        if now >= next_drain:
            _drain(socks, seen)
            next_drain = now + 0.05
        else:
            time.sleep(0.0005)
    elapsed = time.monotonic() - start
    end = time.monotonic() + 1.0  # replies still on their way
    while time.monotonic() < end:
        _drain(socks, seen)
        time.sleep(0.05)
    for s in socks:
        s.close()
    ok = sent - send_errors
    return {"sent": ok, "send_errors": send_errors, "seconds": elapsed,
            "rate": ok / elapsed if elapsed else 0.0, "source_ports": nports, **seen}


def replay(target: str, port: int, payloads: list[bytes], times: int) -> dict:
    fam = socket.AF_INET6 if ":" in target else socket.AF_INET
    sent = 0
    deadline = time.monotonic() + MAX_SECONDS
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        for _ in range(times):
            for p in payloads:
                if time.monotonic() > deadline:
                    break
                s.sendto(p, (target, port))
                sent += 1
                time.sleep(0.001)
    return {"sent": sent}


def read_pcap_udp(path: str) -> list[tuple[str, int, str, int, bytes]]:
    """(src, sport, dst, dport, payload) of every IPv4/UDP packet of a classic pcap file
    from an Ethernet interface (what `tcpdump -w` writes on a veth)."""
    data = open(path, "rb").read()
    if len(data) < 24:
        return []
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    assert linktype == 1, f"expected Ethernet captures, got link type {linktype}"
    out = []
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        total = struct.unpack("!H", ip[2:4])[0]
        udp = ip[ihl:total]
        sport, dport = struct.unpack("!HH", udp[:4])
        out.append((socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport,
                    bytes(udp[8:])))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="attacker")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--target", required=True)
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--pub", required=True, help="responder public key, base64")
    f.add_argument("--rate", type=float, default=6000)
    f.add_argument("--duration", type=float, default=10)
    f.add_argument("--ports", type=int, default=64)
    r = sub.add_parser("replay")
    r.add_argument("--target", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--payloads", required=True)
    r.add_argument("--times", type=int, default=1)
    a = ap.parse_args(argv)
    if a.cmd == "flood":
        res = flood(a.target, a.port, base64.b64decode(a.pub), a.rate, a.duration, a.ports)
    else:
        payloads = [bytes.fromhex(h) for h in json.load(open(a.payloads))]
        res = replay(a.target, a.port, payloads, a.times)
    json.dump(res, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
