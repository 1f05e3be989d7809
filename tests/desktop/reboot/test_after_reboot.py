"""The laptop booted with nsroute's unit enabled: tunnel from boot, nothing else on the cable.

Runs in the boot after `lan.py prepare BACKEND` (NSROUTE_REBOOT_BACKEND names it). What a
user would check: the unit is active and the tunnel handshook soon after it started;
NetworkManager runs in `physical` from boot and has the laptop's uplinks connected there,
the cable and the Wi-Fi (associated, DHCP lease, default route); the router saw nothing
from the laptop since its first frame, on either link, but DHCP, ARP, ICMPv6, WPA2's
handshake and WireGuard; killing what the unit watches makes systemd restart it without a
frame leaking; `systemctl stop` hands both uplinks back to the desktop, where
NetworkManager has them connected again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from ..guest.desk import associated, default_via, leased, physical_servers
from .lan import (
    CLIENT_TUNNEL_IP,
    ROUTER_IP,
    ROUTER_NS,
    ROUTER_WIFI_IP,
    SERVER_TUNNEL_IP,
    SSID,
    UNITS,
    UPLINK,
    WLAN,
    WLAN_MAC,
    counters,
    sh,
)

BACKEND = os.environ.get("NSROUTE_REBOOT_BACKEND", "userspace")
UNIT = UNITS[BACKEND]
FROM_UNIT_START = 30.0  # the bound for the tunnel after boot, counted from the unit's start
WIFI_NET = ROUTER_WIFI_IP.rsplit(".", 1)[0]
# Seconds for NetworkManager's scan, association and DHCP on the Wi-Fi, once it runs: the
# NetworkManager scenarios' bound under TCG (tests/desktop/guest/desk.py RECONNECT), doubled
# for a boot, when the desktop's other units still start.
WIFI_CONNECT = 120.0


def status() -> dict:
    p = subprocess.run(["nsroute", "status", "--json"], capture_output=True, text=True, timeout=60)
    assert p.stdout, p.stderr
    return json.loads(p.stdout)


def prop(name: str) -> str:
    return sh("systemctl", "show", "-P", name, UNIT).strip()


def ping(*cmd: str, count: int = 3) -> bool:
    p = subprocess.run([*cmd, "ping", "-c", str(count), "-W", "2", "-n", "-q", SERVER_TUNNEL_IP],
                       capture_output=True, text=True, timeout=60)
    return p.returncode == 0


def no_leak(where: str) -> dict[str, dict[str, int]]:
    seen = counters()
    for side, c in seen.items():
        assert c["other"] == 0, (f"{where}: the router's {side} port saw {c['other']} frames that are not "
                                 f"DHCP/ARP/ICMPv6/EAPOL/WireGuard: {seen}")
    return seen


def summary(line: str) -> None:
    """A line for the host's summary (tests/desktop/test_desktop_reboot.py prints `timing:` lines)."""
    print(line)
    if os.environ.get("NSROUTE_DESKTOP_OUT"):
        with open(os.path.join(os.environ["NSROUTE_DESKTOP_OUT"], f"{BACKEND}.log"), "a") as f:
            f.write(line + "\n")


def wait_for(what: str, check, timeout: float):
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > end:
            assert got, f"{what} not within {timeout:.0f}s"
            return got
        time.sleep(1)


@pytest.fixture(scope="module")
def booted():
    """The unit as boot left it (it may still be starting when the job runs)."""
    wait_for(f"{UNIT} active", lambda: prop("ActiveState") == "active", 180)
    return status()


def nm_states() -> dict[str, str]:
    """nmcli's DEVICE -> STATE (NetworkManager answers over D-Bus wherever it runs)."""
    out = subprocess.run(["nmcli", "-t", "-f", "DEVICE,STATE", "device"], capture_output=True, text=True,
                         timeout=60).stdout
    return dict(ln.split(":", 1) for ln in out.splitlines() if ":" in ln)


def in_physical(pid: int) -> bool:
    return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/run/netns/physical").st_ino


