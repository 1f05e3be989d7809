"""A throwaway handshake at start-up, so that the first real one does not pay for set-up.

The first handshake a process makes costs several times the CPU of later ones (this
function: 5.4 ms the first time, 0.87 ms the second, docs/bench.md): OpenSSL looks up its
X25519, BLAKE2s and ChaCha20-Poly1305 implementations on first use, and Python runs each
function of the handshake and data path for the first time. Running all of it once on two
scratch devices with random keys, before the engine says it is ready, takes that cost off
the user's first packet (a fresh pair's first ping: 3.1 -> 1.7 ms). Nothing is shared with
the real device but code.
"""

from __future__ import annotations

import os

from .device import Device

_A, _B = "169.254.0.1", "169.254.0.2"  # never leave the scratch devices
_A_EP, _B_EP = ("192.0.2.1", 1), ("192.0.2.2", 1)


def _ipv4(src: str, dst: str, size: int) -> bytes:
    """A minimal IPv4 packet (no checksum: only the scratch devices see it)."""
    header = bytes((0x45, 0, size >> 8, size & 0xFF, 0, 0, 0x40, 0, 64, 17, 0, 0))
    return header + bytes(map(int, src.split("."))) + bytes(map(int, dst.split("."))) + bytes(size - 20)


def _exchange(a: Device, b: Device, now: float) -> None:
    """Hand each device's datagrams to the other until neither sends any more (at most a
    handshake's three messages plus a packet: bounded, never a loop)."""
    for _ in range(4):
        if not (a.udp_out or b.udp_out):
            return
        for src, dst, ep in ((a, b, _A_EP), (b, a, _B_EP)):
            for data, _ep in src.take_udp():
                dst.receive_datagram(data, ep, now)


def warm_up(now: float) -> bool:
    """One handshake and one packet each way between two scratch devices; True when both
    packets arrived (anything else would be a bug, but is no reason to stop the engine)."""
    a, b = Device(), Device()
    a.set_private_key(os.urandom(32))
    b.set_private_key(os.urandom(32))
    pa, pb = a.add_peer(b.public_key), b.add_peer(a.public_key)
    pa.endpoint = _B_EP
    a.set_allowed_ips(pa, [f"{_B}/32"], replace=True)
    b.set_allowed_ips(pb, [f"{_A}/32"], replace=True)
    a.send_packets([_ipv4(_A, _B, 84)], now)
    _exchange(a, b, now)  # initiation, response, then the staged packet
    b.send_packets([_ipv4(_B, _A, 84)], now)
    _exchange(a, b, now)
    return len(a.take_tun()) == 1 and len(b.take_tun()) == 1
