"""host/procs.py: a process is recognised by PID *and* kernel start time, as state files record it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from nsroute.host import procs


def _stat_field_22(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def test_start_time_is_the_kernels_clock_ticks_as_older_state_files_hold_them():
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert procs.start_time(child.pid) == _stat_field_22(child.pid)
        rec = procs.record(child.pid, "sleep")
        assert procs.alive(rec)
        # a state file of an earlier version recorded the same number: still recognised
        assert procs.alive(procs.Proc(pid=child.pid, start_time=_stat_field_22(child.pid)))
        # the same PID with another start time is someone else's process
        assert not procs.alive(procs.Proc(pid=child.pid, start_time=rec.start_time - 1))
    finally:
        child.kill()
        child.wait()
    assert procs.start_time(child.pid) is None
    assert not procs.alive(rec)


def test_a_dead_unreaped_child_is_not_alive():
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while not procs.is_zombie(child.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert procs.is_zombie(child.pid)
        assert not procs.alive(procs.Proc(pid=child.pid, start_time=procs.start_time(child.pid) or 0))
    finally:
        child.wait()


def test_find_by_program_name_and_namespace():
    sleep = shutil.which("sleep")
    assert sleep
    child = subprocess.Popen([sleep, "29", "1"])
    try:
        found = dict(procs.find("sleep", f"/proc/{os.getpid()}/ns/net"))
        assert found.get(child.pid) == [sleep, "29", "1"]
        assert child.pid not in dict(procs.find("no-such-program"))
    finally:
        child.kill()
        child.wait()
