"""Physical interfaces: snapshot, move between namespaces, and restore their addressing.

A move loses everything layer 3 (the kernel flushes addresses and routes when a device
changes namespace), so each interface is photographed first — addresses with their
remaining lifetimes, its routes with gateways and metrics, MTU, up/down, the per-device
sysctls — and the photograph is replayed on the other side. The snapshot and the plan
are plain data (`ip -j` output and `ip` argument lists) so they are tested without root.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from pathlib import Path
from typing import Any

from . import netns, sysctl
from .errors import HostError

FOREVER = 0xFFFFFFFF
SKIP_PROTOCOLS = {"kernel", "ra"}  # the kernel recreates these itself
ADDR_FLAGS = ("noprefixroute", "mngtmpaddr", "home", "nodad")


def is_hardware(name: str, sys_class_net: str = "/sys/class/net") -> bool:
    """Backed by a device (has /sys/class/net/NAME/device): what `up` moves by default."""
    return Path(sys_class_net, name, "device").exists()


def hardware_interfaces(sys_class_net: str = "/sys/class/net") -> list[str]:
    try:
        names = sorted(os.listdir(sys_class_net))
    except OSError:
        return []
    return [n for n in names if n != "lo" and is_hardware(n, sys_class_net)]


def snapshot(name: str, ns: str | None = None, now: float | None = None) -> dict[str, Any]:
    """Everything needed to rebuild `name`'s layer 3 in another namespace."""
    link = netns.link(ns, name)
    if link is None:
        raise HostError(f"no such interface: {name}")
    addrs = netns.ip_json(ns, "addr", "show", "dev", name)
    routes = {
        fam: netns.ip_json(ns, f"-{fam}", "route", "show", "table", "all", "dev", name)
        for fam in ("4", "6")
    }
    return {
        "name": name,
        "mtu": link.get("mtu"),
        "up": "UP" in link.get("flags", []),
        "address": link.get("address"),
        "permaddr": link.get("permaddr", ""),  # shown by `ip` when the MAC was changed
        "kind": (link.get("linkinfo") or {}).get("info_kind", ""),
        "addresses": addrs[0].get("addr_info", []) if addrs else [],
        "routes": routes,
        "sysctls": sysctl.read_device(name, ns),
        "time": time.time() if now is None else now,
        "dynamic": is_dynamic(addrs[0].get("addr_info", []) if addrs else [], routes),
        # No IPv4 address at all, as at boot before any network manager ran: `up` asks
        # DHCP for one on the physical side (and `down` hands it back unconfigured).
        "unconfigured": not any(a.get("family") == "inet" for a in (addrs[0].get("addr_info", []) if addrs else [])),
    }


def is_dynamic(addr_info: list[dict[str, Any]], routes: dict[str, list[dict[str, Any]]]) -> bool:
    """An IPv4 address with a lease (finite lifetime) or DHCP routes: keep a DHCP client for it."""
    for a in addr_info:
        if a.get("family") == "inet" and a.get("valid_life_time", FOREVER) != FOREVER:
            return True
    return any(r.get("protocol") == "dhcp" for r in routes.get("4", []))


def address_args(a: dict[str, Any], dev: str, elapsed: float = 0.0) -> list[str] | None:
    """`ip addr add` arguments recreating one address, lifetimes reduced by `elapsed`.

    None for what should not be replayed: expired leases, privacy (temporary) addresses
    and kernel-made link-local ones (the kernel makes them again on link up).
    """
    fam = a.get("family")
    if fam not in ("inet", "inet6") or a.get("temporary"):
        return None
    if fam == "inet6" and a.get("scope") == "link" and a.get("local", "").startswith("fe80:"):
        return None
    lifetimes = _lifetimes(a, elapsed)
    if lifetimes is None:
        return None
    args = ["addr", "add", f"{a['local']}/{a['prefixlen']}"]
    if a.get("address"):
        args += ["peer", f"{a['address']}/{a['prefixlen']}"]
    if fam == "inet" and a.get("broadcast"):
        args += ["broadcast", a["broadcast"]]
    if a.get("scope") not in (None, "global"):
        args += ["scope", str(a["scope"])]
    args += ["dev", dev]
    if fam == "inet" and a.get("label") and a["label"] != dev:
        args += ["label", a["label"]]
    args += lifetimes
    for flag in ADDR_FLAGS:
        if a.get(flag) and not (flag == "nodad" and fam == "inet"):
            args.append(flag)
    if fam == "inet6" and "nodad" not in args:
        args.append("nodad")  # it was valid on this link a moment ago: no DAD delay
    return args


