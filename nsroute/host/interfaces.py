"""Physical interfaces: snapshot, move between namespaces, and restore their addressing.

A move loses everything layer 3 (the kernel flushes addresses and routes when a device
changes namespace), so each interface is photographed first — addresses with their
remaining lifetimes, its routes with gateways and metrics, MTU, up/down, the per-device
sysctls — and the photograph is replayed on the other side. The snapshot and the plan
are plain data (records.py) so they are tested without root.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from . import kernel, records, sysctl
from .errors import HostError

FOREVER = records.FOREVER
SKIP_PROTOCOLS = {records.PROTO_KERNEL, records.PROTO_RA}  # the kernel recreates these itself
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
    link = kernel.link(ns, name)
    if link is None:
        raise HostError(f"no such interface: {name}")
    addrs = [{k: v for k, v in a.items() if k != "ifname"} for a in kernel.addresses(ns, name)]
    routes = [{k: v for k, v in r.items() if k != "devs"} for r in kernel.routes(ns, name)]
    return {
        "name": name,
        "mtu": link["mtu"],
        "up": link["up"],
        "address": link["address"],
        "permaddr": link["permaddr"],  # differs from address once the MAC was changed
        "kind": link["kind"],
        "addresses": addrs,
        "routes": routes,
        "sysctls": sysctl.read_device(name, ns),
        "time": time.time() if now is None else now,
        "dynamic": is_dynamic(addrs, routes),
        # No IPv4 address at all, as at boot before any network manager ran: `up` asks
        # DHCP for one on the physical side (and `down` hands it back unconfigured).
        "unconfigured": not any(a["family"] == 4 for a in addrs),
    }


def is_dynamic(addrs: list[dict[str, Any]], routes: list[dict[str, Any]]) -> bool:
    """An IPv4 address with a lease (finite lifetime) or DHCP routes: keep a DHCP client for it."""
    if any(a["family"] == 4 and a["valid"] != FOREVER for a in addrs):
        return True
    return any(r["family"] == 4 and r["proto"] == records.PROTO_DHCP for r in routes)


def replayed_address(a: dict[str, Any], elapsed: float = 0.0) -> dict[str, Any] | None:
    """The address record to add again, lifetimes reduced by `elapsed`.

    None for what should not be replayed: expired leases, privacy (temporary) addresses
    and kernel-made link-local ones (the kernel makes them again on link up).
    """
    if records.has(a, "temporary"):
        return None
    if a["family"] == 6 and a["scope"] == records.SCOPES["link"] and a["cidr"].startswith("fe80:"):
        return None
    lifetimes = _lifetimes(a, elapsed)
    if lifetimes is None:
        return None
    flags = [f for f in a.get("flags", []) if f in ADDR_FLAGS and not (f == "nodad" and a["family"] == 4)]
    if a["family"] == 6 and "nodad" not in flags:
        flags.append("nodad")  # it was valid on this link a moment ago: no DAD delay
    return {**a, "valid": lifetimes[0], "preferred": lifetimes[1], "flags": flags}


def _lifetimes(a: dict[str, Any], elapsed: float) -> tuple[int, int] | None:
    """What is left of an address's lifetimes after `elapsed`; None once it has expired."""
    valid, pref = a.get("valid", FOREVER), a.get("preferred", FOREVER)
    if valid != FOREVER:
        valid = int(valid - elapsed)
        if valid <= 0:
            return None
        pref = max(0, min(valid, int(pref - elapsed))) if pref != FOREVER else valid
        return valid, pref
    if pref != FOREVER:
        return FOREVER, max(0, int(pref - elapsed))
    return FOREVER, FOREVER


