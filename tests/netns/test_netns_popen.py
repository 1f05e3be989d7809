"""host/netns.popen starts programs in a namespace while the caller has other threads
(the guard does): the program lands in the namespace asked for, and neither the calling
thread nor any other leaves its own."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from nsroute.host import netns

pytestmark = pytest.mark.root


def _netns_inode(task: str = "thread-self") -> int:
    return os.stat(f"/proc/{task}/ns/net").st_ino


def test_popen_lands_in_the_namespace_and_the_callers_threads_stay_home(lab):
    ns = lab.netns("p")
    ns.ip("link", "add", "only0", "type", "veth", "peer", "name", "only1")
    home = _netns_inode()
    stop = threading.Event()
    seen: set[int] = set()

    def worker() -> None:  # a guard-like thread, busy while popen runs beside it
        while not stop.is_set():
            seen.add(_netns_inode())

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    try:
        for target in (ns.name, netns.path_of(ns.name)):  # by name and by path
            for _ in range(20):
                p = netns.popen(target, ["ip", "-o", "link", "show"], stdout=subprocess.PIPE, text=True)
                out, _ = p.communicate(timeout=10)
                names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
                assert names == {"lo", "only0", "only1"}, out
                assert _netns_inode() == home
    finally:
        stop.set()
        t.join(5)
    assert seen == {home}


def test_popen_in_no_namespace_runs_here():
    p = netns.popen(None, ["cat", "/proc/self/net/dev"], stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=10)
    with open("/proc/self/net/dev") as f:
        ours = {line.split(":")[0].strip() for line in f.read().splitlines()[2:]}
    assert {line.split(":")[0].strip() for line in out.splitlines()[2:]} == ours


def test_popen_into_a_missing_namespace_says_so_and_starts_nothing():
    with pytest.raises(OSError, match="not found"):
        netns.popen("nsr-no-such-namespace", ["true"])