def _lifetimes(a: dict[str, Any], elapsed: float) -> list[str] | None:
    """What is left of an address's lifetimes after `elapsed`; None once it has expired."""
    valid, pref = a.get("valid_life_time", FOREVER), a.get("preferred_life_time", FOREVER)
    if valid != FOREVER:
        valid = int(valid - elapsed)
        if valid <= 0:
            return None
        pref = max(0, min(valid, int(pref - elapsed))) if pref != FOREVER else valid
        return ["valid_lft", str(valid), "preferred_lft", str(pref)]
    if pref != FOREVER:
        return ["valid_lft", "forever", "preferred_lft", str(max(0, int(pref - elapsed)))]
    return []


def route_args(r: dict[str, Any], family: str, dev: str,
               unmade: frozenset[str] = frozenset()) -> list[str] | None:
    """`ip route add` arguments recreating one route through `dev`; None if the kernel makes it.

    `unmade`: subnets of `noprefixroute` addresses. Their `proto kernel` route was made by
    whoever added the address (NetworkManager does), not by the kernel, so it is replayed:
    without it the subnet has no connected route and its gateway is "invalid".
    """
    if r.get("table") == "local":
        return None
    if r.get("protocol") in SKIP_PROTOCOLS and not (r.get("protocol") == "kernel" and r.get("dst") in unmade):
        return None
    if r.get("type") not in (None, "unicast") or "nexthops" in r or "nhid" in r:
        return None
    args = [f"-{family}", "route", "add", r["dst"]]
    if r.get("gateway"):
        via_fam = r.get("via", {}).get("family") if isinstance(r.get("via"), dict) else None
        args += ["via", *(["inet6"] if via_fam == "inet6" and family == "4" else []), r["gateway"]]
    return [*args, "dev", dev, *_route_options(r, family)]


def _route_options(r: dict[str, Any], family: str) -> list[str]:
    """Everything after `dev`: protocol, scope, metric, table, source, flags, metrics."""
    args: list[str] = []
    if r.get("protocol") and r["protocol"] != "boot":
        args += ["proto", str(r["protocol"])]
    if r.get("scope"):
        args += ["scope", str(r["scope"])]
    if r.get("metric") is not None:
        args += ["metric", str(r["metric"])]
    if r.get("table") and r["table"] != "main":
        args += ["table", str(r["table"])]
    if r.get("prefsrc"):
        args += ["src", r["prefsrc"]]
    if "onlink" in r.get("flags", []):
        args.append("onlink")
    if family == "6" and r.get("pref") not in (None, "medium"):
        args += ["pref", str(r["pref"])]
    for m in r.get("metrics", []):
        for k, v in m.items():
            args += [k, str(v)]
    return args


