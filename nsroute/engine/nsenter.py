"""Entering another network namespace for a moment (to open a socket there), then returning.

A socket keeps the namespace it was created in for its whole life, which is exactly what
lets the engine sit in one namespace and send its UDP traffic out of another.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class NetnsError(OSError):
    pass


def netns_path(name_or_path: str) -> str:
    """A named netns (under /run/netns) or a path such as /proc/PID/ns/net."""
    if "/" in name_or_path:
        return name_or_path
    return f"/run/netns/{name_or_path}"


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, f"setns: {os.strerror(err)}")


def open_netns(name_or_path: str) -> int:
    """A file descriptor that pins the namespace, valid even after its name or PID is gone."""
    path = netns_path(name_or_path)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetnsError(e.errno, f"network namespace '{name_or_path}' not found ({path})") from None


@contextmanager
def in_netns(target: str | int | None) -> Iterator[None]:
    """Run the body inside the given network namespace: a name, a path, or an fd from
    `open_netns` (None: stay where we are)."""
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
