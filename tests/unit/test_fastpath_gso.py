"""UDP GSO/GRO helpers: grouping, splitting and the fallback when the kernel refuses."""

from __future__ import annotations

import errno
import socket
from collections import Counter

import pytest

from nsroute.engine import gso

A = ("192.168.50.2", 51821)
B = ("192.168.50.3", 51821)


def test_runs_group_same_endpoint_same_size_in_order():
    out = [(b"a" * 100, A), (b"b" * 100, A), (b"c" * 60, A), (b"d" * 100, A), (b"e" * 100, B)]
    got = list(gso.runs(out))
    assert got == [(A, [b"a" * 100, b"b" * 100, b"c" * 60]), (A, [b"d" * 100]), (B, [b"e" * 100])]


def test_runs_never_grow_a_segment_and_respect_limits():
    assert [len(g) for _, g in gso.runs([(b"x" * 32, A), (b"y" * 148, A)])] == [1, 1]
    big = [(b"z" * 1452, A)] * 100
    groups = [g for _, g in gso.runs(big)]
    assert sum(len(g) for g in groups) == 100
    assert all(len(g) <= gso.MAX_SEGMENTS and sum(map(len, g)) <= gso.MAX_BYTES for g in groups)
    many_small = [(b"s" * 32, A)] * 200
    assert all(len(g) <= gso.MAX_SEGMENTS for _, g in gso.runs(many_small))
    assert list(gso.runs([])) == []


def test_split_and_gro_size():
    data = bytes(range(250))
    assert gso.split(data, 100) == [data[:100], data[100:200], data[200:]]
    assert gso.split(data, 0) == [data]
    assert gso.split(data, 300) == [data]
    anc = [(gso.SOL_UDP, gso.UDP_GRO, (1452).to_bytes(4, "little" if socket.htons(1) != 1 else "big"))]
    assert gso.gro_size(anc) == 1452
    assert gso.gro_size([]) == 0
    assert gso.gro_size([(socket.SOL_SOCKET, 1, b"\0\0\0\0")]) == 0


class FakeSock:
    def __init__(self, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.msgs: list = []
        self.sent: list = []

    def sendmsg(self, bufs, anc, flags, ep):
        if self.refuse:
            raise OSError(self.refuse, "refused")
        self.msgs.append((b"".join(bufs), anc, ep))

    def sendto(self, data, ep):
        self.sent.append((data, ep))


def test_sender_uses_one_gso_send_for_a_run():
    s = FakeSock()
    snd = gso.Sender(s)
    group = [b"a" * 64, b"b" * 64, b"c" * 10]
    snd.send(A, group, Counter())
    assert s.msgs == [(b"".join(group), [(gso.SOL_UDP, gso.UDP_SEGMENT, (64).to_bytes(2, "little"
                                           if socket.htons(1) != 1 else "big"))], A)]
    assert s.sent == []
    snd.send(A, [b"one"], Counter())  # a single datagram needs no GSO
    assert s.sent == [(b"one", A)]


@pytest.mark.parametrize("code", [errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP])
def test_sender_falls_back_for_good_when_refused(code):
    s = FakeSock(refuse=code)
    snd = gso.Sender(s)
    errors: Counter = Counter()
    snd.send(A, [b"a" * 64, b"b" * 64], errors)
    assert s.sent == [(b"a" * 64, A), (b"b" * 64, A)] and not errors
    assert not snd.gso and snd.fallbacks == 1
    s.refuse = None
    snd.send(A, [b"c" * 64, b"d" * 64], errors)
    assert s.msgs == [] and len(s.sent) == 4


def test_sender_counts_other_errors_without_falling_back():
    s = FakeSock(refuse=errno.ENETUNREACH)
    snd = gso.Sender(s)
    errors: Counter = Counter()
    snd.send(A, [b"a" * 64, b"b" * 64], errors)
    assert snd.gso and errors["udp_send_ENETUNREACH"] == 2 and s.sent == []


def test_sender_without_gso_sends_one_by_one():
    s = FakeSock()
    gso.Sender(s, gso=False).send(A, [b"a", b"b"], Counter())
    assert s.msgs == [] and s.sent == [(b"a", A), (b"b", A)]


@pytest.mark.root
def test_engine_sockets_get_their_buffers_whatever_the_sysctls_say():
    """As root the FORCE options give BUFFER_BYTES even where net.core.rmem_max is lower."""
    from nsroute.engine import udp

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        udp.set_buffers(s)
        # the kernel doubles what it is given, for its bookkeeping
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * udp.BUFFER_BYTES
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * udp.BUFFER_BYTES
