"""The NetworkManager desktop the NetworkManager scenarios share, and what a user checks there.

The desktop (the VM's own namespace, systemd, NetworkManager 1.42, wpa_supplicant driven
over D-Bus) has two uplinks, both connected by the user with nmcli, and a second saved
Wi-Fi network it can switch to:

    desktop                       router (dnsmasq DHCP on all three)     server
      eth5 (veth) ----------------- r-lan 192.168.77.1/24
      wlanX (mac80211_hwsim) ~~~~~~ AP 1 192.168.70.1/24 (hostapd WPA2, SSID nsr-desk)
                             ~~~~~~ AP 2 192.168.71.1/24 (hostapd WPA2, SSID nsr-desk-2)
                                    r-wan 10.200.0.1 ---------------- s-wan 10.200.0.2 (kernel WireGuard)

Why a module: the scenarios (nsroute up by hand, the systemd unit, roaming while up) need
the same site; the fixture `desk` builds it and takes it down again.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.guest import sh

from .site import (
    SERVER_TUNNEL,
    build_wan,
    client_config,
    hostapd_conf,
    install_counters,
    make_router_and_server,
    psk_hex,
    remove_namespaces,
)

SSID, SSID2 = "nsr-desk", "nsr-desk-2"
# a name the router's dnsmasq answers (the DNS server of every network it leases on)
PORTAL, PORTAL_ADDR = "portal.nsr-desk.test", "192.168.71.9"
ETH = "eth5"  # a veth named like a NIC: NetworkManager's udev rules leave other veths unmanaged
LAN, WLAN, WLAN2 = "192.168.77", "192.168.70", "192.168.71"
# Seconds for NetworkManager to connect both uplinks again in `physical`. The target
# is 10 s; under TCG on a loaded 2-core machine its Wi-Fi scan, association and DHCP alone
# took 26 s (2.2 s on a quieter run), so the bound is what this VM can show, and the time
# is printed.
RECONNECT = 60.0
# The unit per backend, and the kind of link each leaves as wg0. The unit scenarios run with
# the backends named in NSROUTE_DESKTOP_BACKENDS (default both, as CI runs them).
UNITS = {"userspace": ("nsroute@wg0.service", "tun"), "kernel": ("nsroute-kernel@wg0.service", "wireguard")}
BACKENDS = os.environ.get("NSROUTE_DESKTOP_BACKENDS", "userspace kernel").split()
CONF = Path("/etc/nsroute/wg0.conf")
DROPINS = [Path("/run/systemd/system/NetworkManager.service.d/50-nsroute-physical.conf"),
           Path("/run/systemd/system/wpa_supplicant.service.d/50-nsroute-physical.conf"),
           Path("/run/NetworkManager/conf.d/50-nsroute-physical.conf")]


def nm_states() -> dict[str, str]:
    out = sh("nmcli", "-t", "-f", "DEVICE,STATE", "device", check=False).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def associated(dev: str, ns: str | None, ssid: str = SSID) -> bool:
    """`iw dev DEV link` says connected, to `ssid`."""
    pre = ["ip", "netns", "exec", ns] if ns else []
    out = sh(*pre, "iw", "dev", dev, "link", check=False).stdout
    return out.startswith("Connected to") and f"SSID: {ssid}" in [ln.strip() for ln in out.splitlines()]


def leased(dev: str, ns: str | None, net: str) -> bool:
    """A dynamic (DHCP) IPv4 address in `net` on `dev`."""
    out = sh("ip", *(["-n", ns] if ns else []), "-j", "-4", "addr", "show", "dev", dev, check=False).stdout
    try:
        info = json.loads(out)[0]["addr_info"]
    except (ValueError, IndexError, KeyError):
        return False
    return any(a.get("dynamic") and a["local"].startswith(net + ".") for a in info)


def default_via(ns: str | None) -> set[str]:
    out = sh("ip", *(["-n", ns] if ns else []), "-j", "-4", "route", "show", "default", check=False).stdout
    return {f"{r.get('gateway')}@{r.get('dev')}" for r in json.loads(out or "[]")}


def connected(ns: str | None, wlan: str, ssid: str = SSID, wnet: str = WLAN) -> dict[str, bool]:
    """What a user checks, per uplink (`ns`: where the devices live)."""
    states = nm_states()
    routes = default_via(ns)
    return {
        "eth nmcli connected": states.get(ETH) == "connected",
        "wifi nmcli connected": states.get(wlan) == "connected",
        "wifi associated": associated(wlan, ns, ssid),
        "eth lease": leased(ETH, ns, LAN),
        "wifi lease": leased(wlan, ns, wnet),
        "eth default route": f"{LAN}.1@{ETH}" in routes,
        "wifi default route": f"{wnet}.1@{wlan}" in routes,
    }


def wait_connected(ns: str | None, wlan: str, timeout: float, ssid: str = SSID,
                   wnet: str = WLAN) -> tuple[dict[str, bool], float]:
    start = time.monotonic()
    got = connected(ns, wlan, ssid, wnet)
    while not all(got.values()) and time.monotonic() - start < timeout:
        time.sleep(0.5)
        got = connected(ns, wlan, ssid, wnet)
    return got, time.monotonic() - start


def assert_reconnected_in_physical(wlan: str, after: str) -> None:
    """NetworkManager runs in the physical namespace and has both uplinks connected there."""
    nm = main_pid("NetworkManager.service")
    assert nm and not same_netns(nm), "NetworkManager did not move to the physical namespace"
    got, took = wait_connected("physical", wlan, RECONNECT)
    assert all(got.values()), f"not reconnected within {RECONNECT:g}s of {after}: {got}\n{diagnose()}"
    print(f"uplinks connected again {took:.1f}s after {after} returned")


def physical_servers(want: set[str], timeout: float = 15.0) -> list[str]:
    """The nameservers of the physical side's resolv.conf, once they are `want` (or at the
    timeout): NetworkManager writes them after the lease, and the guard copies them."""
    end = time.monotonic() + timeout
    while True:
        text = Path("/etc/netns/physical/resolv.conf").read_text()
        got = [w[1] for w in (ln.split() for ln in text.splitlines()) if len(w) > 1 and w[0] == "nameserver"]
        if set(got) == want or time.monotonic() > end:
            return got
        time.sleep(0.5)


def same_netns(pid: int) -> bool:
    return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino


def main_pid(unit: str) -> int:
    return int(sh("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip() or 0)


def diagnose() -> str:
    parts = [sh(*c, check=False).stdout for c in (
        ["nmcli", "device"], ["ip", "netns", "exec", "physical", "ip", "-br", "addr"],
        ["ip", "netns", "exec", "physical", "ip", "route"],
        ["journalctl", "-u", "NetworkManager", "-u", "wpa_supplicant", "--no-pager", "-n", "60"])]
    return "\n".join(parts)


TRANSFER_SERVER = r"""
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); s.settimeout(120)
c, _ = s.accept(); c.settimeout(60); h = hashlib.sha256(); n = 0
while n < int(sys.argv[2]):
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
c.sendall(h.hexdigest().encode()); c.close()
"""


def tunnel_carries(server: str) -> None:
    """A ping and a checksummed transfer through the tunnel."""
    assert sh("ping", "-c", "3", "-W", "5", SERVER_TUNNEL, check=False).returncode == 0, diagnose()
    transfer(server, 64 * 1024)


def transfer(server: str, size: int = 256 * 1024) -> None:
    """`size` random bytes from the desktop to the server's tunnel address, checksummed there."""
    srv = subprocess.Popen(["ip", "netns", "exec", server, "python3", "-c", TRANSFER_SERVER,
                            SERVER_TUNNEL, str(size)])
    try:
        data = secrets.token_bytes(size)
        end = time.monotonic() + 20
        while True:
            try:
                c = socket.create_connection((SERVER_TUNNEL, 5001), timeout=30)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.5)
        c.sendall(data)
        c.settimeout(60)
        digest = c.recv(64).decode()
        c.close()
        assert digest == hashlib.sha256(data).hexdigest(), "bytes through the tunnel arrived changed"
    finally:
        srv.wait(timeout=60)



