"""The hot-plug block: an nftables table in the protected namespace, kept from `up` to `down`.

It drops IP traffic in and out of every device that is not lo and has no rtnetlink kind.
Physical devices have none; everything a user makes on purpose (veth, bridge, vlan, tun,
wireguard, ...) has one, and keeps working. Unlike the guard process it cannot die: it is
what holds while the guard restarts. It does not see link-layer traffic from packet
sockets (a DHCP client's raw socket, EAPOL, 802.11 management frames); moving the
device out (the guard) is what stops those.
"""

from __future__ import annotations

import subprocess

from . import netns
from .errors import HostError

TABLE = "nsroute_guard"
_NO_KIND = "nsroute-none"  # no device has this kind: `!= it` matches every device that has one


def ruleset(table: str = TABLE) -> str:
    """nft rules dropping IP traffic through kind-less devices other than lo.

    Why this works: `meta oifkind` does not match at all (the rule breaks) for a device
    without rtnetlink ops, i.e. a physical one, so `!= _NO_KIND` accepts exactly the
    devices that have a kind; lo is accepted by name; everything else falls to drop.
    """
    return (
        f"table inet {table} {{\n"
        "  chain input { type filter hook input priority -400; policy drop;\n"
        f"    iifname \"lo\" accept\n    meta iifkind != \"{_NO_KIND}\" accept\n  }}\n"
        "  chain output { type filter hook output priority -400; policy drop;\n"
        f"    oifname \"lo\" accept\n    meta oifkind != \"{_NO_KIND}\" accept\n  }}\n"
        "  chain forward { type filter hook forward priority -400; policy drop;\n"
        f"    meta iifkind != \"{_NO_KIND}\" meta oifkind != \"{_NO_KIND}\" accept\n  }}\n"
        "}\n"
    )


def install(ns: str | None = None) -> bool:
    """Load the block table (replacing an older copy); False when nft is not installed.

    `nft` because pyroute2 has no usable nftables rule builder.
    """
    remove(ns)
    try:
        p = subprocess.run(_in_ns(ns, ["nft", "-f", "-"]), input=ruleset(), capture_output=True,
                           text=True, timeout=30)
    except FileNotFoundError:
        return False
    if p.returncode != 0:
        raise HostError(f"cannot load the hot-plug block table: {p.stderr.strip()}")
    return True


def remove(ns: str | None = None) -> None:
    try:
        subprocess.run(_in_ns(ns, ["nft", "delete", "table", "inet", TABLE]), capture_output=True,
                       timeout=30)
    except FileNotFoundError:
        pass


def present(ns: str | None = None) -> bool:
    try:
        p = subprocess.run(_in_ns(ns, ["nft", "list", "table", "inet", TABLE]), capture_output=True,
                           timeout=30)
    except FileNotFoundError:
        return False
    return p.returncode == 0


def _in_ns(ns: str | None, argv: list[str]) -> list[str]:
    if ns is None:
        return argv
    return ["nsenter", f"--net={netns.path_of(ns)}", *argv]
