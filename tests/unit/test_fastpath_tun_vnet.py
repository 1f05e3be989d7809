"""TUN offload: super-packets cut into segments, checked against packets built by hand.

The reference here shares no code with nsroute.engine.vnet: checksums are summed word by
word with end-around carry (RFC 1071), headers are packed field by field.
"""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsroute.engine import vnet

SRC4, DST4 = bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2])
SRC6, DST6 = bytes.fromhex("fd77" + "00" * 13 + "01"), bytes.fromhex("fd77" + "00" * 13 + "02")
FIN, SYN, PSH, ACK, CWR = 0x01, 0x02, 0x08, 0x10, 0x80


def ref_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ref_csum(data: bytes) -> int:
    return ~ref_sum(data) & 0xFFFF


def pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + bytes([0, proto]) + struct.pack("!H", length)
    return src + dst + struct.pack("!I", length) + bytes([0, 0, 0, proto])


def ipv4(payload_len: int, ident: int, proto: int, options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + payload_len, ident,
                    0x4000, 64, proto, 0, SRC4, DST4) + options
    return h[:10] + struct.pack("!H", ref_csum(h)) + h[12:]


def ipv6(payload_len: int, proto: int) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, payload_len, proto, 64, SRC6, DST6)


def tcp(seq: int, flags: int, payload: bytes, src: bytes, dst: bytes, csum: int | None = None,
        options: bytes = b"") -> bytes:
    off = (20 + len(options)) // 4
    h = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 77, off << 4, flags, 512, 0, 0) + options
    if csum is None:
        csum = ref_csum(pseudo(src, dst, 6, len(h) + len(payload)) + h + payload)
    return h[:16] + struct.pack("!H", csum) + h[18:] + payload


def udp(payload: bytes, src: bytes, dst: bytes, length: int | None = None) -> bytes:
    n = 8 + len(payload)
    h = struct.pack("!HHHH", 40000, 5201, n if length is None else length, 0)
    c = ref_csum(pseudo(src, dst, 17, n) + h + payload) or 0xFFFF
    return h[:6] + struct.pack("!H", c) + payload


def hdr(flags=0, gso_type=0, hdr_len=0, gso_size=0, start=0, offset=0) -> bytes:
    return struct.pack("=BBHHHH", flags, gso_type, hdr_len, gso_size, start, offset)


def tcp_ok(pkt: bytes, l4: int, v6: bool) -> bool:
    src, dst = (pkt[8:24], pkt[24:40]) if v6 else (pkt[12:16], pkt[16:20])
    return ref_sum(pseudo(src, dst, 6, len(pkt) - l4) + pkt[l4:]) == 0xFFFF


TS_OPT = bytes([1, 1, 8, 10]) + os.urandom(8)  # NOP NOP timestamps: a 32-byte header


def test_checksum_rfc1071_example():
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert vnet.checksum(data) == 0x220D == ref_csum(data)
    assert vnet.checksum(b"\x01") == ref_csum(b"\x01")
    assert vnet.checksum(b"") == 0xFFFF


