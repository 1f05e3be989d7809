"""Every protocol timer, driven by a fake clock: `now` is passed explicitly, nothing sleeps.

Reference behaviour: the WireGuard paper section 6 and the kernel's timers.c / send.c /
receive.c (wireguard-go's timers.go behaves the same).
"""

from __future__ import annotations

import pytest

from nsroute.wireguard.constants import (
    KEEPALIVE_TIMEOUT,
    MAX_HANDSHAKE_ATTEMPTS,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_ATTEMPT_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER,
)
from nsroute.wireguard.peer import Keypair
from tests.unit.test_handshake import (
    A_IP4,
    B_EP,
    B_IP4,
    MSG_DATA,
    MSG_INIT,
    Link,
    drops,
    ipv4_packet,
    types,
)

P_AB = ipv4_packet(A_IP4, B_IP4, b"a to b")
P_BA = ipv4_packet(B_IP4, A_IP4, b"b to a")
EPS = 1e-6


def test_constants_are_the_papers():
    # WireGuard paper section 6.1, table of constants.
    assert REKEY_AFTER_MESSAGES == 2**60
    assert REJECT_AFTER_MESSAGES == 2**64 - 2**13 - 1
    assert (REKEY_AFTER_TIME, REJECT_AFTER_TIME, REKEY_ATTEMPT_TIME) == (120, 180, 90)
    assert (REKEY_TIMEOUT, KEEPALIVE_TIMEOUT) == (5, 10)
    assert abs(REKEY_TIMEOUT_JITTER - 1 / 3) < 1e-9
    assert MAX_HANDSHAKE_ATTEMPTS == 18


def run_timers(dev, until: float, start: float = 0.0) -> list[tuple[float, int, int]]:
    """Fire `dev`'s timers at each deadline up to `until`; (time, type, length) of what it sent."""
    sent = []
    now = start
    while True:
        d = dev.next_deadline()
        if d is None or d > until:
            return sent
        now = max(now, d)
        dev.handle_timers(now)
        sent += [(now, data[0], len(data)) for data, _ in dev.take_udp()]


# ---------------------------------------------------------------- handshake retransmission


def test_idle_session_has_only_the_zero_keys_deadline():
    link = Link()
    link.handshake(0.0)
    assert link.a.next_deadline() == 3 * REJECT_AFTER_TIME
    assert link.b.next_deadline() == 3 * REJECT_AFTER_TIME


@pytest.mark.parametrize("seed", range(5))
def test_retransmit_after_rekey_timeout_plus_jitter(seed):
    link = Link(seed=seed)
    a = link.a
    a.send_packet(P_AB, 100.0)
    [(first, _)] = a.take_udp()
    d = link.pa.t_retransmit
    assert 100.0 + REKEY_TIMEOUT <= d <= 100.0 + REKEY_TIMEOUT + 1 / 3 + EPS
    assert a.next_deadline() == d
    a.handle_timers(d - 0.001)
    assert a.take_udp() == []
    a.handle_timers(d)
    [(second, ep)] = a.take_udp()
    assert ep == B_EP and second[0] == MSG_INIT and len(second) == 148
    assert second[8:40] != first[8:40]           # a fresh ephemeral key
    assert second[4:8] != first[4:8]             # and a fresh sender index
    assert d + REKEY_TIMEOUT <= link.pa.t_retransmit <= d + REKEY_TIMEOUT + 1 / 3 + EPS


def test_jitter_varies():
    deadlines = set()
    for seed in range(10):
        link = Link(seed=seed)
        link.a.send_packet(P_AB, 0.0)
        deadlines.add(round(link.pa.t_retransmit, 9))
    assert len(deadlines) > 5


def test_only_the_latest_initiation_is_answered():
    link = Link()
    a, b = link.a, link.b
    a.send_packet(P_AB, 0.0)
    first = a.take_udp()
    a.handle_timers(link.pa.t_retransmit)
    second = a.take_udp()
    link.a_to_b(0.0, first)
    r1 = b.take_udp()
    link.a_to_b(6.0, second)
    r2 = b.take_udp()
    link.b_to_a(6.0, r1)                          # answers a superseded initiation
    assert a.drops["handshake_unknown_index"] == 1 and link.pa.current is None
    link.b_to_a(6.0, r2)
    assert link.pa.current is not None
    link.pump(6.0)
    assert b.take_tun() == [P_AB]