def radios(ns: str | None) -> dict[str, str]:
    """The wiphys in `ns` (None: this namespace), permanent MAC -> phy name (sysfs shows a
    namespace's own wiphys only; `ip netns exec` mounts that namespace's)."""
    pre = ["ip", "netns", "exec", ns] if ns else []
    out = sh(*pre, "sh", "-c", "for p in /sys/class/ieee80211/*; do [ -e $p ] && "
             "echo $(cat $p/macaddress) ${p##*/}; done; true")
    return dict(ln.split() for ln in out.splitlines() if ln.strip())


def wifi_up(ns: str | None) -> dict[str, bool]:
    """The laptop's Wi-Fi as a user checks it, in `ns` (where its devices live)."""
    return {
        "nmcli connected": nm_states().get(WLAN) == "connected",
        "associated": associated(WLAN, ns, SSID),
        "lease": leased(WLAN, ns, WIFI_NET),
        "default route": f"{ROUTER_WIFI_IP}@{WLAN}" in default_via(ns),
    }


def wait_wifi(ns: str | None, where: str) -> None:
    start = time.monotonic()
    got = wifi_up(ns)
    while not all(got.values()) and time.monotonic() - start < WIFI_CONNECT:
        time.sleep(1)
        got = wifi_up(ns)
    assert all(got.values()), f"the Wi-Fi {where}, {WIFI_CONNECT:.0f}s on: {got}"
    summary(f"timing: Wi-Fi connected {where} {time.monotonic() - start:.1f}s after the check began "
            f"({time.monotonic():.0f}s after boot)")


def radio_order(info: dict) -> str:
    """Whether the laptop's radio was there when `up` began (moved by `up`) or came later
    (moved by the hot-plug guard): the boot's order, for the host's summary."""
    guard = info.get("guard") or {}
    late = [m for m in guard.get("moved", []) if m["what"] == "wiphy" or WLAN in m.get("netdevs", [])]
    return ("after the unit's start: moved by the guard " + ", ".join(m["name"] for m in late)) if late \
        else "before the unit's start: moved by `up`"


def test_tunnel_up_from_boot(booted):
    uptime = float(open("/proc/uptime").read().split()[0])
    started = int(prop("ExecMainStartTimestampMonotonic") or 0) / 1e6 or \
        int(prop("InactiveExitTimestampMonotonic")) / 1e6
    hs = wait_for("a handshake", lambda: [p["latest_handshake"] for p in status()["peers"] if p["latest_handshake"]], 60)
    # the handshake's wall time, turned into seconds since boot
    since_boot = hs[0] - (time.time() - uptime)
    info = status()
    summary(f"timing: {UNIT}: started {started:.1f}s after boot, first handshake at {since_boot:.1f}s; "
            f"the laptop's radio appeared {radio_order(info)}")
    assert since_boot - started <= FROM_UNIT_START + 1, (started, since_boot)
    assert info["state"] == "up" and info["backend"] == BACKEND, info
    assert info["problems"] == [], info["problems"]
    # the uplink lives in `physical`, where NetworkManager (started there from boot on)
    # has it connected, with a lease from the router and the default route there
    names = [i["name"] for i in info["interfaces"]]
    moved_late = [n for m in (info.get("guard") or {}).get("moved", []) for n in m.get("netdevs") or [m["name"]]]
    assert sorted(set(names + moved_late)) == sorted([UPLINK, WLAN]), (names, moved_late)
    nm = int(sh("systemctl", "show", "-P", "MainPID", "NetworkManager.service").strip() or 0)
    assert nm and in_physical(nm), f"NetworkManager (pid {nm}) does not run in the physical namespace"
    assert nm_states().get(UPLINK) == "connected", nm_states()
    addr = sh("ip", "-n", "physical", "-4", "-o", "addr", "show", "dev", UPLINK)
    assert "192.168.80." in addr, addr
    assert f"default via {ROUTER_IP}" in sh("ip", "-n", "physical", "route", "show", "default")
    # the laptop's radio (its wiphy, with its wlan device) is in `physical` too, none here,
    # and NetworkManager has the saved Wi-Fi connected there
    assert WLAN_MAC in radios("physical"), radios("physical")
    assert radios(None) == {}, radios(None)
    assert WLAN in sh("ip", "-n", "physical", "-o", "link", "show")
    wait_wifi("physical", "in `physical`")
    # the physical side's resolv.conf names the servers the two leases brought (at boot
    # the host has none when `up` runs: NetworkManager's, passed on by the guard)
    servers = physical_servers({ROUTER_IP, ROUTER_WIFI_IP})
    assert set(servers) == {ROUTER_IP, ROUTER_WIFI_IP}, f"/etc/netns/physical/resolv.conf names {servers}"
    # the desktop's own namespace has the tunnel and lo only (and hwsim0, the radio
    # simulator's monitor device, which is no uplink: it has no device, stays, and the block drops it)
    links = sh("ip", "-o", "link", "show").split("\n")
    assert sorted(ln.split(":")[1].strip().split("@")[0] for ln in links if ln.strip()) == ["hwsim0", "lo", "wg0"]
    assert ping(), "no ping through the tunnel"
    assert f"inet {CLIENT_TUNNEL_IP}" in sh("ip", "-4", "-o", "addr", "show", "dev", "wg0")


