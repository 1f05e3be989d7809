"""`up` killed at every step, failed `up`s, and bad input: `down` (or the rollback) restores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nsroute import config as wgconfig
from nsroute.host import plan
from nsroute.host.state import Store, state_key
from tests.netns.test_host_killswitch import BURST
from tests.support.hosts import LeakGuard, Site

pytestmark = pytest.mark.root

# The fields of a state file as the version before the step framework wrote it (no "doing").
PREVIOUS_FIELDS = {
    "mode", "physical", "config_path", "ifname", "into", "version", "steps", "netns_created",
    "etc_netns_created", "snapshot_time", "interfaces", "wiphys", "dhcp", "wpa", "wpa_original",
    "nm_released", "backend", "kernel_link", "engine", "guard_baseline", "guard_block", "guard",
    "engine_config", "tunnel_addresses", "resolv_path", "resolv_saved", "resolved_link", "complete",
}


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def _store(site) -> Store:
    return Store(state_key(site.physical), Path(site.run_dir))


def _planned_steps(site) -> list[str]:
    """Every step `up` records on this site, taken from the plan: one whole `up`, read back."""
    _ok(site.up())
    st = _store(site).load()
    names = plan.step_names(st, wgconfig.load(str(site.config)))
    assert st.steps == names, "up recorded other steps than its plan"
    assert {"moved:eth0", "moved:eth1", "dhcp:eth1", "engine", "dns"} <= set(names), names
    _ok(site.down())
    return names


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
    steps = _planned_steps(site)
    assert site.picture() == before
    for step in steps:
        p = site.up(env={"NSROUTE_FAULT_AFTER_STEP": step})
        assert p.returncode != 0, f"up was not killed at {step}"
        if steps.index(step) >= steps.index("moved:eth1"):  # no uplink left in the laptop's namespace
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


@pytest.mark.parametrize("step", ["moved:eth1", "complete"])
def test_down_reads_a_state_file_of_the_previous_version(lab, tmp_path, step):
    """A deployment brought up (or killed half-way) by the version before the step
    framework: its state file has no "doing"; `down` still restores everything."""
    site = Site(lab, tmp_path)
    before = site.picture()
    ip_json = _ip_json_snapshots(site)  # addressing as the previous version stored it
    p = site.up(env={"NSROUTE_FAULT_AFTER_STEP": step})
    assert p.returncode != 0, f"up was not killed at {step}"
    path = _store(site).path
    raw = json.loads(path.read_text())
    newer = set(raw) - PREVIOUS_FIELDS  # fields this version added; the previous one wrote none
    assert newer == {"doing", "listen_port", "nm_managed", "nm_physical"} and raw["version"] == 1, newer
    for k in newer:
        del raw[k]
    assert raw["interfaces"] and all(isinstance(s["routes"], list) for s in raw["interfaces"])
    for snap in raw["interfaces"]:  # the previous version kept `ip -j` output, not records
        snap["addresses"], snap["routes"] = ip_json[snap["name"]]
    assert any(a.get("local") for s in raw["interfaces"] for a in s["addresses"])
    path.write_text(json.dumps(raw, indent=2, sort_keys=True))
    _ok(site.down())
    assert site.picture() == before
    assert not os.path.exists(f"/run/netns/{site.physical}")
    assert not os.path.exists(f"/etc/netns/{site.physical}")
    assert site.laptop.pids() == []
    assert not path.exists()


def _ip_json_snapshots(site) -> dict[str, tuple[list, dict]]:
    """Per laptop interface: `ip -j` addr_info and {"4": routes, "6": routes}, the shape
    state files of the version before the netlink records held."""
    out = {}
    for name in ("eth0", "eth1"):
        addrs = json.loads(site.laptop.ip("-j", "addr", "show", "dev", name).stdout)[0]["addr_info"]
        routes = {fam: json.loads(site.laptop.ip("-j", f"-{fam}", "route", "show", "table", "all",
                                                 "dev", name).stdout or "[]") for fam in ("4", "6")}
        out[name] = (addrs, routes)
    return out


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
