"""TAI64N timestamps for handshake initiations (replay protection across restarts)."""

from __future__ import annotations

import struct

_TAI_BASE = 2**62 + 10  # TAI64 label of the epoch; WireGuard peers only compare order
# Round nanoseconds down (as the reference implementations do) so the timestamp leaks no
# fine timing of the host.
_WHITEN = 0x1000000 - 1


def encode(wall: float) -> bytes:
    secs = int(wall)
    nanos = int((wall - secs) * 1e9) & ~_WHITEN
    return struct.pack(">QI", _TAI_BASE + secs, nanos)
