"""Named and path network namespaces: create, remove, enter, and run programs in them.

A namespace is given as None (the one we run in), a name under /run/netns, or a path
such as /proc/PID/ns/net (a container's). Everything here works in any of the three.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..nsutil import entered, path_of
from .errors import HostError

__all__ = ["entered", "path_of", "exists", "same", "run", "popen"]


def exists(ns: str) -> bool:
    return Path(path_of(ns)).exists()


def same(a: str | None, b: str | None) -> bool:
    """True when two namespace references are the same namespace (by inode)."""
    try:
        sa, sb = os.stat(path_of(a)), os.stat(path_of(b))
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def run(argv: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a helper program; a failure becomes a HostError naming the command and its stderr."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise HostError(f"{argv[0]} not found; install it") from None
    except subprocess.TimeoutExpired:
        raise HostError(f"`{' '.join(argv)}` did not finish within {timeout:g}s") from None
    if check and p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        raise HostError(f"`{' '.join(argv)}` failed: {msg[-1] if msg else p.returncode}")
    return p


def create(name: str) -> None:
    """Create named namespace `name` with lo up.

    `ip netns add` stays: its /run/netns (a shared bind mount of itself, made on first
    use) is the convention every other tool reads (`ip netns exec`, systemd's
    NetworkNamespacePath=, `nsenter --net=`), and it refuses an existing name as users
    know it to. pyroute2's netns.create does the same mount work with its own rules."""
    from . import kernel  # not at the top: the DHCP hook imports this module without pyroute2

    run(["ip", "netns", "add", name])
    kernel.set_link(name, "lo", up=True)


def delete(name: str) -> None:
    """Remove the name `ip netns add` made (the namespace lives on while anything holds it)."""
    run(["ip", "netns", "del", name], check=False)


def popen(ns: str | None, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
    """Start a program inside `ns`, in a session of its own (so it outlives us).

    The calling thread steps into `ns` around the fork instead of a preexec_fn doing
    setns in the child: the guard has worker threads, and code run between fork and
    exec in a threaded process can deadlock on a lock another thread held. A network
    namespace belongs to a thread, so no other thread is moved, and the child
    inherits the namespace of the thread that forked it."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("start_new_session", True)
    with entered(ns):
        return subprocess.Popen(list(argv), **kw)
