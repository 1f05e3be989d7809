"""What the desktop scenarios share: the VPN server behind the router, and the router's counters.

Why one place: every scenario asserts "nothing but WireGuard left the uplinks" with the
same counters, and talks to the same kind of server (kernel WireGuard, cheap under TCG).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .conftest import sh

ENDPOINT = "10.200.0.2"  # the server's address behind the router
WG_PORT = 51820
SERVER_TUNNEL, CLIENT_TUNNEL = "10.99.0.1", "10.99.0.2"


def counters_ruleset(lan_ifaces: list[str]) -> str:
    """An nft table for the router: `dns` counts every port-53 packet arriving from the
    desktop's uplinks, `beyond` everything else from them that is not the WireGuard flow,
    DHCP (the physical side's own leases), ICMPv6 or multicast."""
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
    meta l4proto 58 return
    ip6 daddr ff00::/8 return
    ip daddr 255.255.255.255 return
    counter name beyond
  }}
}}
"""


def install_counters(router: str, lan_ifaces: list[str]) -> None:
    subprocess.run(["ip", "netns", "exec", router, "nft", "-f", "-"], input=counters_ruleset(lan_ifaces),
                   text=True, check=True)


def reset_counters(router: str) -> None:
    sh("ip", "netns", "exec", router, "nft", "reset", "counters", "table", "inet", "nsrcount")


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
