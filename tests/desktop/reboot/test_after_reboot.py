"""The laptop booted with nsroute's unit enabled: tunnel from boot, nothing else on the cable.

Runs in the boot after `lan.py prepare BACKEND` (NSROUTE_REBOOT_BACKEND names it). What a
user would check: the unit is active and the tunnel handshook soon after it started;
NetworkManager runs in `physical` from boot and has the laptop's uplink connected there
(DHCP lease, default route); the router saw nothing from the
laptop since its first frame but DHCP, ARP, ICMPv6 and WireGuard; killing what the unit
watches makes systemd restart it without a frame leaking; `systemctl stop` hands the
uplink back to the desktop, where NetworkManager manages it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from .lan import (
    CLIENT_TUNNEL_IP,
    ROUTER_IP,
    ROUTER_NS,
    SERVER_TUNNEL_IP,
    UNITS,
    UPLINK,
    counters,
    sh,
)

BACKEND = os.environ.get("NSROUTE_REBOOT_BACKEND", "userspace")
UNIT = UNITS[BACKEND]
FROM_UNIT_START = 30.0  # the bound for the tunnel after boot, counted from the unit's start


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


def no_leak(where: str) -> dict[str, int]:
    seen = counters()
    assert seen["other"] == 0, f"{where}: the router saw {seen['other']} frames that are not DHCP/ARP/ICMPv6/WireGuard: {seen}"
    return seen


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


def test_tunnel_up_from_boot(booted):
    uptime = float(open("/proc/uptime").read().split()[0])
    started = int(prop("ExecMainStartTimestampMonotonic") or 0) / 1e6 or \
        int(prop("InactiveExitTimestampMonotonic")) / 1e6
    hs = wait_for("a handshake", lambda: [p["latest_handshake"] for p in status()["peers"] if p["latest_handshake"]], 60)
    # the handshake's wall time, turned into seconds since boot
    since_boot = hs[0] - (time.time() - uptime)
    line = f"timing: {UNIT}: started {started:.1f}s after boot, first handshake at {since_boot:.1f}s"
    print(line)
    if os.environ.get("NSROUTE_DESKTOP_OUT"):  # for the host's summary (tests/desktop/test_desktop_reboot.py)
        with open(os.path.join(os.environ["NSROUTE_DESKTOP_OUT"], f"{BACKEND}.log"), "a") as f:
            f.write(line + "\n")
    assert since_boot - started <= FROM_UNIT_START + 1, (started, since_boot)
    info = status()
    assert info["state"] == "up" and info["backend"] == BACKEND, info
    assert info["problems"] == [], info["problems"]
    # the uplink lives in `physical`, where NetworkManager (started there from boot on)
    # has it connected, with a lease from the router and the default route there
    names = [i["name"] for i in info["interfaces"]]
    assert names == [UPLINK], names
    nm = int(sh("systemctl", "show", "-P", "MainPID", "NetworkManager.service").strip() or 0)
    assert nm and in_physical(nm), f"NetworkManager (pid {nm}) does not run in the physical namespace"
    assert nm_states().get(UPLINK) == "connected", nm_states()
    addr = sh("ip", "-n", "physical", "-4", "-o", "addr", "show", "dev", UPLINK)
    assert "192.168.80." in addr, addr
    assert f"default via {ROUTER_IP}" in sh("ip", "-n", "physical", "route", "show", "default")
    # the desktop's own namespace has the tunnel and lo only
    links = sh("ip", "-o", "link", "show").split("\n")
    assert sorted(ln.split(":")[1].strip().split("@")[0] for ln in links if ln.strip()) == ["lo", "wg0"]
    assert ping(), "no ping through the tunnel"
    assert f"inet {CLIENT_TUNNEL_IP}" in sh("ip", "-4", "-o", "addr", "show", "dev", "wg0")


def test_nothing_but_dhcp_arp_icmpv6_and_wireguard_since_the_first_frame(booted):
    # the router's LAN address is reached only through the tunnel (the WireGuard server
    # lives on the router, so it answers there): its pings arrive as WireGuard, not as ICMP
    assert "dev wg0" in sh("ip", "route", "get", ROUTER_IP)
    subprocess.run(["ping", "-c", "2", "-W", "1", ROUTER_IP], capture_output=True, timeout=30)
    seen = no_leak("after boot")
    assert seen["dhcp"] > 0 and seen["wireguard"] > 0, seen


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


def test_stop_hands_the_uplink_back_to_networkmanager(booted):
    no_leak("up to the stop")  # after it, the uplink is the desktop's again: no kill switch
    sh("systemctl", "stop", UNIT)
    assert prop("ActiveState") == "inactive"
    assert not os.path.exists("/run/netns/physical")
    assert UPLINK in sh("ip", "-o", "link", "show")
    assert ROUTER_NS in sh("ip", "netns", "list")

    # NetworkManager runs at home again and has the uplink connected there, as before
    wait_for(f"NetworkManager connecting {UPLINK} at home", lambda: nm_states().get(UPLINK) == "connected", 60)
    nm = int(sh("systemctl", "show", "-P", "MainPID", "NetworkManager.service").strip() or 0)
    assert nm and os.stat(f"/proc/{nm}/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    assert "192.168.80." in sh("ip", "-4", "-o", "addr", "show", "dev", UPLINK)
