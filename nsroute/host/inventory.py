"""Which network devices could carry traffic around the tunnel: one rule, for `status` and the guard.

The protected namespace should hold only `lo` and the tunnel. A device backed by hardware
(a NIC, a Wi-Fi radio, a WWAN modem) can reach a network of its own the moment something
configures it, so it is leak-capable even when down and unaddressed: the hot-plug guard
moves exactly these. Virtual devices the user makes there on purpose (veth, bridge, dummy,
tun/tap, vlan, macvlan, another WireGuard link) stay; they only lead around the tunnel when
routing sends traffic to them, so one is reported when it carries a route that covers the
whole address space (a default route, or one half of it as wg-quick installs). Subnet
routes and addresses on them (docker0, virbr0) are local traffic and are not flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import kernel, netns, records
from .errors import HostError

# Routes that take everything not matched more precisely: default, and the halves of it.
CATCH_ALL = {"default", "0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1", "::/0", "::/1", "8000::/1"}


@dataclass(frozen=True)
class LinkFacts:
    """What decides whether a device could leak, gathered from netlink and sysfs."""

    name: str
    kind: str = ""  # rtnetlink's IFLA_INFO_KIND: veth, bridge, dummy, tun, vlan, wireguard, ...
    has_device: bool = False  # /sys/class/net/NAME/device, or a parent device in netlink
    wireless: bool = False  # a wiphy behind it (phy80211 / wireless in sysfs)
    wwan: bool = False  # DEVTYPE=wwan in its uevent
    catch_all_routes: tuple[str, ...] = ()  # default (or /1) routes through it, any table
    global_addresses: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind or None, "hardware": hardware_backed(self),
                "wireless": self.wireless, "default_routes": list(self.catch_all_routes),
                "addresses": list(self.global_addresses)}


def hardware_backed(link: LinkFacts) -> bool:
    """Backed by a device the kernel found (not made by a user): what the guard moves out."""
    return link.has_device or link.wireless or link.wwan


def leak_reason(link: LinkFacts, tunnel: str | None = None) -> str | None:
    """Why `link` could carry traffic around the tunnel, or None when it cannot."""
    if link.name == "lo" or link.name == tunnel:
        return None
    if link.wwan:
        return "a mobile broadband (WWAN) device"
    if link.wireless:
        return "a Wi-Fi device"
    if link.has_device:
        return "a hardware network device"
    if link.catch_all_routes:
        return f"a {link.kind or 'virtual'} device with a default route ({', '.join(link.catch_all_routes)}) around the tunnel"
    return None


def leak_capable(link: LinkFacts, tunnel: str | None = None) -> bool:
    """True when `link`, in the protected namespace, could carry traffic around the tunnel."""
    return leak_reason(link, tunnel) is not None


def from_netlink(link: dict[str, Any], addrs: list[dict[str, Any]], routes: list[dict[str, Any]],
                 sys_class_net: str | None = "/sys/class/net") -> LinkFacts:
    """Facts about one device from kernel.links/addresses/routes records (pure apart from
    the sysfs look-ups; `sys_class_net=None` when sysfs shows another namespace)."""
    name = link["ifname"]
    has_device = bool(link.get("parentdev"))
    wireless = wwan = False
    if sys_class_net is not None:
        base = Path(sys_class_net, name)
        has_device = has_device or (base / "device").exists()
        wireless = (base / "phy80211").exists() or (base / "wireless").exists()
        try:
            wwan = "DEVTYPE=wwan" in (base / "uevent").read_text().split()
        except OSError:
            pass
    catch_all = tuple(sorted({_dst(r) for r in routes if name in r.get("devs", []) and _dst(r) in CATCH_ALL
                              and r.get("type", records.RTN_UNICAST) == records.RTN_UNICAST}))
    addresses = tuple(a["cidr"] for a in addrs if a.get("scope") == records.SCOPES["global"])
    return LinkFacts(name=name, kind=link.get("kind") or "",
                     has_device=has_device, wireless=wireless, wwan=wwan,
                     catch_all_routes=catch_all, global_addresses=addresses)


def from_rtnl(msg: Any, sys_class_net: str | None = "/sys/class/net") -> LinkFacts:
    """Facts from a pyroute2 RTM_NEWLINK message, as the hot-plug guard receives them.

    No routes or addresses: a device that has just appeared has none, and whether it is
    hardware is what decides a move."""
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    link = {"ifname": msg.get_attr("IFLA_IFNAME"), "parentdev": msg.get_attr("IFLA_PARENT_DEV_NAME"),
            "kind": (linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None) or ""}
    return from_netlink(link, [], [], sys_class_net)


def _dst(route: dict[str, Any]) -> str:
    """`default` for IPv4's 0.0.0.0/0, `::/0` for IPv6's (as `status` words them)."""
    dst = route.get("dst", "")
    return "default" if dst == "0.0.0.0/0" else dst


def parse_iw_phy(text: str) -> list[str]:
    """Wiphy names in `iw phy` output (one `Wiphy phyN` header per radio)."""
    return [ln.split()[1] for ln in text.splitlines() if ln.startswith("Wiphy ") and len(ln.split()) > 1]


def wiphys(ns: str | None = None) -> list[str] | None:
    """Wi-Fi radios in `ns`, with or without a netdev: nl80211 dumps only the caller's
    namespace. None when `iw` is missing (cannot tell)."""
    argv = ["iw", "phy"] if ns is None else ["nsenter", f"--net={netns.path_of(ns)}", "iw", "phy"]
    try:
        p = netns.run(argv, check=False, timeout=5)
    except HostError:
        return None
    return parse_iw_phy(p.stdout) if p.returncode == 0 else None


def gather(ns: str | None = None, sys_class_net: str | None = "/sys/class/net") -> list[LinkFacts]:
    """Every device in `ns` (None: ours, whose sysfs is mounted at `sys_class_net`)."""
    addrs: dict[str, list[dict[str, Any]]] = {}
    for a in kernel.addresses(ns):
        addrs.setdefault(a["ifname"], []).append(a)
    routes = kernel.routes(ns)
    return [from_netlink(ln, addrs.get(ln["ifname"], []), routes, sys_class_net) for ln in kernel.links(ns)]
