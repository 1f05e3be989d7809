"""The shipped systemd units: `systemd-analyze verify` accepts them, and they say what the README promises."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nsroute.host import hotplug
from nsroute.host.selfcmd import nsroute_argv
from nsroute.host.state import state_key

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SERVICE = UNITS / "nsroute@.service"
KERNEL_SERVICE = UNITS / "nsroute-kernel@.service"


def _settings(text: str) -> dict[str, list[str]]:
    """KEY -> every value it is given (systemd allows repeated keys), sections flattened."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (apt install systemd)")
def test_units_pass_systemd_analyze_verify(tmp_path):
    # systemd looks bare command names up in its own fixed PATH, not ours: point it at this install
    exe = nsroute_argv()[0]
    if not (os.path.isabs(exe) and os.access(exe, os.X_OK)):
        pytest.skip("no nsroute executable installed")
    units = list(UNITS.glob("*.service")) + list(UNITS.glob("*.target")) + list(UNITS.glob("*.timer"))
    assert units
    for unit in units:
        text = unit.read_text()
        for key in ("ExecStart", "ExecStop"):
            text = text.replace(f"{key}=nsroute ", f"{key}={exe} ")
        (tmp_path / unit.name).write_text(text)
    names = [u.name.replace("@.", "@wg0.") for u in units]
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), p.stdout + p.stderr


def _restarts_what_died(s: dict[str, list[str]]) -> None:
    # an explicit stop runs `down`; a dead guard (EXIT_CODE set) does not
    assert len(s["ExecStop"]) == 1 and "$$EXIT_CODE" in s["ExecStop"][0] and "nsroute down %i" in s["ExecStop"][0]
    assert s["Type"] == ["forking"] and s["Restart"] == ["always"] and s["KillMode"] == ["process"]
    # the guard is watched, and ends with the tunnel (engine or kernel link)
    assert s["PIDFile"] == [f"/run/nsroute/{state_key('physical')}.guard.pid"]
    assert s["Environment"] == [f"{hotplug.WATCH_ENV}=1"]
    assert s["StartLimitIntervalSec"] == ["0"]


def test_service_brings_the_host_up_and_down_and_restarts_what_died():
    s = _settings(SERVICE.read_text())
    assert s["ExecStart"] == ["nsroute up %i --backend userspace --wait 0"]
    _restarts_what_died(s)


def test_service_is_ordered_before_any_network():
    s = _settings(SERVICE.read_text())
    before = " ".join(s["Before"]).split()
    assert {"network-pre.target", "network-online.target", "network.target"} <= set(before)
    assert "network-pre.target" in " ".join(s["Wants"]).split()
    assert s["WantedBy"] == ["multi-user.target"]


def test_kernel_service_restarts_a_deleted_link_and_keeps_what_up_started():
    s = _settings(KERNEL_SERVICE.read_text())
    assert s["ExecStart"] == ["nsroute up %i --backend kernel --wait 0"]
    _restarts_what_died(s)
    assert "nsroute@%i.service" in " ".join(s["Conflicts"]).split()
    ordering = ("DefaultDependencies", "After", "Wants", "Before", "WantedBy")
    userspace = _settings(SERVICE.read_text())
    assert {k: s[k] for k in ordering} == {k: userspace[k] for k in ordering}