def restore_plan(snap: dict[str, Any], now: float, addresses: list[dict[str, Any]] | None = None) -> list[list[str]]:
    """The `ip` commands that rebuild a snapshot on a freshly moved device.

    `addresses` overrides the snapshot's (fresher leases read on the other side).
    Link first (MTU, up), then addresses, then routes: gateways must be reachable.
    """
    dev = snap["name"]
    plan: list[list[str]] = []
    if snap.get("mtu"):
        plan.append(["link", "set", "dev", dev, "mtu", str(snap["mtu"])])
    if snap.get("up"):
        plan.append(["link", "set", "dev", dev, "up"])
    elapsed = max(0.0, now - snap["time"]) if addresses is None else 0.0
    for a in snap["addresses"] if addresses is None else addresses:
        args = address_args(a, dev, elapsed)
        if args:
            plan.append(args)
    unmade = noprefix_subnets(snap["addresses"] if addresses is None else addresses)
    for fam in ("4", "6"):
        # on-link routes first: a gateway must be reachable when its route is added
        for r in sorted(snap["routes"].get(fam, []), key=lambda r: bool(r.get("gateway"))):
            args = route_args(r, fam, dev, unmade)
            if args:
                plan.append(args)
    return plan


def noprefix_subnets(addresses: list[dict[str, Any]]) -> frozenset[str]:
    """The subnets ("192.168.70.0/24") of addresses added with `noprefixroute`."""
    out = set()
    for a in addresses:
        if a.get("noprefixroute") and a.get("local") and a.get("prefixlen") is not None:
            try:
                out.add(str(ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network))
            except ValueError:
                continue
    return frozenset(out)


def apply_plan(plan: list[list[str]], ns: str | None) -> list[str]:
    """Run a restore plan in `ns`; an entry that already exists is fine. Returns the failures."""
    failures = []
    for args in plan:
        p = netns.ip(ns, *args, check=False)
        if p.returncode != 0 and "File exists" not in p.stderr:
            failures.append(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return failures


def restore(snap: dict[str, Any], ns: str | None, addresses: list[dict[str, Any]] | None = None) -> list[str]:
    """Rebuild a snapshot on the device in `ns`: sysctls, link, addresses, routes."""
    sysctl.write_device(snap["name"], snap.get("sysctls", {}), ns)
    return apply_plan(restore_plan(snap, time.time(), addresses), ns)


def move(name: str, src: str | None, dst: str | None) -> None:
    """Move an Ethernet-like device from namespace `src` to `dst` (a link move)."""
    target = dst if dst is not None and "/" not in dst else None
    if target is None:
        # `ip link set netns` takes a name or a PID: a process of ours that lives in dst.
        target = str(os.getpid()) if dst is None else None
    if target is None:
        raise HostError(f"cannot move {name} into {dst}: not a named namespace")
    netns.ip(src, "link", "set", "dev", name, "netns", target)


def current_addresses(name: str, ns: str | None) -> list[dict[str, Any]] | None:
    """Addresses of `name` as they are now in `ns` (None if the device is not there)."""
    p = netns.ip(ns, "-j", "addr", "show", "dev", name, check=False)
    if p.returncode != 0:
        return None
    data = json.loads(p.stdout or "[]")
    return data[0].get("addr_info", []) if data else []


def merge_leases(snap: dict[str, Any], fresh: list[dict[str, Any]] | None,
                 now: float | None = None) -> list[dict[str, Any]]:
    """The snapshot's addresses with lifetimes as of `now`.

    A lease renewed on the physical side (same address, found in `fresh`) keeps its new
    lifetime; the rest lose the time elapsed since the snapshot.
    """
    now = time.time() if now is None else now
    elapsed = max(0.0, now - snap["time"])
    current = {(a.get("local"), a.get("prefixlen")): a for a in fresh or []}
    out = []
    for a in snap["addresses"]:
        a = dict(a)
        valid = a.get("valid_life_time", FOREVER)
        if valid != FOREVER:
            f = current.get((a.get("local"), a.get("prefixlen")))
            if f is not None and f.get("valid_life_time", FOREVER) != FOREVER:
                a["valid_life_time"] = f["valid_life_time"]
                a["preferred_life_time"] = f.get("preferred_life_time", f["valid_life_time"])
            else:
                a["valid_life_time"] = int(valid - elapsed)
                pref = a.get("preferred_life_time", FOREVER)
                if pref != FOREVER:
                    a["preferred_life_time"] = max(0, int(pref - elapsed))
        out.append(a)
    return out
