"""Sticky sockets: reply from the local address (and interface) a peer last reached us on.

A host with several addresses must answer a peer from the address the peer wrote to;
otherwise the peer sees the reply come from elsewhere and roams its endpoint there (or a
NAT or firewall on the way drops it). The kernel's WireGuard and wireguard-go remember,
with each endpoint, the destination address and interface of the last packet from it
(IP_PKTINFO / IPV6_PKTINFO on receive) and send to it with the same control message.

Here the table is keyed by the remote endpoint (the device's peers hold only that) and
holds the control message exactly as recvmsg gave it, (level, type, data): Linux reads in_pktinfo's
ipi_ifindex and ipi_spec_dst on send (ipi_addr is ignored) and in6_pktinfo's address and
index, so the bytes go back unchanged and the hot path parses nothing. When that address
is gone the send fails (EINVAL, EADDRNOTAVAIL; ENODEV or ENETUNREACH for a vanished
interface): the entry is dropped and the send retried with the kernel's own choice, as
wireguard-go and the kernel do. A `wg set ... endpoint` forgets the entry for that
endpoint (see Engine.apply), as both of them start a user-set endpoint with no source.

As in both of them, an entry is learnt only from a datagram that authenticated (the device
counts those, Device.authenticated_rx): anyone can send a datagram with a peer's address
as its source to another of our addresses, and must not move where our replies leave from.
"""

from __future__ import annotations

import errno
import socket

IP_PKTINFO = 8  # Linux; the socket module lacks the constant
IPV6_RECVPKTINFO = socket.IPV6_RECVPKTINFO
IPV6_PKTINFO = socket.IPV6_PKTINFO
# in6_pktinfo (20 bytes) is the larger of the two (in_pktinfo: 12).
CMSG_SPACE = socket.CMSG_SPACE(20)
# The kernel's answers to a source address or interface that is no longer ours.
STALE = frozenset((errno.EINVAL, errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENETUNREACH))
# Entries are learnt from authenticated datagrams only, so the table holds about one entry
# per peer endpoint; still, it is emptied when it grows past LIMIT (roaming peers leave old
# entries behind; a live peer's entry comes back with its next packet).
LIMIT = 4096


def enable(sock: socket.socket, family: int) -> None:
    """Ask the kernel for the destination address and interface of every datagram."""
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def is_pktinfo(level: int, kind: int) -> bool:
    return (level == socket.IPPROTO_IP and kind == IP_PKTINFO) or (
        level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO)


def learn(table: dict, ep: tuple[str, int], msg: tuple[int, int, bytes]) -> None:
    """Record `msg` (a pktinfo control message) as `ep`'s sticky source; callers skip this
    when it is unchanged."""
    if len(table) >= LIMIT and ep not in table:
        table.clear()
    table[ep] = msg


def forget(table: dict, ep: tuple[str, int]) -> None:
    """Drop `ep`'s entry, however its address was spelt (the table holds the kernel's
    spelling, a `wg set` may write fd00:0::1 for fd00::1)."""
    table.pop(ep, None)
    host = ep[0].split("%")[0]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        norm = socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):
        return
    for key in [k for k in table if k[1] == ep[1] and k[0].split("%")[0] == norm]:
        del table[key]