def test_gives_up_after_rekey_attempt_time_and_drops_staged_packets():
    link = Link()
    a = link.a
    a.send_packet(P_AB, 0.0)
    a.send_packet(P_AB, 1.0)
    assert len(link.pa.staged) == 2
    sent = [(0.0, MSG_INIT)]
    a.take_udp()
    now = 0.0
    while link.pa.t_retransmit is not None:
        now = link.pa.t_retransmit
        a.handle_timers(now)
        out = a.take_udp()
        assert types(out) in ([], [MSG_INIT])
        sent += [(now, MSG_INIT)] * len(out)
    retries = len(sent) - 1
    assert retries == MAX_HANDSHAKE_ATTEMPTS + 1    # 20 initiations in all, as the kernel sends
    assert now >= REKEY_ATTEMPT_TIME
    assert now <= (MAX_HANDSHAKE_ATTEMPTS + 2) * (REKEY_TIMEOUT + 1 / 3) + EPS
    assert not link.pa.staged                       # what waited for the session is dropped
    assert link.pa.initiation is None
    assert link.pa.t_zero_keys == pytest.approx(now + 3 * REJECT_AFTER_TIME)
    # Quiet afterwards; the next packet starts a new attempt at once.
    assert run_timers(a, now + 100) == []
    a.send_packet(P_AB, now + 101)
    assert types(a.take_udp()) == [MSG_INIT]


def test_initiations_are_never_sent_more_often_than_every_rekey_timeout():
    link = Link()
    a = link.a
    times = []
    for i in range(4 * 100):                        # a packet every 250 ms for 100 s, no answer
        now = i * 0.25
        a.send_packet(P_AB, now)
        a.handle_timers(now)
        times += [now for data, _ in a.take_udp() if data[0] == MSG_INIT]
    gaps = [b - a_ for a_, b in zip(times, times[1:], strict=False)]
    assert len(times) >= 18
    assert min(gaps) >= REKEY_TIMEOUT


def test_initiation_rate_limit_holds_for_every_trigger():
    link = Link()
    link.handshake(0.0)
    a = link.a
    link.pa.current.send_counter = REJECT_AFTER_MESSAGES  # every send now wants a handshake
    a.send_packet(P_AB, 1.0)                      # 1 s after the last initiation: too soon
    assert a.take_udp() == []
    a.send_packet(P_AB, 4.999)
    assert a.take_udp() == []
    a.send_packet(P_AB, 5.0)
    assert types(a.take_udp()) == [MSG_INIT]


# ---------------------------------------------------------------- keepalives


def test_passive_keepalive_after_data_received_and_nothing_sent():
    link = Link()
    link.handshake(0.0)
    a = link.a
    link.b.send_packet(P_BA, 1.0)
    link.b_to_a(1.0)
    assert a.take_tun() == [P_BA]
    assert link.pa.t_send_keepalive == 1.0 + KEEPALIVE_TIMEOUT
    a.handle_timers(10.999)
    assert a.take_udp() == []
    a.handle_timers(11.0)
    [(ka, ep)] = a.take_udp()
    assert ep == B_EP and ka[0] == MSG_DATA and len(ka) == 32
    link.a_to_b(11.0, [(ka, ep)])
    assert link.b.take_tun() == [] and drops(link.b) == 0
    assert link.pa.t_send_keepalive is None
    assert run_timers(a, 100.0, start=11.0) == []


def test_no_passive_keepalive_when_we_sent_data_meanwhile():
    link = Link()
    link.handshake(0.0)
    link.b.send_packet(P_BA, 1.0)
    link.b_to_a(1.0)
    link.a.send_packet(P_AB, 5.0)
    assert types(link.a.take_udp()) == [MSG_DATA]
    assert link.pa.t_send_keepalive is None
    link.a.handle_timers(11.0)
    assert link.a.take_udp() == []


