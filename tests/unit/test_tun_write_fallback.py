"""The engine's coalesced TUN writes meet a kernel that refuses them (Linux < 6.2 for UDP).

Why a stand-in for writev here: the host kernel takes USO writes, so the refusal itself
runs for real only in the VM tier (tests/vm/guest/test_offload_kernel.py); this checks
the bookkeeping around it on every unit run: one refusal, every datagram still written
once and in order, TCP coalescing untouched.
"""

from __future__ import annotations

import errno
import struct
from types import SimpleNamespace

from nsroute.engine import loop, tunio, vnet
from tests.unit.test_fastpath_tun_vnet import dgrams, segs4


class RefusingTun:
    """Takes plain writes and TCP super-packets; refuses UDP super-packets with EINVAL."""

    def __init__(self) -> None:
        self.attempts: list[int] = []  # gso_type of each write tried
        self.written: list[bytes] = []

    def writev(self, fd: int, bufs) -> int:
        data = b"".join(bufs)
        gso_type = struct.unpack_from("=BB", data)[1]
        self.attempts.append(gso_type)
        if gso_type == vnet.GSO_UDP_L4:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.written += vnet.packets(data)
        return len(data)


def engine_stub() -> loop.Engine:
    """An engine over a TUN that is only its write path (writev is replaced below)."""
    tun = SimpleNamespace(fd=3, vnet=True, offload_flags=0, name="wgtest0")
    return loop.Engine(tun, SimpleNamespace(v4=None, v6=None))


def test_refused_udp_groups_fall_back_once_and_lose_nothing(monkeypatch):
    tun = RefusingTun()
    monkeypatch.setattr(tunio.os, "writev", tun.writev)
    eng = engine_stub()
    ds = dgrams(150, size=300)  # three groups of at most 64 in one flush
    assert len(vnet.coalesce(ds)) == 3
    eng.tunio.flush_vnet(3, ds)
    assert tun.attempts.count(vnet.GSO_UDP_L4) == 1  # the later groups are not tried again
    assert eng.offload["tun_uso_refused"] == 1 and "tun_uso_writes" not in eng.offload
    assert tun.written == ds and not eng.errors
    assert eng.tunio.coalesce == {"gro": True, "uso": False}

    tun.attempts.clear()
    more = dgrams(10, size=300, ident=0x900)
    eng.tunio.flush_vnet(3, more)  # a later flush: one datagram per write
    assert tun.attempts == [vnet.GSO_NONE] * 10 and tun.written == ds + more


def test_tcp_still_coalesces_after_udp_was_refused(monkeypatch):
    tun = RefusingTun()
    monkeypatch.setattr(tunio.os, "writev", tun.writev)
    eng = engine_stub()
    eng.tunio.coalesce["uso"] = False
    segs = segs4(4)
    eng.tunio.flush_vnet(3, segs)
    assert eng.offload["tun_gro_writes"] == 1 and eng.offload["tun_gro_segments"] == 4
    assert len(tun.written) == 4 and not eng.errors
