"""Device.send_packets (a TUN drain at once) must do exactly what send_packet does packet by
packet: same datagrams, counters, timers, drops, handshakes, whatever the mix of packets
and the state of the session. Twin devices from the same seed take the two paths."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nsroute.wireguard.constants import REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME
from nsroute.wireguard.peer import TIMER_NAMES
from tests.unit.test_handshake import A_IP4, A_IP6, B_IP4, B_IP6, Link, ipv4_packet, ipv6_packet

C_IP4 = "10.77.0.3"  # routed to the same peer as B (a second address behind it)
NOBODY4 = "10.99.0.9"  # no peer


def twins(state: str, persistent: int) -> tuple[Link, Link]:
    out = []
    for _ in range(2):
        link = Link(seed=7)
        link.a.set_allowed_ips(link.pa, [f"{B_IP4}/32", f"{B_IP6}/128", f"{C_IP4}/32"], replace=True)
        if state != "no-session":
            link.a.send_packet(ipv4_packet(A_IP4, B_IP4, b"hello"), 1.0)
            link.pump(1.0)
            link.a.take_udp()
            link.b.take_tun()
        if state == "near-rekey-count":
            link.pa.current.send_counter = REKEY_AFTER_MESSAGES - 3
        if persistent:
            link.pa.persistent_keepalive = persistent
        out.append(link)
    return out[0], out[1]


def snapshot(link: Link) -> tuple:
    a, p = link.a, link.pa
    kps = [(k.send_counter, k.remote_index) if k else None for k in (p.current, p.previous, p.next)]
    return (a.udp_out, dict(a.drops), p.tx_bytes, kps, list(p.staged), p.endpoint,
            {t: getattr(p, t) for t in TIMER_NAMES}, p.last_initiation_sent, sorted(a.index))


PACKETS = st.one_of(
    st.builds(lambda d, n: ipv4_packet(A_IP4, d, bytes(n), proto=6),
              st.sampled_from([B_IP4, B_IP4, B_IP4, C_IP4, NOBODY4]),
              st.one_of(st.integers(0, 1460), st.integers(1380, 1400))),  # padding up to the MTU
    st.builds(lambda n: ipv6_packet(A_IP6, B_IP6, bytes(n), next_header=6), st.integers(0, 1400)),
    st.binary(max_size=30),
)


@settings(max_examples=600, derandomize=True, deadline=None)
@given(packets=st.lists(PACKETS, max_size=40),
       state=st.sampled_from(["session", "no-session", "near-rekey-count", "old-session", "expired"]),
       persistent=st.sampled_from([0, 25]))
def test_batch_equals_one_by_one(packets, state, persistent):
    one, batch = twins(state, persistent)
    # (near-rekey-count: past REKEY_TIMEOUT since the first handshake, so a rekey may start)
    now = {"session": 2.0, "no-session": 2.0, "near-rekey-count": 7.0,
           "old-session": 1.0 + REKEY_AFTER_TIME + 1, "expired": 1.0 + REJECT_AFTER_TIME + 1}[state]
    for p in packets:
        one.a.send_packet(p, now)
    batch.a.send_packets(packets, now)
    assert snapshot(batch) == snapshot(one)


def test_batch_to_one_peer_reaches_it_intact():
    link, _ = twins("session", 0)
    sent = [ipv4_packet(A_IP4, B_IP4, bytes([i]) * (100 + i)) for i in range(50)]
    link.a.send_packets(sent, 2.0)
    assert len(link.a.udp_out) == 50
    link.pump(2.0)
    assert link.b.take_tun() == sent