def test_another_keepalive_when_more_data_arrived_while_one_was_pending():
    link = Link()
    link.handshake(0.0)
    for t in (1.0, 2.0):
        link.b.send_packet(P_BA, t)
        link.b_to_a(t)
    sent = run_timers(link.a, 40.0, start=2.0)
    assert [(t, ty, n) for t, ty, n in sent] == [(11.0, MSG_DATA, 32), (21.0, MSG_DATA, 32)]


def test_receiving_a_keepalive_schedules_no_keepalive():
    link = Link()
    link.handshake(0.0)                           # b received a's confirming keepalive
    assert link.pb.t_send_keepalive is None
    assert run_timers(link.b, 100.0) == []


def test_persistent_keepalive_interval():
    link = Link()
    link.handshake(0.0)
    a, pa = link.a, link.pa
    a.set_persistent_keepalive(pa, 25, 1.0)       # turning it on sends one at once
    assert [(d[0], len(d)) for d, _ in a.take_udp()] == [(MSG_DATA, 32)]
    assert pa.t_persistent == 26.0
    a.handle_timers(25.99)
    assert a.take_udp() == []
    a.handle_timers(26.0)
    assert [(d[0], len(d)) for d, _ in a.take_udp()] == [(MSG_DATA, 32)]
    assert pa.t_persistent == 51.0
    a.send_packet(P_AB, 30.0)                     # any authenticated packet pushes it back
    assert pa.t_persistent == 55.0
    link.a.take_udp()
    link.b.send_packet(P_BA, 40.0)
    link.b_to_a(40.0)
    assert pa.t_persistent == 65.0
    a.set_persistent_keepalive(pa, 0, 41.0)
    assert pa.t_persistent is None
    assert [t for t, ty, n in run_timers(a, 100.0, start=41.0) if n == 32] == [50.0]  # passive only


def test_persistent_keepalive_without_session_starts_a_handshake():
    link = Link()
    link.a.set_persistent_keepalive(link.pa, 25, 0.0)
    assert types(link.a.udp_out) == [MSG_INIT]
    link.pump(0.0)
    assert link.pa.current is not None and link.pb.current is not None


def test_persistent_keepalive_keeps_trying_while_the_peer_is_gone():
    # The peer disappears right after the handshake. The kernel keeps sending something
    # (keepalives, then initiations) at least every interval for as long as persistent
    # keepalive is on -- also after the keys were zeroed at 540 s.
    link = Link()
    link.handshake(0.0)
    link.a.set_persistent_keepalive(link.pa, 25, 0.0)
    link.a.take_udp()
    sent = run_timers(link.a, 1000.0)
    times = [0.0] + [t for t, _, _ in sent]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= 25.0 + EPS, max(gaps)
    assert times[-1] > 1000.0 - 25.0
    # Keepalives while the keys were valid, initiations after.
    assert {ty for t, ty, _ in sent if t < REJECT_AFTER_TIME} == {MSG_DATA}
    assert {ty for t, ty, _ in sent if t > REJECT_AFTER_TIME + 25} == {MSG_INIT}


# ---------------------------------------------------------------- new handshake / rekey / reject


def test_new_handshake_after_data_sent_without_reply():
    link = Link()
    link.handshake(0.0)
    a = link.a
    a.send_packet(P_AB, 20.0)
    link.a_to_b(20.0)                              # b gets it, but nothing comes back
    link.b.take_udp()
    d = link.pa.t_new_handshake
    assert 20.0 + 15.0 <= d <= 20.0 + 15.0 + 1 / 3 + EPS
    a.send_packet(P_AB, 25.0)                      # more data does not push the deadline
    a.take_udp()
    assert link.pa.t_new_handshake == d
    a.handle_timers(d - 0.001)
    assert a.take_udp() == []
    a.handle_timers(d)
    assert types(a.take_udp()) == [MSG_INIT]


