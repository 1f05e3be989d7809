"""Lingering after traffic (naps.NAP, NSROUTE_LINGER_MS): the engine naps every millisecond
for a while after a packet so the next one finds a warm CPU, and an idle engine is never
woken for it (a laptop's battery). Counted as the engine's voluntary context switches; the
scratch pass each nap makes (NSROUTE_NAP_WARM) by the engine's own counter."""

from __future__ import annotations

import time

import pytest

from nsroute.engine import naps
from nsroute.engine.options import Options
from tests.netns.test_engine_daemon import engine_pid
from tests.support.stats import request_stats
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


@pytest.mark.parametrize("setting", ["default", "NSROUTE_NAP_WARM=0", "NSROUTE_LINGER_MS=0"])
def test_each_nap_after_traffic_warms_the_data_path_and_idle_never(lab, tmp_path, monkeypatch,
                                                                  setting):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("NSROUTE_RUN_DIR", str(run_dir))
    if setting != "default":
        monkeypatch.setenv(*setting.split("="))
    pair = Pair(lab, "nsroute", "nsroute", tmp=tmp_path)
    pair.connect()
    left, right = pair.left, pair.right
    pid = engine_pid(left.ifname)
    stats = run_dir / f"engine-{left.ifname}.stats.json"

    def passes() -> int:
        return request_stats(pid, stats)["loop"].get("nap_warm_passes", 0)

    assert pair.ping(left, right.inner4, count=2).returncode == 0
    time.sleep(0.5)
    idle = passes()
    time.sleep(2.0)
    assert passes() == idle, "scratch passes while idle"
    left.ns.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", right.inner4, check=False)
    time.sleep(0.3)
    after = passes() - idle
    if setting == "default":
        # Three lots of naps, each lasting LINGER after the ping's last packet (its reply,
        # which may come some ms after the request on a loaded machine): a pass on the first
        # nap, then one per WARM_EVERY. A pass on every 1 ms nap would be about twice this.
        per_ping = 1 + (Options.from_env().linger + 0.010) / naps.WARM_EVERY
        assert 10 <= after <= 3 * per_ping, f"{after} scratch passes after three pings"
    else:
        assert after == 0, f"{after} scratch passes with {setting}"
    assert request_stats(pid, stats)["errors"].get("internal_nap_warm") is None
