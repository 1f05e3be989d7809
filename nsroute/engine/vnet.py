"""TUN offload (IFF_VNET_HDR): cut the kernel's TCP/UDP super-packets into MTU-sized ones.

With IFF_VNET_HDR and TUNSETOFFLOAD the kernel hands the engine, in one read, a
`virtio_net_hdr` and a packet that may be up to 64 KB: a TSO (or USO) "super-packet" whose
IP and TCP (UDP) headers stand for all its segments, or a single packet whose transport
checksum is only partial (the pseudo-header sum, VIRTIO_NET_HDR_F_NEEDS_CSUM). `packets`
turns one read into the packets the peer must get: each with its own IP header (total
length, IPv4 ID + i, header checksum), TCP sequence number, PSH/FIN only on the last and
CWR only on the first segment, and a complete transport checksum.

Checksums are the cost in Python. `_sum` gets the ones'-complement sum from the residue of
the data read as one big-endian integer modulo 0xffff (2**16 == 1 mod 0xffff, so the
residue is the end-around-carry sum of the 16-bit words); a few shift-and-add folds before
the one division keep it near 2 us for 1,460 bytes here.
"""

from __future__ import annotations

import struct

# struct virtio_net_hdr (legacy layout, native byte order: TUN's default on any host).
HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
HDR_LEN = HDR.size  # 10
ZERO_HDR = bytes(HDR_LEN)
F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3  # UFO: never asked for
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

_TCP_FIN = 0x01
_TCP_PSH = 0x08
_TCP_CWR = 0x80
_H = struct.Struct("!H")
_I = struct.Struct("!I")
_IP4_LEN_ID = struct.Struct("!HH")


class VnetError(ValueError):
    """A read whose header and packet do not agree; the engine drops and counts it."""


def _sum(data) -> int:
    """Ones'-complement sum of `data` as 16-bit big-endian words (odd end padded), mod 0xffff.

    As one number, since 2**16 == 1 mod 0xffff: the words' sum and the big-endian integer
    have the same residue. One `%` by a one-digit divisor is cheaper than folding the
    integer in halves first (callgrind, 1,368 bytes: 23 k against 41 k instructions;
    timed, faster from 40 bytes to 64 KB)."""
    s = int.from_bytes(data, "big")
    if len(data) & 1:
        s <<= 8
    return s % 0xffff


def checksum(data) -> int:
    """The Internet checksum of `data` (RFC 1071), never 0 (0xffff stands for it)."""
    return 0xffff - _sum(data)


def _pseudo(pkt, l3: int, v4: bool, proto: int, length: int) -> int:
    """Sum of the TCP/UDP pseudo-header for `pkt` (addresses from its IP header at `l3`)."""
    addrs = pkt[l3 + 12:l3 + 20] if v4 else pkt[l3 + 8:l3 + 40]
    return int.from_bytes(addrs, "big") % 0xffff + proto + length


def complete_checksum(pkt: bytes, start: int, offset: int) -> bytes:
    """NEEDS_CSUM: the field at start+offset holds the pseudo-header sum; finish it."""
    field = start + offset
    if start < 0 or field + 2 > len(pkt):
        raise VnetError("checksum offsets beyond the packet")
    out = bytearray(pkt)
    _H.pack_into(out, field, checksum(memoryview(out)[start:]))
    return bytes(out)


def packets(buf: bytes) -> list[bytes]:
    """One read from an IFF_VNET_HDR TUN (header + packet) -> the packets to encrypt."""
    if len(buf) < HDR_LEN:
        raise VnetError("read shorter than the virtio_net_hdr")
    flags, gso_type, _hdr_len, gso_size, start, offset = HDR.unpack_from(buf)
    pkt = buf[HDR_LEN:]
    gso_type &= ~GSO_ECN
    if gso_type == GSO_NONE:
        if flags & F_NEEDS_CSUM:
            return [complete_checksum(pkt, start, offset)]
        return [pkt]
    if gso_type in (GSO_TCPV4, GSO_TCPV6):
        return split_tcp(pkt, gso_type == GSO_TCPV4, start, gso_size)
    if gso_type == GSO_UDP_L4:
        return split_udp(pkt, start, gso_size)
    raise VnetError(f"unexpected gso_type {gso_type}")


def _ip_fixup(pkt, l4: int, v4: bool) -> tuple[bytearray, int]:
    """The IP header (up to l4) as a template, and the IPv4 ID (0 for IPv6)."""
    n = len(pkt)
    if n < 40 or l4 > n:
        raise VnetError("super-packet shorter than its headers")
    version = pkt[0] >> 4
    if v4:
        if version != 4 or (pkt[0] & 15) * 4 != l4:
            raise VnetError("TCPv4 super-packet without a matching IPv4 header")
        return bytearray(pkt[:l4]), (pkt[4] << 8) | pkt[5]
    if version != 6 or l4 < 40:
        raise VnetError("TCPv6 super-packet without an IPv6 header")
    return bytearray(pkt[:l4]), 0


