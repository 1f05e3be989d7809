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


SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$NMCLI_LOG"
case "$*" in
  "is-active --quiet NetworkManager.service") [ "$NM_ACTIVE" = 1 ];;
  "list-jobs --no-legend --plain NetworkManager.service") [ -n "$NM_JOB" ] && echo "$NM_JOB";;
  *) exit 0;;
esac
"""

UDEVADM = """#!/bin/sh
case "$*" in
  *"/sys/class/net/veth0") printf 'INTERFACE=veth0\\nNM_UNMANAGED=1\\n';;
  *"/sys/class/net/gone") echo "Unknown device" >&2; exit 1;;
  *) printf 'INTERFACE=x\\nID_NET_DRIVER=virtio_net\\n';;
esac
"""


@pytest.fixture
def boot(fake, tmp_path, monkeypatch):
    """systemd (a stand-in systemctl and udevadm) on a machine whose NetworkManager has yet to start."""
    from nsroute.host import nmphysical

    bin_ = tmp_path / "bin"
    for name, text in (("systemctl", SYSTEMCTL), ("udevadm", UDEVADM)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    monkeypatch.setattr(nmphysical, "SYSTEMD_RUN", tmp_path)
    monkeypatch.setattr(nmphysical, "_in_init_netns", lambda: True)
    return nmphysical


def test_networkmanager_about_to_start_at_boot_counts_as_present(boot, monkeypatch):
    # at boot nsroute's unit runs first: NetworkManager is not active, its start job is queued
    monkeypatch.setenv("NM_JOB", "17 NetworkManager.service start waiting")
    assert boot.presence() == boot.STARTING
    monkeypatch.setenv("NM_ACTIVE", "1")
    assert boot.presence() == boot.RUNNING
    # stopped by the user and nothing queued: `up` must not start it
    monkeypatch.setenv("NM_ACTIVE", "0")
    monkeypatch.setenv("NM_JOB", "")
    assert boot.presence() == "" and not boot.available()


def test_before_it_runs_udev_tells_which_devices_networkmanager_will_manage(boot):
    # veths are NM_UNMANAGED by its udev rules; a device udev cannot describe counts as managed
    assert nm.would_manage(["ens8", "veth0", "gone"]) == ["ens8", "gone"]


def test_at_boot_up_leaves_the_uplinks_to_networkmanager_in_physical(boot, tmp_path, monkeypatch):
    """Its start is queued: `up` plans it into `physical` (no DHCP client of ours on what
    it will manage) and stops nothing, since a stop would cancel that start."""
    from nsroute.host import uplinks
    from nsroute.host.state import State, Store, state_key
    from nsroute.host.steps import Ctx

    monkeypatch.setenv("NM_JOB", "17 NetworkManager.service start waiting")
    snaps = [{"name": n, "unconfigured": True, "addresses": [], "routes": {}} for n in ("ens8", "veth0")]
    st = State(mode="host", physical="physical", config_path="/x/wg0.conf", ifname="wg0", interfaces=snaps)
    ctx = Ctx(st, Store(state_key("physical"), tmp_path))
    uplinks.NM_RELEASED.do(ctx)
    assert st.nm_physical and st.nm_managed == ["ens8"]
    assert "stop NetworkManager.service wpa_supplicant.service" not in fake_log(tmp_path)
    names = [s.name for s in uplinks.steps_for(st) if s.when(ctx)]
    assert "nm-physical" in names and "dhcp:veth0" in names and "dhcp:ens8" not in names


def fake_log(tmp_path: Path) -> str:
    return (tmp_path / "log").read_text()
