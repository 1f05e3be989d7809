"""Fuzzing the whole receive path: `Device.receive_datagram` (and the batch entry point
`receive_datagrams`) never raises, whatever arrives.

One in-memory tunnel (two sans-IO devices, a and b, with a completed handshake) lives for
the whole campaign of each test. Every example throws one hostile datagram at one of the
two devices: arbitrary bytes; a structurally valid message of each type (right type byte
and length) with random content, half of the time with a correct MAC1 so that it gets past
the cheap check into the Noise code; or a bit-flipped / byte-mutated copy of a real
message captured from the tunnel (initiation, response, cookie reply, transport both
ways). After the campaign the tunnel must still carry a packet in both directions, byte
for byte, and every hostile datagram must have been dropped (counted in `device.drops`)
without ever reaching the TUN.

Self-contained on purpose (no imports from other test modules): CI runs it on its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsroute.wireguard import keys
from nsroute.wireguard.constants import (
    COOKIE_REPLY_LEN,
    INITIATION_LEN,
    MSG_COOKIE_REPLY,
    MSG_INITIATION,
    MSG_RESPONSE,
    MSG_TRANSPORT,
    RESPONSE_LEN,
)
from nsroute.wireguard.device import Device

EXAMPLES = 10_000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

WALL = 1_700_000_000.0
A_EP = ("192.0.2.1", 51820)  # documentation addresses: nothing here touches a socket
B_EP = ("198.51.100.7", 41414)
A_IP4, B_IP4 = "10.77.0.1", "10.77.0.2"
SOURCES = [A_EP, B_EP, ("203.0.113.5", 1), ("2001:db8::5", 65535), ("fe80::1%eth0", 7)]


def ipv4_packet(src: str, dst: str, payload: bytes) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, 17, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return hdr + payload


def mac1(receiver_pub: bytes, alpha: bytes) -> bytes:
    key = hashlib.blake2s(b"mac1----" + receiver_pub).digest()
    return hashlib.blake2s(alpha, key=key, digest_size=16).digest()


class Tunnel:
    """Two devices, each the other's only peer, with datagrams carried by hand."""

    def __init__(self, seed: int = 7) -> None:
        r = random.Random(seed)
        self.a = Device(rng=random.Random(seed + 1).randbytes, wall_offset=WALL)
        self.b = Device(rng=random.Random(seed + 2).randbytes, wall_offset=WALL)
        self.a.set_private_key(keys.clamp(r.randbytes(32)))
        self.b.set_private_key(keys.clamp(r.randbytes(32)))
        self.pa = self.a.add_peer(self.b.public_key)
        self.pb = self.b.add_peer(self.a.public_key)
        self.pa.endpoint, self.pb.endpoint = B_EP, A_EP
        self.a.set_allowed_ips(self.pa, [f"{B_IP4}/32"], replace=True)
        self.b.set_allowed_ips(self.pb, [f"{A_IP4}/32"], replace=True)
        self.captured: dict[str, list[bytes]] = {k: [] for k in (
            "initiation", "response", "cookie_reply", "transport_ab", "transport_ba")}

    def carry(self, now: float) -> None:
        """Deliver everything both ways until quiet, recording each message by kind."""
        for _ in range(10):
            if not self.a.udp_out and not self.b.udp_out:
                return
            for src, dst, ep, suffix in ((self.a, self.b, A_EP, "ab"), (self.b, self.a, B_EP, "ba")):
                for data, _ in src.take_udp():
                    kind = {MSG_INITIATION: "initiation", MSG_RESPONSE: "response",
                            MSG_COOKIE_REPLY: "cookie_reply"}.get(data[0], f"transport_{suffix}")
                    self.captured[kind].append(data)
                    dst.receive_datagram(data, ep, now)
        raise AssertionError("the devices never went quiet")

    def establish(self, now: float) -> None:
        # One handshake under load first, to capture a genuine cookie reply as well.
        self.b.force_under_load = True
        self.a._initiate(self.pa, now)
        self.carry(now)
        self.b.force_under_load = False
        self.a._initiate(self.pa, now + 5.5)  # REKEY_TIMEOUT later: a new initiation
        self.carry(now + 5.5)
        assert self.pa.current is not None
        self.exchange(now + 6.0, b"warm-up")
        assert self.captured["cookie_reply"] and self.captured["transport_ba"]

    def exchange(self, now: float, payload: bytes) -> None:
        """A packet each way through the tunnel; both must arrive unchanged."""
        ab, ba = ipv4_packet(A_IP4, B_IP4, payload), ipv4_packet(B_IP4, A_IP4, payload[::-1])
        self.a.tun_out.clear()
        self.b.tun_out.clear()
        self.a.send_packet(ab, now)
        self.carry(now)
        assert self.b.take_tun() == [ab]
        self.b.send_packet(ba, now)
        self.carry(now)
        assert self.a.take_tun() == [ba]