def replayed_route(r: dict[str, Any], unmade: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The route record to add again; None if the kernel (or the next RA) makes it.

    `unmade`: subnets of `noprefixroute` addresses. Their `proto kernel` route was made by
    whoever added the address (NetworkManager does), not by the kernel, so it is replayed:
    without it the subnet has no connected route and its gateway is "invalid".
    """
    if r["table"] == records.TABLE_LOCAL:
        return None
    if r["proto"] in SKIP_PROTOCOLS and not (r["proto"] == records.PROTO_KERNEL and r["dst"] in unmade):
        return None
    if r["type"] != records.RTN_UNICAST or r.get("multipath"):
        return None
    return r


def restore_plan(snap: dict[str, Any], now: float,
                 addresses: list[dict[str, Any]] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """What rebuilds a snapshot on a freshly moved device: ("link", changes), ("address",
    record) and ("route", record) in order: link first (MTU, up), then addresses, then
    routes, on-link ones first (a gateway must be reachable when its route is added).

    `addresses` overrides the snapshot's (fresher leases read on the other side).
    """
    plan: list[tuple[str, dict[str, Any]]] = []
    if snap.get("mtu"):
        plan.append(("link", {"mtu": snap["mtu"]}))
    if snap.get("up"):
        plan.append(("link", {"up": True}))
    elapsed = max(0.0, now - snap["time"]) if addresses is None else 0.0
    addrs = snap["addresses"] if addresses is None else addresses
    for a in addrs:
        rec = replayed_address(a, elapsed)
        if rec:
            plan.append(("address", rec))
    unmade = noprefix_subnets(addrs)
    for fam in (4, 6):
        ordered = sorted((r for r in snap["routes"] if r["family"] == fam), key=lambda r: bool(r.get("gateway")))
        for r in ordered:
            rec = replayed_route(r, unmade)
            if rec:
                plan.append(("route", rec))
    return plan


def static_part(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without what comes and goes with a network (addresses with a lifetime:
    DHCP leases, SLAAC; `proto dhcp` routes): what must be added again by hand when a link
    comes back up. The kernel keeps IPv4 addresses across a link's down and up, but drops
    every IPv6 address that is not link-local and every route; a DHCP renewal and the next
    router advertisement bring back only their own part."""
    return {
        **snap,
        "addresses": [a for a in snap["addresses"] if a.get("valid", FOREVER) == FOREVER],
        "routes": [r for r in snap["routes"] if r["proto"] != records.PROTO_DHCP],
    }


def noprefix_subnets(addresses: list[dict[str, Any]]) -> frozenset[str]:
    """The subnets ("192.168.70.0/24") of addresses added with `noprefixroute`."""
    out = set()
    for a in addresses:
        if records.has(a, "noprefixroute"):
            try:
                out.add(str(ipaddress.ip_interface(a["cidr"]).network))
            except ValueError:
                continue
    return frozenset(out)


def apply_plan(plan: list[tuple[str, dict[str, Any]]], dev: str, ns: str | None) -> list[str]:
    """Run a restore plan on `dev` in `ns`; what already exists is fine. Returns the failures."""
    failures = []
    for kind, item in plan:
        try:
            if kind == "link":
                kernel.set_link(ns, dev, **item)
            elif kind == "address":
                kernel.add_address(ns, dev, item)
            else:
                kernel.add_route(ns, dev, item)
        except HostError as e:
            failures.append(str(e))
    return failures


def restore(snap: dict[str, Any], ns: str | None, addresses: list[dict[str, Any]] | None = None) -> list[str]:
    """Rebuild a snapshot on the device in `ns`: sysctls, link, addresses, routes."""
    sysctl.write_device(snap["name"], snap.get("sysctls", {}), ns)
    return apply_plan(restore_plan(snap, time.time(), addresses), snap["name"], ns)


def rename(old: str, new: str, ns: str | None) -> str | None:
    """Rename a device (down first: the kernel refuses to rename a running one); the failure, or None."""
    try:
        kernel.set_link(ns, old, up=False)
        kernel.set_link(ns, old, rename=new)
    except HostError as e:
        return f"cannot rename {old} to {new}: {e}"
    return None


def settle_udev(timeout: int = 10) -> None:
    """Wait until udev has handled what arrived here (nothing to wait for without udev).

    Why: to udev a device moved into its namespace is an "add", and its naming policy may
    rename it then, whatever name it had; Debian's 73-usb-net-by-mac.link (NamePolicy=mac,
    no `keep`) names every USB NIC enx<MAC> again. Only once udev is done is a name final.
    """
    if shutil.which("udevadm") and Path("/run/udev/control").exists():
        subprocess.run(["udevadm", "settle", f"--timeout={timeout}"], capture_output=True, check=False,
                       timeout=timeout + 5)


def same_device(links: list[dict[str, Any]], was: dict[str, Any]) -> str | None:
    """The name of the link in `links` that is the device `was` described (kernel.link
    records): same index and MAC (a move keeps the index where it is free), else the one
    link with its MAC."""
    mac = str(was.get("address") or "").lower()
    if not mac:
        return None
    for ln in links:
        if ln.get("index") == was.get("index") and str(ln.get("address") or "").lower() == mac:
            return ln.get("ifname")
    named = [ln.get("ifname") for ln in links if mac in {str(ln.get(k) or "").lower() for k in ("address", "permaddr")}]
    return named[0] if len(named) == 1 else None


def reclaim_name(name: str, was: dict[str, Any] | None, ns: str | None) -> str | None:
    """After a move into `ns`: the device `was` (its kernel.link record before the move)
    under `name` again if udev renamed it on arrival (see `settle_udev`); the problem, or None."""
    if kernel.link(ns, name) is not None:
        return None
    now = same_device(kernel.links(ns), was) if was else None
    if now is None:
        return f"{name} is missing"
    failed = rename(now, name, ns)
    return f"{name} came back as {now}: {failed}" if failed else None


def current_addresses(name: str, ns: str | None) -> list[dict[str, Any]] | None:
    """Address records of `name` as they are now in `ns` (None if the device is not there)."""
    if kernel.link(ns, name) is None:
        return None
    return [{k: v for k, v in a.items() if k != "ifname"} for a in kernel.addresses(ns, name)]


def merge_leases(snap: dict[str, Any], fresh: list[dict[str, Any]] | None,
                 now: float | None = None) -> list[dict[str, Any]]:
    """The snapshot's addresses with lifetimes as of `now`.

    A lease renewed on the physical side (same address, found in `fresh`) keeps its new
    lifetime; the rest lose the time elapsed since the snapshot.
    """
    now = time.time() if now is None else now
    elapsed = max(0.0, now - snap["time"])
    current = {a["cidr"]: a for a in fresh or []}
    out = []
    for a in snap["addresses"]:
        a = dict(a)
        if a["valid"] != FOREVER:
            f = current.get(a["cidr"])
            if f is not None and f["valid"] != FOREVER:
                a["valid"], a["preferred"] = f["valid"], f.get("preferred", f["valid"])
            else:
                a["valid"] = int(a["valid"] - elapsed)
                if a["preferred"] != FOREVER:
                    a["preferred"] = max(0, int(a["preferred"] - elapsed))
        out.append(a)
    return out
