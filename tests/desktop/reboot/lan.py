"""The rebooting desktop's LAN: a router on the other end of the laptop's cable and of its
Wi-Fi, and the laptop's nsroute unit enabled for the next boot.

The VM has two NICs on one QEMU hub (scripts/desktop-run --lan), told apart by their MAC
addresses: the laptop's Ethernet port and the router's. At boot, before nsroute's unit, a
unit of this test moves the router's NIC into the namespace `lan` and makes it the router: dnsmasq for DHCP, a
kernel WireGuard server on the router's address, and nftables counters on the router's
port that sort every frame the laptop sends since its first one: DHCP (v4, v6), ARP, ICMPv6
(neighbour discovery, MLD), WireGuard to the server, and anything else (a leak).

Wi-Fi: mac80211_hwsim loads at boot (modules-load.d) with two radios, told apart by their
permanent MACs: the laptop's, with a saved NetworkManager profile, and the router's, which
the router's unit moves into `lan` with a WPA2 access point (hostapd), the same dnsmasq
serving that link too and the same counters on its port.

    python3 -m tests.desktop.reboot.lan prepare userspace|kernel
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.desktop.guest.site import (
    INGRESS_KINDS,
    hostapd_conf,
    ingress_chain,
    ingress_counters,
    parse_ingress,
    psk_hex,
)

# the MACs scripts/desktop-run --lan gives the two NICs (LAN_NICS there)
UPLINK_MAC, ROUTER_MAC = "52:54:00:80:00:08", "52:54:00:80:00:09"
# mac80211_hwsim's radios 0 and 1 (02:00:00:00:<index>:00): the laptop's and the router's
WLAN_MAC, ROUTER_RADIO_MAC = "02:00:00:00:00:00", "02:00:00:00:01:00"
HWSIM = "mac80211_hwsim"
FIXTURE = Path("/usr/local/lib/nsroute-test")
NAMES = FIXTURE / "nics.json"


def nic_by_mac(mac: str) -> str:
    """udev's name for the NIC (ens8, enp0s8... depends on the firmware): the same every boot."""
    for dev in Path("/sys/class/net").iterdir():
        if (dev / "address").read_text().strip() == mac:
            return dev.name
    raise RuntimeError(f"no NIC with MAC {mac}: was the VM started with --lan?")


_names = json.loads(NAMES.read_text()) if NAMES.exists() else {}
UPLINK = _names.get("uplink", "")
ROUTER_NIC = _names.get("router", "")
WLAN = _names.get("wlan", "")  # the laptop's radio's netdev
ROUTER_WLAN = _names.get("router_wlan", "")
ROUTER_NS = "lan"
ROUTER_IP = "192.168.80.1"
SERVER_TUNNEL_IP = "10.99.0.1"
CLIENT_TUNNEL_IP = "10.99.0.2"
WG_PORT = 51820
UNITS = {"userspace": "nsroute@wg0.service", "kernel": "nsroute-kernel@wg0.service"}
ROUTER_UNIT = "nsroute-test-lan-router.service"
ROUTER_WIFI_IP = "192.168.81.1"
SSID = "nsr-boot"
# what each port's frames are sorted into: guest/site.py's allow-list, shared with the
# hot-plug scenario (dhcp v4/v6, ..., eapol and l2update for Wi-Fi, other: a leak)
COUNTERS = INGRESS_KINDS
OTHER_LOG = "nsr-lan-other: "  # the kernel log's prefix for what `other` counts
PROFILE = "lan-cable"  # the NetworkManager connection the laptop keeps for its uplink
WIFI_PROFILE = "home-wifi"  # and the one for its Wi-Fi


def _chain(side: str, dev: str) -> str:
    """One allow-list for each of the router's ports: counters c_SIDE_KIND."""
    return ingress_chain(side, dev, ROUTER_IP, [ROUTER_IP, ROUTER_WIFI_IP], OTHER_LOG, WG_PORT)


SIDES = {"cable": lambda: ROUTER_NIC, "wifi": lambda: ROUTER_WLAN}