# What arrives where: the device that a real message of each kind is meant for.
TARGET = {"initiation": "b", "response": "a", "cookie_reply": "a",
          "transport_ab": "b", "transport_ba": "a"}
SHAPES = {MSG_INITIATION: INITIATION_LEN, MSG_RESPONSE: RESPONSE_LEN,
          MSG_COOKIE_REPLY: COOKIE_REPLY_LEN, MSG_TRANSPORT: 64}


class Campaign:
    def __init__(self) -> None:
        self.t = Tunnel()
        self.t.establish(0.0)
        self.now = 10.0
        self.fed = 0

    def feed(self, who: str, data: bytes, src, under_load: bool) -> None:
        dev = self.t.a if who == "a" else self.t.b
        dev.force_under_load = under_load
        before = sum(dev.drops.values())
        tun_before = len(dev.tun_out)
        self.now += 0.001  # 10,000 examples stay well inside the sessions' 180 s life
        dev.receive_datagram(data, src, self.now)  # must not raise: that is the test
        dev.force_under_load = False
        assert len(dev.tun_out) == tun_before, data.hex()
        assert sum(dev.drops.values()) == before + 1, (data.hex(), dict(dev.drops))
        # Cookie replies that b sends to forged sources go nowhere.
        dev.udp_out.clear()
        self.fed += 1

    def finish(self) -> None:
        assert self.fed >= EXAMPLES
        self.t.exchange(self.now + 0.5, b"after the campaign " * 3)
        self.t.exchange(self.now + 0.6, bytes(range(256)) * 4)


def _run(test, campaign: Campaign) -> None:
    test()
    campaign.finish()


def test_arbitrary_bytes():
    c = Campaign()

    @FUZZ
    @given(data=st.binary(max_size=300), who=st.sampled_from("ab"),
           src=st.sampled_from(SOURCES), under_load=st.booleans())
    def one(data, who, src, under_load):
        c.feed(who, data, src, under_load)

    _run(one, c)


def test_structurally_valid_messages_with_random_content():
    c = Campaign()
    pubs = {"a": c.t.a.public_key, "b": c.t.b.public_key}
    # Indices the devices really use, so that random content sometimes names a live session.
    live = [k for k in list(c.t.a.index) + list(c.t.b.index)]

    @FUZZ
    @given(mtype=st.sampled_from(sorted(SHAPES)), who=st.sampled_from("ab"),
           body=st.data(), src=st.sampled_from(SOURCES), under_load=st.booleans(),
           good_mac1=st.booleans(), real_index=st.booleans())
    def one(mtype, who, body, src, under_load, good_mac1, real_index):
        n = SHAPES[mtype]
        if mtype == MSG_TRANSPORT:
            n = body.draw(st.integers(32, 200), label="length")
        rest = bytearray(body.draw(st.binary(min_size=n - 4, max_size=n - 4), label="rest"))
        if real_index and live:
            # The index field: sender of an initiation is free; receiver of the others.
            off = 8 if mtype == MSG_RESPONSE else 4
            idx = body.draw(st.sampled_from(live), label="index")
            rest[off - 4:off] = struct.pack("<I", idx)
        msg = bytes([mtype, 0, 0, 0]) + bytes(rest)
        if good_mac1 and mtype in (MSG_INITIATION, MSG_RESPONSE):
            msg = msg[:n - 32] + mac1(pubs[who], msg[:n - 32]) + msg[n - 16:]
        c.feed(who, msg, src, under_load)

    _run(one, c)


