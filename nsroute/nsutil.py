"""libc, loaded once, and the network-namespace primitives every layer shares.

The engine (a UDP socket opened in another namespace), the host layer (netlink sockets
and /proc/sys/net read inside a namespace) and `nsroute exec` (a process that enters
one for good) all need the same three things: a namespace's path, setns(2), and a way
to step into a namespace for a moment and back. They live here so each rule exists once.

A namespace is given as None (the one this thread is in), a name under /run/netns, a
path such as /proc/PID/ns/net (a container's), or an open file descriptor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
NETNS_DIR = "/run/netns"

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]


class NetnsError(OSError):
    """A namespace that cannot be found or entered (errno kept)."""


def check(ret: int, what: str) -> int:
    """Turn a libc call's -1 into OSError with its errno, naming what was tried; else its
    result (a descriptor, for the calls that make one)."""
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def path_of(ns: str | None) -> str:
    """Filesystem path of a namespace: ours, /run/netns/NAME, or the path as given."""
    if ns is None:
        return f"/proc/{os.getpid()}/ns/net"
    return ns if "/" in ns else f"{NETNS_DIR}/{ns}"


def setns(fd: int) -> None:
    """Move this thread into the network namespace `fd` refers to."""
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, f"setns: {os.strerror(err)}")


def open_netns(ns: str | None) -> int:
    """A file descriptor that pins the namespace, valid even after its name or PID is gone."""
    path = path_of(ns)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetnsError(e.errno, f"network namespace '{ns}' not found ({path})") from None


@contextmanager
def entered(target: str | int | None) -> Iterator[None]:
    """Run the block with this thread inside `target` (a name, a path or an fd from
    `open_netns`; None: stay), then come back: for sockets, netlink and /proc/sys/net."""
    if target is None:
        yield
        return
    fd = target if isinstance(target, int) else open_netns(target)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd)
        try:
            yield
        finally:
            setns(home)
    finally:
        if fd is not target:
            os.close(fd)
        os.close(home)