def test_no_new_handshake_when_the_peer_answers():
    link = Link()
    link.handshake(0.0)
    link.a.send_packet(P_AB, 20.0)
    link.a_to_b(20.0)
    link.b.send_packet(P_BA, 21.0)
    link.b_to_a(21.0)
    assert link.pa.t_new_handshake is None
    assert MSG_INIT not in [ty for _, ty, _ in run_timers(link.a, 60.0, start=21.0)]


def test_keepalives_do_not_arm_the_new_handshake_timer():
    link = Link()
    link.handshake(0.0)
    link.a.set_persistent_keepalive(link.pa, 5, 1.0)
    assert link.pa.t_new_handshake is None


def test_rekey_after_time_on_send_by_the_initiator():
    link = Link()
    link.handshake(0.0)
    a, b = link.a, link.b
    a.send_packet(P_AB, REKEY_AFTER_TIME - 0.1)
    assert types(a.take_udp()) == [MSG_DATA]
    a.send_packet(P_AB, REKEY_AFTER_TIME)
    out = a.take_udp()
    assert types(out) == [MSG_DATA, MSG_INIT]      # sent with the old keys, then a handshake
    link.a_to_b(REKEY_AFTER_TIME, out[:1])
    assert b.take_tun() == [P_AB]
    # Only the initiator rekeys on age; the responder keeps sending.
    b.take_udp()
    b.send_packet(P_BA, REKEY_AFTER_TIME + 30)
    assert types(b.take_udp()) == [MSG_DATA]


def test_rekey_on_receive_at_reject_minus_keepalive_minus_rekey_timeout():
    link = Link()
    link.handshake(0.0)
    a, b = link.a, link.b
    limit = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT   # 165 s
    assert limit == 165
    b.send_packet(P_BA, limit - 0.1)
    link.b_to_a(limit - 0.1)
    assert a.take_udp() == []
    b.send_packet(P_BA, limit)
    link.b_to_a(limit)
    assert types(a.take_udp()) == [MSG_INIT]
    b.send_packet(P_BA, limit + 6)                  # only once per session
    link.b_to_a(limit + 6)
    assert a.take_udp() == []
    assert a.take_tun() == [P_BA] * 3
    # The responder does not rekey on receive.
    a.send_packet(P_AB, limit + 7)                  # (a is past 120 s: it also rekeys on send)
    data = [x for x in a.take_udp() if x[0][0] == MSG_DATA]
    link.a_to_b(limit + 7, data)
    assert b.take_tun() == [P_AB] and b.take_udp() == []


def test_reject_after_time_no_packet_with_expired_keys():
    link = Link()
    link.handshake(0.0)
    a, b = link.a, link.b
    b.send_packet(P_BA, REJECT_AFTER_TIME - 0.01)
    late = b.take_udp()
    a.send_packet(P_AB, REJECT_AFTER_TIME)
    assert types(a.take_udp()) == [MSG_INIT]        # no transport message, a handshake instead
    assert list(link.pa.staged) == [P_AB]
    link.b_to_a(REJECT_AFTER_TIME, late)            # encrypted in time, arrives too late
    assert a.take_tun() == []
    assert a.drops["transport_replay_or_expired"] == 1
    b.send_packet(P_BA, REJECT_AFTER_TIME + 1)      # the responder's keys are as old
    assert types(b.take_udp()) == [MSG_INIT]
    # A keepalive due now also becomes a handshake rather than use the old keys.
    link.pa.t_send_keepalive = REJECT_AFTER_TIME + 6
    a.handle_timers(REJECT_AFTER_TIME + 6)
    assert MSG_DATA not in types(a.take_udp())


def test_reject_after_time_then_new_session_delivers_what_was_staged():
    link = Link()
    link.handshake(0.0)
    link.a.send_packet(P_AB, 200.0)
    link.b.send_packet(P_BA, 200.0)
    link.pump(200.0)
    assert link.b.take_tun() == [P_AB]
    assert link.a.take_tun() == [P_BA]


