"""NetworkManager hand-off with a fake nmcli on PATH: what is asked, what is warned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nsroute.host import networkmanager as nm

FAKE = """#!/bin/sh
echo "$*" >> "$NMCLI_LOG"
case "$*" in
  "-t -f RUNNING general") echo "${NM_RUNNING:-running}";;
  "-t -f DEVICE,STATE device") printf 'eth0:connected\\neth1:unmanaged\\nwl\\\\:x:disconnected\\nlo:unmanaged\\n';;
  "device set eth9 managed"*) echo "Error: Device 'eth9' not found." >&2; exit 10;;
  "device set "*) ;;
  *) exit 2;;
esac
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "nmcli").write_text(FAKE)
    (bin_ / "nmcli").chmod(0o755)
    log = tmp_path / "log"
    log.write_text("")
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.setenv("NMCLI_LOG", str(log))
    monkeypatch.setattr(nm, "_daemon_running", lambda: True)
    return log


def _calls(log: Path) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if ln.startswith("device set")]


def test_release_only_managed_devices_and_restore_them(fake):
    warnings: list[str] = []
    took = nm.release(["eth0", "eth1", "wl:x"], warn=warnings.append)
    assert took == ["eth0", "wl:x"]  # eth1 was unmanaged already: it stays the user's choice
    assert _calls(fake) == ["device set eth0 managed no", "device set wl:x managed no"]
    nm.restore(took, warn=warnings.append)
    assert _calls(fake)[2:] == ["device set eth0 managed yes", "device set wl:x managed yes"]
    assert warnings == []


def test_one_warning_when_nmcli_refuses(fake, monkeypatch):
    monkeypatch.setattr(nm, "_device_states", lambda: {"eth0": "connected", "eth9": "connected"})
    warnings: list[str] = []
    assert nm.release(["eth0", "eth9"], warn=warnings.append) == ["eth0"]
    assert len(warnings) == 1 and "eth9" in warnings[0] and "not found" in warnings[0]


def test_nothing_when_networkmanager_is_not_running(fake, monkeypatch):
    monkeypatch.setenv("NM_RUNNING", "stopped")
    warnings: list[str] = []
    assert nm.release(["eth0"], warn=warnings.append) == []
    nm.restore(["eth0"], warn=warnings.append)
    assert _calls(fake) == [] and warnings == []


def test_silent_when_nmcli_is_installed_but_the_daemon_is_not_running(tmp_path, monkeypatch):
    """The issue's report: nmcli present, no NetworkManager process, nmcli fails to connect."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "nmcli").write_text("#!/bin/sh\necho 'Error: Could not create NMClient object: "
                                "Could not connect: No such file or directory.' >&2\nexit 1\n")
    (bin_ / "nmcli").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.setattr(nm, "_daemon_running", lambda: False)
    warnings: list[str] = []
    assert nm.release(["up0"], warn=warnings.append) == []
    nm.restore(["up0"], warn=warnings.append)
    assert warnings == []
    monkeypatch.setattr(nm, "_daemon_running", lambda: True)  # running but unreachable: say so
    nm.release(["up0"], warn=warnings.append)
    assert len(warnings) == 1 and "NMClient" in warnings[0]


def test_missing_nmcli(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    warnings: list[str] = []
    monkeypatch.setattr(nm, "_daemon_running", lambda: False)
    assert nm.release(["eth0"], warn=warnings.append) == []
    assert warnings == []  # no NetworkManager at all: nothing to say
    monkeypatch.setattr(nm, "_daemon_running", lambda: True)
    assert nm.release(["eth0"], warn=warnings.append) == []
    assert len(warnings) == 1 and "nmcli is missing" in warnings[0]
    nm.restore(["eth0"], warn=warnings.append)
    assert len(warnings) == 2 and "managed yes" in warnings[1]


def test_nothing_to_do_without_interfaces(fake):
    assert nm.release([]) == []
    nm.restore([])
    assert fake.read_text() == ""


def test_terse_split_unescapes():
    assert nm._split_terse(r"a\:b:c\\d:") == ["a:b", "c\\d", ""]


def test_networkmanager_in_physical_keeps_its_hands_off_dns_and_unmanaged_devices():
    from nsroute.host import nmphysical

    conf = nmphysical.nm_conf(["eth1", "wl:x"])
    lines = conf.splitlines()
    # no DNS push: not by ifindex to resolved (other links there), not into /etc/resolv.conf
    assert {"dns=none", "rc-manager=unmanaged", "systemd-resolved=false"} <= set(lines)
    assert "unmanaged-devices=interface-name:eth1;interface-name:wl:x" in lines
    assert "unmanaged-devices" not in nmphysical.nm_conf([])
    unit = nmphysical.dropin_text("physical", "/run/nsroute/physical.sysfs").splitlines()
    assert "NetworkNamespacePath=/run/netns/physical" in unit
    assert "BindReadOnlyPaths=/run/nsroute/physical.sysfs:/sys" in unit