def nft_text() -> str:
    decl = ingress_counters(list(SIDES))
    return "table netdev lancount {\n" + decl + "".join(_chain(s, d()) for s, d in SIDES.items()) + "}\n"


def router_script() -> str:
    return f"""#!/bin/sh
# The LAN's router, up before the laptop's nsroute unit (see tests/desktop/reboot/lan.py).
set -e
# a half-made router from an earlier try: deleting the namespace brings the NIC back here
ip netns delete {ROUTER_NS} 2>/dev/null || true
for _ in $(seq 60); do [ -e /sys/class/net/{ROUTER_NIC} ] && break; sleep 1; done
# the router's radio, by its permanent MAC (modules-load.d loaded {HWSIM} before this unit)
phy=
for _ in $(seq 60); do
  phy=$(grep -l {ROUTER_RADIO_MAC} /sys/class/ieee80211/*/macaddress 2>/dev/null | head -n1) && [ -n "$phy" ] && break
  sleep 1
done
[ -n "$phy" ] || {{ echo "no radio with MAC {ROUTER_RADIO_MAC}"; exit 1; }}
phy=$(basename "$(dirname "$phy")")
ip netns add {ROUTER_NS}
ip link set {ROUTER_NIC} netns {ROUTER_NS}
iw phy "$phy" set netns name {ROUTER_NS}
sysctl -qw net.netfilter.nf_log_all_netns=1 || true  # `other`'s log from the router's namespace
ip netns exec {ROUTER_NS} sh -e -c '
  nft -f {FIXTURE}/counters.nft
  ip link set lo up
  ip addr add {ROUTER_IP}/24 dev {ROUTER_NIC}
  ip link set {ROUTER_NIC} up
  ip addr add {ROUTER_WIFI_IP}/24 dev {ROUTER_WLAN}
  hostapd -B -P /run/nsroute-test-lan-hostapd.pid {FIXTURE}/hostapd.conf
  ip link add wgs type wireguard
  wg setconf wgs {FIXTURE}/server.conf
  ip addr add {SERVER_TUNNEL_IP}/24 dev wgs
  ip link set wgs up
  dnsmasq --user=root --conf-file=/dev/null --port=0 --interface={ROUTER_NIC} --interface={ROUTER_WLAN} \\
      --bind-interfaces --dhcp-range=set:cable,192.168.80.100,192.168.80.150,255.255.255.0,1h \\
      --dhcp-range=set:wifi,192.168.81.100,192.168.81.150,255.255.255.0,1h \\
      --dhcp-option=tag:cable,option:router,{ROUTER_IP} --dhcp-option=tag:wifi,option:router,{ROUTER_WIFI_IP} \\
      --dhcp-option=tag:cable,option:dns-server,{ROUTER_IP} \\
      --dhcp-option=tag:wifi,option:dns-server,{ROUTER_WIFI_IP} \\
      --dhcp-leasefile=/run/nsroute-test-lan.leases \\
      --pid-file=/run/nsroute-test-lan-dnsmasq.pid
'
"""


def router_unit() -> str:
    return f"""[Unit]
Description=nsroute test: the LAN router at the other end of {UPLINK}'s cable
DefaultDependencies=no
# no device dependency: the device leaves this namespace (for the router's) at once, and a
# restart of nsroute's unit would wait for it in vain; the script waits for it instead
After=systemd-modules-load.service local-fs.target
[Service]
Type=forking
ExecStart={FIXTURE}/lan-router
PIDFile=/run/nsroute-test-lan-dnsmasq.pid
"""


# What README's systemd section tells users: the unit starts once udev has named the
# devices (not after the uplink's .device unit: that leaves with the uplink, and a restart
# would wait for it in vain). The router's unit is this test's: the LAN is up first.
def drop_in() -> str:
    return f"""[Unit]
Wants=systemd-udev-settle.service {ROUTER_UNIT}
After=systemd-udev-settle.service {ROUTER_UNIT}
"""


