"""The 8128-packet sliding replay window, alone and inside the device; replayed initiations."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsroute.wireguard.constants import REJECT_AFTER_MESSAGES
from nsroute.wireguard.replay import WINDOW, ReplayWindow
from tests.unit.test_handshake import A_EP, A_IP4, B_IP4, Link, drops, ipv4_packet

# The kernel's window: COUNTER_BITS_TOTAL - BITS_PER_LONG = 8192 - 64 (noise.h).
assert WINDOW == 8128


class ModelWindow:
    """The window's contract, written as plainly as possible: a set of seen counters."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.greatest = -1

    def accept(self, c: int) -> bool:
        if c >= REJECT_AFTER_MESSAGES or c in self.seen or c <= self.greatest - WINDOW:
            return False
        self.seen.add(c)
        self.greatest = max(self.greatest, c)
        return True


def test_in_order():
    w = ReplayWindow()
    assert all(w.accept(c) for c in range(20000))
    assert not any(w.accept(c) for c in range(20000 - 100, 20000))


def test_first_packet_may_have_any_counter():
    w = ReplayWindow()
    assert w.accept(123456)
    assert w.accept(123456 - WINDOW + 1)
    assert not w.accept(123456 - WINDOW)


def test_out_of_order_inside_the_window():
    w = ReplayWindow()
    assert w.accept(10000)
    order = list(range(10000 - WINDOW + 1, 10000))
    random.Random(5).shuffle(order)
    assert all(w.accept(c) for c in order)
    assert not any(w.accept(c) for c in order)


def test_too_old():
    w = ReplayWindow()
    assert w.accept(10000)
    assert not w.check(10000 - WINDOW)          # 8128 behind: outside
    assert not w.accept(10000 - WINDOW - 1)
    assert not w.accept(0)
    assert w.accept(10000 - WINDOW + 1)         # 8127 behind: the oldest still inside


def test_duplicate():
    w = ReplayWindow()
    for c in (0, 5, 3, 7):
        assert w.accept(c)
    for c in (0, 5, 3, 7):
        assert not w.accept(c)
    assert w.accept(4) and w.accept(6) and w.accept(1) and w.accept(2)


@pytest.mark.parametrize("jump", [1, 63, 64, 65, WINDOW - 1, WINDOW, WINDOW + 1, 10**6, 2**40])
def test_far_jump(jump):
    w = ReplayWindow()
    for c in range(10):
        assert w.accept(c)
    assert w.accept(9 + jump)
    assert not w.accept(9 + jump)
    # Counters between old and new that were never seen are fine while inside the window.
    for c in (9 + jump - 1, 9 + jump - WINDOW + 1):
        if c > 9:
            assert w.accept(c), c
    # The old ones are replays (still inside) or too old (outside): either way refused.
    for c in range(10):
        assert not w.accept(c)


def test_reject_after_messages():
    w = ReplayWindow()
    assert not w.check(REJECT_AFTER_MESSAGES)
    assert not w.accept(REJECT_AFTER_MESSAGES)
    assert not w.accept(2**64 - 1)
    assert w.accept(REJECT_AFTER_MESSAGES - 1)
    assert not w.accept(REJECT_AFTER_MESSAGES - 1)


def test_check_does_not_change_the_window():
    w = ReplayWindow()
    assert w.check(7) and w.check(7)
    assert w.check(10**9)                       # a forged far jump, checked but not accepted
    assert w.accept(7)
    assert not w.check(7)
    assert w.accept(8)                          # the window did not move to 10**9


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.one_of(st.integers(0, 20000), st.integers(0, 2**64 - 1),
                          st.integers(REJECT_AFTER_MESSAGES - 20000, 2**64 - 1)), max_size=300))
def test_window_matches_model(counters):
    w, m = ReplayWindow(), ModelWindow()
    for c in counters:
        assert w.check(c) == (c < REJECT_AFTER_MESSAGES and c not in m.seen
                              and c > m.greatest - WINDOW), c
        assert w.accept(c) == m.accept(c), c


def test_window_matches_model_on_a_long_random_walk():
    rnd = random.Random(11)
    w, m = ReplayWindow(), ModelWindow()
    base = 0
    for _ in range(20000):
        base += rnd.choice((0, 1, 1, 2, 50, 3000))
        c = max(0, base + rnd.randint(-9000, 40))
        assert w.accept(c) == m.accept(c)