def split_tcp(pkt: bytes, v4: bool, l4: int, mss: int) -> list[bytes]:
    """Cut a TSO super-packet (IP + TCP header, then up to 64 KB of payload) at `mss`."""
    iph, ip_id = _ip_fixup(pkt, l4, v4)
    if l4 + 20 > len(pkt):
        raise VnetError("TCP header beyond the packet")
    thlen = (pkt[l4 + 12] >> 4) * 4
    data_at = l4 + thlen
    if thlen < 20 or data_at > len(pkt) or mss <= 0:
        raise VnetError("bad TCP header length or segment size")
    # Header sums without the fields that change per segment, which are added as numbers:
    # IPv4 total length, ID and checksum; TCP sequence number, flags and checksum.
    tcph = bytearray(pkt[l4:data_at])
    last_flags = tcph[13]
    seq = _I.unpack_from(tcph, 4)[0]
    tcph[4:8] = bytes(4)
    tcph[13] = tcph[16] = tcph[17] = 0
    tcp_base = _sum(tcph) + _pseudo(pkt, 0, v4, 6, 0)
    if v4:
        iph[2:6] = bytes(4)
        iph[10] = iph[11] = 0
        ip_base = _sum(iph)
    pack_ip4 = _IP4_LEN_ID.pack_into
    pack_i = _I.pack_into
    pack_h = _H.pack_into
    view = memoryview(pkt)
    total = len(pkt)
    starts = range(data_at, total, mss) if total > data_at else (data_at,)
    last_i = len(starts) - 1
    out = []
    for i, at in enumerate(starts):
        chunk = view[at:at + mss]
        tl = thlen + len(chunk)
        if v4:
            ident = (ip_id + i) & 0xFFFF
            pack_ip4(iph, 2, l4 + tl, ident)
            pack_h(iph, 10, 0xFFFF - (ip_base + l4 + tl + ident) % 0xFFFF)
        else:
            pack_h(iph, 4, l4 - 40 + tl)
        sq = (seq + i * mss) & 0xFFFFFFFF
        fl = last_flags
        if i != last_i:
            fl &= ~(_TCP_FIN | _TCP_PSH)
        if i:
            fl &= ~_TCP_CWR
        pack_i(tcph, 4, sq)
        tcph[13] = fl
        s = tcp_base + tl + (sq >> 16) + (sq & 0xFFFF) + fl + _sum(chunk)
        pack_h(tcph, 16, 0xFFFF - s % 0xFFFF)
        out.append(b"".join((iph, tcph, chunk)))
    return out


def split_udp(pkt: bytes, l4: int, size: int) -> list[bytes]:
    """Cut a USO super-packet (one UDP header for all) into datagrams of `size` bytes."""
    v4 = len(pkt) > 0 and pkt[0] >> 4 == 4
    iph, ip_id = _ip_fixup(pkt, l4, v4)
    if l4 + 8 > len(pkt) or size <= 0:
        raise VnetError("bad UDP header or segment size")
    udph = bytearray(pkt[l4:l4 + 8])
    base = _pseudo(pkt, 0, v4, 17, 0)
    view = memoryview(pkt)
    out = []
    for i, at in enumerate(range(l4 + 8, max(len(pkt), l4 + 9), size)):
        chunk = view[at:at + size]
        n = 8 + len(chunk)
        if v4:
            _H.pack_into(iph, 2, l4 + n)
            _H.pack_into(iph, 4, (ip_id + i) & 0xffff)
            iph[10] = iph[11] = 0
            _H.pack_into(iph, 10, checksum(iph))
        else:
            _H.pack_into(iph, 4, l4 - 40 + n)
        _H.pack_into(udph, 4, n)
        udph[6] = udph[7] = 0
        s = base + n + _sum(udph) + _sum(chunk)
        _H.pack_into(udph, 6, 0xffff - s % 0xffff)  # never 0: 0xffff stands for it in UDP
        out.append(b"".join((iph, udph, chunk)))
    return out


# ---------------------------------------------------------------- write side (GRO)

_MAX_GSO_BYTES = 65535
_GROUPABLE = 0x10  # ACK alone; PSH may end a group
_V4_TCP_NOFRAG = 0x3FFF  # MF and fragment offset


