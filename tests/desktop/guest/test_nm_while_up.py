"""Living with NetworkManager while the unit keeps the host behind the tunnel.

`systemctl start nsroute@wg0` on a desktop whose Ethernet and Wi-Fi NetworkManager has
connected (the site: desk.py). Then what a laptop does over a day, each followed by the
tunnel still carrying bytes: both DHCP leases renew on the physical side (the router's
dnsmasq acknowledges a renewal), the access point goes away and comes back and the saved
network reconnects by itself, the user switches to a second network with nmcli. The
router counts nothing but WireGuard and DHCP from the uplinks throughout, port 53
included. After the switch the physical side's resolv.conf names the servers of the
networks NetworkManager is on now, and `nsroute exec` resolves a name there (the captive
portal's case); `systemctl stop` gives NetworkManager its devices back, connected as before.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .conftest import sh
from .desk import (
    LAN,
    PORTAL,
    PORTAL_ADDR,
    RECONNECT,
    SSID,
    SSID2,
    WLAN,
    WLAN2,
    assert_reconnected_in_physical,
    associated,
    diagnose,
    main_pid,
    nm_up,
    physical_servers,
    same_netns,
    start_ap,
    start_unit,
    stop,
    tunnel_carries,
    wait_connected,
)
from .site import assert_nothing_beyond, counter, reset_counters

RENEW = 110.0  # dnsmasq leases for 2 min: the client renews at half of that
AP_BACK = 180.0  # NetworkManager's scans back off while disconnected


def acks(log: Path, iface: str) -> int:
    """DHCPACKs the router's dnsmasq sent on `iface` (a renewal is one more)."""
    return len(re.findall(rf"DHCPACK\({re.escape(iface)}\)", log.read_text()))


def test_unit_under_networkmanager_renews_roams_and_reconnects(unit):
    desk = unit
    router, wlan, log = desk["router"], desk["wlan"], desk["dhcp_log"]
    before, _ = wait_connected(None, wlan, 30)
    assert all(before.values()), f"nmcli did not connect both uplinks before start: {before}\n{diagnose()}"

    start_unit(desk)
    reset_counters(router)
    assert_reconnected_in_physical(wlan, "systemctl start")
    tunnel_carries(desk["server"])

    # the leases renew on the physical side
    lan_acks, wlan_acks = acks(log, "r-lan"), acks(log, desk["ap1"])
    end = time.monotonic() + RENEW
    while (acks(log, "r-lan") <= lan_acks or acks(log, desk["ap1"]) <= wlan_acks) and time.monotonic() < end:
        time.sleep(2)
    assert acks(log, "r-lan") > lan_acks, f"the Ethernet lease was not renewed\n{log.read_text()[-2000:]}"
    assert acks(log, desk["ap1"]) > wlan_acks, f"the Wi-Fi lease was not renewed\n{log.read_text()[-2000:]}"
    got, _ = wait_connected("physical", wlan, 10)
    assert all(got.values()), f"after renewal: {got}"

    # the access point goes away and comes back: the saved network reconnects by itself
    stop(desk["procs"]["ap1"])
    end = time.monotonic() + 60
    while associated(wlan, "physical") and time.monotonic() < end:
        time.sleep(1)
    assert not associated(wlan, "physical"), "still associated with an access point that is gone"
    tunnel_carries(desk["server"])  # the Ethernet uplink carries the tunnel meanwhile
    desk["procs"]["ap1"] = start_ap(router, desk["ap1"], SSID, desk["tmp"])
    got, took = wait_connected("physical", wlan, AP_BACK)
    assert all(got.values()), f"the saved network did not reconnect within {AP_BACK:g}s: {got}\n{diagnose()}"
    print(f"reconnected {took:.1f}s after the access point came back")

    # the user switches to the second network, as the applet would
    nm_up("nsr-wifi-2")
    got, _ = wait_connected("physical", wlan, RECONNECT, SSID2, WLAN2)
    assert all(got.values()), f"not connected to {SSID2}: {got}\n{diagnose()}"
    tunnel_carries(desk["server"])
    hs = sh("wg", "show", "wg0", "latest-handshakes").stdout.split()
    assert len(hs) == 2 and int(hs[1]) > 0, f"no handshake: {hs}"

    assert counter(router, "dns") == 0, "a DNS query reached the router"
    assert_nothing_beyond(router)

    # the physical side's DNS follows the network joined while up (a captive portal's
    # browser under `nsroute exec` must resolve there): NetworkManager's servers for the
    # Ethernet and the second network, not the first network's any more
    got = physical_servers({f"{LAN}.1", f"{WLAN2}.1"})
    assert set(got) == {f"{LAN}.1", f"{WLAN2}.1"}, f"the physical side's resolv.conf names {got}\n{diagnose()}"
    p = sh("nsroute", "exec", "--", "getent", "ahostsv4", PORTAL, check=False)
    assert PORTAL_ADDR in p.stdout, f"exec did not resolve {PORTAL}: {p.stdout}{p.stderr}"

    sh("systemctl", "stop", desk["unit"], timeout=180)
    nm = main_pid("NetworkManager.service")
    assert nm and same_netns(nm), "NetworkManager is not back in the initial namespace"
    back, took = wait_connected(None, wlan, 90, SSID, WLAN)
    assert all(back.values()), f"NetworkManager did not reconnect after stop: {back}\n{diagnose()}"
    print(f"uplinks connected at home {took:.1f}s after systemctl stop returned")
    assert not Path("/run/netns/physical").exists()
