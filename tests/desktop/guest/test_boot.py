"""The desktop VM is a desktop: systemd as PID 1, booted clean, NetworkManager and resolved up."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import sh

STUB = "/run/systemd/resolve/stub-resolv.conf"


def test_systemd_desktop_booted():
    assert Path("/proc/1/comm").read_text().strip() == "systemd"
    state = sh("systemctl", "is-system-running", check=False).stdout.strip()
    failed = sh("systemctl", "--failed", "--no-legend", "--plain").stdout
    assert state == "running", f"system is {state}; failed units:\n{failed}"
    for unit in ("dbus", "NetworkManager", "systemd-resolved"):
        assert sh("systemctl", "is-active", unit, check=False).stdout.strip() == "active", unit
    assert sh("nmcli", "-t", "-f", "RUNNING", "general").stdout.strip() == "running"
    # /etc/resolv.conf is resolved's stub, and nss-resolve is in the hosts line
    assert os.path.realpath("/etc/resolv.conf") == STUB
    assert "nameserver 127.0.0.53" in Path("/etc/resolv.conf").read_text()
    hosts = next(ln for ln in Path("/etc/nsswitch.conf").read_text().splitlines()
                 if ln.startswith("hosts:"))
    assert "resolve" in hosts.split()
    # resolved answers on D-Bus (localhost is synthesised by resolved itself)
    assert "127.0.0.1" in sh("resolvectl", "query", "--legend=no", "localhost").stdout


def test_kernel_modules_load():
    """The distribution kernel's modules are in the image: the tier's scenarios need them."""
    release = os.uname().release
    assert release.endswith("-amd64") and Path(f"/lib/modules/{release}/modules.dep").exists()
    for m in ("wireguard", "tun", "veth", "mac80211_hwsim"):
        sh("modprobe", m)
        assert Path(f"/sys/module/{m}").exists(), m
    sh("modprobe", "-r", "mac80211_hwsim")
    # no real network device: only loopback (the VM runs with -nic none)
    assert sorted(p.name for p in Path("/sys/class/net").iterdir()) == ["lo"]