def _set_ip_length(hdrs: bytearray, l4: int, v4: bool, total: int) -> None:
    """A super-packet's IP header: its length is the whole packet's (IPv4: checksum anew)."""
    if v4:
        _H.pack_into(hdrs, 2, total)
        hdrs[10] = hdrs[11] = 0
        _H.pack_into(hdrs, 10, checksum(memoryview(hdrs)[:l4]))
    else:
        _H.pack_into(hdrs, 4, total - 40)


def _shape_mask(l4: int, data_at: int) -> int:
    """Which bits of the headers (up to data_at) every segment of a group must share: all
    but the IP length, ID and header checksum, and the TCP sequence number, flags and
    checksum."""
    mask = bytearray(b"\xff" * data_at)
    variable = (2, 3, 4, 5, 10, 11) if l4 == 20 else (4, 5)
    for i in (*variable, l4 + 4, l4 + 5, l4 + 6, l4 + 7, l4 + 13, l4 + 16, l4 + 17):
        mask[i] = 0
    return int.from_bytes(mask, "big")


_SHAPE_MASKS: dict[int, dict[int, int]] = {20: {}, 40: {}}  # by l4, then data_at


class _Group:
    KIND = "gro"  # counters and fallback switch: TCP coalescing
    __slots__ = ("pkts", "l4", "data_at", "mss", "next_seq", "total", "closed", "shape")

    def __init__(self, pkt: bytes, l4: int, data_at: int, seq: int, shape: int) -> None:
        n = len(pkt) - data_at
        self.pkts = [pkt]
        self.l4, self.data_at = l4, data_at
        self.mss = n
        self.next_seq = (seq + n) & 0xFFFFFFFF
        self.total = len(pkt)
        self.closed = bool(pkt[l4 + 13] & _TCP_PSH)
        self.shape = shape

    def take(self, pkt: bytes, seq: int, n: int, shape: int) -> bool:
        """Append `pkt` (`n` bytes of payload) if it continues this group exactly: the same
        headers but for lengths, ID, checksums and sequence (`shape`, see _shape_mask);
        contiguous; no bigger than the first segment, and only the last may be smaller."""
        if (self.closed or seq != self.next_seq or shape != self.shape or n > self.mss
                or self.total + n > _MAX_GSO_BYTES):
            return False
        self.pkts.append(pkt)
        self.next_seq = (seq + n) & 0xFFFFFFFF
        self.total += n
        self.closed = n < self.mss or bool(pkt[self.l4 + 13] & _TCP_PSH)
        return True

    def render(self) -> list:
        """The buffers of one write: virtio_net_hdr, then the packet (a super-packet when
        the group holds more than one)."""
        pkts = self.pkts
        if len(pkts) == 1:
            return [ZERO_HDR, pkts[0]]
        first, l4, data_at = pkts[0], self.l4, self.data_at
        hdrs = bytearray(first[:data_at])
        v4 = first[0] >> 4 == 4
        total = self.total
        _set_ip_length(hdrs, l4, v4, total)
        hdrs[l4 + 13] = pkts[-1][l4 + 13]  # ACK, and PSH if the last had it
        # CHECKSUM_PARTIAL: the field holds the pseudo-header sum; the kernel trusts the
        # segments (AEAD-authenticated) and fills in checksums only if it forwards them.
        _H.pack_into(hdrs, l4 + 16, _pseudo(first, 0, v4, 6, total - l4) % 0xFFFF)
        vh = HDR.pack(F_NEEDS_CSUM, GSO_TCPV4 if v4 else GSO_TCPV6, data_at, self.mss, l4, 16)
        mv = memoryview
        return [vh, hdrs, *[mv(p)[data_at:] for p in pkts]]


class UdpGroup:
    """Datagrams of one UDP flow, all of the first one's size but perhaps a shorter last:
    one GSO_UDP_L4 write, which the kernel segments again before any socket sees it."""

    KIND = "uso"  # counters and fallback switch: UDP coalescing
    __slots__ = ("pkts", "l4", "size", "total", "closed")

    def __init__(self, pkt: bytes, l4: int) -> None:
        self.pkts = [pkt]
        self.l4 = l4
        self.size = len(pkt) - l4 - 8
        self.total = len(pkt)
        self.closed = False

    def take(self, pkt: bytes) -> bool:
        first, l4 = self.pkts[0], self.l4
        n = len(pkt) - l4 - 8
        if (self.closed or n <= 0 or n > self.size or len(self.pkts) >= _MAX_UDP_SEGMENTS
                or self.total + n > _MAX_GSO_BYTES):
            return False
        if l4 == 20:  # all but total length, ID and header checksum; then the ports
            if first[:2] != pkt[:2] or first[6:10] != pkt[6:10] or first[12:24] != pkt[12:24]:
                return False
        elif first[:4] != pkt[:4] or first[6:44] != pkt[6:44]:  # all but payload length
            return False
        self.pkts.append(pkt)
        self.total += n
        self.closed = n < self.size  # a shorter datagram can only be the last
        return True

    def render(self) -> list:
        pkts = self.pkts
        if len(pkts) == 1:
            return [ZERO_HDR, pkts[0]]
        first, l4 = pkts[0], self.l4
        hdrs = bytearray(first[:l4 + 8])
        v4 = l4 == 20
        total = self.total
        _set_ip_length(hdrs, l4, v4, total)
        _H.pack_into(hdrs, l4 + 4, total - l4)
        _H.pack_into(hdrs, l4 + 6, _pseudo(first, 0, v4, 17, total - l4) % 0xFFFF)
        vh = HDR.pack(F_NEEDS_CSUM, GSO_UDP_L4, l4 + 8, self.size, l4, 6)
        out = [vh, hdrs]
        out.extend(memoryview(p)[l4 + 8:] for p in pkts)
        return out


