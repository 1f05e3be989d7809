"""NetworkManager keeps the uplinks under `nsroute up`: Ethernet and Wi-Fi, connected by nmcli.

The desktop (the VM's own namespace, systemd, NetworkManager 1.42, wpa_supplicant driven
over D-Bus) has two uplinks, both connected by the user with nmcli (the site: desk.py).

After `nsroute up`: NetworkManager runs in the physical namespace and has both uplinks
connected again (Wi-Fi associated, a DHCP lease, a default route there), the handshake
completes, bytes cross the tunnel, the router counts nothing but WireGuard (and the
physical side's DHCP) from the uplinks, port 53 included, and `nmcli device wifi list`
still works. After `nsroute down`: NetworkManager runs in the initial namespace again and
has both devices connected as before.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import sh
from .desk import (
    DROPINS,
    ETH,
    SSID,
    assert_reconnected_in_physical,
    diagnose,
    main_pid,
    same_netns,
    transfer,
    wait_connected,
)
from .site import SERVER_TUNNEL, assert_nothing_beyond, counter, reset_counters


@pytest.mark.parametrize("backend", ["userspace", "kernel"])
def test_networkmanager_keeps_ethernet_and_wifi_connected(desk, backend):
    router, wlan = desk["router"], desk["wlan"]
    before, _ = wait_connected(None, wlan, 30)
    assert all(before.values()), f"nmcli did not connect both uplinks before up: {before}\n{diagnose()}"

    p = subprocess.run(["nsroute", "up", str(desk["conf"]), "--interface", ETH, "--interface", wlan,
                        "--backend", backend], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    assert "warning" not in p.stderr, p.stderr  # no invalid gateway, no NetworkManager complaint
    reset_counters(router)

    assert_reconnected_in_physical(wlan, "up")
    # the protected side: lo and the tunnel (hwsim0 is mac80211_hwsim's own monitor device,
    # there since the module loaded, with no radio behind it)
    links = sorted(ln["ifname"] for ln in json.loads(sh("ip", "-j", "link").stdout))
    assert [n for n in links if n != "hwsim0"] == ["lo", "wg0"], links

    # the tunnel: handshake, bytes both ways
    assert sh("ping", "-c", "3", "-W", "5", SERVER_TUNNEL, check=False).returncode == 0, diagnose()
    hs = sh("wg", "show", "wg0", "latest-handshakes").stdout.split()
    assert len(hs) == 2 and int(hs[1]) > 0, f"no handshake: {hs}"
    transfer(desk["server"])

    # the user can still see Wi-Fi networks (and so switch them) through nmcli
    out = sh("nmcli", "-t", "-f", "SSID", "device", "wifi", "list", "--rescan", "yes", timeout=60).stdout
    assert SSID in out.split(), out

    # nothing but WireGuard (and the physical side's own DHCP) left the uplinks
    assert counter(router, "dns") == 0, "a DNS query reached the router"
    assert_nothing_beyond(router)

    p = subprocess.run(["nsroute", "down"], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    assert not any(d.exists() for d in DROPINS), "down left NetworkManager's drop-ins"
    nm = main_pid("NetworkManager.service")
    assert nm and same_netns(nm), "NetworkManager is not back in the initial namespace"
    back, took = wait_connected(None, wlan, 60)
    assert all(back.values()), f"NetworkManager did not reconnect after down: {back}\n{diagnose()}"
    print(f"uplinks connected at home {took:.1f}s after down returned")
    assert not Path("/run/netns/physical").exists()