def start_ap(router: str, iface: str, ssid: str, tmp: Path) -> subprocess.Popen:
    """hostapd (WPA2) on the router's radio `iface`; returns once the AP is enabled."""
    conf = tmp / f"hostapd-{ssid}.conf"
    conf.write_text(hostapd_conf(iface, ssid))
    log = tmp / f"hostapd-{ssid}.log"
    log.unlink(missing_ok=True)
    p = subprocess.Popen(["ip", "netns", "exec", router, "hostapd", "-t", "-f", str(log), str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 30
    while not (log.exists() and "AP-ENABLED" in log.read_text()):
        assert p.poll() is None and time.monotonic() < end, f"hostapd did not enable {ssid}"
        time.sleep(0.3)
    return p


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    p.wait(timeout=10)


@pytest.fixture
def desk(tmp_path):
    router, server = make_router_and_server()
    procs: dict[str, subprocess.Popen] = {}
    try:
        # Wi-Fi: three radios, the two access points' move to the router
        sh("modprobe", "mac80211_hwsim", "radios=3")
        phys = sorted(os.listdir("/sys/class/ieee80211"))
        assert len(phys) == 3, phys
        wl = {p: os.listdir(f"/sys/class/ieee80211/{p}/device/net")[0] for p in phys}
        ap1_phy, ap2_phy, desk_phy = phys
        ap1, ap2, wlan = wl[ap1_phy], wl[ap2_phy], wl[desk_phy]
        for phy in (ap1_phy, ap2_phy):
            sh("iw", "phy", phy, "set", "netns", "name", router)
        # Ethernet
        sh("ip", "link", "add", ETH, "type", "veth", "peer", "name", "r-lan", "netns", router)
        for dev, net in (("r-lan", LAN), (ap1, WLAN), (ap2, WLAN2)):
            sh("ip", "-n", router, "addr", "add", f"{net}.1/24", "dev", dev)
        sh("ip", "-n", router, "link", "set", "r-lan", "up")
        spub, ckey = build_wan(router, server, tmp_path)
        procs["ap1"] = start_ap(router, ap1, SSID, tmp_path)
        procs["ap2"] = start_ap(router, ap2, SSID2, tmp_path)
        dhcp_log = tmp_path / "dnsmasq.log"
        procs["dnsmasq"] = subprocess.Popen(
            ["ip", "netns", "exec", router, "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv",
             "--no-hosts", "--bind-interfaces", "--interface=r-lan", f"--interface={ap1}",
             f"--interface={ap2}", "--except-interface=lo", "--user=root", "--group=root",
             f"--dhcp-range={LAN}.100,{LAN}.150,255.255.255.0,2m",
             f"--dhcp-range={WLAN}.100,{WLAN}.150,255.255.255.0,2m",
             f"--dhcp-range={WLAN2}.100,{WLAN2}.150,255.255.255.0,2m",
             f"--dhcp-leasefile={tmp_path / 'leases'}", "--log-dhcp", f"--log-facility={dhcp_log}",
             f"--host-record={PORTAL},{PORTAL_ADDR}",
             "--pid-file="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        install_counters(router, ["r-lan", ap1, ap2])

        # the user connects Ethernet and the first network with nmcli; the second is saved
        sh("nmcli", "connection", "add", "type", "ethernet", "ifname", ETH, "con-name", "nsr-eth",
           "ipv4.method", "auto", "ipv6.method", "disabled")
        for name, ssid, auto in (("nsr-wifi", SSID, "yes"), ("nsr-wifi-2", SSID2, "no")):
            sh("nmcli", "connection", "add", "type", "wifi", "ifname", wlan, "con-name", name,
               "ssid", ssid, "wifi-sec.key-mgmt", "wpa-psk", "wifi-sec.psk", psk_hex(ssid),
               "connection.autoconnect", auto, "ipv4.method", "auto", "ipv6.method", "disabled")
        sh("nmcli", "--wait", "90", "connection", "up", "nsr-eth", timeout=120)
        nm_up("nsr-wifi")
        yield {"wlan": wlan, "router": router, "server": server, "tmp": tmp_path, "dhcp_log": dhcp_log,
               "ap1": ap1, "ap2": ap2, "procs": procs,
               "conf": client_config(tmp_path / "wg0.conf", ckey, spub)}
    finally:
        subprocess.run(["nsroute", "down"], capture_output=True, timeout=180)
        if any(p.exists() for p in DROPINS):  # a failed down: NetworkManager home, for the next test
            for p in DROPINS:
                p.unlink(missing_ok=True)
            subprocess.run(["systemctl", "daemon-reload"], check=False)
            subprocess.run(["systemctl", "restart", "NetworkManager"], check=False)
        for name in ("nsr-eth", "nsr-wifi", "nsr-wifi-2"):
            subprocess.run(["nmcli", "connection", "delete", name], capture_output=True)
        for p in procs.values():
            if p.poll() is None:
                stop(p)
        subprocess.run(["ip", "link", "del", ETH], capture_output=True)
        remove_namespaces(router, server)
        subprocess.run(["rmmod", "mac80211_hwsim"], capture_output=True)


@pytest.fixture(params=BACKENDS)
def unit(desk, request):
    """The unit of one backend, told which uplinks to take (eth5 is a veth, which `up` leaves
    alone unless named); desk["unit"] names it."""
    name, _kind = UNITS[request.param]
    dropin = Path(f"/run/systemd/system/{name}.d/50-test-interfaces.conf")
    CONF.parent.mkdir(mode=0o755, exist_ok=True)
    shutil.copyfile(desk["conf"], CONF)
    CONF.chmod(0o600)
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(f"[Service]\nExecStart=\nExecStart=/usr/bin/nsroute up %i --backend {request.param} "
                      f"--wait 0 --interface {ETH} --interface {desk['wlan']}\n")
    sh("systemctl", "daemon-reload")
    desk = {**desk, "unit": name, "backend": request.param}
    try:
        yield desk
    finally:
        subprocess.run(["systemctl", "stop", name], capture_output=True, timeout=120)
        shutil.rmtree(dropin.parent, ignore_errors=True)
        subprocess.run(["systemctl", "daemon-reload"], check=False)
        subprocess.run(["systemctl", "reset-failed", name], capture_output=True)
        CONF.unlink(missing_ok=True)


def start_unit(desk: dict) -> None:
    """`systemctl start` the scenario's unit, and check wg0 is that backend's kind of link:
    a scenario must not pass on the other backend by mistake."""
    sh("systemctl", "start", desk["unit"], timeout=180)
    link = json.loads(sh("ip", "-d", "-j", "link", "show", "wg0").stdout)[0]
    kind = link.get("linkinfo", {}).get("info_kind")
    assert kind == UNITS[desk["backend"]][1], f"{desk['unit']} left wg0 of kind {kind}"


def nm_up(connection: str) -> None:
    """`nmcli connection up`, retried: under TCG the 4-way handshake may time out ("secrets required")."""
    for _attempt in range(3):
        p = sh("nmcli", "--wait", "90", "connection", "up", connection, check=False, timeout=120)
        if p.returncode == 0:
            return
    raise AssertionError(f"nmcli could not bring up {connection}: {p.stdout}{p.stderr}")
