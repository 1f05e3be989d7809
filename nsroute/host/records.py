"""nsroute's own records of addresses and routes, as snapshots keep them in the state file.

An address: {"family": 4|6, "cidr": "192.0.2.7/24", "peer": CIDR|None, "broadcast": str|None,
"scope": int, "label": str|None, "valid": s, "preferred": s (FOREVER: no lifetime),
"flags": ["noprefixroute", ...]}. A route: {"family": 4|6, "dst": CIDR (0.0.0.0/0 is the
default route), "gateway": str|None, "proto": int, "scope": int, "metric": int|None,
"table": int, "prefsrc": str|None, "onlink": bool, "pref": int|None, "metrics": {"mtu": N},
"type": int, "multipath": bool}. Numbers are the kernel's (rtnetlink), so nothing here
depends on a tool's wording. Made from pyroute2 messages (kernel.py reads), and from the
`ip -j` JSON that state files of the previous version hold (`upgrade_snapshot`). Pure.
"""

from __future__ import annotations

import ipaddress
from typing import Any

FOREVER = 0xFFFFFFFF
AF_INET, AF_INET6 = 2, 10
# IFA_F_* bits nsroute replays or reads, by the names `ip` prints them under
ADDR_FLAG_BITS = {"temporary": 0x01, "nodad": 0x02, "home": 0x10, "mngtmpaddr": 0x100,
                  "noprefixroute": 0x200}
IFA_F_PERMANENT = 0x80
RTNH_F_ONLINK = 0x4
RTN_UNICAST = 1
PROTO_KERNEL, PROTO_BOOT, PROTO_RA, PROTO_DHCP = 2, 3, 9, 16
TABLE_MAIN, TABLE_LOCAL = 254, 255
# iproute2's names (rt_protos, rt_scopes, rt_tables, route preference) for old state files
PROTOS = {"unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4, "ra": 9, "dhcp": 16,
          "keepalived": 18, "babel": 42, "bgp": 186, "isis": 187, "ospf": 188, "rip": 189, "eigrp": 192}
SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
TABLES = {"default": 253, "main": 254, "local": 255}
PREFS = {"medium": 0, "high": 1, "low": 3}
TYPES = {"unicast": 1, "local": 2, "broadcast": 3, "anycast": 4, "multicast": 5, "blackhole": 6,
         "unreachable": 7, "prohibit": 8, "throw": 9, "nat": 10}


def _num(value: Any, names: dict[str, int], default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int):
        return value
    return int(value) if str(value).isdigit() else names.get(str(value), default)


# ------------------------------------------------------------------ from the kernel


def address_from_msg(msg: Any) -> dict[str, Any]:
    """An RTM_NEWADDR message (pyroute2) as a record."""
    fam = 4 if msg["family"] == AF_INET else 6
    local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    peer = msg.get_attr("IFA_ADDRESS") if msg.get_attr("IFA_LOCAL") else None
    bits = msg.get_attr("IFA_FLAGS") or msg["flags"]
    cache = msg.get_attr("IFA_CACHEINFO") or {}
    flags = [n for n, b in ADDR_FLAG_BITS.items() if bits & b and not (n == "temporary" and fam == 4)]
    if not bits & IFA_F_PERMANENT:
        flags.append("dynamic")
    return {"family": fam, "cidr": f"{local}/{msg['prefixlen']}",
            "peer": f"{peer}/{msg['prefixlen']}" if peer and peer != local else None,
            "broadcast": msg.get_attr("IFA_BROADCAST"), "scope": msg["scope"],
            "label": msg.get_attr("IFA_LABEL"), "valid": cache.get("ifa_valid", FOREVER),
            "preferred": cache.get("ifa_preferred", FOREVER), "flags": flags}