def sh(*cmd: str, input: str | None = None) -> str:
    p = subprocess.run(list(cmd), capture_output=True, text=True, input=input, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def counters() -> dict[str, dict[str, int]]:
    """Frames each of the router's ports (cable, wifi) received from the laptop since the
    router came up, by kind."""
    out = sh("ip", "netns", "exec", ROUTER_NS, "nft", "list", "counters", "table", "netdev", "lancount")
    return parse_ingress(out, list(SIDES))


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _radios() -> tuple[str, str]:
    """mac80211_hwsim at every boot from now on, with two radios; loaded now to learn their
    netdevs' names (the kernel's wlanN, in the radios' order: the same every boot)."""
    _write(Path("/etc/modprobe.d/nsroute-test-hwsim.conf"), f"options {HWSIM} radios=2\n")
    _write(Path("/etc/modules-load.d/nsroute-test-hwsim.conf"), f"{HWSIM}\n")
    sh("modprobe", HWSIM)
    return nic_by_mac(WLAN_MAC), nic_by_mac(ROUTER_RADIO_MAC)


def prepare(backend: str) -> None:
    """Keys, the router's fixture, the laptop's tunnel config, and `backend`'s unit enabled."""
    global UPLINK, ROUTER_NIC, WLAN, ROUTER_WLAN
    if not NAMES.exists():
        UPLINK, ROUTER_NIC = nic_by_mac(UPLINK_MAC), nic_by_mac(ROUTER_MAC)
        WLAN, ROUTER_WLAN = _radios()
        _write(NAMES, json.dumps({"uplink": UPLINK, "router": ROUTER_NIC, "wlan": WLAN, "router_wlan": ROUTER_WLAN}))
        server_key, client_key = sh("wg", "genkey").strip(), sh("wg", "genkey").strip()
        server_pub = sh("wg", "pubkey", input=server_key).strip()
        client_pub = sh("wg", "pubkey", input=client_key).strip()
        _write(FIXTURE / "server.conf", f"[Interface]\nPrivateKey = {server_key}\nListenPort = {WG_PORT}\n"
               f"[Peer]\nPublicKey = {client_pub}\nAllowedIPs = {CLIENT_TUNNEL_IP}/32\n", 0o600)
        _write(Path("/etc/nsroute/wg0.conf"),
               f"[Interface]\nPrivateKey = {client_key}\nAddress = {CLIENT_TUNNEL_IP}/32\n\n"
               f"[Peer]\nPublicKey = {server_pub}\nEndpoint = {ROUTER_IP}:{WG_PORT}\n"
               "AllowedIPs = 0.0.0.0/0, ::/0\nPersistentKeepalive = 25\n", 0o600)
        _write(FIXTURE / "counters.nft", nft_text())
        _write(FIXTURE / "hostapd.conf", hostapd_conf(ROUTER_WLAN, SSID), 0o600)
        _write(FIXTURE / "lan-router", router_script(), 0o755)
        _write(Path("/etc/systemd/system") / ROUTER_UNIT, router_unit())
        # the desktop's saved profile for its Ethernet port, as its user made it (the image
        # sets no-auto-default=*): DHCP, IPv6 as NetworkManager's default, connect by itself
        sh("nmcli", "connection", "add", "type", "ethernet", "ifname", UPLINK, "con-name", PROFILE,
           "connection.autoconnect", "yes", "ipv4.method", "auto")
        # and for the home Wi-Fi (WPA2), saved with its key: it connects by itself
        sh("nmcli", "connection", "add", "type", "wifi", "ifname", WLAN, "con-name", WIFI_PROFILE,
           "ssid", SSID, "wifi-sec.key-mgmt", "wpa-psk", "wifi-sec.psk", psk_hex(SSID),
           "connection.autoconnect", "yes", "ipv4.method", "auto")
    for unit in UNITS.values():
        _write(Path("/etc/systemd/system") / f"{unit}.d" / "uplink.conf", drop_in())
    sh("systemctl", "daemon-reload")
    for name, unit in UNITS.items():
        sh("systemctl", "enable" if name == backend else "disable", unit)
    sh("sync")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "prepare" or sys.argv[2] not in UNITS:
        sys.exit("usage: python3 -m tests.desktop.reboot.lan prepare userspace|kernel")
    prepare(sys.argv[2])
    print(f"prepared: {UNITS[sys.argv[2]]} enabled for the next boot")
