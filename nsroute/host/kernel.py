"""The one netlink layer (pyroute2): links, addresses, routes and link moves, in any namespace.

Every function takes the namespace first: None (ours), a name under /run/netns, or a
path such as /proc/PID/ns/net. The rtnetlink socket is opened inside that namespace and
keeps it for its whole life, so no thread stays switched. Answers are nsroute's own
records (plain dicts, see `_link`, `_address`, `_route`), not pyroute2 messages, and
failures are HostError naming what was tried with the kernel's errno text; whether
something already exists is decided by errno (EEXIST), never by a message's wording.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..nsutil import NetnsError, entered, open_netns, path_of
from . import records
from .errors import HostError

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
AF_INET, AF_INET6 = records.AF_INET, records.AF_INET6
FAMILIES = {4: AF_INET, 6: AF_INET6}
FOREVER = records.FOREVER
RT_TABLE_FILES = ("/etc/iproute2/rt_tables", "/usr/share/iproute2/rt_tables")


def _where(ns: str | None) -> str:
    return f"'{ns}'" if ns else "this namespace"


def _fail(what: str, e: Exception) -> HostError:
    code = getattr(e, "code", None) or getattr(e, "errno", None)
    why = os.strerror(code) if isinstance(code, int) and code > 0 else str(e)
    return HostError(f"{what}: {why}")


@contextmanager
def rtnl(ns: str | None) -> Iterator[IPRoute]:
    """An rtnetlink socket living in `ns` (opened there; the thread returns at once)."""
    try:
        with entered(ns):
            ipr = IPRoute()
    except NetnsError as e:
        raise HostError(str(e)) from None
    try:
        yield ipr
    finally:
        ipr.close()


# ------------------------------------------------------------------ records


def _link(msg: Any) -> dict[str, Any]:
    """A link as nsroute keeps it: name, index, kind, MTU, MACs, admin/carrier state."""
    info = msg.get_attr("IFLA_LINKINFO")
    flags = msg["flags"]
    return {"ifname": msg.get_attr("IFLA_IFNAME"), "index": msg["index"],
            "kind": (info.get_attr("IFLA_INFO_KIND") if info else None) or "",
            "mtu": msg.get_attr("IFLA_MTU"), "address": msg.get_attr("IFLA_ADDRESS") or "",
            "permaddr": msg.get_attr("IFLA_PERM_ADDRESS") or "",
            "parentdev": msg.get_attr("IFLA_PARENT_DEV_NAME") or "",
            "operstate": msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN",
            "up": bool(flags & IFF_UP), "lower_up": bool(flags & IFF_LOWER_UP)}


def link_messages(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """(message type, link record) of each RTM_NEWLINK / RTM_DELLINK in a netlink datagram
    (what a socket subscribed to link changes receives)."""
    from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    return [(m["header"]["type"], _link(m)) for m in MarshalRtnl().parse(data)
            if m["header"]["type"] in (RTM_NEWLINK, RTM_DELLINK) and m.get_attr("IFLA_IFNAME")]


# ------------------------------------------------------------------ reading


def links(ns: str | None) -> list[dict[str, Any]]:
    """Every link in `ns`."""
    with rtnl(ns) as ipr:
        return [_link(m) for m in ipr.get_links()]


def link(ns: str | None, name: str) -> dict[str, Any] | None:
    """The link called `name` in `ns`; None when it (or the namespace itself) is not there."""
    if ns is not None and not os.path.exists(path_of(ns)):
        return None
    with rtnl(ns) as ipr:
        found = ipr.link_lookup(ifname=name)
        return _link(ipr.get_links(found[0])[0]) if found else None


def rx_packets(ns: str | None, name: str) -> int:
    """Packets `name` has received (the kernel's 64-bit counter)."""
    with rtnl(ns) as ipr:
        stats = ipr.get_links(_index(ipr, name, ns))[0].get_attr("IFLA_STATS64")
    return int(stats["rx_packets"]) if stats else 0


def _names(ipr: IPRoute) -> dict[int, str]:
    return {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}


def addresses(ns: str | None, name: str | None = None) -> list[dict[str, Any]]:
    """Address records (records.py) in `ns`, each with its "ifname"; of one device when
    `name` is given ([] when it is not there)."""
    with rtnl(ns) as ipr:
        names = _names(ipr)
        out = [{**records.address_from_msg(m), "ifname": names.get(m["index"], "")} for m in ipr.get_addr()]
    return [a for a in out if name is None or a["ifname"] == name]


def routes(ns: str | None, name: str | None = None) -> list[dict[str, Any]]:
    """Route records (records.py) of every table in `ns`, each with "devs" (every device
    it leaves by, multipath too); only those through `name` when it is given."""
    with rtnl(ns) as ipr:
        names = _names(ipr)
        out = []
        for fam in (AF_INET, AF_INET6):
            for m in ipr.get_routes(family=fam):  # no table given: every table
                devs = [names.get(m.get_attr("RTA_OIF"), "")] if m.get_attr("RTA_OIF") else []
                devs += [names.get(nh["oif"], "") for nh in m.get_attr("RTA_MULTIPATH") or []]
                out.append({**records.route_from_msg(m), "devs": devs})
    return [r for r in out if name is None or name in r["devs"]]


# ------------------------------------------------------------------ changing


def _index(ipr: IPRoute, name: str, ns: str | None) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise HostError(f"no such interface {name} in {_where(ns)}")
    return found[0]


def set_link(ns: str | None, name: str, *, up: bool | None = None, mtu: int | None = None,
             rename: str | None = None) -> None:
    """Bring a link up or down, set its MTU, or rename it (a rename needs it down)."""
    changes: dict[str, Any] = {}
    if mtu is not None:
        changes["mtu"] = mtu
    if rename is not None:
        changes["ifname"] = rename
    if up is not None:
        changes["state"] = "up" if up else "down"
    with rtnl(ns) as ipr:
        try:
            ipr.link("set", index=_index(ipr, name, ns), **changes)
        except NetlinkError as e:
            what = " ".join(f"{k} {v}" for k, v in changes.items())
            raise _fail(f"cannot set {name} {what} in {_where(ns)}", e) from None


def add_link(ns: str | None, name: str, kind: str) -> None:
    """Create a link of `kind` (e.g. wireguard) in `ns`."""
    with rtnl(ns) as ipr:
        try:
            ipr.link("add", ifname=name, kind=kind)
        except NetlinkError as e:
            raise _fail(f"cannot create {kind} interface {name} in {_where(ns)}", e) from None


def add_veth(ns: str | None, name: str, peer: str) -> None:
    """A veth pair `name` <-> `peer`, both in `ns` (move the peer where it belongs)."""
    with rtnl(ns) as ipr:
        try:
            ipr.link("add", ifname=name, kind="veth", peer=peer)
        except NetlinkError as e:
            raise _fail(f"cannot create veth pair {name}/{peer} in {_where(ns)}", e) from None


def delete_link(ns: str | None, name: str) -> None:
    """Remove a link; one that is already gone is fine."""
    with rtnl(ns) as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise _fail(f"cannot delete {name} in {_where(ns)}", e) from None


def move_index(ifindex: int, src: str | None, dst: str | None) -> None:
    """Move link number `ifindex` from `src` to `dst` (each None, a name or a path): for
    the hot-plug guard, which knows a new device by index; errors as OSError with errno."""
    target = open_netns(dst)
    try:
        with entered(src):
            ipr = IPRoute()
        with ipr:
            ipr.link("set", index=ifindex, net_ns_fd=target)
    except NetlinkError as e:
        raise OSError(e.code, os.strerror(e.code)) from None
    finally:
        os.close(target)


def move(name: str, src: str | None, dst: str | None) -> None:
    """Move link `name` from namespace `src` to `dst` (each None, a name or a path)."""
    with rtnl(src) as ipr:
        index = _index(ipr, name, src)
    try:
        move_index(index, src, dst)
    except OSError as e:
        raise _fail(f"cannot move {name} into {_where(dst)}", e) from None


def _add_new(ns: str | None, dev: str, what: str, add: Callable[[IPRoute, int], Any]) -> bool:
    """Run `add` against `dev`'s index; False when the kernel says it exists already
    (by errno, not wording), a HostError naming `what` on any other refusal."""
    with rtnl(ns) as ipr:
        try:
            add(ipr, _index(ipr, dev, ns))
        except NetlinkError as e:
            if e.code == errno.EEXIST:
                return False
            raise _fail(f"cannot add {what}", e) from None
    return True


def add_address(ns: str | None, dev: str, a: dict[str, Any]) -> bool:
    """Add an address record (records.py; at least "cidr") to `dev`; False when it was
    already there (that is fine)."""
    iface = ipaddress.ip_interface(a["cidr"])
    spec: dict[str, Any] = {"local": str(iface.ip), "address": str(iface.ip),
                            "prefixlen": iface.network.prefixlen, "family": FAMILIES[iface.version]}
    if a.get("peer"):
        spec["address"] = str(ipaddress.ip_interface(a["peer"]).ip)
    if a.get("broadcast") and iface.version == 4:
        spec["broadcast"] = a["broadcast"]
    if a.get("scope"):
        spec["scope"] = a["scope"]
    if a.get("label") and iface.version == 4 and a["label"] != dev:
        spec["label"] = a["label"]
    bits = sum(records.ADDR_FLAG_BITS[f] for f in a.get("flags", []) if f in records.ADDR_FLAG_BITS)
    if bits:
        spec["flags"] = bits
    if a.get("valid", FOREVER) != FOREVER or a.get("preferred", FOREVER) != FOREVER:
        spec["valid_lft"] = a.get("valid", FOREVER)
        spec["preferred_lft"] = a.get("preferred", FOREVER)
    return _add_new(ns, dev, f"address {a['cidr']} to {dev}",
                    lambda ipr, index: ipr.addr("add", index=index, **spec))


def table_number(table: str | int | None) -> int | None:
    """A routing table by number or name (main, or one from iproute2's rt_tables)."""
    if table is None or isinstance(table, int):
        return table
    if table.isdigit():
        return int(table)
    if table in records.TABLES:
        return records.TABLES[table]
    for path in RT_TABLE_FILES:
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split("#", 1)[0].split()
                    if len(parts) == 2 and parts[1] == table and parts[0].isdigit():
                        return int(parts[0])
        except OSError:
            continue
    raise HostError(f"unknown routing table {table!r} (a number, main, or a name in {RT_TABLE_FILES[0]})")


def add_route(ns: str | None, dev: str, r: dict[str, Any]) -> bool:
    """Add a route record (records.py; at least "dst", a CIDR) through `dev`; False when
    it was already there (that is fine)."""
    net = ipaddress.ip_network(r["dst"], strict=False)
    spec: dict[str, Any] = {"dst": str(net.network_address), "dst_len": net.prefixlen,
                            "family": FAMILIES[net.version]}
    gw = r.get("gateway")
    if gw and ipaddress.ip_address(gw).version != net.version:  # IPv4 via an IPv6 neighbour
        spec["via"] = {"family": FAMILIES[6], "addr": gw}
    elif gw:
        spec["gateway"] = gw
    for key, field in (("proto", "proto"), ("scope", "scope"), ("metric", "priority"),
                       ("prefsrc", "prefsrc")):
        if r.get(key) is not None:
            spec[field] = r[key]
    if r.get("table") is not None:
        spec["table"] = table_number(r["table"])
    if r.get("onlink"):
        spec["flags"] = records.RTNH_F_ONLINK
    if r.get("pref") is not None and net.version == 6:
        spec["RTA_PREF"] = r["pref"]
    if r.get("metrics"):
        spec["metrics"] = {f"RTAX_{k.upper()}": v for k, v in r["metrics"].items()}
    return _add_new(ns, dev, f"route {r['dst']} via {dev}",
                    lambda ipr, index: ipr.route("add", oif=index, **spec))