def test_rekey_after_messages_initiator():
    link = Link()
    link.handshake(0.0)
    kp = link.pa.current
    kp.send_counter = REKEY_AFTER_MESSAGES - 10
    link.a.send_packet(P_AB, 10.0)
    assert types(link.a.take_udp()) == [MSG_DATA]
    kp.send_counter = REKEY_AFTER_MESSAGES + 1
    link.a.send_packet(P_AB, 11.0)
    out = link.a.take_udp()
    assert types(out) == [MSG_DATA, MSG_INIT]
    link.a_to_b(11.0, out[:1])                      # huge counters are fine for the receiver
    assert link.b.take_tun() == [P_AB]


def test_rekey_after_messages_responder():
    # The message limit applies to both sides (kernel send.c keep_key_fresh, wireguard-go
    # keepKeyFreshSending); only the 120 s age limit is the initiator's alone.
    link = Link()
    link.handshake(0.0)
    kp = link.pb.current
    assert not kp.is_initiator
    kp.send_counter = REKEY_AFTER_MESSAGES + 1
    link.b.send_packet(P_BA, 10.0)
    assert types(link.b.take_udp()) == [MSG_DATA, MSG_INIT]


def test_reject_after_messages():
    link = Link()
    link.handshake(0.0)
    link.pa.current.send_counter = REJECT_AFTER_MESSAGES
    link.a.send_packet(P_AB, 10.0)
    assert types(link.a.take_udp()) == [MSG_INIT]
    assert list(link.pa.staged) == [P_AB]


# ---------------------------------------------------------------- zeroing keys


def test_zero_keys_after_three_times_reject_after_time():
    link = Link()
    link.handshake(0.0)
    a = link.a
    assert link.pa.t_zero_keys == 3 * REJECT_AFTER_TIME == 540
    a.handle_timers(539.99)
    assert link.pa.current is not None
    a.handle_timers(540.0)
    assert link.pa.current is None and link.pa.previous is None and link.pa.next is None
    assert not any(isinstance(v, Keypair) for v in a.index.values())
    # Everything works again from scratch.
    a.send_packet(P_AB, 541.0)
    link.b.handle_timers(541.0)
    link.pump(541.0)
    assert link.b.take_tun() == [P_AB]


def test_zeroing_keys_does_not_abandon_a_handshake_in_progress():
    # Data at 530 s: the 0 s session expired long ago, so a handshake starts and is
    # retransmitted; the keys are zeroed at 540 s in the middle of it. The kernel clears
    # the key material but keeps retransmitting, so the staged packet gets through once
    # the peer answers.
    link = Link()
    link.handshake(0.0)
    a = link.a
    a.send_packet(P_AB, 530.0)
    assert types(a.take_udp()) == [MSG_INIT]
    sent = run_timers(a, 560.0, start=530.0)
    assert [t for t, ty, _ in sent if ty == MSG_INIT and t > 540.0], sent
    now = link.pa.t_retransmit
    assert now is not None
    a.handle_timers(now)
    link.pump(now)                                  # the peer is back and answers
    assert link.b.take_tun() == [P_AB]


def test_retransmit_handshake_uses_current_time_stamps():
    link = Link()
    a = link.a
    a.send_packet(P_AB, 0.0)
    first = a.take_udp()
    a.handle_timers(link.pa.t_retransmit)
    second = a.take_udp()
    # b sees the second (newer timestamp) first; the older one is then a replay.
    link.a_to_b(6.0, second)
    assert len(link.b.take_udp()) == 1
    link.a_to_b(6.1, first)
    assert link.b.drops["handshake_replayed"] == 1


def test_timers_send_to_the_peer_endpoint_and_nowhere_without_one():
    link = Link()
    link.handshake(0.0)
    link.a.set_persistent_keepalive(link.pa, 1, 0.0)
    link.a.take_udp()
    link.a.handle_timers(1.0)
    assert [ep for _, ep in link.a.take_udp()] == [B_EP]
    link.pb.endpoint = None
    link.b.set_persistent_keepalive(link.pb, 1, 0.0)  # nowhere to send: nothing sent
    assert link.b.take_udp() == []
