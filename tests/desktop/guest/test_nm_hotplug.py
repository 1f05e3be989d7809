"""Devices plugged in while the unit is up, on a NetworkManager desktop (issue 17's headline).

`systemctl start nsroute@wg0` on the NetworkManager desktop (desk.py): NetworkManager runs
in `physical`. Then the user plugs in a Wi-Fi dongle (a new mac80211_hwsim radio, made over
netlink in the initial namespace as a driver would) and a USB Ethernet (dummy_hcd +
g_ether; its far end, the gadget, is a port of the router with its own dnsmasq). Both have
saved NetworkManager profiles, bound to their MACs: the dongle's to the site's second
network (nsr-desk-2), the USB NIC's for DHCP.

What a user checks: the guard moved each into `physical` within moments of the kernel
announcing it (nothing of them stays on the protected side), NetworkManager there connects
both (associated, leases), the tunnel still carries bytes, and the router's frame counters
on the new links' far ends, attached before the plug, see nothing but DHCP, ARP, ICMPv6,
WireGuard and EAPOL from the first frame (and the site's counters no DNS and nothing
beyond). `systemctl stop` hands both back to NetworkManager at home, connected again.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.plug import USB_DEV, Hwsim, LinkWatch, gadget_netdev, usb_host_netdevs

from .conftest import sh
from .desk import (
    SSID2,
    WLAN2,
    assert_reconnected_in_physical,
    associated,
    diagnose,
    leased,
    main_pid,
    nm_states,
    nm_up,
    same_netns,
    start_unit,
    tunnel_carries,
)
from .site import (
    ENDPOINT,
    assert_nothing_beyond,
    counter,
    ingress_chain,
    ingress_counters,
    parse_ingress,
    psk_hex,
    reset_counters,
)

DONGLE_MAC = "02:00:00:00:4a:00"  # the new radio's permanent address
USB_MAC, GADGET_MAC = "02:00:00:00:72:01", "02:00:00:00:72:02"  # g_ether's host and device sides
USB_NET = "192.168.72"
DONGLE_PROFILE = "nsr-dongle"
PROFILES = (DONGLE_PROFILE, "nsr-usb")
SIDES = ("dongle", "usb")
FAR_LOG = "nsr-plug-other: "
# Seconds from the plug to both connected in `physical`: a Wi-Fi scan, association and DHCP
# under TCG on a loaded machine (the uplinks' reconnect took up to 26 s, desk.py).
CONNECT = 180.0
MOVED_WITHIN = 2.0  # seconds from the kernel's announcement to the guard's move
LOST_FOR = 20.0  # seconds of the rig's lost link notification before a re-plug (gadget_lost_carrier)


def wait(cond, timeout: float, what: str, detail=lambda: ""):
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < end, f"{what} (not within {timeout:g}s)\n{detail()}"
        time.sleep(0.5)


def link_by_mac(mac: str, ns: str | None) -> str | None:
    out = sh("ip", *(["-n", ns] if ns else []), "-j", "link", "show", check=False).stdout
    return next((ln["ifname"] for ln in json.loads(out or "[]") if ln.get("address") == mac), None)


def wiphys_by_mac(ns: str | None) -> dict[str, str]:
    """Permanent MAC -> wiphy name, in `ns`'s sysfs (`ip netns exec` mounts that namespace's)."""
    pre = ["ip", "netns", "exec", ns] if ns else []
    out = sh(*pre, "sh", "-c", "grep -H . /sys/class/ieee80211/*/macaddress", check=False).stdout
    return {ln.split(":", 1)[1].strip(): ln.split("/")[4] for ln in out.splitlines() if ":" in ln}


def guard_moved() -> list[dict]:
    p = sh("nsroute", "status", "--json", check=False)
    try:
        return (json.loads(p.stdout).get("guard") or {}).get("moved", [])
    except ValueError:
        return []


def guard_log() -> str:
    return "".join(p.read_text()[-3000:] for p in Path("/run/nsroute").glob("*.guard.log"))


def both_moved() -> list[dict]:
    """The guard's record once it has a wiphy and a netdev (only what it moved since `up`)."""
    moved = guard_moved()
    return moved if {m["what"] for m in moved} >= {"wiphy", "netdev"} else []


