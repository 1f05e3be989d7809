"""NetworkManager keeps the uplinks under `nsroute up`: Ethernet and Wi-Fi, connected by nmcli.

The desktop (the VM's own namespace, systemd, NetworkManager 1.42, wpa_supplicant driven
over D-Bus) has two uplinks, both connected by the user with nmcli:

    desktop                       router (dnsmasq DHCP on both)         server
      eth5 (veth) ----------------- r-lan 192.168.77.1/24
      wlanB (mac80211_hwsim) ~~~~~~ wlanA 192.168.70.1/24 (hostapd WPA2)
                                    r-wan 10.200.0.1 ---------------- s-wan 10.200.0.2 (kernel WireGuard)

After `nsroute up`: NetworkManager runs in the physical namespace and has both uplinks
connected again (Wi-Fi associated, a DHCP lease, a default route there), the handshake
completes, bytes cross the tunnel, the router counts nothing but WireGuard (and the
physical side's DHCP) from the uplinks, port 53 included, and `nmcli device wifi list`
still works. After `nsroute down`: NetworkManager runs in the initial namespace again and
has both devices connected as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import sh
from .site import (
    ENDPOINT,
    SERVER_TUNNEL,
    client_config,
    counter,
    install_counters,
    reset_counters,
    wireguard_server,
)

SSID = "nsr-desk"
PSK_HEX = hashlib.pbkdf2_hmac("sha1", b"correct horse battery", SSID.encode(), 4096, 32).hex()
ETH = "eth5"  # a veth named like a NIC: NetworkManager's udev rules leave other veths unmanaged
LAN, WLAN = "192.168.77", "192.168.70"
# Seconds after `up` returns. The target is 10 s; under TCG on a loaded 2-core
# machine NetworkManager's Wi-Fi scan, association and DHCP alone took 26 s (2.2 s on a
# quieter run), so the bound here is what this VM can show, and the time is printed.
RECONNECT = 60.0
DROPINS = [Path("/run/systemd/system/NetworkManager.service.d/50-nsroute-physical.conf"),
           Path("/run/systemd/system/wpa_supplicant.service.d/50-nsroute-physical.conf"),
           Path("/run/NetworkManager/conf.d/50-nsroute-physical.conf")]


def nm_states() -> dict[str, str]:
    out = sh("nmcli", "-t", "-f", "DEVICE,STATE", "device", check=False).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def associated(dev: str, ns: str | None) -> bool:
    pre = ["ip", "netns", "exec", ns] if ns else []
    return sh(*pre, "iw", "dev", dev, "link", check=False).stdout.startswith("Connected to")


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


def connected(ns: str | None, wlan: str) -> dict[str, bool]:
    """What a user checks, per uplink (`ns`: where the devices live)."""
    states = nm_states()
    routes = default_via(ns)
    return {
        "eth nmcli connected": states.get(ETH) == "connected",
        "wifi nmcli connected": states.get(wlan) == "connected",
        "wifi associated": associated(wlan, ns),
        "eth lease": leased(ETH, ns, LAN),
        "wifi lease": leased(wlan, ns, WLAN),
        "eth default route": f"{LAN}.1@{ETH}" in routes,
        "wifi default route": f"{WLAN}.1@{wlan}" in routes,
    }


def wait_connected(ns: str | None, wlan: str, timeout: float) -> tuple[dict[str, bool], float]:
    start = time.monotonic()
    got = connected(ns, wlan)
    while not all(got.values()) and time.monotonic() - start < timeout:
        time.sleep(0.5)
        got = connected(ns, wlan)
    return got, time.monotonic() - start


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


@pytest.fixture
def desk(tmp_path):
    tag = secrets.token_hex(2)
    router, server = f"nsr-{tag}-router", f"nsr-{tag}-server"
    procs: list[subprocess.Popen] = []

    def ns(n: str, *cmd: str) -> None:
        sh("ip", "netns", "exec", n, *cmd)

    for n in (router, server):
        sh("ip", "netns", "add", n)
        ns(n, "ip", "link", "set", "lo", "up")
    try:
        # Wi-Fi: two radios, the access point's moves to the router
        sh("modprobe", "mac80211_hwsim", "radios=2")
        phys = sorted(os.listdir("/sys/class/ieee80211"))
        assert len(phys) == 2, phys
        wl = {p: os.listdir(f"/sys/class/ieee80211/{p}/device/net")[0] for p in phys}
        ap_phy, desk_phy = phys
        wlan_a, wlan = wl[ap_phy], wl[desk_phy]
        sh("iw", "phy", ap_phy, "set", "netns", "name", router)
        # Ethernet
        sh("ip", "link", "add", ETH, "type", "veth", "peer", "name", "r-lan", "netns", router)
        sh("ip", "-n", router, "link", "add", "r-wan", "type", "veth", "peer", "name", "s-wan", "netns", server)
        ns(router, "ip", "addr", "add", f"{LAN}.1/24", "dev", "r-lan")
        ns(router, "ip", "addr", "add", f"{WLAN}.1/24", "dev", wlan_a)
        ns(router, "ip", "addr", "add", "10.200.0.1/30", "dev", "r-wan")
        for dev in ("r-lan", "r-wan"):
            ns(router, "ip", "link", "set", dev, "up")
        ns(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        ns(server, "ip", "addr", "add", f"{ENDPOINT}/30", "dev", "s-wan")
        ns(server, "ip", "link", "set", "s-wan", "up")
        ns(server, "ip", "route", "add", "default", "via", "10.200.0.1")
        spub, ckey = wireguard_server(server, tmp_path, "s-wan")

        conf = tmp_path / "hostapd.conf"
        conf.write_text(f"interface={wlan_a}\ndriver=nl80211\nssid={SSID}\nhw_mode=g\nchannel=1\n"
                        f"wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_psk={PSK_HEX}\n")
        hostapd_log = tmp_path / "hostapd.log"
        procs.append(subprocess.Popen(["ip", "netns", "exec", router, "hostapd", "-t", "-f", str(hostapd_log),
                                       str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        end = time.monotonic() + 30
        while not (hostapd_log.exists() and "AP-ENABLED" in hostapd_log.read_text()):
            assert time.monotonic() < end, "hostapd did not enable the AP"
            time.sleep(0.3)
        dhcp_log = tmp_path / "dnsmasq.log"
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", router, "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv",
             "--no-hosts", "--bind-interfaces", "--interface=r-lan", f"--interface={wlan_a}",
             "--except-interface=lo", "--user=root", "--group=root",
             f"--dhcp-range={LAN}.100,{LAN}.150,255.255.255.0,2m",
             f"--dhcp-range={WLAN}.100,{WLAN}.150,255.255.255.0,2m",
             f"--dhcp-leasefile={tmp_path / 'leases'}", "--log-dhcp", f"--log-facility={dhcp_log}",
             "--pid-file="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        install_counters(router, ["r-lan", wlan_a])

        # the user connects both with nmcli
        sh("nmcli", "connection", "add", "type", "ethernet", "ifname", ETH, "con-name", "nsr-eth",
           "ipv4.method", "auto", "ipv6.method", "disabled")
        sh("nmcli", "connection", "add", "type", "wifi", "ifname", wlan, "con-name", "nsr-wifi",
           "ssid", SSID, "wifi-sec.key-mgmt", "wpa-psk", "wifi-sec.psk", PSK_HEX,
           "ipv4.method", "auto", "ipv6.method", "disabled")
        sh("nmcli", "--wait", "90", "connection", "up", "nsr-eth", timeout=120)
        for _attempt in range(3):  # under TCG the 4-way handshake may time out ("secrets required")
            p = sh("nmcli", "--wait", "90", "connection", "up", "nsr-wifi", check=False, timeout=120)
            if p.returncode == 0:
                break
        assert p.returncode == 0, f"nmcli could not connect the Wi-Fi: {p.stdout}{p.stderr}"
        yield {"wlan": wlan, "router": router, "server": server, "tmp": tmp_path, "dhcp_log": dhcp_log,
               "conf": client_config(tmp_path / "wg0.conf", ckey, spub)}
    finally:
        subprocess.run(["nsroute", "down"], capture_output=True, timeout=180)
        if any(p.exists() for p in DROPINS):  # a failed down: NetworkManager home, for the next test
            for p in DROPINS:
                p.unlink(missing_ok=True)
            subprocess.run(["systemctl", "daemon-reload"], check=False)
            subprocess.run(["systemctl", "restart", "NetworkManager"], check=False)
        for name in ("nsr-eth", "nsr-wifi"):
            subprocess.run(["nmcli", "connection", "delete", name], capture_output=True)
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        subprocess.run(["ip", "link", "del", ETH], capture_output=True)
        for n in (router, server):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        subprocess.run(["rmmod", "mac80211_hwsim"], capture_output=True)


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

    # NetworkManager runs in the physical namespace, and has both uplinks connected there
    nm = main_pid("NetworkManager.service")
    assert nm and not same_netns(nm), "NetworkManager did not move to the physical namespace"
    got, took = wait_connected("physical", wlan, RECONNECT)
    assert all(got.values()), f"not reconnected within {RECONNECT:g}s of up: {got}\n{diagnose()}"
    print(f"uplinks connected again {took:.1f}s after up returned")
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
    assert counter(router, "beyond") == 0, "something other than WireGuard left an uplink"

    p = subprocess.run(["nsroute", "down"], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    assert not any(d.exists() for d in DROPINS), "down left NetworkManager's drop-ins"
    nm = main_pid("NetworkManager.service")
    assert nm and same_netns(nm), "NetworkManager is not back in the initial namespace"
    back, took = wait_connected(None, wlan, 60)
    assert all(back.values()), f"NetworkManager did not reconnect after down: {back}\n{diagnose()}"
    print(f"uplinks connected at home {took:.1f}s after down returned")
    assert not Path("/run/netns/physical").exists()