@given(st.binary(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_checksum_matches_reference(data):
    # 0x0000 and 0xffff are the same ones'-complement number; vnet never gives 0.
    assert vnet.checksum(data) % 0xFFFF == ref_csum(data) % 0xFFFF
    assert vnet.checksum(data) != 0


def test_checksum_big_and_degenerate_inputs():
    for data in (os.urandom(65535), b"\xff" * 65534, bytes(65534), b"\xff" * 1461):
        assert vnet.checksum(data) % 0xFFFF == ref_csum(data) % 0xFFFF


def tso4(payload: bytes, mss: int, flags: int, seq: int = 0xFFFFF000, ident: int = 0xFFFE,
         ip_options: bytes = b"") -> tuple[bytes, list[bytes]]:
    """A TSO super-packet as the kernel hands it, and the segments the wire must carry."""
    l4 = 20 + len(ip_options)
    th = tcp(seq, flags, b"", SRC4, DST4, csum=0x1234, options=TS_OPT)  # partial: ignored
    sup = ipv4(len(th) + len(payload), ident, 6, ip_options) + th + payload
    segs = []
    chunks = [payload[i:i + mss] for i in range(0, len(payload), mss)]
    for i, chunk in enumerate(chunks):
        f = flags
        if i < len(chunks) - 1:
            f &= ~(FIN | PSH)
        if i:
            f &= ~CWR
        t = tcp((seq + i * mss) & 0xFFFFFFFF, f, chunk, SRC4, DST4, options=TS_OPT)
        segs.append(ipv4(len(t), (ident + i) & 0xFFFF, 6, ip_options) + t)
    return hdr(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, l4 + len(th), mss, l4, 16) + sup, segs


def test_tso4_split_matches_hand_built_segments():
    payload = os.urandom(5000)
    buf, want = tso4(payload, 1448, ACK | PSH | FIN)
    got = vnet.packets(buf)
    assert len(got) == 4
    assert got == want
    for p in got:
        assert ref_csum(p[:20]) == 0  # IPv4 header checksum
        assert tcp_ok(p, 20, False)
    assert b"".join(p[52:] for p in got) == payload
    # sequence numbers wrap, IP IDs wrap
    assert [struct.unpack("!I", p[24:28])[0] for p in got] == [
        (0xFFFFF000 + i * 1448) & 0xFFFFFFFF for i in range(4)]
    assert [struct.unpack("!H", p[4:6])[0] for p in got] == [0xFFFE, 0xFFFF, 0, 1]
    assert [p[33] for p in got] == [ACK, ACK, ACK, ACK | PSH | FIN]


def test_tso4_with_ip_options_odd_mss_and_cwr_on_first_only():
    buf, want = tso4(os.urandom(3001), 999, ACK | CWR | PSH, ip_options=bytes([1, 1, 1, 0]))
    buf = buf[:1] + bytes([vnet.GSO_TCPV4 | vnet.GSO_ECN]) + buf[2:]
    got = vnet.packets(buf)
    assert got == want
    assert [p[24 + 13] for p in got] == [ACK | CWR, ACK, ACK, ACK | PSH]
    assert all(tcp_ok(p, 24, False) for p in got)


def test_tso6_split_matches_hand_built_segments():
    payload = os.urandom(64000)
    mss, seq = 1428, 12345
    th = tcp(seq, ACK | PSH, b"", SRC6, DST6, csum=0, options=TS_OPT)
    sup = ipv6(len(th) + len(payload), 6) + th + payload
    buf = hdr(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV6, 40 + len(th), mss, 40, 16) + sup
    got = vnet.packets(buf)
    chunks = [payload[i:i + mss] for i in range(0, len(payload), mss)]
    assert len(got) == len(chunks) == 45
    for i, (p, chunk) in enumerate(zip(got, chunks, strict=True)):
        last = i == len(chunks) - 1
        t = tcp(seq + i * mss, ACK | (PSH if last else 0), chunk, SRC6, DST6, options=TS_OPT)
        assert p == ipv6(len(t), 6) + t
        assert tcp_ok(p, 40, True)


@given(size=st.integers(0, 9000), mss=st.integers(1, 2000), v6=st.booleans())
@settings(max_examples=150, deadline=None)
def test_tso_any_size_reassembles_with_valid_checksums(size, mss, v6):
    payload = os.urandom(size)
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    th = tcp(7, ACK | PSH | FIN, b"", src, dst, csum=0)
    ip = ipv6(len(th) + size, 6) if v6 else ipv4(len(th) + size, 1, 6)
    l4 = len(ip)
    buf = hdr(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV6 if v6 else vnet.GSO_TCPV4, l4 + 20, mss, l4, 16)
    got = vnet.packets(buf + ip + th + payload)
    assert len(got) == max(1, -(-size // mss))
    assert b"".join(p[l4 + 20:] for p in got) == payload
    for i, p in enumerate(got):
        assert tcp_ok(p, l4, v6)
        if v6:
            assert struct.unpack("!H", p[4:6])[0] == len(p) - 40
        else:
            assert struct.unpack("!H", p[2:4])[0] == len(p) and ref_csum(p[:20]) == 0
        assert (p[l4 + 13] & (FIN | PSH) != 0) == (i == len(got) - 1)


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
def test_uso_split_matches_hand_built_datagrams(v6):
    payload = os.urandom(1200 * 5 + 77)
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    uh = struct.pack("!HHHH", 40000, 5201, 8 + len(payload), 0)
    ip = ipv6(8 + len(payload), 17) if v6 else ipv4(8 + len(payload), 0x100, 17)
    l4 = len(ip)
    buf = hdr(vnet.F_NEEDS_CSUM, vnet.GSO_UDP_L4, l4 + 8, 1200, l4, 6) + ip + uh + payload
    got = vnet.packets(buf)
    chunks = [payload[i:i + 1200] for i in range(0, len(payload), 1200)]
    want = []
    for i, c in enumerate(chunks):
        u = udp(c, src, dst)
        want.append((ipv6(len(u), 17) if v6 else ipv4(len(u), 0x100 + i, 17)) + u)
    assert got == want


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
def test_needs_csum_completes_the_partial_checksum(v6):
    payload = os.urandom(777)
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    th_len = 20 + len(TS_OPT)
    partial = ref_sum(pseudo(src, dst, 6, th_len + len(payload)))  # as the kernel leaves it
    th = tcp(99, ACK | PSH, b"", src, dst, csum=partial, options=TS_OPT)
    ip = ipv6(th_len + len(payload), 6) if v6 else ipv4(th_len + len(payload), 5, 6)
    buf = hdr(vnet.F_NEEDS_CSUM, 0, 0, 0, len(ip), 16) + ip + th + payload
    [got] = vnet.packets(buf)
    assert got == ip + tcp(99, ACK | PSH, payload, src, dst, options=TS_OPT)
    # UDP: the checksum field sits 6 bytes in
    ip = ipv4(8 + len(payload), 6, 17)
    partial = ref_sum(pseudo(SRC4, DST4, 17, 8 + len(payload)))
    uh = struct.pack("!HHHH", 40000, 5201, 8 + len(payload), partial)
    [got] = vnet.packets(hdr(vnet.F_NEEDS_CSUM, 0, 0, 0, 20, 6) + ip + uh + payload)
    assert got == ip + udp(payload, SRC4, DST4)


def test_plain_reads_pass_through_unchanged():
    pkt = ipv4(20, 1, 6) + tcp(1, ACK, b"", SRC4, DST4)
    assert vnet.packets(vnet.ZERO_HDR + pkt) == [pkt]
    assert vnet.packets(hdr(flags=vnet.F_DATA_VALID) + pkt) == [pkt]


@pytest.mark.parametrize("buf", [
    b"\0" * 5,
    hdr(vnet.F_NEEDS_CSUM, 0, 0, 0, 20, 400) + ipv4(0, 1, 6),          # field beyond the end
    hdr(0, vnet.GSO_UDP, 0, 1000, 20, 6) + ipv4(0, 1, 17) + bytes(40),  # UFO: never asked for
    hdr(0, vnet.GSO_TCPV6, 0, 1000, 40, 16) + ipv4(40, 1, 6) + bytes(40),  # v4 packet, v6 type
    hdr(0, vnet.GSO_TCPV4, 0, 1000, 24, 16) + ipv4(40, 1, 6) + bytes(40),  # start != IHL
    hdr(0, vnet.GSO_TCPV4, 0, 0, 20, 16) + ipv4(40, 1, 6) + tcp(1, ACK, bytes(20), SRC4, DST4),
    hdr(0, vnet.GSO_TCPV4, 0, 1000, 20, 16) + ipv4(20, 1, 6) + bytes(12) + b"\xf0" + bytes(7),
], ids=["short", "csum-offset", "ufo", "family", "start", "mss0", "thlen"])
def test_malformed_reads_are_refused(buf):
    with pytest.raises(vnet.VnetError):
        vnet.packets(buf)


# ---------------------------------------------------------------- write side: coalescing

def segs4(n: int, mss: int = 1400, seq: int = 1000, ident: int = 7, last_flags: int = ACK | PSH,
          sport: int = 40000, last_len: int | None = None, ack: int = 77) -> list[bytes]:
    out = []
    for i in range(n):
        size = last_len if (i == n - 1 and last_len is not None) else mss
        payload = bytes([(i * 7 + sport) & 0xFF]) * size
        h = struct.pack("!HHIIBBHHH", sport, 5201, (seq + i * mss) & 0xFFFFFFFF, ack,
                        ((20 + len(TS_OPT)) // 4) << 4, last_flags if i == n - 1 else ACK,
                        512, 0, 0) + TS_OPT
        c = ref_csum(pseudo(SRC4, DST4, 6, len(h) + size) + h + payload)
        t = h[:16] + struct.pack("!H", c) + h[18:] + payload
        out.append(ipv4(len(t), (ident + i) & 0xFFFF, 6) + t)
    return out


def written(item) -> bytes:
    """The bytes one TUN write carries for an item of vnet.coalesce."""
    if isinstance(item, bytes):
        return vnet.ZERO_HDR + item
    return b"".join(bytes(b) for b in item.render())


def test_coalesced_segments_make_a_super_packet_that_splits_back():
    segs = segs4(5, last_len=333)
    [item] = vnet.coalesce(segs)
    buf = written(item)
    flags, gso_type, hdr_len, gso_size, start, offset = struct.unpack_from("=BBHHHH", buf)
    assert (flags, gso_type, hdr_len, gso_size, start, offset) == (
        vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 52, 1400, 20, 16)
    sup = buf[10:]
    assert len(sup) == 52 + 4 * 1400 + 333
    assert struct.unpack("!H", sup[2:4])[0] == len(sup) and ref_csum(sup[:20]) == 0
    assert sup[33] == ACK | PSH
    # CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not the checksum
    assert struct.unpack("!H", sup[36:38])[0] % 0xFFFF == ref_sum(
        pseudo(SRC4, DST4, 6, len(sup) - 20)) % 0xFFFF
    # What the kernel would send on, if it forwarded it: the original segments.
    assert vnet.packets(buf) == segs


def test_coalesce_v6():
    payload = os.urandom(4000)
    th = tcp(5, ACK, b"", SRC6, DST6, csum=0)
    sup = ipv6(20 + len(payload), 6) + th + payload
    segs = vnet.packets(hdr(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV6, 60, 1000, 40, 16) + sup)
    [item] = vnet.coalesce(segs)
    buf = written(item)
    assert buf[1] == vnet.GSO_TCPV6 and struct.unpack("!H", buf[14:16])[0] == 20 + 4000
    assert vnet.packets(buf) == segs


def test_coalesce_keeps_flows_apart_and_in_order():
    a, b = segs4(4, sport=1111), segs4(4, sport=2222, ident=900)
    udp_pkt = ipv4(8 + 10, 3, 17) + udp(b"x" * 10, SRC4, DST4)
    items = vnet.coalesce([a[0], b[0], a[1], udp_pkt, b[1], a[2], b[2], a[3], b[3]])
    groups = [i for i in items if not isinstance(i, bytes)]
    assert [len(g.pkts) for g in groups] == [4, 4]
    assert groups[0].pkts == a and groups[1].pkts == b
    assert udp_pkt in items


@pytest.mark.parametrize("case", ["gap", "psh", "fin", "short", "ack", "syn", "bare-ack", "ttl"])
def test_coalesce_breaks_where_segments_do_not_continue(case):
    s = segs4(4, last_flags=ACK)
    if case == "gap":
        s[2] = segs4(1, seq=1000 + 2 * 1400 + 1, last_flags=ACK)[0]
        want = [2, 1, 1]  # the 4th follows neither
    elif case == "psh":
        s = segs4(2, last_flags=ACK | PSH) + segs4(2, seq=1000 + 2800, last_flags=ACK)
        want = [2, 2]
    elif case == "fin":
        s[1] = segs4(2, last_flags=ACK | FIN)[1]
        want = [1, 1, 2]  # the FIN stands alone; data after it may not overtake it
    elif case == "short":
        s = segs4(2, last_len=100, last_flags=ACK) + segs4(2, seq=1000 + 1500, last_flags=ACK)
        want = [2, 2]
    elif case == "ack":
        s[2] = segs4(3, ack=78, last_flags=ACK)[2]
        want = [2, 1, 1]
    elif case == "syn":
        s[0] = segs4(1, last_flags=SYN)[0]
        want = [1, 3]
    elif case == "bare-ack":
        bare = ipv4(20, 1, 6) + tcp(1, ACK, b"", SRC4, DST4)
        s = s[:2] + [bare] + s[2:]
        want = [2, 1, 2]
    else:
        p = bytearray(s[2])
        p[8] = 1
        s[2] = bytes(p)  # TTL 1
        want = [2, 1, 1]
    items = vnet.coalesce(s)
    assert [1 if isinstance(i, bytes) else len(i.pkts) for i in items] == want
    got = []
    for i in items:
        got += vnet.packets(written(i))
    assert sorted(got) == sorted(s)


def test_coalesce_stays_under_64k():
    items = vnet.coalesce(segs4(60, last_flags=ACK))
    sizes = [len(written(i)) - 10 for i in items]
    assert all(n <= 65535 for n in sizes) and len(items) == 2
    assert sum(len(i.pkts) for i in items) == 60


# ---------------------------------------------------------------- UDP coalescing (USO writes)


def dgrams(n: int, size: int = 1200, last: int | None = None, v6: bool = False, ident: int = 0x200,
           sport: int = 40000) -> list[bytes]:
    """`n` datagrams of one flow as the peer sent them: valid checksums, IPv4 IDs counting up."""
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    out = []
    for i in range(n):
        payload = os.urandom(last if last is not None and i == n - 1 else size)
        u = bytearray(udp(payload, src, dst))
        if sport != 40000:
            struct.pack_into("!H", u, 0, sport)
            struct.pack_into("!H", u, 6, 0)
            struct.pack_into("!H", u, 6, ref_csum(pseudo(src, dst, 17, len(u)) + bytes(u)) or 0xFFFF)
        out.append((ipv6(len(u), 17) if v6 else ipv4(len(u), ident + i, 17)) + bytes(u))
    return out


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
def test_udp_datagrams_make_a_uso_super_packet_that_splits_back(v6):
    ds = dgrams(6, last=333, v6=v6)
    [item] = vnet.coalesce(ds)
    assert isinstance(item, vnet.UdpGroup) and item.pkts == ds
    buf = written(item)
    l4 = 40 if v6 else 20
    assert struct.unpack_from("=BBHHHH", buf) == (vnet.F_NEEDS_CSUM, vnet.GSO_UDP_L4, l4 + 8, 1200, l4, 6)
    sup = buf[10:]
    assert len(sup) == l4 + 8 + 5 * 1200 + 333
    assert struct.unpack("!H", sup[l4 + 4:l4 + 6])[0] == len(sup) - l4  # UDP length: all of it
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    assert struct.unpack("!H", sup[l4 + 6:l4 + 8])[0] % 0xFFFF == ref_sum(
        pseudo(src, dst, 17, len(sup) - l4)) % 0xFFFF  # CHECKSUM_PARTIAL
    if not v6:
        assert struct.unpack("!H", sup[2:4])[0] == len(sup) and ref_csum(sup[:20]) == 0
    # What the kernel makes of it: the datagrams as they were sent.
    assert vnet.packets(buf) == ds


def test_udp_coalescing_breaks_where_datagrams_do_not_continue():
    a = dgrams(3)
    big = dgrams(1, size=1300, ident=0x300)[0]
    s0, s1 = dgrams(2, last=500, ident=0x400)
    o0, o1 = dgrams(2, sport=41000, ident=0x500)
    d, d2 = dgrams(1, ident=0x600)[0], dgrams(1, ident=0x610)[0]
    empty = ipv4(8, 0x620, 17) + udp(b"", SRC4, DST4)
    frag = bytearray(dgrams(1, ident=0x700)[0])
    frag[6] |= 0x20  # more fragments
    frag = bytes(frag)
    sent = [a[0], a[1], o0, big, a[2], s0, s1, d, empty, o1, frag, d2]
    items = vnet.coalesce(sent)
    groups = [i.pkts if isinstance(i, vnet.UdpGroup) else i for i in items]
    # A larger datagram starts a new group; a shorter one ends its group; an empty datagram
    # or a fragment ends its flow's group and stands alone; flows keep their own groups.
    assert groups == [[a[0], a[1]], [o0, o1], [big, a[2]], [s0, s1], d, empty, frag, d2]
    got = []
    for it in items:
        got += vnet.packets(written(it))

    def sans_id(p: bytes) -> bytes:  # the kernel numbers a super-packet's IPv4 IDs anew
        return p[:4] + p[6:10] + p[12:]

    assert sorted(map(sans_id, got)) == sorted(map(sans_id, sent))


def test_udp_coalescing_limits_and_switches():
    ds = dgrams(70, size=500)
    items = vnet.coalesce(ds)
    assert [len(i.pkts) for i in items] == [64, 6]  # UDP_MAX_SEGMENTS
    big = dgrams(60, size=1400)
    items = vnet.coalesce(big)
    assert all(len(written(i)) - 10 <= 65535 for i in items) and sum(len(i.pkts) for i in items) == 60
    assert vnet.coalesce(ds[:5], udp=False) == ds[:5]
    segs = segs4(3, last_flags=ACK)
    assert vnet.coalesce(segs + ds[:3], tcp=False)[:3] == segs
    assert isinstance(vnet.coalesce(segs + ds[:3], tcp=False)[3], vnet.UdpGroup)


def _mutated(base: bytes, at: int, value: int, cut: int) -> bytes:
    p = bytearray(base[:max(1, len(base) - cut)])
    p[at % len(p)] = value
    return bytes(p)


_BASES = [*segs4(3, last_flags=ACK), *dgrams(3, size=300), *dgrams(2, size=300, v6=True),
          ipv4(8, 1, 17) + udp(b"", SRC4, DST4)]


@settings(max_examples=2000, derandomize=True, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(_BASES),
    st.builds(_mutated, st.sampled_from(_BASES), st.integers(0, 80), st.integers(0, 255),
              st.integers(0, 60)),
    st.binary(min_size=1, max_size=120)), max_size=12))
def test_coalesce_takes_any_packets_and_loses_none(pkts):
    """Whatever an authenticated peer sends: no exception, every packet written exactly once."""
    items = vnet.coalesce(pkts)
    out = []
    for it in items:
        if isinstance(it, bytes):
            out.append(it)
        else:
            out += it.pkts
            assert written(it)  # renders without error
    assert sorted(out) == sorted(pkts)
