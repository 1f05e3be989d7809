"""`nsroute status --check` on a simulated laptop: healthy only when it is (issue 14, item 4).

Each broken case is made the way it happens on a real machine: the engine is killed, a
veth with a default route around the tunnel appears next to it (a container tool, a
misconfigured bridge), the uplinks go down in the physical namespace.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.support.hosts import BEHIND4, Site, wait_handshake
from tests.support.netns import Netns, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def _check(site: Site):
    return site.nsroute("status", "--physical", site.physical, "--check")


def _json(site: Site) -> dict:
    return json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)


def _kinds(findings: list[dict]) -> list[str]:
    return sorted(f["kind"] for f in findings)


def test_status_check_fails_exactly_when_something_is_wrong(lab, tmp_path):
    site = Site(lab, tmp_path)
    L, R = site.laptop, site.router
    _ok(site.up())
    L.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)

    # healthy: exit 0, the all-clear line, no problems in the JSON
    ok = _ok(_check(site))
    assert ok.stdout.strip() == "healthy: all traffic goes through the tunnel"
    info = _json(site)
    assert info["problems"] == [] and info["warnings"] == [] and info["healthy"] is True
    human = _ok(site.nsroute("status", "--physical", site.physical)).stdout
    assert human.startswith("nsroute up: all traffic goes through the tunnel")

    # a veth next to the tunnel with a default route around it: a way out that is not the tunnel
    lab.veth(L, "lk0", R, "lk1")
    L.ip("addr", "add", "192.168.77.2/24", "dev", "lk0")
    R.ip("addr", "add", "192.168.77.1/24", "dev", "lk1")
    L.ip("route", "add", "default", "via", "192.168.77.1", "dev", "lk0", "metric", "5000")
    bad = _check(site)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert bad.stdout.startswith("problem: leak-capable-device: lk0 ") and "all traffic" not in bad.stdout
    info = _json(site)
    assert [(p["kind"], p["subject"]) for p in info["problems"]] == [("leak-capable-device", "lk0")]
    human = site.nsroute("status", "--physical", site.physical).stdout
    assert "all traffic goes through the tunnel" not in human and "NOT HEALTHY" in human
    L.ip("link", "del", "lk0")
    _ok(_check(site))

    # the engine SIGKILLed: nothing passes, and --check says so
    pid = _json(site)["engine"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z",
             what="the engine to die")
    dead = _check(site)
    assert dead.returncode == 1
    kinds = _kinds(_json(site)["problems"])
    assert "engine-not-running" in kinds, kinds
    _ok(site.up())  # resumes the engine
    wait_handshake(L, site.tun)
    wait_for(lambda: _check(site).returncode == 0, timeout=20, what="healthy again after resume")

    # one uplink down while the other works: a warning, still healthy
    phys = Netns(site.physical)
    phys.ip("link", "set", "eth0", "down")
    one = _json(site)
    assert one["problems"] == [] and [(w["kind"], w["subject"]) for w in one["warnings"]] == [("uplink-down", "eth0")]
    _ok(_check(site))
    # both down: no way out for the tunnel
    phys.ip("link", "set", "eth1", "down")
    both = _check(site)
    assert both.returncode == 1
    kinds = _kinds(_json(site)["problems"])
    assert kinds.count("uplink-down") == 2, kinds
    assert "no-default-route" in kinds, kinds

    _ok(site.down())