# ---------------------------------------------------------------- inside the device


def established():
    link = Link()
    link.handshake(0.0)
    return link


def sealed(link, n: int) -> list[bytes]:
    """n transport datagrams from a to b, not yet delivered."""
    for i in range(n):
        link.a.send_packet(ipv4_packet(A_IP4, B_IP4, b"pkt %d" % i), 1.0)
    return [d for d, _ in link.a.take_udp()]


def test_device_drops_replayed_transport_and_counts_it():
    link = established()
    [d] = sealed(link, 1)
    link.b.receive_datagram(d, A_EP, 1.0)
    assert link.b.take_tun() == [ipv4_packet(A_IP4, B_IP4, b"pkt 0")]
    for t in (1.0, 2.0, 3.0):
        link.b.receive_datagram(d, A_EP, t)
    assert link.b.take_tun() == []
    assert link.b.drops["transport_replay_or_expired"] == 3


def test_device_accepts_reordering_and_drops_duplicates():
    link = established()
    ds = sealed(link, 50)
    order = list(range(50))
    random.Random(3).shuffle(order)
    for i in order + order[:10]:
        link.b.receive_datagram(ds[i], A_EP, 1.0)
    got = link.b.take_tun()
    assert sorted(got) == sorted(ipv4_packet(A_IP4, B_IP4, b"pkt %d" % i) for i in range(50))
    assert len(got) == 50
    assert link.b.drops["transport_replay_or_expired"] == 10


def test_forged_packet_does_not_advance_the_window():
    link = established()
    [d] = sealed(link, 1)
    counter = int.from_bytes(d[8:16], "little")
    # Same keypair, a counter far ahead, but a tag that cannot verify.
    forged = d[:8] + (counter + 100000).to_bytes(8, "little") + d[16:]
    link.b.receive_datagram(forged, A_EP, 1.0)
    assert link.b.drops["transport_bad_tag"] == 1
    # Had the forgery moved the window, the genuine packet would now be "too old".
    link.b.receive_datagram(d, A_EP, 1.0)
    assert link.b.take_tun() == [ipv4_packet(A_IP4, B_IP4, b"pkt 0")]
    assert drops(link.b) == 1


def test_forged_packet_with_a_seen_counter_is_dropped_before_decryption():
    link = established()
    [d] = sealed(link, 1)
    link.b.receive_datagram(d, A_EP, 1.0)
    link.b.take_tun()
    forged = d[:-1] + bytes([d[-1] ^ 1])
    link.b.receive_datagram(forged, A_EP, 1.0)
    assert link.b.drops["transport_replay_or_expired"] == 1
    assert link.b.drops["transport_bad_tag"] == 0


def test_replayed_initiation_is_rejected():
    link = Link()
    link.initiate(0.0)
    [(init, _)] = link.a.take_udp()
    link.b.receive_datagram(init, A_EP, 0.0)
    assert len(link.b.take_udp()) == 1
    first = link.pb.next
    # The same bytes again, later (past the flood limit), even from another address.
    link.b.receive_datagram(init, ("203.0.113.1", 9), 30.0)
    assert link.b.take_udp() == []
    assert link.b.drops["handshake_replayed"] == 1
    assert link.pb.next is first
    assert link.pb.endpoint == A_EP


def test_older_initiation_rejected_after_a_newer_one():
    link = Link()
    link.initiate(0.0)
    old = link.a.take_udp()
    link.initiate(10.0)
    new = link.a.take_udp()
    link.a_to_b(10.0, new)
    assert len(link.b.take_udp()) == 1
    link.a_to_b(11.0, old)
    assert link.b.take_udp() == []
    assert link.b.drops["handshake_replayed"] == 1


def test_replayed_initiation_after_the_session_cannot_hijack_it():
    link = established()
    current = link.pb.current
    link.initiate(10.0)                         # a second handshake; its initiation is kept
    [(again, _)] = link.a.take_udp()
    link.b.receive_datagram(again, A_EP, 10.0)
    link.pump(10.0)
    assert link.pb.current is not current
    now_current = link.pb.current
    link.b.receive_datagram(again, A_EP, 50.0)
    assert link.b.drops["handshake_replayed"] == 1
    assert link.pb.current is now_current and link.pb.next is None