def far_ends(router: str) -> dict[str, dict[str, int]]:
    out = sh("ip", "netns", "exec", router, "nft", "list", "counters", "table", "netdev", "nsrplug").stdout
    return parse_ingress(out, list(SIDES))


def far_log() -> str:
    return "\n".join(ln for ln in sh("dmesg", check=False).stdout.splitlines() if FAR_LOG in ln)[-3000:]


def usb_detail(router: str, far: str) -> str:
    """Both ends of the USB link as the kernel and NetworkManager see them: a NIC that stays
    `unavailable` is one without carrier, and this says which end lost it."""
    usb = link_by_mac(USB_MAC, "physical") or "-"
    runs = [sh(*c, check=False) for c in (
        ["ip", "-n", "physical", "-d", "-s", "link", "show", "dev", usb],
        ["ip", "-n", router, "-d", "-s", "link", "show", "dev", far],
        ["sh", "-c", "dmesg | grep -iE 'usb|cdc|gadget|g_ether|udc|hcd|enx' | tail -40"],
        ["sh", "-c", f"journalctl -u NetworkManager --no-pager | grep -F '{usb}' | tail -30"])]
    return "\n".join(r.stdout + r.stderr for r in runs)


def gadget_lost_carrier(router: str, far: str) -> bool:
    """The rig's fault, not nsroute's: now and then (3 times in long boots, the fourth
    scenario or later of one boot; never in 6 short ones) g_ether behind dummy_hcd has its
    end of the link up (LOWER_UP) while the host side, up and moved, never hears of it
    (NO-CARRIER, nothing received): the gadget's link notification is lost between the
    two ends. nsroute has no part in carrier, so when that state lasts, the test re-plugs
    the device once, as a user would, and says so."""
    usb = link_by_mac(USB_MAC, "physical")
    if usb is None:
        return False
    host, gadget = (json.loads(sh("ip", "-n", ns, "-j", "link", "show", "dev", dev, check=False).stdout or "[{}]")
                    [0].get("flags", []) for ns, dev in (("physical", usb), (router, far)))
    return "UP" in host and "NO-CARRIER" in host and "LOWER_UP" in gadget


def replug_usb() -> None:
    """Unplug the USB NIC and plug it in again; the guard moves it anew."""
    Path(USB_DEV, "authorized").write_text("0")
    wait(lambda: link_by_mac(USB_MAC, "physical") is None, 30, "the USB NIC to go")
    Path(USB_DEV, "authorized").write_text("1")
    wait(lambda: link_by_mac(USB_MAC, "physical"), 60, "the guard to move the re-plugged USB NIC")


def dongle_given_up(since: str) -> bool:
    """NetworkManager's give-up, not nsroute's: under TCG load the access point's 4-way
    handshake can time out (wpa_supplicant: reason=15); NetworkManager then asks for a new
    key, no secrets agent answers in the VM, and it stops trying (`no-secrets`). A
    desktop's applet would ask the user for the password; the test brings the profile up
    again once, as desk.nm_up does for the user's own connects, and says so."""
    out = sh("journalctl", "-u", "NetworkManager", "--since", since, "--no-pager", "-q", check=False).stdout
    return f"Activation: failed for connection '{DONGLE_PROFILE}'" in out and "no-secrets" in out


def new_devices(ns: str | None) -> dict[str, bool]:
    """What a user checks of the two new devices where they live (`ns`)."""
    dongle, usb = link_by_mac(DONGLE_MAC, ns), link_by_mac(USB_MAC, ns)
    states = nm_states()
    return {
        "dongle here": dongle is not None,
        "dongle nmcli connected": states.get(dongle or "-") == "connected",
        "dongle associated": bool(dongle) and associated(dongle, ns, SSID2),
        "dongle lease": bool(dongle) and leased(dongle, ns, WLAN2),
        "usb here": usb is not None,
        "usb nmcli connected": states.get(usb or "-") == "connected",
        "usb lease": bool(usb) and leased(usb, ns, USB_NET),
    }


