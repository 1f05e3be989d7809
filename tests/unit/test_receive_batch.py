"""Device.receive_datagrams (one drain of a socket at once) must do exactly what
receive_datagram does datagram by datagram: same packets delivered, datagrams sent, drops,
counters, timers and sessions, whatever the sender mixes in. A generator link records what
its `a` sends while its `b` answers; twin receivers from the same seed then take that stream
the two ways."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nsroute.wireguard.constants import REJECT_AFTER_TIME, REKEY_AFTER_TIME
from nsroute.wireguard.peer import TIMER_NAMES
from tests.unit.test_handshake import (
    A_EP,
    A_IP4,
    A_IP6,
    B_IP4,
    B_IP6,
    Link,
    ipv4_packet,
    ipv6_packet,
)

OTHER_EP = ("203.0.113.9", 4000)


def fresh(persistent: int, answered: bool = False) -> Link:
    """A session a started; `answered`: b has sent since, so it owes no keepalive."""
    link = Link(seed=7)
    link.a.send_packet(ipv4_packet(A_IP4, B_IP4, b"hello"), 1.0)
    link.pump(1.0)
    if answered:
        link.b.send_packet(ipv4_packet(B_IP4, A_IP4, b"hi"), 1.0)
        link.pump(1.0)
    link.a.take_udp()
    link.a.take_tun()
    link.b.take_tun()
    link.pb.persistent_keepalive = persistent
    return link


def record(ops: list, now: float, persistent: int, answered: bool) -> list[tuple[bytes, tuple]]:
    """What `a` sends to `b` for `ops`, each datagram with the address it arrives from;
    `b` answers as it goes, so a handshake `a` starts completes and is used."""
    gen = fresh(persistent, answered)
    stream: list[tuple[bytes, tuple]] = []

    def deliver(dgrams, src=A_EP):
        for data, _ep in dgrams:
            stream.append((data, src))
            gen.b.receive_datagram(data, src, now)
        gen.b.take_tun()
        gen.b_to_a(now)  # b's answers (a handshake response) reach a at once
        gen.a.take_tun()

    for op, arg in ops:
        if op == "data":
            pkt = (ipv6_packet(A_IP6, B_IP6, bytes(arg)) if arg % 3 == 0
                   else ipv4_packet(A_IP4, B_IP4, bytes(arg)))
            gen.a.send_packet(pkt, now)
        elif op == "padded":  # an IP length shorter than what was decrypted
            gen.a.send_packet(ipv4_packet(A_IP4, B_IP4, bytes(arg)) + b"\0" * 3, now)
        elif op == "spoofed":  # a source address the peer may not use
            gen.a.send_packet(ipv4_packet("10.99.0.1", B_IP4, bytes(arg)), now)
        elif op == "keepalive":
            gen.a._encrypt(gen.pa, gen.pa.current, b"", now)
        elif op == "rekey":
            gen.a._initiate(gen.pa, now, retry=True)
        elif op == "replay" and stream:
            data, src = stream[arg % len(stream)]
            stream.append((data, src))
            continue
        elif op == "corrupt" and stream:
            data = bytearray(stream[arg % len(stream)][0])
            data[-1] ^= 1
            stream.append((bytes(data), A_EP))
            continue
        elif op == "junk":
            stream.append((bytes([4, 0, 0, 0]) + bytes(arg % 40), A_EP))
            continue
        elif op == "roam":  # the next datagrams come from a new address
            deliver(gen.a.take_udp(), OTHER_EP)
            continue
        deliver(gen.a.take_udp())
    return stream


def snapshot(link: Link) -> tuple:
    b, p = link.b, link.pb
    kps = [(k.local_index, k.replay.greatest, k.replay.words) if k else None
           for k in (p.current, p.previous, p.next)]
    return (b.tun_out, b.udp_out, dict(b.drops), p.rx_bytes, p.tx_bytes, kps, p.endpoint,
            {t: getattr(p, t) for t in TIMER_NAMES}, p.need_another_keepalive,
            p.sent_lastminute_handshake, p.last_handshake_wall, sorted(b.index))


OPS = st.lists(st.one_of(
    st.tuples(st.just("data"), st.integers(0, 1400)),
    st.tuples(st.sampled_from(["padded", "spoofed", "replay", "corrupt", "junk"]),
              st.integers(0, 200)),
    st.tuples(st.sampled_from(["keepalive", "rekey", "roam"]), st.just(0)),
), max_size=30)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(ops=OPS, cuts=st.lists(st.integers(1, 12), max_size=8),
       state=st.sampled_from(["fresh", "old-session", "expired"]),
       persistent=st.sampled_from([0, 25]), answered=st.booleans())
def test_batch_equals_one_by_one(ops, cuts, state, persistent, answered):
    now = {"fresh": 2.0, "old-session": 1.0 + REKEY_AFTER_TIME + 1,
           "expired": 1.0 + REJECT_AFTER_TIME + 1}[state]
    stream = record(ops, now, persistent, answered)
    one, batch = fresh(persistent, answered), fresh(persistent, answered)
    for data, src in stream:
        one.b.receive_datagram(data, src, now)
    # the batched twin takes the stream in runs from one address, cut where `cuts` says
    i = 0
    cut = iter(cuts)
    while i < len(stream):
        src = stream[i][1]
        j = i + 1
        limit = i + next(cut, len(stream))
        while j < len(stream) and j < limit and stream[j][1] == src:
            j += 1
        batch.b.receive_datagrams([d for d, _ in stream[i:j]], src, now)
        i = j
    assert snapshot(batch) == snapshot(one)


def test_a_bulk_run_arrives_intact_and_in_order():
    link = fresh(0)
    before = link.pb.rx_bytes
    sent = [ipv4_packet(A_IP4, B_IP4, bytes([i]) * (100 + i)) for i in range(60)]
    for p in sent:
        link.a.send_packet(p, 2.0)
    datagrams = [d for d, _ in link.a.take_udp()]
    link.b.receive_datagrams(datagrams, A_EP, 2.0)
    assert link.b.take_tun() == sent
    assert link.pb.rx_bytes - before == sum(len(d) for d in datagrams)
    # 60 data packets: the passive keepalive is armed, and owed again after it
    assert link.pb.t_send_keepalive is not None and link.pb.need_another_keepalive
