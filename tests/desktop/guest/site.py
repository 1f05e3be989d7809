"""What the desktop scenarios share: router and server namespaces, the VPN server behind
the router, and the router's counters.

Why one place: every scenario asserts "nothing but WireGuard left the uplinks" with the
same counters, and talks to the same kind of server (kernel WireGuard, cheap under TCG).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
from pathlib import Path

from tests.support.guest import sh

ENDPOINT = "10.200.0.2"  # the server's address behind the router
WG_PORT = 51820
SERVER_TUNNEL, CLIENT_TUNNEL = "10.99.0.1", "10.99.0.2"


def psk_hex(ssid: str) -> str:
    """The WPA2 key of every test network (as hex, what hostapd and nmcli both take)."""
    return hashlib.pbkdf2_hmac("sha1", b"correct horse battery", ssid.encode(), 4096, 32).hex()


def hostapd_conf(iface: str, ssid: str) -> str:
    """A WPA2 access point on the router's radio `iface` (mac80211_hwsim, channel 1)."""
    return (f"interface={iface}\ndriver=nl80211\nssid={ssid}\nhw_mode=g\nchannel=1\n"
            f"wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_psk={psk_hex(ssid)}\n")


def counters_ruleset(lan_ifaces: list[str]) -> str:
    """An nft table for the router: `dns` counts every port-53 packet arriving from the
    desktop's uplinks, `beyond` everything else from them that is not the WireGuard flow,
    DHCP (the physical side's own leases, and the port-unreachable a client's kernel
    answers to a DHCP reply that came after its client stopped listening, as after a
    renewal), ICMPv6 or IPv6 multicast."""
    names = ", ".join(f'"{i}"' for i in lan_ifaces)
    return f"""table inet nsrcount {{
  counter dns {{}}
  counter beyond {{}}
  chain pre {{
    type filter hook prerouting priority -300; policy accept;
    iifname != {{ {names} }} return
    meta l4proto {{ tcp, udp }} th dport 53 counter name dns return
    ip daddr {ENDPOINT} udp dport {WG_PORT} return
    udp dport 67 return
    icmp type destination-unreachable @th,224,16 67 return
    meta l4proto 58 return
    ip6 daddr ff00::/8 return
    ip daddr 255.255.255.255 return
    counter name beyond log prefix "nsr-beyond: "
  }}
}}
"""


# What an uplink may send its router, frame by frame, while up (the allow-list of
# `ingress_chain`): DHCP (v4, v6), ARP, ICMPv6 (neighbour discovery, MLD), WireGuard to the
# server, the kernel's port-unreachable quoting the server's datagram or a DHCP reply,
# EAPOL (WPA2's handshake) and the access point's own "layer 2 update"; `other` is a leak.
INGRESS_KINDS = ("dhcp", "arp", "icmpv6", "wireguard", "unreach", "eapol", "l2update", "other")


def ingress_chain(side: str, dev: str, wg_daddr: str, router_ips: list[str], log_prefix: str,
                  wg_port: int = WG_PORT) -> str:
    """A netdev ingress chain on the router's port `dev` that sorts every frame arriving
    there, from the first, into counters c_SIDE_KIND (declare them: `ingress_counters`).

    Why at ingress: it sees frames before any address or route, ARP and EAPOL included, so
    "nothing but these" holds from the frame a new link sends first."""
    c = f"c_{side}_"
    return f"""  chain {side} {{
    type filter hook ingress device "{dev}" priority -500; policy accept;
    ether type arp counter name {c}arp accept
    ether type 0x888e counter name {c}eapol accept
    # the router's own mac80211 announces each station that associates (and so the laptop's
    # radio at every connect) with an 802.2 XID "layer 2 update" frame from the station's
    # MAC, broadcast, which it injects as if received on the access point's port: 802.3
    # length 6, LLC 00 01 af, XID 81 01 00 (net/mac80211/cfg.c, ieee80211_send_layer2_update)
    ether daddr ff:ff:ff:ff:ff:ff ether type 0x0006 @ll,112,48 0x0001af810100 counter name {c}l2update accept
    udp sport 68 udp dport 67 counter name {c}dhcp accept
    udp sport 546 udp dport 547 counter name {c}dhcp accept
    meta l4proto 58 counter name {c}icmpv6 accept
    ip daddr {wg_daddr} udp dport {wg_port} counter name {c}wireguard accept
    # the laptop kernel's port-unreachable for a datagram of the server (inner source port
    # {wg_port}) or a DHCP reply (67) that found no socket: a killed engine's old port (the
    # restarted one has another). It quotes the router's datagram, so nothing from the
    # protected side can look like it: link noise, as in tests/support/hosts.py.
    ip daddr {{ {", ".join(router_ips)} }} icmp type destination-unreachable icmp code port-unreachable @th,224,16 {{ {wg_port}, 67 }} counter name {c}unreach accept
    counter name {c}other log prefix "{log_prefix}"
  }}
"""


def ingress_counters(sides: list[str]) -> str:
    """The counter declarations `ingress_chain`'s rules name."""
    return "".join(f"  counter c_{side}_{k} {{}}\n" for side in sides for k in INGRESS_KINDS)


def parse_ingress(nft_list: str, sides: list[str]) -> dict[str, dict[str, int]]:
    """`nft list counters table ...` -> frames per side and kind."""
    found = {k: int(v) for k, v in re.findall(r"counter c_(\w+) \{\s*packets (\d+)", nft_list)}
    return {side: {k: found[f"{side}_{k}"] for k in INGRESS_KINDS} for side in sides}


