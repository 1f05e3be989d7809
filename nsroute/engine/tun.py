"""The TUN device: one file descriptor that reads and writes raw IP packets.

With `offload=True` the device is opened with IFF_VNET_HDR: every read and write then
carries a 10-byte virtio_net_hdr, and the engine may write coalesced TCP super-packets
(nsroute.engine.vnet.coalesce). What the kernel may hand us is set with TUNSETOFFLOAD:
by default nothing (flags 0: every read is one finished packet), because cutting TSO
super-packets and computing their checksums in Python costs the sending engine more than
the per-packet reads it saves (docs/bench.md). `NSROUTE_TUN_TSO=1` asks for checksum and
TSO4/6 offload, and USO4/6 where the kernel has them (Linux 6.2+): a read may then return
a 64 KB super-packet that vnet.packets cuts up. Where the kernel refuses an offload set it
tries a smaller one, and where it refuses them all (or lacks IFF_VNET_HDR) it reopens the
device plain: `vnet` says which mode it ended in, `offload_flags` what the kernel took.
`NSROUTE_TUN_OFFLOAD_FLAGS` (an integer, say 0x7) asks for exactly that set and nothing
else, to try one offload alone or to force the fallback in tests.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNGETIFF = 0x800454D2
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
# With NSROUTE_TUN_TSO=1, tried in order; the first the kernel takes wins.
TSO_SETS = (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6,
            TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
DEFAULT_SETS = (0,)
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922
SIOCGIFMTU = 0x8921
IFF_UP = 0x1


class TunError(OSError):
    pass


def _ifreq(name: str, fmt: str = "H", *vals) -> bytes:
    return struct.pack(f"16s{fmt}", name.encode(), *vals).ljust(40, b"\0")


def offload_sets(tso: bool = False, forced: int | None = None) -> tuple[int, ...]:
    """The TUN_F_* sets to try, in order (Options.tun_tso, Options.tun_offload_flags)."""
    if forced is not None:
        return (forced,)
    return TSO_SETS if tso else DEFAULT_SETS


class Tun:
    def __init__(self, name: str, mtu: int = 1420, offload: bool = False,
                 sets: tuple[int, ...] = DEFAULT_SETS) -> None:
        self.vnet = False
        self.offload_flags = 0
        self.offload_refused: list[str] = []  # why each refused set was refused
        self.fd = -1
        if offload:
            try:
                self.fd = self._open(name, IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)
            except TunError as e:
                if e.errno != errno.EINVAL:
                    raise
                self.offload_refused.append("IFF_VNET_HDR: EINVAL")
            else:
                name = self.name
                self._enable_offload(sets)
        if self.fd < 0:
            self.fd = self._open(name, IFF_TUN | IFF_NO_PI)
        self.ifindex = socket.if_nametoindex(self.name)
        self.set_mtu(mtu)

    def _open(self, name: str, flags: int) -> int:
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            raise TunError(e.errno, f"cannot open /dev/net/tun: {e.strerror}") from None
        try:
            res = fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, "H", flags))
        except OSError as e:
            os.close(fd)
            if e.errno == errno.EBUSY:
                raise TunError(e.errno, f"interface {name} already exists") from None
            raise TunError(e.errno, f"cannot create TUN {name}: {e.strerror}") from None
        self.name = res[:16].rstrip(b"\0").decode()
        return fd

    def _enable_offload(self, sets: tuple[int, ...]) -> None:
        try:
            fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", 10))
            for flags in sets:
                try:
                    fcntl.ioctl(self.fd, TUNSETOFFLOAD, flags)
                except OSError as e:
                    self.offload_refused.append(f"{flags:#x}: {errno.errorcode.get(e.errno, e.errno)}")
                    continue
                self.vnet, self.offload_flags = True, flags
                return
        except OSError as e:
            self.offload_refused.append(f"TUNSETVNETHDRSZ: {errno.errorcode.get(e.errno, e.errno)}")
        # Refused: the device goes with the descriptor; __init__ opens it again, plain.
        os.close(self.fd)
        self.fd = -1

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

    def attached(self) -> bool:
        """Is the device behind our descriptor still there, in whatever namespace it now is?

        A TUN moved to another namespace (`ip link set IF netns NS`) keeps its descriptor
        working, so a lookup by name here would wrongly call it gone; once the device is
        destroyed (`ip link del`, its namespace deleted) the kernel detaches the descriptor
        and every ioctl on it fails with EBADFD (reads too, and epoll reports EPOLLERR).
        wireguard-go likewise serves on until its TUN read fails."""
        try:
            fcntl.ioctl(self.fd, TUNGETIFF, bytes(40))
        except OSError as e:
            return e.errno != errno.EBADFD
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