@pytest.fixture
def plug(unit):
    """The USB NIC's two sides made and unplugged (the gadget a port of the router, with a
    dnsmasq of its own), the far-end counters' table, and the two saved profiles."""
    desk = unit
    router, tmp = desk["router"], desk["tmp"]
    dnsmasq = None
    try:
        sh("modprobe", "dummy_hcd")
        sh("modprobe", "g_ether", f"host_addr={USB_MAC}", f"dev_addr={GADGET_MAC}")
        wait(usb_host_netdevs, 60, "the USB NIC to enumerate")
        far = gadget_netdev()
        sh("ip", "link", "set", far, "netns", router)
        Path(USB_DEV, "authorized").write_text("0")  # unplugged until the test plugs it in
        wait(lambda: not usb_host_netdevs(), 30, "the USB NIC to go")
        sh("ip", "-n", router, "addr", "add", f"{USB_NET}.1/24", "dev", far)
        sh("ip", "-n", router, "link", "set", far, "up")
        log = tmp / "dnsmasq-usb.log"
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", router, "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv",
             "--no-hosts", "--port=0", "--bind-interfaces", f"--interface={far}", "--except-interface=lo",
             "--user=root", "--group=root", f"--dhcp-range={USB_NET}.100,{USB_NET}.150,255.255.255.0,2m",
             f"--dhcp-leasefile={tmp / 'leases-usb'}", "--log-dhcp", f"--log-facility={log}",
             "--pid-file="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait(lambda: log.exists() and "started" in log.read_text(), 30, "dnsmasq on the USB link")
        # every frame reaching the router over the two new links, from the first
        chains = (ingress_chain("dongle", desk["ap2"], ENDPOINT, [f"{WLAN2}.1", f"{USB_NET}.1"], FAR_LOG)
                  + ingress_chain("usb", far, ENDPOINT, [f"{WLAN2}.1", f"{USB_NET}.1"], FAR_LOG))
        subprocess.run(["ip", "netns", "exec", router, "nft", "-f", "-"], check=True, text=True,
                       input="table netdev nsrplug {\n" + ingress_counters(list(SIDES)) + chains + "}\n")
        # what the user saved earlier: the dongle's network and the USB NIC's DHCP, by MAC
        sh("nmcli", "connection", "add", "type", "wifi", "ifname", "*", "con-name", DONGLE_PROFILE,
           "802-11-wireless.mac-address", DONGLE_MAC, "ssid", SSID2, "wifi-sec.key-mgmt", "wpa-psk",
           "wifi-sec.psk", psk_hex(SSID2), "ipv4.method", "auto", "ipv6.method", "disabled")
        sh("nmcli", "connection", "add", "type", "ethernet", "ifname", "*", "con-name", "nsr-usb",
           "ethernet.mac-address", USB_MAC, "ipv4.method", "auto", "ipv6.method", "disabled")
        yield {**desk, "far": far, "usb_log": log}
    finally:
        for name in PROFILES:
            subprocess.run(["nmcli", "connection", "delete", name], capture_output=True)
        if dnsmasq is not None:
            dnsmasq.terminate()
            dnsmasq.wait(timeout=10)
        subprocess.run(["systemctl", "stop", desk["unit"]], capture_output=True, timeout=180)
        for m in ("g_ether", "dummy_hcd"):
            subprocess.run(["rmmod", m], capture_output=True)