def test_mutations_of_captured_messages():
    c = Campaign()
    captured = {k: v for k, v in c.t.captured.items() if v}
    pubs = {"a": c.t.a.public_key, "b": c.t.b.public_key}

    @FUZZ
    @given(kind=st.sampled_from(sorted(captured)), pick=st.integers(0, 10), data=st.data(),
           src=st.sampled_from(SOURCES), under_load=st.booleans(), fix_mac1=st.booleans())
    def one(kind, pick, data, src, under_load, fix_mac1):
        msgs = captured[kind]
        msg = bytearray(msgs[pick % len(msgs)])
        how = data.draw(st.sampled_from(["bits", "bytes", "truncate", "extend", "replay"]))
        if how == "bits":
            for bit in data.draw(st.lists(st.integers(0, len(msg) * 8 - 1), min_size=1,
                                          max_size=8, unique=True)):
                msg[bit // 8] ^= 1 << (bit % 8)
        elif how == "bytes":
            for pos in data.draw(st.lists(st.integers(0, len(msg) - 1), min_size=1, max_size=8,
                                          unique=True)):
                msg[pos] ^= data.draw(st.integers(1, 255))
        elif how == "truncate":
            del msg[data.draw(st.integers(0, len(msg) - 1)):]
        elif how == "extend":
            msg += data.draw(st.binary(min_size=1, max_size=32))
        # "replay": the captured message unchanged; it was consumed already.
        who = TARGET[kind]
        n = len(msg)
        if (fix_mac1 and kind in ("initiation", "response") and n in (INITIATION_LEN, RESPONSE_LEN)
                and msg[:4] == bytes(msgs[0][:4])):
            msg[n - 32:n - 16] = mac1(pubs[who], bytes(msg[:n - 32]))
        c.feed(who, bytes(msg), src, under_load)

    _run(one, c)


def test_hostile_datagrams_inside_batches():
    """The engine hands a socket's drain to receive_datagrams at once: hostile datagrams
    mixed into a run of genuine ones (the batch's fast path) must each cost one drop and
    nothing else, and every genuine packet around them must arrive, in order."""
    c = Campaign()
    captured = [m for k, v in c.t.captured.items() if v for m in v]
    t = c.t

    @settings(max_examples=2_000, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(plan=st.lists(st.one_of(
        st.just("genuine"),
        st.builds(lambda m, at, x: (m[:at % len(m)] + bytes([m[at % len(m)] ^ x]) + m[at % len(m) + 1:]),
                  st.sampled_from(captured), st.integers(0, 300), st.integers(1, 255)),
        st.builds(lambda m, cut: m[:cut], st.sampled_from(captured), st.integers(0, 40)),
        st.binary(max_size=120)), min_size=1, max_size=24))
    def one(plan):
        c.now += 0.001
        sent, batch = [], []
        for item in plan:
            if item == "genuine":
                pkt = ipv4_packet(A_IP4, B_IP4, b"batch %d" % len(sent))
                t.a.send_packet(pkt, c.now)
                [(data, _ep)] = t.a.take_udp()
                sent.append(pkt)
                batch.append(data)
            else:
                batch.append(item)
        before = sum(t.b.drops.values())
        t.b.receive_datagrams(batch, A_EP, c.now)  # must not raise
        assert t.b.take_tun() == sent
        assert sum(t.b.drops.values()) == before + len(batch) - len(sent), dict(t.b.drops)
        t.b.udp_out.clear()
        c.fed += 1

    one()
    assert c.fed >= 2_000
    c.t.exchange(c.now + 0.5, b"after the batches " * 3)
