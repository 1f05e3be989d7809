"""Processes nsroute started, ended by PID only after checking they are still ours."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .state import Proc


def start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (field 22 of /proc/PID/stat); None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
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
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            if not argv or os.path.basename(argv[0].decode()) != program:
                continue
            if want is not None:
                st = os.stat(d / "ns" / "net")
                if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino):
                    continue
        except OSError:
            continue
        found.append((int(d.name), [a.decode() for a in argv if a]))
    return found


def last_line(log: Path) -> str:
    """The last non-empty line a process wrote to its log: what to tell when it failed."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no output)"
    return lines[-1] if lines else "(no output)"
