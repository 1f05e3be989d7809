"""The TUN device: one file descriptor that reads and writes raw IP packets."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922
SIOCGIFMTU = 0x8921
IFF_UP = 0x1


class TunError(OSError):
    pass


def _ifreq(name: str, fmt: str = "H", *vals) -> bytes:
    return struct.pack(f"16s{fmt}", name.encode(), *vals).ljust(40, b"\0")


class Tun:
    def __init__(self, name: str, mtu: int = 1420) -> None:
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            raise TunError(e.errno, f"cannot open /dev/net/tun: {e.strerror}") from None
        try:
            res = fcntl.ioctl(self.fd, TUNSETIFF, _ifreq(name, "H", IFF_TUN | IFF_NO_PI))
        except OSError as e:
            os.close(self.fd)
            if e.errno == errno.EBUSY:
                raise TunError(e.errno, f"interface {name} already exists") from None
            raise TunError(e.errno, f"cannot create TUN {name}: {e.strerror}") from None
        self.name = res[:16].rstrip(b"\0").decode()
        self.ifindex = socket.if_nametoindex(self.name)
        self.set_mtu(mtu)

    def _ctl(self) -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def set_mtu(self, mtu: int) -> None:
        with self._ctl() as s:
            fcntl.ioctl(s, SIOCSIFMTU, _ifreq(self.name, "i", mtu))
        self.mtu = mtu

    def read_mtu(self) -> int:
        with self._ctl() as s:
            res = fcntl.ioctl(s, SIOCGIFMTU, _ifreq(self.name, "i", 0))
        return struct.unpack_from("i", res, 16)[0]

    def set_up(self) -> None:
        with self._ctl() as s:
            res = fcntl.ioctl(s, SIOCGIFFLAGS, _ifreq(self.name, "H", 0))
            flags = struct.unpack_from("H", res, 16)[0]
            fcntl.ioctl(s, SIOCSIFFLAGS, _ifreq(self.name, "H", flags | IFF_UP))

    def exists(self) -> bool:
        """Is our interface still there (same index)? `ip link del` must end the engine."""
        try:
            return socket.if_nametoindex(self.name) == self.ifindex
        except OSError:
            try:
                return socket.if_indextoname(self.ifindex) is not None
            except OSError:
                return False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
