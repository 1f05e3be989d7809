"""Least privilege for the long-running engine.

Everything that needs root (the TUN, sockets in another namespace, the UAPI socket) is
done before `drop_to`; afterwards the engine holds only open file descriptors and no
capability at all. A tiny root helper, forked before anything is created so it holds
none of those descriptors, waits for the engine to die and removes the UAPI socket file
and pidfile, which an unprivileged process could not unlink from /var/run/wireguard.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import socket

from ..nsutil import libc

PR_SET_NO_NEW_PRIVS = 38


class PrivilegeError(OSError):
    pass


def resolve_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(f"no such user '{name}' to run the engine as") from None


def effective_capabilities(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    raise PrivilegeError("CapEff not found in /proc status")


def drop_to(user: pwd.struct_passwd) -> None:
    """Become `user` for good: no supplementary groups, no capabilities, no way back."""
    os.setgroups([])
    os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
    os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise PrivilegeError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if user.pw_uid != 0 and effective_capabilities() != 0:
        raise PrivilegeError("capabilities survived the switch of user")


def _stale_socket(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    finally:
        s.close()
    return False


_lifeline: int | None = None  # the engine's end of the pipe; closes only when it dies


def spawn_cleaner(paths: list[str], socket_path: str) -> int:
    """Fork the root helper; it returns at once in the engine (the parent).

    The helper learns of the engine's death from EOF on a pipe whose write end only the
    engine holds: it works however the engine ends (SIGKILL included), and unlike
    PR_SET_PDEATHSIG it still works after the engine has changed its user.
    """
    global _lifeline
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(r)
        os.set_inheritable(w, False)
        _lifeline = w
        return pid
    try:
        _detach(r)
        _wait_for_eof(r)
        _clean_up(paths, socket_path)
    finally:
        os._exit(0)


def _detach(keep: int) -> None:
    """The helper holds nothing of the engine's but `keep`: not the start-up pipe, not a
    TUN or socket, not the caller's stdio (which would wait for us to close it); nor acts
    on the engine's signals."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2 and int(name) != keep:
            try:
                os.close(int(name))
            except OSError:
                pass
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def _wait_for_eof(r: int) -> None:
    while True:
        try:
            if not os.read(r, 1):
                return
        except InterruptedError:
            continue


def _clean_up(paths: list[str], socket_path: str) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass
    # Remove the socket only when no engine answers on it (a new one may already run).
    if _stale_socket(socket_path):
        try:
            os.unlink(socket_path)
        except OSError:
            pass
