"""Soak (issue 6, item 6): ten minutes of traffic with the protocol clock 20 times fast.

nsroute on the laptop (`nsroute up`) against nsroute-wg as the VPN server, both under the
test-only NSROUTE_TIME_SCALE=20 (nsroute.engine.loop, .options): a rekey every 120/20 = 6 s, so about
100 handshakes in ten minutes, with pings at 10/s all along. After a one-minute warm-up:
each engine's RSS stays within 10%, its file descriptors are the same at the end, no
handshake is lost (latest-handshake keeps advancing, pings are not lost) and the number of
handshakes is about elapsed * 20 / 120.

NSROUTE_SOAK_SECONDS shortens it for a try-out (CI runs the full ten minutes).
"""

from __future__ import annotations

import json
import os
import re
import time

import psutil
import pytest

from nsroute.engine.options import Options
from nsroute.wireguard.constants import REJECT_AFTER_TIME, REKEY_AFTER_TIME
from tests.support.hosts import BEHIND4, Site
from tests.support.netns import Netns, wait_for
from tests.support.stats import request_stats

SCALE = 20.0
SOAK = float(os.environ.get("NSROUTE_SOAK_SECONDS", "600"))
WARMUP = min(60.0, SOAK / 4)
SAMPLE = 2.0


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def test_time_scale_knob_refuses_out_of_range():
    for raw, want in (("", 1.0), ("20", 20.0), ("1", 1.0), ("1000", 1000.0), ("0.5", 1.0), ("1001", 1.0),
                      ("-3", 1.0), ("nan", 1.0), ("inf", 1.0), ("fast", 1.0)):
        assert Options.from_env({"NSROUTE_TIME_SCALE": raw}).time_scale == want, raw


class _Handshakes:
    """Counts changes of one side's latest-handshake (whole seconds; rekeys are 6 s apart)."""

    def __init__(self, ns: Netns, ifname: str) -> None:
        self.ns, self.ifname = ns, ifname
        self.last, self.count, self.times = 0, 0, []

    def poll(self) -> None:
        out = self.ns.exec("wg", "show", self.ifname, "latest-handshakes", check=False).stdout.split()
        stamp = int(out[1]) if len(out) >= 2 else 0
        if stamp and stamp != self.last:
            assert stamp > self.last, f"latest-handshake went back: {self.last} -> {stamp}"
            self.last = stamp
            self.count += 1
            self.times.append(stamp)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _stats(pid: int, path: str) -> dict | None:
    try:
        return request_stats(pid, path)
    except AssertionError:
        return None


@pytest.mark.root
@pytest.mark.slow
def test_soak_rekeys_every_6s_for_10_minutes(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("NSROUTE_TIME_SCALE", f"{SCALE:g}")  # the server and the laptop's engine
    monkeypatch.setenv("NSROUTE_RUN_DIR", str(tmp_path / "server-run"))  # the server's counters
    site = Site(lab, tmp_path, server="nsroute")
    site.config.write_text(site.config.read_text().replace("PersistentKeepalive = 1", "PersistentKeepalive = 25"))
    _ok(site.up())
    L, S = site.laptop, site.server
    client_pid = json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)["engine"]["pid"]
    server_pid = site.server_proc.pid
    assert "nsroute-wg" in " ".join(psutil.Process(server_pid).cmdline())
    engines = {"laptop": psutil.Process(client_pid), "server": psutil.Process(server_pid)}

    start, start_wall = time.monotonic(), time.time()
    pinger = L.popen("ping", "-n", "-q", "-i", "0.1", "-W", "2", "-w", f"{SOAK:.0f}", BEHIND4, text=True)
    sides = {"laptop": _Handshakes(L, site.tun), "server": _Handshakes(S, site.stun)}
    rss0: dict[str, int] = {}
    fds0: dict[str, int] = {}
    rss: dict[str, list[int]] = {k: [] for k in engines}
    while time.monotonic() - start < SOAK:
        time.sleep(SAMPLE)
        for name, side in sides.items():
            side.poll()
            rss[name].append(engines[name].memory_info().rss)
        if not rss0 and time.monotonic() - start >= WARMUP:
            rss0 = {k: p.memory_info().rss for k, p in engines.items()}
            fds0 = {k: _fds(p.pid) for k, p in engines.items()}
            warm = len(rss["laptop"])
        assert pinger.poll() is None or time.monotonic() - start > SOAK - 2 * SAMPLE, "ping ended early"
    out, _ = pinger.communicate(timeout=30)
    elapsed = time.monotonic() - start
    for side in sides.values():
        side.poll()

    sent, got = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    expected = elapsed * SCALE / REKEY_AFTER_TIME
    fds_end = {}
    for k, p in engines.items():  # a `wg show` connection may still be closing
        try:
            fds_end[k] = wait_for(lambda p=p, k=k: _fds(p.pid) if _fds(p.pid) == fds0[k] else None, timeout=10)
        except AssertionError:
            fds_end[k] = _fds(p.pid)
    after = {k: v[warm:] for k, v in rss.items()}
    gaps = {k: max((b - a for a, b in zip(s.times, s.times[1:], strict=False)), default=0)
            for k, s in sides.items()}
    server_stats = _stats(server_pid, str(tmp_path / "server-run" / f"engine-{site.stun}.stats.json"))
    client_stats = _stats(client_pid, os.path.join(site.run_dir, f"engine-{site.tun}.stats.json"))
    report = {
        "elapsed": round(elapsed), "pings": f"{got}/{sent}",
        "handshakes": {k: s.count for k, s in sides.items()}, "expected": round(expected, 1),
        "max_gap_s": gaps,
        "rss_warm_kib": {k: v // 1024 for k, v in rss0.items()},
        "rss_after_kib": {k: (min(v) // 1024, max(v) // 1024) for k, v in after.items()},
        "fds": {k: (fds0[k], fds_end[k]) for k in engines},
        "server_counters": server_stats and {"drops": server_stats["drops"], "errors": server_stats["errors"]},
        "laptop_counters": client_stats and {"drops": client_stats["drops"], "errors": client_stats["errors"]},
    }
    print("soak:", json.dumps(report))

    assert sent >= SOAK * 10 * 0.8 and sent - got <= max(2, sent // 1000), report
    for k, s in sides.items():
        # latest-handshake (like TAI64N) is on real wall time, not the scaled clock
        assert start_wall - 1 <= s.last <= time.time() + 1, (k, s.last, report)
        assert 0.85 * expected <= s.count <= 1.1 * expected + 1, (k, report)
        # never stuck: a lost rekey would leave the keys to expire (REJECT_AFTER_TIME / SCALE)
        assert gaps[k] <= REJECT_AFTER_TIME / SCALE, (k, report)
    for k in engines:
        assert all(abs(v - rss0[k]) <= 0.10 * rss0[k] for v in after[k]), (k, report)
        assert fds_end[k] == fds0[k], (k, report)
    assert server_stats is not None, "the server wrote no counters"
    for stats in (server_stats, client_stats):
        if stats:
            assert not [e for e in stats["errors"] if e.startswith("internal")], report

    _ok(site.down())
