"""Sticky sources on the kernel's loopback: a reply leaves from the address the peer wrote to
(127.0.0.2 here, where the kernel on its own would answer 127.0.0.1), in single sends and
GSO batches alike; a source that is no longer ours is dropped and the send goes out anyway;
only a datagram the device authenticated sets the source, never a forged or replayed one."""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace

import pytest

from nsroute.engine import loop, sticky
from tests.unit.test_handshake import A_IP4, B_IP4, Link, ipv4_packet


def make_engine(device, rx: socket.socket) -> loop.Engine:
    """An engine with only its v4 socket (no TUN: its data path to the device is enough)."""
    tun = SimpleNamespace(fd=-1, vnet=False, offload_flags=0, name="wgtest0")
    return loop.Engine(tun, SimpleNamespace(v4=rx, v6=None), device=device)


@pytest.fixture
def sockets():
    """The engine's v4 socket (any local address) and a peer's socket on 127.0.0.1."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sticky.enable(rx, socket.AF_INET)
    rx.bind(("0.0.0.0", 0))
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5)
    yield rx, peer
    rx.close()
    peer.close()


@pytest.fixture
def pair(sockets):
    """An engine with only its v4 socket and data path, behind a device that takes every
    datagram as authenticated (the table's use on send is under test here)."""
    rx, peer = sockets
    got: list[tuple[bytes, tuple]] = []
    device = SimpleNamespace(udp_out=[], authenticated_rx=0)

    def receive(datagrams, ep, now):
        got.extend((x, ep) for x in datagrams)
        device.authenticated_rx += 1

    device.receive_datagrams = receive
    yield make_engine(device, rx), rx, peer, got


def _receive_at(eng, rx, peer, got, addr: str) -> tuple[str, int]:
    peer.sendto(b"hello", (addr, rx.getsockname()[1]))
    for _ in range(100):
        eng.udpio.read(rx, 1.0)
        if got:
            break
    assert got, "the engine received nothing"
    return got[-1][1]


def test_replies_leave_from_the_address_the_peer_wrote_to(pair):
    eng, rx, peer, got = pair
    ep = _receive_at(eng, rx, peer, got, "127.0.0.2")
    assert ep == peer.getsockname()
    eng.device.udp_out = [(b"reply", ep)]
    eng.udpio.flush()
    data, src = peer.recvfrom(100)
    assert (data, src[0]) == (b"reply", "127.0.0.2")
    # A GSO batch carries the same source in its one sendmsg.
    eng.device.udp_out = [(bytes([i]) * 200, ep) for i in range(3)]
    eng.udpio.flush()
    for i in range(3):
        data, src = peer.recvfrom(1000)
        assert (data, src[0]) == (bytes([i]) * 200, "127.0.0.2")
    # Control: without the sticky entry, the kernel's own choice is 127.0.0.1.
    sticky.forget(eng.udpio.sticky, ep)
    eng.device.udp_out = [(b"plain", ep)]
    eng.udpio.flush()
    data, src = peer.recvfrom(100)
    assert (data, src[0]) == (b"plain", "127.0.0.1")
    assert not eng.errors


@pytest.mark.parametrize("n", [1, 3], ids=["single", "gso"])
def test_a_source_no_longer_ours_is_dropped_and_the_send_still_goes(pair, n):
    eng, rx, peer, got = pair
    ep = _receive_at(eng, rx, peer, got, "127.0.0.2")
    ifindex, _spec, addr = struct.unpack("=I4s4s", eng.udpio.sticky[ep][2])
    gone = struct.pack("=I4s4s", ifindex, socket.inet_aton("192.0.2.7"), addr)
    eng.udpio.sticky[ep] = (socket.IPPROTO_IP, sticky.IP_PKTINFO, gone)
    eng.device.udp_out = [(b"x" * 100, ep)] * n
    eng.udpio.flush()
    for _ in range(n):
        data, src = peer.recvfrom(1000)
        assert (data, src[0]) == (b"x" * 100, "127.0.0.1")
    assert ep not in eng.udpio.sticky
    assert eng.loop_counters["sticky_source_dropped"] == 1
    assert not eng.errors


def test_forget_matches_any_spelling_of_the_address():
    table = {("fd00::1", 51820): "a", ("fd00::1", 1): "b", ("10.0.0.1", 51820): "c"}
    sticky.forget(table, ("fd00:0:0::1", 51820))
    assert table == {("fd00::1", 1): "b", ("10.0.0.1", 51820): "c"}
    sticky.forget(table, ("10.0.0.1", 51820))
    assert table == {("fd00::1", 1): "b"}


def test_the_table_is_bounded():
    table: dict = {}
    for i in range(sticky.LIMIT + 10):
        sticky.learn(table, ("10.0.0.1", i), (0, 8, b""))
    assert len(table) <= sticky.LIMIT


def _source(eng, ep) -> str:
    """The local address `ep`'s replies leave from (in_pktinfo's ipi_spec_dst)."""
    return socket.inet_ntoa(struct.unpack("=I4s4s", eng.udpio.sticky[ep][2])[1])


def _deliver(eng, rx, peer, data: bytes, to: str) -> None:
    peer.sendto(data, (to, rx.getsockname()[1]))
    for _ in range(100):
        eng.udpio.read(rx, 1.0)
        if not eng.errors and (eng.device.tun_out or sum(eng.device.drops.values())):
            break
    assert not eng.errors


def test_only_authenticated_datagrams_set_the_source(sockets):
    """A forged datagram (a transport message with a bad tag) and a replayed genuine one
    from the peer's endpoint, sent to another of our addresses, leave the reply source
    where the last authenticated packet put it; the peer's next genuine packet moves it."""
    rx, peer = sockets
    link = Link()
    link.handshake(1.0)
    eng = make_engine(link.a, rx)
    ep = peer.getsockname()

    def genuine(payload: bytes) -> bytes:
        link.b.send_packet(ipv4_packet(B_IP4, A_IP4, payload), 1.0)
        [(data, _ep)] = link.b.take_udp()
        return data

    first = genuine(b"first")
    _deliver(eng, rx, peer, first, "127.0.0.2")
    assert link.a.take_tun() and _source(eng, ep) == "127.0.0.2"
    assert link.pa.endpoint == ep

    forged = genuine(b"forged")
    forged = forged[:-1] + bytes([forged[-1] ^ 1])
    _deliver(eng, rx, peer, forged, "127.0.0.3")
    assert link.a.drops["transport_bad_tag"] == 1 and not link.a.take_tun()
    _deliver(eng, rx, peer, first, "127.0.0.3")  # a replay of the genuine one
    assert link.a.drops["transport_replay_or_expired"] == 1 and not link.a.take_tun()
    assert _source(eng, ep) == "127.0.0.2"

    _deliver(eng, rx, peer, genuine(b"moved"), "127.0.0.3")
    assert link.a.take_tun() and _source(eng, ep) == "127.0.0.3"
