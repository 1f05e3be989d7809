"""Processes nsroute started, ended by PID only after checking they are still ours."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from .state import Proc

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_time(pid: int) -> int | None:
    """Kernel start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat, the
    unit state files have always recorded); None when it is gone.

    psutil gives it as boot time + ticks / CLK_TCK; undoing that is exact, and keeps state
    files written by earlier versions comparable."""
    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None
    return round((created - psutil.boot_time()) * _CLK_TCK)


def now_ticks() -> float:
    """Clock ticks since boot now: the clock `start_time` reads (the kernel counts a
    process's start in boot time)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK


def is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True


def record(pid: int, what: str, argv: list[str] | None = None) -> Proc:
    return Proc(pid=pid, start_time=start_time(pid) or 0, what=what, argv=list(argv or []))


def alive(p: Proc | None) -> bool:
    """True when the recorded process still runs (same PID *and* same start time)."""
    if p is None:
        return False
    st = start_time(p.pid)
    return st is not None and st == p.start_time and not is_zombie(p.pid)


def stop(p: Proc | None, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; only if it is still the process we started."""
    if not alive(p):
        return
    assert p is not None
    try:
        os.kill(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        _reap(p.pid)
        if not alive(p):
            return
        time.sleep(0.05)
    if alive(p):
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(p.pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def find(program: str, netns_path: str | None = None) -> list[tuple[int, list[str]]]:
    """PIDs and argv of running `program` (by basename), optionally only those in one netns."""
    want = os.stat(netns_path) if netns_path else None
    found = []
    for proc in psutil.process_iter():
        try:
            argv = proc.cmdline()
            if not argv or os.path.basename(argv[0]) != program:
                continue
            if want is not None:
                st = os.stat(f"/proc/{proc.pid}/ns/net")  # psutil has no namespace API
                if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
                    continue
        except (psutil.Error, OSError):
            continue
        found.append((proc.pid, [a for a in argv if a]))
    return found


def marked(programs: tuple[str, ...], netns_path: str, marker: str) -> list[Proc]:
    """The running `programs` in one namespace that name a file starting with `marker` on
    their command line: how nsroute knows the daemons of one deployment (its DHCP clients
    carry a pid file of its state directory, its wpa_supplicants theirs) without a record."""
    return [record(pid, program, argv) for program in programs for pid, argv in find(program, netns_path)
            if any(a.startswith(marker) for a in argv)]


def last_line(log: Path) -> str:
    """The last non-empty line a process wrote to its log: what to tell when it failed."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no output)"
    return lines[-1] if lines else "(no output)"
