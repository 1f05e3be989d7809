"""MAC1/MAC2, cookie replies under load, and per-source handshake rate limiting."""

from __future__ import annotations

import hashlib
import ipaddress
import struct

import pytest

from nsroute.wireguard import crypto
from nsroute.wireguard.constants import COOKIE_SECRET_LATENCY, COOKIE_SECRET_MAX_AGE
from nsroute.wireguard.cookie import CookieChecker, CookieJar, source_bytes
from nsroute.wireguard.device import Device
from nsroute.wireguard.handshake import UNDER_LOAD_PER_SECOND
from nsroute.wireguard.ratelimiter import PACKETS_BURSTABLE, PACKETS_PER_SECOND, RateLimiter
from tests.unit.test_handshake import (
    A_EP,
    A_IP4,
    B_EP,
    B_IP4,
    MSG_COOKIE,
    MSG_DATA,
    MSG_INIT,
    MSG_RESP,
    WALL,
    Link,
    ipv4_packet,
    ref_initiation,
    seeded,
    tai64n_ref,
    types,
)


def b2s16(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def h(*parts: bytes) -> bytes:
    return hashlib.blake2s(b"".join(parts)).digest()


# ---------------------------------------------------------------- MACs


def test_source_bytes_are_ip_and_port():
    assert source_bytes(("192.0.2.1", 51820)) == bytes([192, 0, 2, 1]) + struct.pack(">H", 51820)
    assert source_bytes(("fe80::1%eth0", 1)) == ipaddress.IPv6Address("fe80::1").packed + b"\0\x01"


def test_mac1_and_mac2_as_the_paper_defines_them():
    pub = bytes(range(32))
    jar, checker = CookieJar(pub), CookieChecker(pub, rng=seeded(1))
    body = bytes(range(116))
    msg = jar.stamp(body, 0.0)
    # mac1 = MAC(HASH(LABEL_MAC1 || S_pub of the receiver), msg_alpha); no cookie: mac2 = 0.
    assert msg == body + b2s16(h(b"mac1----", pub), body) + bytes(16)
    assert checker.mac1_ok(msg)
    assert not checker.mac1_ok(msg[:5] + b"\xff" + msg[6:])
    assert not CookieChecker(bytes(32)).mac1_ok(msg)   # meant for someone else
    jar.cookie, jar.cookie_birth = b"C" * 16, 0.0
    msg = jar.stamp(body, 1.0)
    # mac2 = MAC(cookie, msg_beta), msg_beta = everything before mac2.
    assert msg[-16:] == b2s16(b"C" * 16, msg[:-16])


def test_jar_stops_using_a_cookie_before_the_secret_rotates():
    jar = CookieJar(bytes(range(32)))
    jar.cookie, jar.cookie_birth = b"C" * 16, 100.0
    limit = 100.0 + COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY     # 215
    assert jar.stamp(b"x" * 60, limit - 0.01)[-16:] != bytes(16)
    assert jar.stamp(b"x" * 60, limit)[-16:] == bytes(16)


def test_checker_cookie_is_bound_to_source_and_secret_rotates():
    pub = bytes(range(32))
    checker = CookieChecker(pub, rng=seeded(2))
    jar = CookieJar(pub)
    src = source_bytes(("198.51.100.9", 4000))
    init = jar.stamp(bytes(116), 0.0)
    reply = checker.make_reply(init, 0x01020304, src, 0.0)
    assert len(reply) == 64 and reply[:8] == b"\x03\0\0\0\x04\x03\x02\x01"
    assert jar.consume_reply(reply, 0.0)
    # The cookie is MAC(secret, source ip || port) (paper section 5.4.7).
    assert jar.cookie == b2s16(checker.secret, src)
    msg = jar.stamp(bytes(116), 1.0)
    assert checker.mac2_ok(msg, src, 1.0)
    assert not checker.mac2_ok(msg, source_bytes(("198.51.100.9", 4001)), 1.0)
    assert not checker.mac2_ok(msg, source_bytes(("198.51.100.10", 4000)), 1.0)
    # After COOKIE_SECRET_MAX_AGE the secret is new and old cookies are worthless.
    assert not checker.mac2_ok(msg, src, COOKIE_SECRET_MAX_AGE)
    old_secret = checker.secret
    checker.make_reply(init, 1, src, COOKIE_SECRET_MAX_AGE)
    assert checker.secret != old_secret
    assert not checker.mac2_ok(msg, src, COOKIE_SECRET_MAX_AGE + 1)


# ---------------------------------------------------------------- the cookie path in the device


def test_cookie_path_under_load():
    link = Link()
    a, b = link.a, link.b
    b.force_under_load = True
    a.send_packet(ipv4_packet(A_IP4, B_IP4, b"under load"), 0.0)
    [(init, _)] = a.take_udp()
    assert init[-16:] == bytes(16)
    b.receive_datagram(init, A_EP, 0.0)
    [(reply, ep)] = b.take_udp()
    # A cookie reply, not a response, and no session state on b.
    assert ep == A_EP
    assert reply[0] == MSG_COOKIE and len(reply) == 64
    assert reply[4:8] == init[4:8]                       # receiver = the initiator's sender index
    assert link.pb.next is None and link.pb.current is None
    assert b.drops["handshake_cookie_sent"] == 1
    # Opened independently: XChaCha20-Poly1305 under HASH(LABEL_COOKIE || S_pub of b),
    # with the initiation's mac1 as associated data; inside, MAC(secret, a's address).
    cookie = crypto.xaead_decrypt(h(b"cookie--", b.public_key), reply[8:32], reply[32:],
                                  init[116:132])
    assert cookie == b2s16(b.checker.secret, source_bytes(A_EP))

    a.receive_datagram(reply, B_EP, 0.1)
    assert a.take_udp() == []                            # a waits for its retransmit timer
    assert link.pa.jar.cookie == cookie
    t = link.pa.t_retransmit
    a.handle_timers(t)
    [(init2, _)] = a.take_udp()
    assert init2[0] == MSG_INIT
    assert init2[-16:] == b2s16(cookie, init2[:-16])     # carries mac2 now
    b.receive_datagram(init2, A_EP, t)
    out = b.take_udp()
    assert types(out) == [MSG_RESP]
    link.b_to_a(t, out)
    link.pump(t)
    assert b.take_tun() == [ipv4_packet(A_IP4, B_IP4, b"under load")]


def test_valid_mac2_from_another_source_gets_another_cookie_reply():
    link = Link()
    link.b.force_under_load = True
    link.initiate(0.0)
    link.a_to_b(0.0)
    link.b_to_a(0.0)                                     # a has the cookie for A_EP
    link.a.handle_timers(link.pa.t_retransmit)
    [(init2, _)] = link.a.take_udp()
    link.b.receive_datagram(init2, ("192.0.2.1", 51821), 6.0)   # another port: cookie does not fit
    assert types(link.b.take_udp()) == [MSG_COOKIE]
    assert link.pb.next is None


def test_cookie_reply_with_bad_tag_is_dropped():
    link = Link()
    link.b.force_under_load = True
    link.initiate(0.0)
    link.a_to_b(0.0)
    [(reply, _)] = link.b.take_udp()
    for i in (8, 31, 32, 63):                            # nonce and sealed cookie
        bad = bytearray(reply)
        bad[i] ^= 0x40
        link.a.receive_datagram(bytes(bad), B_EP, 0.1)
    assert link.a.drops["cookie_invalid"] == 4
    assert link.pa.jar.cookie == b""
    link.a.handle_timers(link.pa.t_retransmit)
    [(init2, _)] = link.a.take_udp()
    assert init2[-16:] == bytes(16)                      # still no cookie to use


def test_cookie_reply_only_answers_the_latest_message():
    link = Link()
    link.b.force_under_load = True
    link.initiate(0.0)
    first = link.a.take_udp()
    link.a.handle_timers(link.pa.t_retransmit)           # a retransmits before the reply arrives
    link.a.take_udp()
    link.a_to_b(0.0, first)
    [(reply, _)] = link.b.take_udp()
    # The reply is sealed to the first initiation's mac1 and its sender index is stale.
    link.a.receive_datagram(reply, B_EP, 6.0)
    assert link.a.drops["cookie_invalid"] == 1
    assert link.pa.jar.cookie == b""


def test_cookie_reply_for_unknown_index_is_dropped():
    link = Link()
    link.b.force_under_load = True
    link.initiate(0.0)
    link.a_to_b(0.0)
    [(reply, _)] = link.b.take_udp()
    bad = reply[:4] + b"\xde\xad\xbe\xef" + reply[8:]
    link.a.receive_datagram(bad, B_EP, 0.1)
    assert link.a.drops["cookie_invalid"] == 1


def test_initiator_under_load_sends_cookie_to_responder():
    # Here the initiator is the one under load: the response needs its cookie. The
    # responder files the reply under its keypair's index and answers the next initiation
    # with mac2.
    link = Link()
    a, b = link.a, link.b
    a.force_under_load = True
    link.initiate(0.0)
    link.a_to_b(0.0)
    [(resp, _)] = b.take_udp()
    a.receive_datagram(resp, B_EP, 0.0)
    assert link.pa.current is None
    [(reply, _)] = a.take_udp()
    assert reply[0] == MSG_COOKIE and reply[4:8] == resp[4:8]
    b.receive_datagram(reply, A_EP, 0.0)
    assert link.pb.jar.cookie != b""
    t = link.pa.t_retransmit
    a.handle_timers(t)
    link.a_to_b(t)
    [(resp2, _)] = b.take_udp()
    assert resp2[-16:] == b2s16(link.pb.jar.cookie, resp2[:-16])
    a.receive_datagram(resp2, B_EP, t)
    assert link.pa.current is not None


def test_under_load_is_detected_from_the_handshake_rate():
    link = Link()
    link.initiate(0.0)
    [(init, _)] = link.a.take_udp()
    for _ in range(UNDER_LOAD_PER_SECOND):
        link.b.receive_datagram(init, A_EP, 0.5)         # 1 consumed, the rest are replays
    assert types(link.b.take_udp()) == [MSG_RESP]
    assert link.b.drops["handshake_replayed"] == UNDER_LOAD_PER_SECOND - 1
    link.b.receive_datagram(init, A_EP, 0.5)             # one more in the same second
    assert types(link.b.take_udp()) == [MSG_COOKIE]
    link.b.receive_datagram(init, A_EP, 2.0)             # the load has passed
    assert link.b.take_udp() == []
    assert link.b.drops["handshake_replayed"] == UNDER_LOAD_PER_SECOND


# ---------------------------------------------------------------- rate limiting


def test_rate_limiter_burst_and_refill():
    rl = RateLimiter()
    assert (PACKETS_PER_SECOND, PACKETS_BURSTABLE) == (20, 5)
    assert [rl.allow("192.0.2.1", 10.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert not rl.allow("192.0.2.1", 10.0 + 0.04)        # 0.8 of a token
    assert rl.allow("192.0.2.1", 10.0 + 0.051)           # one token per 1/20 s
    assert not rl.allow("192.0.2.1", 10.0 + 0.052)
    assert [rl.allow("192.0.2.1", 20.0) for _ in range(6)] == [True] * 5 + [False]  # capped


def test_rate_limiter_is_per_source():
    rl = RateLimiter()
    for _ in range(5):
        assert rl.allow("192.0.2.1", 1.0)
    assert not rl.allow("192.0.2.1", 1.0)
    assert rl.allow("192.0.2.2", 1.0)                    # another IPv4 host
    for _ in range(5):
        assert rl.allow("2001:db8:1:2::1", 1.0)
    assert not rl.allow("2001:db8:1:2::ffff", 1.0)       # same /64: same bucket
    assert rl.allow("2001:db8:1:3::1", 1.0)              # another /64
    assert rl.allow("fe80::1%eth0", 1.0)


def test_rate_limiter_forgets_idle_sources():
    rl = RateLimiter()
    for i in range(100):
        rl.allow(f"10.0.{i}.1", 1.0)
    assert len(rl.buckets) == 100
    rl.allow("10.1.0.1", 5.0)
    assert len(rl.buckets) == 1


def _third_peer(b: Device, seed: int, ep):
    c = Device(rng=seeded(seed))
    c.set_private_key(bytes(range(seed, seed + 32)))
    pc = c.add_peer(b.public_key)
    pc.endpoint = B_EP
    b.add_peer(c.public_key).endpoint = ep
    return c, pc


def test_device_rate_limits_handshakes_per_source_under_load():
    link = Link()
    b = link.b
    b.force_under_load = True
    c_ep = ("192.0.2.77", 40000)
    c, pc = _third_peer(b, 40, c_ep)
    # Both initiators fetch their cookie first.
    link.initiate(0.0)
    link.a_to_b(0.0)
    link.b_to_a(0.0)
    c._initiate(pc, 0.0)
    for d, _ in c.take_udp():
        b.receive_datagram(d, c_ep, 0.0)
    for d, _ in b.take_udp():
        c.receive_datagram(d, B_EP, 0.0)
    t = 6.0
    link.a.handle_timers(t)
    c.handle_timers(t)
    [(a_init, _)] = link.a.take_udp()
    [(c_init, _)] = c.take_udp()
    for _ in range(10):                                  # a floods from its address
        b.receive_datagram(a_init, A_EP, t)
    assert b.drops["handshake_rate_limited"] == 10 - PACKETS_BURSTABLE
    assert b.drops["handshake_replayed"] == PACKETS_BURSTABLE - 1
    assert types(b.take_udp()) == [MSG_RESP]
    b.receive_datagram(c_init, c_ep, t)                  # c's bucket is untouched
    assert types(b.take_udp()) == [MSG_RESP]


def test_initiations_per_peer_are_limited_to_50_per_second():
    link = Link()
    b = link.b
    e = bytes(range(9, 41))
    inits = [ref_initiation(link.a_priv, b.public_key, e, tai64n_ref(WALL + 1.0 + i * 0.02), 100 + i)[0]
             for i in range(3)]
    b.receive_datagram(inits[0], A_EP, 1.00)
    b.receive_datagram(inits[1], A_EP, 1.01)             # newer timestamp, but only 10 ms later
    b.receive_datagram(inits[2], A_EP, 1.03)
    assert b.drops["handshake_flood"] == 1
    assert types(b.take_udp()) == [MSG_RESP, MSG_RESP]


@pytest.mark.parametrize("loaded", ["a", "b"])
def test_data_flows_normally_after_the_cookie_dance(loaded):
    link = Link()
    getattr(link, loaded).force_under_load = True
    link.a.send_packet(ipv4_packet(A_IP4, B_IP4, b"1"), 0.0)
    link.pump(0.0)
    t = link.pa.t_retransmit
    link.a.handle_timers(t)
    link.b.handle_timers(t)
    link.pump(t)
    assert link.b.take_tun() == [ipv4_packet(A_IP4, B_IP4, b"1")]
    link.b.send_packet(ipv4_packet(B_IP4, A_IP4, b"2"), t + 1)
    link.pump(t + 1)
    assert link.a.take_tun() == [ipv4_packet(B_IP4, A_IP4, b"2")]
    assert MSG_DATA in [ty for _, ty, _ in link.log]
