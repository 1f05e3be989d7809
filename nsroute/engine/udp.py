"""The engine's UDP sockets, IPv4 and IPv6, possibly opened inside another namespace."""

from __future__ import annotations

import errno
import os
import socket

from ..nsutil import entered, open_netns
from . import sticky

SO_MARK = 36
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
BUFFER_BYTES = 4 << 20


class UDPError(OSError):
    pass


def _open(family: int, port: int, fwmark: int) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        set_buffers(s)
        sticky.enable(s, family)
        if fwmark:
            s.setsockopt(socket.SOL_SOCKET, SO_MARK, fwmark)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    except OSError:
        s.close()
        raise
    return s


def set_buffers(s: socket.socket) -> None:
    """BUFFER_BYTES each way, so a burst the loop has not drained yet is not dropped.
    net.core.rmem_max/wmem_max (208 KB on many hosts) cap the plain options; the engine
    opens its sockets while still root, so it asks with the FORCE options first."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            s.setsockopt(socket.SOL_SOCKET, force, BUFFER_BYTES)
        except OSError:  # no CAP_NET_ADMIN: as much as the sysctls allow
            s.setsockopt(socket.SOL_SOCKET, plain, BUFFER_BYTES)


class UDPSockets:
    """One socket per address family on the same port; v6 is optional (it may be disabled)."""

    def __init__(self, netns: str | None = None) -> None:
        # Pin the namespace now: a later rebind (wg set listen-port) must land in the same
        # one even when it was named by a /proc/PID path whose process is long gone.
        self.netns_fd = open_netns(netns) if netns else None
        self.v4: socket.socket | None = None
        self.v6: socket.socket | None = None
        self.port = 0
        self.fwmark = 0

    def bind(self, port: int, fwmark: int = 0) -> None:
        """(Re)bind both sockets; on failure the old sockets stay as they were."""
        with entered(self.netns_fd):
            v4 = v6 = None
            for _attempt in range(16 if port == 0 else 1):
                try:
                    v4 = _open(socket.AF_INET, port, fwmark)
                    actual = v4.getsockname()[1]
                    try:
                        v6 = _open(socket.AF_INET6, actual, fwmark)
                    except OSError as e:
                        if e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                            v6 = None  # no IPv6 in this namespace
                        elif port == 0 and e.errno == errno.EADDRINUSE:
                            v4.close()
                            v4 = None
                            continue
                        else:
                            raise
                    break
                except OSError as e:
                    if v4:
                        v4.close()
                    raise UDPError(e.errno, f"cannot bind UDP port {port}: {e.strerror}") from None
            if v4 is None:
                raise UDPError(errno.EADDRINUSE, "no free UDP port found")
        self.close()
        self.v4, self.v6, self.port, self.fwmark = v4, v6, actual, fwmark

    def set_fwmark(self, fwmark: int) -> None:
        for s in (self.v4, self.v6):
            if s:
                s.setsockopt(socket.SOL_SOCKET, SO_MARK, fwmark)
        self.fwmark = fwmark

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.v4, self.v6) if s]

    def close(self) -> None:
        for s in (self.v4, self.v6):
            if s:
                s.close()
        self.v4 = self.v6 = None

    def release(self) -> None:
        self.close()
        if self.netns_fd is not None:
            os.close(self.netns_fd)
            self.netns_fd = None
