"""`nsroute exec`: run one command outside the tunnel, on the physical network, on purpose.

What `ip netns exec` does, plus what a desktop user needs from it. A forked child enters
a private mount namespace (so nothing it mounts is seen elsewhere), joins the physical
network namespace, mounts a sysfs of that namespace on /sys, bind-mounts every file of
/etc/netns/NAME over /etc (resolv.conf: names resolve through the physical network),
with nsswitch.conf there without nss-resolve and resolved's socket directory hidden under
an empty tmpfs, so no lookup goes to the protected side's resolved (host/resolved.py),
then becomes the invoking user and execs CMD. The parent stays behind to hand the
terminal to CMD, forward signals to it, and report its exit status (128+N for signal N).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .engine.nsenter import netns_path, setns
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

# Signals someone may send to `nsroute exec` itself (kill, systemd, a supervisor): CMD gets them.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)

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


# ------------------------------------------------------------------ the child side


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None),
           f"mount {target}")


def enter(physical: str) -> None:
    """Private mount namespace, the physical netns, its sysfs and /etc/netns files (as `ip netns exec`)."""
    target = os.open(netns_path(physical), os.O_RDONLY | os.O_CLOEXEC)
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


def become(target: userenv.Target) -> None:
    """Drop to the target user: supplementary groups first, then gid, then uid (no way back)."""
    os.initgroups(target.name, target.gid)
    os.setresgid(target.gid, target.gid, target.gid)
    os.setresuid(target.uid, target.uid, target.uid)


def _child(cmd: list[str], physical: str, target: userenv.Target, env: Mapping[str, str],
           term: _Terminal, ignored: set[int], report: int) -> None:
    """In the forked child: never returns; an error before exec goes up the `report` pipe."""
    try:
        for sig in FORWARDED:  # what we inherited ignored (nohup, `&`) stays ignored
            signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
        if term.own_group:
            os.setpgid(0, 0)
        if term.fd is not None:
            _give_terminal(term.fd, os.getpgrp())
        signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; CMD must not inherit that
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        cwd = os.getcwd()
        enter(physical)
        become(target)
        for d in (cwd, target.home, "/"):
            try:
                os.chdir(d)
                break
            except OSError:
                continue
        try:
            os.execvpe(cmd[0], cmd, dict(env))
        except FileNotFoundError:
            raise ExecError(f"{cmd[0]}: command not found") from None
        except PermissionError:
            raise ExecError(f"{cmd[0]}: permission denied") from None
    except BaseException as e:  # noqa: BLE001 - anything at all must reach the parent, then exit
        try:
            msg = str(e) if isinstance(e, ExecError) else f"cannot run {cmd[0]} in '{physical}': {e}"
            os.write(report, msg.encode(errors="replace")[:4000])
        finally:
            os._exit(127)


# ------------------------------------------------------------------ the parent side


@dataclass(frozen=True)
class _Terminal:
    """fd: the terminal to hand to CMD (we are its foreground job); own_group: CMD gets its own pgrp.

    Foreground on a terminal: CMD becomes the foreground job, so Ctrl-C, Ctrl-Z and window
    changes reach it and an interactive shell works. A background job on a terminal: CMD
    stays in our group, under the shell's job control. No terminal: CMD gets a group of
    its own, so a signal to our group reaches it once (forwarded), not twice.
    """

    fd: int | None
    own_group: bool


def _terminal() -> _Terminal:
    on_tty = False
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                on_tty = True
                if os.tcgetpgrp(fd) == os.getpgrp():
                    return _Terminal(fd, True)
        except OSError:
            continue
    return _Terminal(None, not on_tty)


def _give_terminal(tty: int, pgrp: int) -> None:
    """tcsetpgrp from a process that may be in the background: SIGTTOU must not stop it."""
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(tty, pgrp)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, old)


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N when killed by signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _wait(pid: int, term: _Terminal) -> int:
    """Wait for CMD; when it stops (Ctrl-Z), stop ourselves too so the shell sees the job stop."""
    while True:
        _, status = os.waitpid(pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            return status
        if term.fd is not None:
            _give_terminal(term.fd, os.getpgrp())
        os.kill(os.getpid(), signal.SIGSTOP)
        # continued by the shell (fg/bg): hand the terminal back if we are in front, wake CMD
        if term.fd is not None and os.tcgetpgrp(term.fd) == os.getpgrp():
            _give_terminal(term.fd, pid)
        try:
            if term.own_group:
                os.killpg(pid, signal.SIGCONT)
            else:
                os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def run(cmd: list[str], physical: str = "physical", user: str | None = None) -> int:
    """Run CMD in the physical namespace as the invoking user; return its exit status."""
    if not cmd:
        raise ExecError("no command given (usage: nsroute exec -- CMD [ARG]...)")
    check_up(physical)
    try:
        target = userenv.resolve(user, os.environ)
    except userenv.UserError as e:
        raise ExecError(str(e)) from None
    env = userenv.environment(os.environ, target, physical)
    term = _terminal()
    sys.stdout.flush()
    sys.stderr.flush()

    pid = 0

    def forward(signum: int, _frame: object) -> None:
        if pid:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    # handlers before fork: a signal between fork and setup must not kill us and orphan CMD
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    ignored = {sig for sig, old in previous.items() if old == signal.SIG_IGN}
    rd, wr = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:
            os.close(rd)
            _child(cmd, physical, target, env, term, ignored, wr)
        os.close(wr)
        if term.own_group:
            try:
                os.setpgid(pid, pid)  # both sides set it: whichever runs first wins the race
            except OSError:
                pass
        if term.fd is not None:
            _give_terminal(term.fd, pid)
        error = _read_all(rd)
        status = _wait(pid, term)
    finally:
        os.close(rd)
        if term.fd is not None:
            _give_terminal(term.fd, os.getpgrp())
        for sig, old in previous.items():
            signal.signal(sig, old)
    if error:
        raise ExecError(error)
    return exit_code(status)


def _read_all(fd: int) -> str:
    """The child's error report; empty once exec succeeded (the pipe closes on exec)."""
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            raise
        if not data:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(data)