def install_counters(router: str, lan_ifaces: list[str]) -> None:
    # each packet `beyond` counts is also logged (dmesg): a failure then names what left
    sh("sysctl", "-qw", "net.netfilter.nf_log_all_netns=1", check=False)
    subprocess.run(["ip", "netns", "exec", router, "nft", "-f", "-"], input=counters_ruleset(lan_ifaces),
                   text=True, check=True)


RESET_MARK = "nsr-counters-reset"


def reset_counters(router: str) -> None:
    sh("ip", "netns", "exec", router, "nft", "reset", "counters", "table", "inet", "nsrcount")
    Path("/dev/kmsg").write_text(RESET_MARK + "\n")


def beyond_log() -> str:
    """The packets `beyond` counted since the last reset, as the kernel logged them."""
    lines = sh("dmesg", check=False).stdout.splitlines()
    marks = [i for i, ln in enumerate(lines) if RESET_MARK in ln]
    since = lines[marks[-1] + 1:] if marks else lines
    return "\n".join(ln for ln in since if "nsr-beyond: " in ln)[-3000:]


def assert_nothing_beyond(router: str) -> None:
    """Nothing but WireGuard (and the physical side's DHCP and ICMPv6) left the uplinks."""
    n = counter(router, "beyond")
    assert n == 0, f"{n} packets other than WireGuard left an uplink:\n{beyond_log()}"


def counter(router: str, name: str) -> int:
    out = sh("ip", "netns", "exec", router, "nft", "list", "counter", "inet", "nsrcount", name).stdout
    return int(re.search(r"packets (\d+)", out).group(1))


def wireguard_server(server: str, tmp: Path, wan_dev: str) -> tuple[str, str]:
    """Kernel WireGuard in `server` (address ENDPOINT on `wan_dev`, already up); returns the
    server's public key and the client's private key."""
    sh("modprobe", "wireguard")
    skey, ckey = sh("wg", "genkey").stdout.strip(), sh("wg", "genkey").stdout.strip()
    spub = sh("sh", "-c", f"echo {skey} | wg pubkey").stdout.strip()
    cpub = sh("sh", "-c", f"echo {ckey} | wg pubkey").stdout.strip()
    keyfile = tmp / "server.key"
    keyfile.write_text(skey + "\n")
    keyfile.chmod(0o600)

    def ns(*cmd: str) -> None:
        sh("ip", "netns", "exec", server, *cmd)

    ns("ip", "link", "add", "wgs", "type", "wireguard")
    ns("wg", "set", "wgs", "private-key", str(keyfile), "listen-port", str(WG_PORT),
       "peer", cpub, "allowed-ips", f"{CLIENT_TUNNEL}/32")
    ns("ip", "addr", "add", f"{SERVER_TUNNEL}/24", "dev", "wgs")
    ns("ip", "link", "set", "wgs", "up")
    return spub, ckey


def client_config(path: Path, ckey: str, spub: str, dns: str | None = None) -> Path:
    """The desktop's wg-quick file: everything through the tunnel."""
    path.write_text(f"[Interface]\nPrivateKey = {ckey}\nAddress = {CLIENT_TUNNEL}/24\n"
                    + (f"DNS = {dns}\n" if dns else "")
                    + f"\n[Peer]\nPublicKey = {spub}\nEndpoint = {ENDPOINT}:{WG_PORT}\n"
                    "AllowedIPs = 0.0.0.0/0\nPersistentKeepalive = 25\n")
    path.chmod(0o600)
    return path


def make_router_and_server() -> tuple[str, str]:
    """Two new namespaces with lo up: the desktop's router and the VPN server behind it."""
    tag = secrets.token_hex(2)
    names = (f"nsr-{tag}-router", f"nsr-{tag}-server")
    for n in names:
        sh("ip", "netns", "add", n)
        sh("ip", "netns", "exec", n, "ip", "link", "set", "lo", "up")
    return names


def remove_namespaces(*names: str) -> None:
    for n in names:
        subprocess.run(["ip", "netns", "del", n], capture_output=True)


def static_lan_uplink(router: str, uplink: str) -> None:
    """A wired uplink with a static address: the veth `uplink` here, `r-lan` in the router,
    192.168.77.0/24, the desktop's default route through the router (.1)."""
    sh("ip", "link", "add", uplink, "type", "veth", "peer", "name", "r-lan", "netns", router)
    sh("ip", "addr", "add", "192.168.77.2/24", "dev", uplink)
    sh("ip", "link", "set", uplink, "up")
    sh("ip", "route", "add", "default", "via", "192.168.77.1", "dev", uplink)
    sh("ip", "-n", router, "addr", "add", "192.168.77.1/24", "dev", "r-lan")
    sh("ip", "-n", router, "link", "set", "r-lan", "up")


def build_wan(router: str, server: str, tmp: Path) -> tuple[str, str]:
    """The router's WAN link to the server (10.200.0.0/30), forwarding on, and kernel
    WireGuard in the server; returns the server's public key and the client's private key."""
    sh("ip", "-n", router, "link", "add", "r-wan", "type", "veth", "peer", "name", "s-wan", "netns", server)
    sh("ip", "-n", router, "addr", "add", "10.200.0.1/30", "dev", "r-wan")
    sh("ip", "-n", router, "link", "set", "r-wan", "up")
    sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "-n", server, "addr", "add", f"{ENDPOINT}/30", "dev", "s-wan")
    sh("ip", "-n", server, "link", "set", "s-wan", "up")
    sh("ip", "-n", server, "route", "add", "default", "via", "10.200.0.1")
    return wireguard_server(server, tmp, "s-wan")