def test_plugged_in_while_up_networkmanager_in_physical_connects_them(plug):
    desk = plug
    router, server = desk["router"], desk["server"]

    start_unit(desk)
    assert_reconnected_in_physical(desk["wlan"], "systemctl start")
    reset_counters(router)
    tunnel_carries(server)
    far0 = far_ends(router)
    assert all(n == 0 for side in far0.values() for n in side.values()), far0

    # the user plugs in a Wi-Fi dongle and a USB Ethernet
    watch, hwsim = LinkWatch(), Hwsim()
    try:
        journal_since = time.strftime("%Y-%m-%d %H:%M:%S")
        plugged = time.time()
        hwsim.new_radio(DONGLE_MAC)
        Path(USB_DEV, "authorized").write_text("1")
        moved = wait(both_moved, 60, "the guard to move the new radio and the USB NIC", diagnose)
        usb = next(m for m in moved if m["what"] == "netdev")
        radio = next(m for m in moved if m["what"] == "wiphy")
        seen_usb = watch.appeared(index=usb["index"])
    finally:
        hwsim.close()
        watch.sock.close()
    for m, seen in ((radio, plugged), (usb, seen_usb)):
        print(f"{m['what']} {m['name']}: moved {m['time'] - seen:.3f}s after it appeared")
        assert 0 <= m["time"] - seen < MOVED_WITHIN, (m, seen, guard_log())
    # nothing of them on the protected side: lo and the tunnel (hwsim0: the module's monitor)
    assert DONGLE_MAC in wiphys_by_mac("physical") and DONGLE_MAC not in wiphys_by_mac(None)
    links = sorted(ln["ifname"] for ln in json.loads(sh("ip", "-j", "link").stdout))
    assert [n for n in links if n != "hwsim0"] == ["lo", "wg0"], links
    nm = main_pid("NetworkManager.service")
    assert nm and not same_netns(nm), "NetworkManager is not in the physical namespace"

    # NetworkManager in `physical` takes both and connects them with the saved profiles
    start = time.monotonic()
    got, lost_since, replugged, retried = new_devices("physical"), None, False, False
    while not all(got.values()) and time.monotonic() - start < CONNECT:
        time.sleep(1)
        got = new_devices("physical")
        if not retried and not got["dongle nmcli connected"] and dongle_given_up(journal_since):
            print(f"NetworkManager gave {DONGLE_PROFILE} up (4-way handshake timed out, no secrets "
                  "agent): brought up again")
            nm_up(DONGLE_PROFILE)
            retried = True
        if replugged or got["usb nmcli connected"]:
            continue
        # only a state that lasts: a NIC just set up has no carrier for a moment
        lost_since = (lost_since or time.monotonic()) if gadget_lost_carrier(router, desk["far"]) else None
        if lost_since is not None and time.monotonic() - lost_since >= LOST_FOR:
            print(f"USB NIC without carrier for {LOST_FOR:g} s, its gadget end up: re-plugged\n"
                  f"{usb_detail(router, desk['far'])}")
            replug_usb()
            replugged = True
    assert all(got.values()), (f"NetworkManager in physical did not connect the new devices within "
                               f"{CONNECT:g}s: {got}\n{diagnose()}\n{sh('nsroute', 'status', check=False).stdout}\n"
                               f"{usb_detail(router, desk['far'])}")
    print(f"dongle and USB NIC connected in physical {time.monotonic() - start:.1f}s after the guard moved them")
    tunnel_carries(server)

    far = far_ends(router)
    print(f"far ends since the first frame: {far}")
    assert far["dongle"]["dhcp"] > 0 and far["usb"]["dhcp"] > 0, far  # the counters do see them
    assert far["dongle"]["other"] == 0 and far["usb"]["other"] == 0, f"{far}\n{far_log()}"
    assert counter(router, "dns") == 0, "a DNS query reached the router"
    assert_nothing_beyond(router)

    # `systemctl stop` hands both back to NetworkManager at home
    sh("systemctl", "stop", desk["unit"], timeout=180)
    nm = main_pid("NetworkManager.service")
    assert nm and same_netns(nm), "NetworkManager is not back in the initial namespace"
    assert not os.path.exists("/run/netns/physical")
    assert DONGLE_MAC in wiphys_by_mac(None)
    start = time.monotonic()
    got = new_devices(None)
    while not all(got.values()) and time.monotonic() - start < 120:
        time.sleep(1)
        got = new_devices(None)
    assert all(got.values()), f"not connected at home after systemctl stop: {got}\n{diagnose()}"
    print(f"dongle and USB NIC connected at home {time.monotonic() - start:.1f}s after systemctl stop returned")
