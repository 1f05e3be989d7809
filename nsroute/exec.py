"""`nsroute exec`: run one command outside the tunnel, on the physical network, on purpose.

What `ip netns exec` does, plus what a desktop user needs from it. This very process
enters a private mount namespace (so nothing it mounts is seen elsewhere), joins the
physical network namespace, mounts a sysfs of that namespace on /sys, bind-mounts every
file of /etc/netns/NAME over /etc (resolv.conf: names resolve through the physical
network), with nsswitch.conf there without nss-resolve and resolved's socket directory
hidden under an empty tmpfs, so no lookup goes to the protected side's resolved
(host/resolved.py), then becomes the invoking user and execs CMD in place.

No process stays behind: the PID the caller sees is CMD's, so the terminal, signals, job
control (Ctrl-Z, fg) and the exit status (a shell's 128+N for signal N) are the kernel's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from .engine.nsenter import netns_path, open_netns, setns
from .host import resolved, userenv
from .host.state import Store, run_dir, state_key

__all__ = ["ExecError", "run", "FORWARDED"]

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MNT_DETACH = 0x2
ST_RDONLY = 0x1

# Signals someone may send to `nsroute exec` itself (kill, systemd, a supervisor). They reach
# CMD because CMD is this process; until it runs they act as they will on CMD (their default,
# or ignored when inherited ignored: nohup, `&`), never through Python's own handlers.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
# Python ignores these at start-up; CMD must not inherit that (`yes | head` must end).
_PYTHON_IGNORES = (signal.SIGPIPE, signal.SIGXFSZ)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


class ExecError(Exception):
    """Why CMD could not be started; printed as one line by the CLI (exit status 1)."""


# ------------------------------------------------------------------ preconditions


def check_up(physical: str) -> None:
    """Refuse unless nsroute's whole-host mode made `physical` and finished `up`.

    A dead engine does not count as down: the escape hatch matters most when the tunnel
    is broken (a captive portal, say), and the interfaces are still in `physical` then.
    """
    if os.geteuid() != 0:
        raise ExecError("must be run as root (it enters another network namespace); try sudo nsroute exec")
    store = Store(state_key(physical))
    if not store.exists():
        raise ExecError(f"not up: no state for physical namespace '{physical}' in {run_dir()} "
                        "(run `nsroute up` first)")
    try:
        st = store.load()
    except (OSError, ValueError, TypeError) as e:
        raise ExecError(f"cannot read state {store.path}: {e}") from None
    if not st.complete:
        raise ExecError(f"not up: an `nsroute up` for '{physical}' did not finish; "
                        f"run `nsroute down --physical {physical}`")
    if not Path(netns_path(physical)).exists():
        raise ExecError(f"not up: network namespace '{physical}' does not exist")


# ------------------------------------------------------------------ namespaces and mounts


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None),
           f"mount {target}")


def enter(physical: str) -> None:
    """Private mount namespace, the physical netns, its sysfs and /etc/netns files (as `ip netns exec`)."""
    target = open_netns(physical)
    try:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        # mounts from outside still arrive; ours never leave
        _mount("none", "/", None, MS_REC | MS_SLAVE)
        setns(target)
    finally:
        os.close(target)
    # /sys shows the interfaces of the namespace that mounted it: mount a fresh one
    ro = os.statvfs("/sys").f_flag & ST_RDONLY if os.path.isdir("/sys") else 0
    _libc.umount2(b"/sys", MNT_DETACH)
    try:
        _mount(physical, "/sys", "sysfs", MS_RDONLY if ro else 0)
    except OSError:
        pass  # as ip(8): programs still run, /sys/class/net is merely stale
    etc = Path("/etc/netns") / physical
    _hide_resolved()
    if etc.is_dir():
        for entry in sorted(etc.iterdir()):
            dest = Path("/etc") / entry.name
            if dest.exists():
                _mount(str(entry), str(dest), None, MS_BIND)


def _hide_resolved() -> None:
    """An empty tmpfs over resolved's run directory: no nss-resolve socket, so no lookup of
    CMD goes to the protected side's resolved (and through the tunnel).

    The regular files there (stub-resolv.conf, resolv.conf: /etc/resolv.conf may link to
    either) come back empty, for the /etc/netns bind that follows the link to land on.
    """
    run = Path(resolved.RUN_DIR)
    if not run.is_dir():
        return
    files = [p.name for p in run.iterdir() if p.is_file() and not p.is_symlink()]
    _check(_libc.mount(b"tmpfs", str(run).encode(), b"tmpfs", 0, b"mode=0755,size=64k"), f"mount {run}")
    for name in files:
        (run / name).touch()


# ------------------------------------------------------------------ becoming CMD


def become(target: userenv.Target) -> None:
    """Drop to the target user: supplementary groups first, then gid, then uid (no way back)."""
    os.initgroups(target.name, target.gid)
    os.setresgid(target.gid, target.gid, target.gid)
    os.setresuid(target.uid, target.uid, target.uid)


def _signals_as_cmd_gets_them() -> None:
    """From here on a signal to this PID acts as it will on CMD: Ctrl-C or a TERM during the
    set-up ends it with the signal's status, as the kernel would end CMD, not with a traceback."""
    for sig in FORWARDED:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)


def _chdir(cwd: str, home: str) -> None:
    """Stay where the caller was if the user may; else the user's home; else /."""
    for d in (cwd, home, "/"):
        try:
            os.chdir(d)
            return
        except OSError:
            continue


def _exec(cmd: list[str], env: Mapping[str, str]) -> NoReturn:
    """execvp with the caller's signal state for CMD; a failure is one line, as before exec."""
    sys.stdout.flush()
    sys.stderr.flush()
    for sig in _PYTHON_IGNORES:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    try:
        os.execvpe(cmd[0], cmd, dict(env))
    except OSError as e:
        for sig in _PYTHON_IGNORES:  # the message may go to a closed pipe: fail, don't die
            signal.signal(sig, signal.SIG_IGN)
        # a PATH directory the user may not enter gives EACCES even when CMD is nowhere
        missing = "/" not in cmd[0] and shutil.which(cmd[0], path=env.get("PATH", os.defpath)) is None
        if isinstance(e, FileNotFoundError) or missing:
            raise ExecError(f"{cmd[0]}: command not found") from None
        if isinstance(e, PermissionError):
            raise ExecError(f"{cmd[0]}: permission denied") from None
        raise ExecError(f"cannot run {cmd[0]}: {e.strerror or e}") from None


def run(cmd: list[str], physical: str = "physical", user: str | None = None) -> NoReturn:
    """Become CMD in the physical namespace as the invoking user; returns only by ExecError."""
    if not cmd:
        raise ExecError("no command given (usage: nsroute exec -- CMD [ARG]...)")
    check_up(physical)
    try:
        target = userenv.resolve(user, os.environ)
    except userenv.UserError as e:
        raise ExecError(str(e)) from None
    env = userenv.environment(os.environ, target, physical)
    _signals_as_cmd_gets_them()
    try:
        cwd = os.getcwd()
    except OSError:  # the caller's directory was removed
        cwd = target.home
    try:
        enter(physical)
        become(target)
    except OSError as e:
        raise ExecError(f"cannot run {cmd[0]} in '{physical}': {e}") from None
    _chdir(cwd, target.home)
    _exec(cmd, env)