def route_from_msg(msg: Any) -> dict[str, Any]:
    """An RTM_NEWROUTE message (pyroute2) as a record."""
    fam = 4 if msg["family"] == AF_INET else 6
    dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if fam == 4 else "::")
    via = msg.get_attr("RTA_VIA")
    metrics = msg.get_attr("RTA_METRICS")
    mx = {}
    if metrics is not None:
        for name, value in metrics.get("attrs", []):
            if name.startswith("RTAX_") and value:
                mx[name[5:].lower()] = value
    return {"family": fam, "dst": f"{dst}/{msg['dst_len']}",
            "gateway": msg.get_attr("RTA_GATEWAY") or (via.get("addr") if via else None),
            "proto": msg["proto"], "scope": msg["scope"], "metric": msg.get_attr("RTA_PRIORITY"),
            "table": msg.get_attr("RTA_TABLE") or msg["table"], "prefsrc": msg.get_attr("RTA_PREFSRC"),
            "onlink": bool(msg["flags"] & RTNH_F_ONLINK), "pref": msg.get_attr("RTA_PREF"),
            "metrics": mx, "type": msg["type"],
            "multipath": bool(msg.get_attr("RTA_MULTIPATH") or msg.get_attr("RTA_NH_ID"))}


# ------------------------------------------------------------------ from the previous version


def address_from_ip(a: dict[str, Any]) -> dict[str, Any]:
    """One `ip -j addr` addr_info entry (state files of the previous version)."""
    fam = 4 if a.get("family") == "inet" else 6
    flags = [n for n in ADDR_FLAG_BITS if a.get(n)]
    if a.get("dynamic"):
        flags.append("dynamic")
    plen = a.get("prefixlen")
    return {"family": fam, "cidr": f"{a.get('local')}/{plen}",
            "peer": f"{a['address']}/{plen}" if a.get("address") else None,
            "broadcast": a.get("broadcast"), "scope": _num(a.get("scope"), SCOPES, 0),
            "label": a.get("label"), "valid": a.get("valid_life_time", FOREVER),
            "preferred": a.get("preferred_life_time", FOREVER), "flags": flags}


def _cidr(dst: str, family: int) -> str:
    if dst == "default":
        return "0.0.0.0/0" if family == 4 else "::/0"
    return str(ipaddress.ip_network(dst, strict=False))


def route_from_ip(r: dict[str, Any], family: int) -> dict[str, Any]:
    """One `ip -j route` entry (state files of the previous version)."""
    mx: dict[str, int] = {}
    for m in r.get("metrics", []):
        mx.update({k: v for k, v in m.items() if isinstance(v, int)})
    return {"family": family, "dst": _cidr(r.get("dst", "default"), family), "gateway": r.get("gateway"),
            "proto": _num(r.get("protocol"), PROTOS, PROTO_BOOT), "scope": _num(r.get("scope"), SCOPES, 0),
            "metric": r.get("metric"), "table": _num(r.get("table"), TABLES, TABLE_MAIN),
            "prefsrc": r.get("prefsrc"), "onlink": "onlink" in r.get("flags", []),
            "pref": PREFS.get(r["pref"]) if r.get("pref") else None, "metrics": mx,
            "type": _num(r.get("type"), TYPES, RTN_UNICAST),
            "multipath": "nexthops" in r or "nhid" in r}


def upgrade_snapshot(snap: dict[str, Any]) -> dict[str, Any]:
    """A snapshot with records; one from the previous version (`ip -j` JSON) is converted."""
    routes = snap.get("routes", [])
    if isinstance(routes, dict):  # {"4": [...], "6": [...]}: the previous version's
        routes = [route_from_ip(r, int(fam)) for fam in ("4", "6") for r in routes.get(fam, [])]
    addrs = [a if "cidr" in a else address_from_ip(a) for a in snap.get("addresses", [])]
    return {**snap, "addresses": addrs, "routes": routes}


# ------------------------------------------------------------------ questions


def has(a: dict[str, Any], flag: str) -> bool:
    return flag in a.get("flags", [])


def is_default(r: dict[str, Any]) -> bool:
    return r["dst"] in ("0.0.0.0/0", "::/0")
