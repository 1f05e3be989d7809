"""The hot-plug guard's life on a simulated laptop: started by `up`, restarted by `up`,
ending with the tunnel only when a supervisor asked it to, gone with `down`.

Moving real hardware is the VM tier's (tests/vm/guest/test_hotplug.py): a namespace has
no device that the kernel would create there. What a namespace shows is the process
choreography and the block table, which are the same on a real machine.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.hosts import BEHIND4, Site
from tests.support.netns import ok, wait_for

pytestmark = pytest.mark.root


def _status(site: Site) -> dict:
    return json.loads(ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_guard_outlives_the_engine_and_up_restarts_only_what_died(lab, tmp_path):
    site = Site(lab, tmp_path, dhcp=False)
    before = site.picture()
    ok(site.up())
    info = _status(site)
    g, engine = info["guard"], info["engine"]["pid"]
    assert g["running"] and g["block"] and g["moved"] == [] and g["errors"] == [], g
    assert "nsroute_guard" in site.laptop.exec("nft", "list", "tables").stdout
    pidfile = Path(site.run_dir, f"host-{site.physical}.guard.pid")
    assert pidfile.read_text().strip() == str(g["pid"])
    text = ok(site.nsroute("status", "--physical", site.physical)).stdout
    assert f"guard:     pid {g['pid']}, running; block table in place" in text, text

    # The engine dies: the guard (no supervisor asked otherwise) keeps guarding.
    os.kill(engine, signal.SIGKILL)
    wait_for(lambda: not _status(site)["engine"]["running"], what="the engine to be gone")
    time.sleep(1)
    assert not _gone(g["pid"]) and _status(site)["guard"]["running"]
    ok(site.up())
    info = _status(site)
    assert info["guard"]["pid"] == g["pid"] and info["engine"]["pid"] != engine
    site.laptop.exec("ping", "-c", "1", "-W", "5", BEHIND4)

    # The guard dies: `up` restarts it and leaves the engine alone.
    engine = info["engine"]["pid"]
    os.kill(g["pid"], signal.SIGKILL)
    wait_for(lambda: not _status(site)["guard"]["running"], what="status to see the guard gone")
    assert "NOT RUNNING" in ok(site.nsroute("status", "--physical", site.physical)).stdout
    p = ok(site.up())
    assert "hot-plug guard is gone; restarting it" in p.stderr, p.stderr
    info = _status(site)
    assert info["guard"]["running"] and info["guard"]["pid"] != g["pid"]
    assert info["engine"]["pid"] == engine
    assert pidfile.read_text().strip() == str(info["guard"]["pid"])

    ok(site.down())
    assert _gone(info["guard"]["pid"])
    assert site.picture() == before  # the block table included


def test_supervised_guard_ends_with_the_engine_so_one_restart_brings_both(lab, tmp_path):
    """What the systemd units rely on: they watch the guard (NSROUTE_GUARD_WATCH_TUNNEL=1)."""
    site = Site(lab, tmp_path, dhcp=False)
    env = {"NSROUTE_GUARD_WATCH_TUNNEL": "1"}
    ok(site.up(env=env))
    info = _status(site)
    guard_pid, engine = info["guard"]["pid"], info["engine"]["pid"]
    os.kill(engine, signal.SIGKILL)
    wait_for(lambda: _gone(guard_pid), 10, what="the watching guard to end with the engine")
    log = Path(site.run_dir, f"host-{site.physical}.guard.log").read_text()
    assert "ended; ending too" in log, log
    # the block stays while nothing runs: it is the kernel's, not a process's
    assert "nsroute_guard" in site.laptop.exec("nft", "list", "tables").stdout
    ok(site.up(env=env))  # what the unit's restart runs
    info = _status(site)
    assert info["guard"]["running"] and info["engine"]["running"]
    site.laptop.exec("ping", "-c", "1", "-W", "5", BEHIND4)
    # and the new guard watches the new engine
    os.kill(info["engine"]["pid"], signal.SIGKILL)
    wait_for(lambda: _gone(info["guard"]["pid"]), 10, what="the new guard to end with the new engine")
    ok(site.down())
