"""Lingering after traffic (loop.NAP, NSROUTE_LINGER_MS): the engine naps every millisecond
for a while after a packet so the next one finds a warm CPU, and an idle engine is never
woken for it (a laptop's battery). Counted as the engine's voluntary context switches."""

from __future__ import annotations

import time

import pytest

from tests.netns.test_engine_daemon import engine_pid
from tests.support.wgpair import Pair

pytestmark = pytest.mark.root


def wakeups(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for {pid}")


def wakeups_during(pid: int, seconds: float, action=None) -> int:
    before = wakeups(pid)
    t0 = time.monotonic()
    if action:
        action()
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    return wakeups(pid) - before


def quiet(pid: int, seconds: float, most: int) -> bool:
    """At most `most` wake-ups in one of three windows: a stray packet (a late handshake
    retransmission) rightly wakes the engine and starts naps, so one window may see it."""
    return any(wakeups_during(pid, seconds) <= most for _ in range(3))


@pytest.mark.parametrize("linger_ms", ["default", "0"])
def test_naps_follow_traffic_and_stop(lab, tmp_path, monkeypatch, linger_ms):
    if linger_ms != "default":
        monkeypatch.setenv("NSROUTE_LINGER_MS", linger_ms)
    pair = Pair(lab, "nsroute", "nsroute", tmp=tmp_path)
    pair.connect()
    left, right = pair.left, pair.right
    pid = engine_pid(left.ifname)
    assert pair.ping(left, right.inner4, count=2).returncode == 0
    time.sleep(0.5)

    assert quiet(pid, 3.0, 8), "more than 8 wake-ups in each of three 3 s windows of quiet"

    one_ping = wakeups_during(pid, 1.0, lambda: left.ns.exec(
        "ping", "-c", "1", "-W", "2", right.inner4, check=False))
    if linger_ms == "default":  # 50 ms of 1 ms naps, then quiet again
        assert 8 <= one_ping <= 150, f"{one_ping} wake-ups in the second after one ping"
    else:
        assert one_ping <= 8, f"{one_ping} wake-ups after one ping with lingering off"
    assert quiet(pid, 2.0, 6), "the naps did not stop"
