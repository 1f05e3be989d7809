"""The engine's TUN read loop against whatever a read may return: short reads, bad virtio
headers, a packet that fills the buffer. Nothing may escape as an exception (the loop would
die); each bad read is counted and the good packets around it still reach the device.

A SOCK_SEQPACKET socketpair stands in for the TUN descriptor: like a TUN, each read returns
one whole message."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import pytest

from nsroute.engine import loop, tunio, vnet
from nsroute.engine.options import Options
from nsroute.wireguard.device import Device
from tests.unit.test_handshake import ipv4_packet


class FakeTun:
    def __init__(self, fd: int, is_vnet: bool) -> None:
        self.fd, self.vnet, self.offload_flags, self.name = fd, is_vnet, 0, "wgtest0"


NO_UDP = SimpleNamespace(v4=None, v6=None)


@pytest.fixture
def engine():
    """make(fd, is_vnet): an engine reading that descriptor as its TUN, and the packets it
    handed to its device."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b.setblocking(False)
    sent: list[bytes] = []
    device = Device()
    device.send_packets = lambda pkts, now: sent.extend(pkts)

    def make(fd: int, is_vnet: bool) -> loop.Engine:
        return loop.Engine(FakeTun(fd, is_vnet), NO_UDP, device=device)

    yield make, a, b, sent
    a.close()
    b.close()


@pytest.mark.parametrize("is_vnet", [True, False], ids=["vnet", "plain"])
def test_bad_reads_are_counted_and_the_rest_goes_through(engine, is_vnet):
    make, writer, reader, sent = engine
    eng = make(reader.fileno(), is_vnet)
    good = ipv4_packet("10.0.0.1", "10.0.0.2", b"payload")
    hdr = vnet.ZERO_HDR if is_vnet else b""
    reads = [hdr + good, b"\x00", b"\x01" * 5, vnet.HDR.pack(0, 9, 0, 0, 0, 0) + good,
             vnet.HDR.pack(vnet.F_NEEDS_CSUM, 0, 0, 0, 60000, 6) + good, hdr + good,
             b"\x00" * (tunio.TUN_SMALL_READ + 100), hdr + good]
    for r in reads:
        writer.send(r)
    assert eng.tunio.read(1.0) is True
    assert sent.count(good) == 3
    assert eng.errors["tun_read_truncated"] == 1 and eng.tunio.read_size > tunio.TUN_SMALL_READ
    if is_vnet:
        assert eng.errors["tun_bad_vnet_hdr"] == 4, eng.errors  # short x2, gso type 9, csum offsets
    assert not [k for k in eng.errors if k.startswith("internal")]


def test_a_read_error_is_counted_and_the_loop_carries_on(engine):
    make, writer, reader, sent = engine
    fd = os.dup(reader.fileno())
    eng = make(fd, True)
    os.close(fd)  # EBADF: an error, but not the EBADFD/ENODEV/EIO of a removed TUN
    assert eng.tunio.read(1.0) is True
    assert sent == [] and eng.errors == {"tun_read_9": 1}


def test_a_wake_up_after_quiet_reads_one_packet_and_the_next_pass_the_rest(engine):
    """limit=1 (the pacer's choice for a lone packet): one packet goes to the device
    at once; nothing is lost, the next pass drains what is left."""
    make, writer, reader, sent = engine
    eng = make(reader.fileno(), True)
    pkts = [ipv4_packet("10.0.0.1", "10.0.0.2", bytes([i]) * 20) for i in range(4)]
    for p in pkts:
        writer.send(vnet.ZERO_HDR + p)
    assert eng.tunio.read(1.0, 1) is True
    assert sent == pkts[:1]
    assert eng.tunio.read(1.0) is True
    assert sent == pkts


@pytest.mark.parametrize("gro", [True, False], ids=["udp-gro", "plain"])
def test_udp_reads_take_at_most_limit_receives(gro):
    got: list[bytes] = []
    device = Device()
    device.receive_datagram = lambda data, ep, now: got.append(data)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        eng = loop.Engine(FakeTun(-1, True), SimpleNamespace(v4=rx, v6=None), device=device,
                          options=Options(offload=gro))
        datagrams = [bytes([i]) * (100 + i) for i in range(3)]  # sizes differ: no GRO merge
        for d in datagrams:
            tx.sendto(d, rx.getsockname())
        eng.udpio.read(rx, 1.0, 1)
        assert got == datagrams[:1]
        eng.udpio.read(rx, 1.0)
        assert got == datagrams
        assert not eng.errors
    finally:
        rx.close()
        tx.close()


def test_a_long_drain_goes_out_in_bursts_of_send_every(engine):
    """A drain hands its packets to the device and flushes them every SEND_EVERY reads,
    not all at the end: the peer's socket meets one GSO burst at a time, draining it while
    the engine reads and seals the next. Every packet still goes out once, in order."""
    make, writer, reader, sent = engine
    eng = make(reader.fileno(), True)
    log: list[tuple[str, int]] = []
    eng.device.send_packets = lambda pkts, now: (sent.extend(pkts), log.append(("seal", len(pkts))))
    eng.tunio.flush_udp = lambda: log.append(("flush", len(sent)))
    n = tunio.SEND_EVERY * 2 + 5
    pkts = [ipv4_packet("10.0.0.1", "10.0.0.2", i.to_bytes(2, "big") * 10) for i in range(n)]
    for p in pkts:
        writer.send(vnet.ZERO_HDR + p)
    assert eng.tunio.read(1.0, n) is True
    k = tunio.SEND_EVERY
    assert log == [("seal", k), ("flush", k), ("seal", k), ("flush", 2 * k), ("seal", 5)]
    assert sent == pkts  # the last 5 wait for the pass's own flush
