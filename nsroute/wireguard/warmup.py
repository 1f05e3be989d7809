"""Scratch devices that keep the data path's code warm: at start-up, and between packets.

The first handshake a process makes costs several times the CPU of later ones (5.4 ms the
first time, 0.87 ms the second here, docs/bench.md): OpenSSL looks up its X25519, BLAKE2s
and ChaCha20-Poly1305 implementations on first use, and Python runs each function of the
handshake and data path for the first time. Running all of it once on two scratch devices
with random keys, before the engine says it is ready, takes that cost off the user's first
packet (a fresh pair's first ping: 3.1 -> 1.7 ms).

Later, a packet that comes after some milliseconds of quiet finds the code it runs evicted
from the CPU's caches, and pays several times its warm cost: 99 us from TUN read to UDP send
against 30 us at 1 ms spacing (the AEAD alone 34 against 2 us). The engine's loop therefore
sends one packet each way through a Scratch at each of its naps (engine.naps.NAP), so the next real
packet finds the same code warm. Nothing is shared with the real device but code.
"""

from __future__ import annotations

import os

from .constants import REKEY_AFTER_TIME
from .device import Device

_A, _B = "169.254.0.1", "169.254.0.2"  # never leave the scratch devices
_A_EP, _B_EP = ("192.0.2.1", 1), ("192.0.2.2", 1)


def _ipv4(src: str, dst: str, size: int) -> bytes:
    """A minimal IPv4 packet (no checksum: only the scratch devices see it)."""
    header = bytes((0x45, 0, size >> 8, size & 0xFF, 0, 0, 0x40, 0, 64, 17, 0, 0))
    return header + bytes(map(int, src.split("."))) + bytes(map(int, dst.split("."))) + bytes(size - 20)


_A_TO_B, _B_TO_A = _ipv4(_A, _B, 84), _ipv4(_B, _A, 84)


class Scratch:
    """Two devices with a session between them; they only ever talk to each other."""

    def __init__(self, now: float) -> None:
        self.a, self.b = a, b = Device(), Device()
        a.set_private_key(os.urandom(32))
        b.set_private_key(os.urandom(32))
        pa, pb = a.add_peer(b.public_key), b.add_peer(a.public_key)
        pa.endpoint = _B_EP
        a.set_allowed_ips(pa, [f"{_B}/32"], replace=True)
        b.set_allowed_ips(pb, [f"{_A}/32"], replace=True)
        self.since = now
        a.send_packets([_A_TO_B], now)  # staged: it starts the handshake
        for _ in range(2):  # initiation, then response and the staged packet
            self._hand_over(now)
        b.take_tun()

    def _hand_over(self, now: float) -> None:
        """Each device's datagrams to the other, once each way."""
        a, b = self.a, self.b
        b.receive_datagrams([d for d, _ep in a.take_udp()], _A_EP, now)
        a.receive_datagrams([d for d, _ep in b.take_udp()], _B_EP, now)

    def stale(self, now: float) -> bool:
        """Past the age at which a real session would be renewed: make a new Scratch."""
        return now - self.since >= REKEY_AFTER_TIME

    def exercise(self, now: float) -> bool:
        """One packet each way; True when both arrived (anything else would be a bug, but
        is no reason to stop the engine)."""
        self.a.send_packets([_A_TO_B], now)
        self.b.send_packets([_B_TO_A], now)
        self._hand_over(now)
        return self.b.take_tun() == [_A_TO_B] and self.a.take_tun() == [_B_TO_A]
