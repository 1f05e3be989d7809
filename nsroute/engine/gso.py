"""UDP segmentation offload for the engine's sockets: many datagrams per syscall.

Send (UDP_SEGMENT, "GSO"): consecutive datagrams to one endpoint that share a size (the
last may be shorter) go out as one buffer in one sendmsg; the kernel, or the NIC, cuts it.
Receive (UDP_GRO): the kernel may hand over several same-size datagrams from one sender as
one buffer, with the segment size in a control message; `split` cuts it back.

Either falls back to one datagram per syscall, for good, the first time the kernel
refuses it (ENOPROTOOPT/EOPNOTSUPP on old kernels; EIO when the route's device cannot
checksum; EINVAL for a segment size it will not take). The device never sees the
difference: it still gets and gives one datagram at a time.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct

from .sticky import STALE

log = logging.getLogger("nsroute.engine")

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS in older kernels (newer take 128)
MAX_BYTES = 65000  # one IP datagram's worth of UDP payload, with room for headers
REFUSALS = (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP)
_GSO_CMSG = struct.Struct("=H")
_GRO_CMSG = struct.Struct("=i")
GRO_CMSG_SPACE = socket.CMSG_SPACE(_GRO_CMSG.size)

Endpoint = tuple[str, int]


def runs(out: list[tuple[bytes, Endpoint]]):
    """Group `out` in order into (endpoint, [datagrams]) runs that one GSO send can carry:
    same endpoint, all the first one's size except perhaps a shorter last one."""
    i, n = 0, len(out)
    while i < n:
        data, ep = out[i]
        size = len(data)
        group = [data]
        total = size
        i += 1
        while i < n and len(group) < MAX_SEGMENTS:
            d, e = out[i]
            ln = len(d)
            if e != ep or ln > size or total + ln > MAX_BYTES or ln == 0:
                break
            group.append(d)
            total += ln
            i += 1
            if ln < size:
                break  # a shorter segment can only be the last
        yield ep, group


def enable_gro(sock: socket.socket) -> bool:
    """Ask for coalesced receives; False when the kernel does not have UDP_GRO."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        return True
    except OSError:
        return False


def gro_size(ancdata) -> int:
    """The segment size of a coalesced receive, or 0 when it is one datagram."""
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= _GRO_CMSG.size:
            return _GRO_CMSG.unpack_from(data)[0]
    return 0


def split(data: bytes, size: int) -> list[bytes]:
    """Cut a coalesced receive back into its datagrams (the last may be shorter)."""
    if size <= 0 or size >= len(data):
        return [data]
    return [data[i:i + size] for i in range(0, len(data), size)]


class Sender:
    """Sends the device's datagrams on one socket, with GSO while the kernel takes it."""

    def __init__(self, sock: socket.socket, gso: bool = True) -> None:
        self.sock = sock
        self.gso = gso
        self.gso_sends = 0
        self.fallbacks = 0

    def send(self, ep: Endpoint, group: list[bytes], errors, src=None) -> bool:
        """Send `group` to `ep`, from the sticky source `src` (a pktinfo control message,
        see .sticky) when given. False, with nothing sent or counted, when the kernel
        refused `src` as no longer ours: the caller forgets it and sends again without."""
        if len(group) > 1 and self.gso:
            done = self._send_gso(ep, group, errors, src)
            if done is not None:
                return done
        if src is not None:
            return self._send_each_from(ep, group, errors, src)
        sendto = self.sock.sendto
        for data in group:
            try:
                sendto(data, ep)
            except BlockingIOError:
                errors["udp_send_eagain"] += 1
            except OSError as e:
                errors[f"udp_send_{errno.errorcode.get(e.errno, e.errno)}"] += 1
        return True

    def _send_gso(self, ep: Endpoint, group: list[bytes], errors, src) -> bool | None:
        """One GSO send for `group` (as send); None when the kernel refused GSO, for good:
        the group is then to be sent one datagram at a time."""
        anc = [(SOL_UDP, UDP_SEGMENT, _GSO_CMSG.pack(len(group[0])))]
        if src is not None:
            anc.append(src)
        try:
            self.sock.sendmsg([b"".join(group)], anc, 0, ep)
            self.gso_sends += 1
            return True
        except BlockingIOError:
            errors["udp_send_eagain"] += len(group)
            return True
        except OSError as e:
            if src is not None and e.errno in STALE:
                return False  # EINVAL may also be a GSO refusal: the retry tells
            if e.errno not in REFUSALS:
                errors[f"udp_send_{errno.errorcode.get(e.errno, e.errno)}"] += len(group)
                return True
            self.gso = False
            self.fallbacks += 1
            log.info("UDP GSO refused (%s): one datagram per send from now on",
                     errno.errorcode.get(e.errno, e.errno))
        return None

    def _send_each_from(self, ep: Endpoint, group: list[bytes], errors, src) -> bool:
        """One send per datagram from sticky source `src` (as send)."""
        sendmsg, anc = self.sock.sendmsg, [src]
        first = True
        for data in group:
            try:
                sendmsg([data], anc, 0, ep)
            except BlockingIOError:
                errors["udp_send_eagain"] += 1
            except OSError as e:
                if first and e.errno in STALE:
                    return False
                errors[f"udp_send_{errno.errorcode.get(e.errno, e.errno)}"] += 1
            first = False
        return True
