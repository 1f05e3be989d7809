"""`up` killed at every step, failed `up`s, and bad input: `down` (or the rollback) restores."""

from __future__ import annotations

import os

import pytest

from tests.netns.test_host_killswitch import BURST
from tests.support.hosts import LeakGuard, Site

pytestmark = pytest.mark.root

STEPS = ["prepare", "netns", "etc-netns", "block", "guard", "moved:eth0", "moved:eth1", "restored:eth0", "restored:eth1",
         "dhcp:eth1", "preup", "engine", "tunnel", "dns", "postup"]


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def _one_line_failure(p, *words):
    assert p.returncode != 0, p.stdout
    lines = [ln for ln in p.stderr.splitlines() if not ln.startswith("[#]") and ln.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
def test_up_killed_at_each_step_then_down_restores(lab, tmp_path):
    site = Site(lab, tmp_path)
    before = site.picture()
    guard = LeakGuard(site)  # nothing but WireGuard leaves the laptop, whatever the step
    lab.defer(guard.stop)
    for step in STEPS:
        p = site.up(env={"NSROUTE_FAULT_AFTER_STEP": step})
        assert p.returncode != 0, f"up was not killed at {step}"
        if STEPS.index(step) >= STEPS.index("moved:eth1"):  # no uplink left in the laptop's namespace
            site.laptop.exec("python3", "-c", BURST, timeout=60)
            guard.assert_clean(f"after a kill at {step}")
        if step == "netns":
            _one_line_failure(site.up(), "half-way")
        _ok(site.down())
        assert site.picture() == before, f"not restored after a kill at {step}"
        assert not os.path.exists(f"/run/netns/{site.physical}"), step
        assert not os.path.exists(f"/etc/netns/{site.physical}"), step
        assert site.laptop.pids() == [], f"processes left after a kill at {step}"
    guard.assert_clean()


def test_bad_input_changes_nothing(lab, tmp_path):
    site = Site(lab, tmp_path, dhcp=False)
    before = site.picture()
    bad = tmp_path / "bad.conf"
    bad.write_text("[Interface]\nPrivateKey = nope\n")
    _one_line_failure(site.nsroute("up", str(bad), "--physical", site.physical, "--interface", "eth0"),
                      "bad.conf:2")
    _one_line_failure(site.nsroute("up", str(tmp_path / "missing.conf"), "--physical", site.physical),
                      "missing.conf")
    _one_line_failure(site.nsroute("up", str(site.config), "--physical", site.physical, "--interface", "eth9"),
                      "no such interface: eth9")
    taken = lab.netns("taken")
    _one_line_failure(site.nsroute("up", str(site.config), "--physical", taken.name, "--interface", "eth0"),
                      "already exists")
    unresolvable = site._client_config("nowhere.nsr.invalid:51820")
    _one_line_failure(site.up(), "cannot resolve endpoint nowhere.nsr.invalid", "rolled back")
    assert unresolvable.exists()
    _one_line_failure(site.down(), "not up")
    assert site.picture() == before
    assert not os.path.exists(f"/run/netns/{site.physical}")
    assert not os.listdir(site.run_dir) if os.path.exists(site.run_dir) else True
