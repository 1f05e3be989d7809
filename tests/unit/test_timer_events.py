"""timers.py on its own: each event's effect on a peer's deadlines, and what fires when a
deadline is due, with `now` passed in (nothing sleeps, no device needed but a recorder).
test_timers.py checks the same rules end to end through Device."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsroute.wireguard import timers
from nsroute.wireguard.constants import (
    KEEPALIVE_TIMEOUT,
    MAX_HANDSHAKE_ATTEMPTS,
    REJECT_AFTER_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER,
)
from nsroute.wireguard.peer import TIMER_NAMES, Peer
from tests.unit.test_handshake import A_IP4, B_IP4, Link, ipv4_packet

EPS = 1e-9


def new_peer(persistent: int = 0) -> Peer:
    peer = Peer(bytes(range(1, 33)))
    peer.persistent_keepalive = persistent
    return peer


def deadlines(peer: Peer) -> dict:
    return {t: getattr(peer, t) for t in TIMER_NAMES} | {
        "need_another_keepalive": peer.need_another_keepalive}


# ---------------------------------------------------------------- events -> deadlines


def test_authenticated_sent_cancels_the_passive_keepalive_and_restarts_persistent():
    peer = new_peer(persistent=25)
    peer.t_send_keepalive = 5.0
    timers.authenticated_sent(peer, 3.0)
    assert peer.t_send_keepalive is None
    assert peer.t_persistent == 28.0
    quiet = new_peer()
    timers.authenticated_sent(quiet, 3.0)
    assert quiet.t_persistent is None                # no interval, no persistent keepalive


def test_authenticated_received_cancels_the_new_handshake_and_restarts_persistent():
    peer = new_peer(persistent=10)
    peer.t_new_handshake = 20.0
    peer.t_send_keepalive = 7.0
    timers.authenticated_received(peer, 4.0)
    assert peer.t_new_handshake is None
    assert peer.t_persistent == 14.0
    assert peer.t_send_keepalive == 7.0              # receiving owes nothing by itself


def test_data_sent_arms_the_new_handshake_once():
    peer, rng = new_peer(), random.Random(3)
    timers.data_sent(peer, 100.0, rng)
    d = peer.t_new_handshake
    low = 100.0 + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
    assert low <= d <= low + REKEY_TIMEOUT_JITTER
    timers.data_sent(peer, 104.0, rng)               # more data does not push it back
    assert peer.t_new_handshake == d


def test_data_received_owes_a_keepalive_then_another():
    peer = new_peer()
    timers.data_received(peer, 1.0)
    assert peer.t_send_keepalive == 1.0 + KEEPALIVE_TIMEOUT
    assert not peer.need_another_keepalive
    timers.data_received(peer, 2.0)                  # the deadline stays, one more is owed
    assert peer.t_send_keepalive == 1.0 + KEEPALIVE_TIMEOUT
    assert peer.need_another_keepalive


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 70), pending=st.sampled_from([None, 3.0]), another=st.booleans())
def test_data_received_with_a_count_is_that_many_single_events(count, pending, another):
    one, many = new_peer(), new_peer()
    for p in (one, many):
        p.t_send_keepalive, p.need_another_keepalive = pending, another
    for _ in range(count):
        timers.data_received(one, 9.0)
    timers.data_received(many, 9.0, count)
    assert deadlines(many) == deadlines(one)


def test_handshake_initiated_arms_the_retransmit_with_jitter():
    peer = new_peer()
    times = set()
    for seed in range(8):
        timers.handshake_initiated(peer, 50.0, random.Random(seed))
        assert 50.0 + REKEY_TIMEOUT <= peer.t_retransmit <= 50.0 + REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER
        times.add(peer.t_retransmit)
    assert len(times) > 4                            # jitter, not a constant


def test_handshake_complete_stops_retransmitting_and_records_the_time():
    peer = new_peer()
    peer.t_retransmit, peer.handshake_attempts, peer.sent_lastminute_handshake = 9.0, 7, True
    timers.handshake_complete(peer, 8.0, wall_offset=1000.0)
    assert peer.t_retransmit is None
    assert peer.handshake_attempts == 0 and not peer.sent_lastminute_handshake
    assert peer.last_handshake_wall == 1008.0


def test_session_derived_arms_zeroing_three_reject_times_later_and_rearms():
    peer = new_peer()
    timers.session_derived(peer, 10.0)
    assert peer.t_zero_keys == 10.0 + 3 * REJECT_AFTER_TIME
    timers.session_derived(peer, 200.0)              # a newer session pushes it back
    assert peer.t_zero_keys == 200.0 + 3 * REJECT_AFTER_TIME


def test_persistent_keepalive_set():
    peer = new_peer()
    assert timers.persistent_keepalive_set(peer, 25) is True     # off -> on: send one now
    assert peer.persistent_keepalive == 25
    peer.t_persistent = 30.0
    assert timers.persistent_keepalive_set(peer, 10) is False    # a new interval: no extra
    assert peer.t_persistent == 30.0                             # next one as it was due
    assert timers.persistent_keepalive_set(peer, 0) is False
    assert peer.t_persistent is None                             # off: nothing pending
    assert timers.persistent_keepalive_set(peer, 0) is False


def test_stopped_turns_every_timer_off():
    peer = new_peer()
    for i, name in enumerate(TIMER_NAMES):
        setattr(peer, name, float(i))
    timers.stopped(peer)
    assert timers.peer_deadline(peer) is None


@pytest.mark.parametrize("event", ["sent", "received"])
def test_a_data_packets_events_repeated_at_one_now_change_nothing(event):
    # What lets the batch paths report them once per run (timers.py, batch.py).
    peer, rng = new_peer(persistent=25), random.Random(1)
    peer.t_send_keepalive, peer.t_new_handshake = 4.0, None

    def once():
        if event == "sent":
            timers.authenticated_sent(peer, 2.0)
            timers.data_sent(peer, 2.0, rng)
        else:
            timers.authenticated_received(peer, 2.0)

    once()
    after_one = deadlines(peer)
    for _ in range(5):
        once()
    assert deadlines(peer) == after_one


def test_next_deadline_is_the_earliest_over_all_peers_and_timers():
    assert timers.next_deadline([]) is None
    a, b = new_peer(), new_peer()
    assert timers.next_deadline([a, b]) is None
    a.t_zero_keys, a.t_persistent = 540.0, 25.0
    b.t_retransmit = 30.0
    assert timers.peer_deadline(a) == 25.0
    assert timers.next_deadline([a, b]) == 25.0
    b.t_send_keepalive = 11.0
    assert timers.next_deadline([a, b]) == 11.0


# ---------------------------------------------------------------- deadlines -> actions


class Recorder:
    """Stands in for the Device: records what the timers ask it to do."""

    def __init__(self, *peers: Peer) -> None:
        self.peers = {bytes([i]): p for i, p in enumerate(peers)}
        self.calls: list[tuple] = []

    def _send_keepalive(self, peer, now):
        self.calls.append(("keepalive", now))

    def _initiate(self, peer, now, retry=False):
        self.calls.append(("initiate", now, retry))

    def _zero_key_material(self, peer):
        self.calls.append(("zero",))

    def _abandon_handshake(self, peer):
        self.calls.append(("abandon",))


@pytest.mark.parametrize("name, call", [
    ("t_retransmit", ("initiate", 10.0, True)),
    ("t_send_keepalive", ("keepalive", 10.0)),
    ("t_new_handshake", ("initiate", 10.0, False)),
    ("t_zero_keys", ("zero",)),
    ("t_persistent", ("keepalive", 10.0)),
])
def test_each_timer_fires_at_its_deadline_and_not_before(name, call):
    peer = new_peer(persistent=25)
    dev = Recorder(peer)
    setattr(peer, name, 10.0)
    timers.expire(dev, 9.999)
    assert dev.calls == [] and getattr(peer, name) == 10.0
    timers.expire(dev, 10.0)
    assert dev.calls == [call]
    assert getattr(peer, name) is None               # fired once; the action re-arms if due
    timers.expire(dev, 10.0)
    assert dev.calls == [call]


def test_owed_keepalive_is_rearmed_when_another_is_owed():
    peer = new_peer()
    dev = Recorder(peer)
    peer.t_send_keepalive, peer.need_another_keepalive = 10.0, True
    timers.expire(dev, 10.5)
    assert dev.calls == [("keepalive", 10.5)]
    assert peer.t_send_keepalive == 10.5 + KEEPALIVE_TIMEOUT and not peer.need_another_keepalive


def test_retransmit_counts_attempts_then_gives_up():
    peer = new_peer()
    dev = Recorder(peer)
    now = 0.0
    for attempt in range(1, MAX_HANDSHAKE_ATTEMPTS + 2):
        now += REKEY_TIMEOUT
        peer.t_retransmit = now
        timers.expire(dev, now)
        assert dev.calls[-1] == ("initiate", now, True)
        assert peer.handshake_attempts == attempt
    peer.t_retransmit, peer.t_send_keepalive = now + REKEY_TIMEOUT, now + 1
    timers.expire(dev, now + REKEY_TIMEOUT)          # the keepalive is due too, but given up
    assert dev.calls[-1] == ("abandon",)
    assert peer.t_send_keepalive is None
    assert peer.t_zero_keys == now + REKEY_TIMEOUT + 3 * REJECT_AFTER_TIME


def test_giving_up_keeps_an_earlier_zeroing_deadline():
    peer = new_peer()
    dev = Recorder(peer)
    peer.handshake_attempts = MAX_HANDSHAKE_ATTEMPTS + 1
    peer.t_zero_keys, peer.t_retransmit = 300.0, 100.0
    timers.expire(dev, 100.0)
    assert dev.calls == [("abandon",)] and peer.t_zero_keys == 300.0


def test_all_due_timers_fire_in_one_call_for_every_peer():
    p, q = new_peer(), new_peer()
    dev = Recorder(p, q)
    p.t_persistent, q.t_zero_keys, q.t_retransmit = 5.0, 6.0, 99.0
    timers.expire(dev, 7.0)
    assert sorted(dev.calls) == [("keepalive", 7.0), ("zero",)]
    assert timers.next_deadline(dev.peers.values()) == 99.0


# ---------------------------------------------------------------- as the kernel, end to end


def test_sending_a_handshake_response_cancels_the_owed_keepalive():
    # The response is an authenticated packet sent (kernel send.c
    # wg_packet_send_handshake_response, wireguard-go SendHandshakeResponse): the peer has
    # heard from us, so the keepalive owed for its data is not sent.
    link = Link()
    link.handshake(0.0)
    link.a.send_packet(ipv4_packet(A_IP4, B_IP4, b"data"), 1.0)
    link.a_to_b(1.0)
    assert link.b.take_tun() and link.pb.t_send_keepalive == 1.0 + KEEPALIVE_TIMEOUT
    link.initiate(6.0)                               # a starts a new handshake
    link.a_to_b(6.0)
    assert link.pb.t_send_keepalive is None