def test_nothing_but_dhcp_arp_icmpv6_and_wireguard_since_the_first_frame(booted):
    # the router's LAN address is reached only through the tunnel (the WireGuard server
    # lives on the router, so it answers there): its pings arrive as WireGuard, not as ICMP
    assert "dev wg0" in sh("ip", "route", "get", ROUTER_IP)
    subprocess.run(["ping", "-c", "2", "-W", "1", ROUTER_IP], capture_output=True, timeout=30)
    seen = no_leak("after boot")
    summary(f"timing: router counters since the first frame: {seen}")
    assert seen["cable"]["dhcp"] > 0 and seen["cable"]["wireguard"] > 0, seen
    assert seen["wifi"]["dhcp"] > 0, seen  # the Wi-Fi carried the laptop's frames too


def test_killed_then_restarted_by_systemd_without_a_leak(booted):
    restarts = int(prop("NRestarts"))
    info = status()
    if BACKEND == "userspace":
        victim = info["engine"]["pid"]  # the unit ends with the engine and starts `up` again
    else:
        victim = int(prop("MainPID"))  # the guard: the kernel backend has no engine process
    assert victim, info
    os.kill(victim, signal.SIGKILL)
    # while it is gone, the protected side tries to get out
    for _ in range(3):
        subprocess.run(["ping", "-c", "1", "-W", "1", ROUTER_IP], capture_output=True, timeout=30)
    wait_for("systemd restarting the unit", lambda: int(prop("NRestarts")) > restarts
             and prop("ActiveState") == "active", 120)
    wait_for("the tunnel after the restart", ping, 60)
    no_leak("after a restart")
    assert status()["problems"] == []


def test_stop_hands_the_uplinks_back_to_networkmanager(booted):
    no_leak("up to the stop")  # after it, the uplink is the desktop's again: no kill switch
    sh("systemctl", "stop", UNIT)
    assert prop("ActiveState") == "inactive"
    assert not os.path.exists("/run/netns/physical")
    assert UPLINK in sh("ip", "-o", "link", "show")
    assert WLAN_MAC in radios(None), radios(None)
    assert ROUTER_NS in sh("ip", "netns", "list")

    # NetworkManager runs at home again and has the uplink connected there, as before
    wait_for(f"NetworkManager connecting {UPLINK} at home", lambda: nm_states().get(UPLINK) == "connected", 60)
    nm = int(sh("systemctl", "show", "-P", "MainPID", "NetworkManager.service").strip() or 0)
    assert nm and os.stat(f"/proc/{nm}/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    assert "192.168.80." in sh("ip", "-4", "-o", "addr", "show", "dev", UPLINK)
    wait_wifi(None, "at home")