_MAX_UDP_SEGMENTS = 64  # UDP_MAX_SEGMENTS of kernels before 6.10 (later ones take 128)


def _udp_flow(pkt: bytes, n: int, b0: int) -> tuple[int, bytes | None]:
    """(UDP header offset, flow key) of a datagram that may join a group; (0, key) for
    another UDP datagram, which ends its flow's group; (0, None) for anything else."""
    if b0 >> 4 == 4:
        if n < 28 or pkt[9] != 17:
            return 0, None
        l4 = (b0 & 15) * 4
        key = pkt[12:24] if l4 == 20 else pkt[12:20] + pkt[l4:l4 + 4]
        if l4 != 20 or ((pkt[6] << 8) | pkt[7]) & _V4_TCP_NOFRAG:
            return 0, key  # options, or a fragment
    elif b0 >> 4 == 6 and n >= 48 and pkt[6] == 17:
        l4, key = 40, pkt[8:44]
    else:
        return 0, None
    # Not empty, and the UDP length agrees with the packet's (else the kernel would cut
    # the group differently).
    return (l4 if n > l4 + 8 and (pkt[l4 + 4] << 8) | pkt[l4 + 5] == n - l4 else 0), key


def coalesce(pkts: list[bytes], tcp: bool = True, udp: bool = True) -> list:
    """Decrypted packets -> what to write: consecutive TCP segments of one flow become a
    group (`render` gives one GSO_TCPV4/6 write, `.pkts` its packets), and so do
    consecutive same-size datagrams of one UDP flow (GSO_UDP_L4; `udp=False` where the
    kernel refuses those); anything else stays a packet of its own (bytes), for a write
    behind a zero header. Order within each flow is kept; packets of different flows may
    be regrouped."""
    out: list = []
    open_groups: dict[bytes, _Group] = {}
    udp_groups: dict[bytes, UdpGroup] = {}
    for pkt in pkts:
        n = len(pkt)
        b0 = pkt[0] if n else 0
        if not tcp:
            l4 = 0
        elif b0 == 0x45 and n >= 40 and pkt[9] == 6 and not (
                ((pkt[6] << 8) | pkt[7]) & _V4_TCP_NOFRAG):
            l4 = 20
            key = pkt[12:24]
        elif b0 >> 4 == 6 and n >= 60 and pkt[6] == 6:
            l4 = 40
            key = pkt[8:44]
        else:
            l4 = 0
        if not l4:
            ul4, ukey = _udp_flow(pkt, n, b0) if udp else (0, None)
            if not ul4:
                if ukey is not None:  # later datagrams of its flow must not overtake it
                    udp_groups.pop(ukey, None)
                out.append(pkt)
                continue
            ug = udp_groups.get(ukey)
            if ug is not None and ug.take(pkt):
                continue
            ug = udp_groups[ukey] = UdpGroup(pkt, ul4)
            out.append(ug)
            continue
        data_at = l4 + (pkt[l4 + 12] >> 4) * 4
        flags = pkt[l4 + 13]
        if data_at >= n or flags & ~_TCP_PSH != _GROUPABLE or data_at < l4 + 20:
            open_groups.pop(key, None)  # later data must not overtake this packet
            out.append(pkt)
            continue
        seq = _I.unpack_from(pkt, l4 + 4)[0]
        masks = _SHAPE_MASKS[l4]
        mask = masks.get(data_at)
        if mask is None:
            mask = masks[data_at] = _shape_mask(l4, data_at)
        shape = int.from_bytes(pkt[:data_at], "big") & mask
        g = open_groups.get(key)
        if g is not None and g.take(pkt, seq, n - data_at, shape):
            continue
        g = open_groups[key] = _Group(pkt, l4, data_at, seq, shape)
        out.append(g)
    return [x.pkts[0] if type(x) is not bytes and len(x.pkts) == 1 else x for x in out]
