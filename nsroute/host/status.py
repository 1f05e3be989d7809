"""`nsroute status`: gather once, render for a terminal or as JSON."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from . import (
    block,
    health,
    inventory,
    kernel,
    kernelwg,
    netns,
    procs,
    records,
    revive,
    rfkill,
    wifi,
)
from .errors import HostError
from .guardrecord import Record
from .state import State


def _uapi(ifname: str) -> dict[str, Any] | None:
    try:
        from ..engine import uapi
    except ImportError:
        return None
    try:
        return uapi.get(ifname)
    except (OSError, ValueError):
        return None


def _addrs(ns: str | None, dev: str) -> tuple[str, list[str]]:
    u = _uplink(ns, dev)
    return u["state"], u["addresses"]


def _uplink_missing() -> dict[str, Any]:
    return {"state": "missing", "addresses": [], "global_addresses": [], "admin_up": None, "carrier": None}


def _uplink(ns: str | None, name: str) -> dict[str, Any]:
    """State of one interface (an uplink, or the tunnel): operstate, flags and addresses."""
    link = kernel.link(ns, name)
    if link is None:
        return _uplink_missing()
    info = kernel.addresses(ns, name)
    return {"state": str(link["operstate"]),
            "addresses": [a["cidr"] for a in info if a["scope"] != records.SCOPES["link"]],
            "global_addresses": [a["cidr"] for a in info if a["scope"] == records.SCOPES["global"]],
            "admin_up": link["up"], "carrier": link["lower_up"] if link["up"] else None}


def _associated(ns: str, name: str) -> bool | None:
    """Is a Wi-Fi uplink associated? (`iw dev NAME link` in its namespace; None: cannot tell)."""
    try:
        # iw, not netlink: nl80211 station state is not part of the rtnetlink layer (kernel.py)
        p = netns.run(["ip", "netns", "exec", ns, "iw", "dev", name, "link"], check=False, timeout=5)
    except HostError:
        return None
    if p.returncode != 0:
        return None
    return not p.stdout.strip().startswith("Not connected")


def _default_routes(ns: str) -> list[str] | None:
    """Default routes in the physical namespace (None: cannot tell)."""
    try:
        return [f"{'default' if r['family'] == 4 else '::/0'} dev {(r['devs'] or ['?'])[0]}"
                for r in kernel.routes(ns) if r["dst"] in ("0.0.0.0/0", "::/0") and r["table"] == 254]
    except HostError:
        return None


def _protected_links(ns: str | None, tunnel: str) -> list[dict[str, Any]] | None:
    """Every device next to the tunnel, with why it could leak (None: cannot tell)."""
    try:
        links = inventory.gather(ns, "/sys/class/net" if ns is None else None)
    except HostError:
        return None
    out = [{**ln.to_json(), "leak": inventory.leak_reason(ln, tunnel)}
           for ln in links if ln.name not in ("lo", tunnel)]
    if ns is None:  # a radio with no netdev yet: the next `iw phy X interface add` leaks
        behind = {wifi.phy_of(ln.name) for ln in links if ln.wireless}
        out += [{"name": phy, "kind": "wiphy", "hardware": True, "wireless": True, "default_routes": [],
                 "addresses": [], "leak": "a Wi-Fi radio (no interface yet)"}
                for phy in inventory.wiphys(None) or [] if phy not in behind]
    return out


def _guard(st: State, record: Record | None) -> dict[str, Any] | None:
    """The hot-plug guard: is it there, is the block there, and what it moved."""
    if st.mode != "host":
        return None
    rec = record or Record()
    return {"pid": st.guard.pid if st.guard else None, "running": procs.alive(st.guard),
            "block": block.present(None),
            "moved": [{"what": m.what, "name": m.name, "index": m.index, "netdevs": m.netdevs, "time": m.time}
                      for m in rec.moved],
            "revived": [{k: r.get(k) for k in ("name", "arrived_as", "what", "time", "failures")}
                        | {"pids": [p["pid"] for p in r.get("procs", [])]} for r in rec.revived],
            "renewed": rec.renewed, "errors": rec.errors}


def gather(st: State, now: float | None = None, guard: Record | None = None, full: bool = True) -> dict[str, Any]:
    """Everything `status` shows, as plain data; `full=False` leaves out the guard and the
    devices next to the tunnel (what `up` polls while it waits does not need them)."""
    now = time.time() if now is None else now
    tun_ns = st.into if st.mode == "into" else None
    ifaces = []
    there = st.mode == "host" and netns.exists(st.physical)
    # a former uplink the guard set up again has its DHCP client in the guard's record
    dhcp_procs = [*st.dhcp, *revive.revived_processes(guard.revived if guard else [])]
    switches = rfkill.blocked_phys() if st.mode == "host" and st.wiphys else None
    if st.mode == "host":
        for snap in st.interfaces:
            name = snap["name"]
            up = _uplink(st.physical, name) if there else _uplink_missing()
            dhcp = [p.pid for p in dhcp_procs if p.what == f"dhcp {name}" and procs.alive(p)]
            wireless = any(name in w["ifaces"] for w in st.wiphys)
            phy = next((w["phy"] for w in st.wiphys if name in w["ifaces"]), None)
            ifaces.append({"name": name, **up, "dhcp_pid": dhcp[0] if dhcp else None, "wireless": wireless,
                           "associated": _associated(st.physical, name)
                           if wireless and up["state"] != "missing" else None,
                           "rfkill": (switches or {}).get(phy) if wireless else None})
    tstate, taddrs = _addrs(tun_ns, st.ifname)
    kernel = st.backend == "kernel"
    if kernel:  # no engine process: the kernel's link, read over netlink where it lives
        dev = kernelwg.device(st.ifname, tun_ns) if tstate != "missing" else None
        engine_alive = dev is not None
    else:
        engine_alive = procs.alive(st.engine)
        dev = _uapi(st.ifname) if engine_alive else None
    peers = []
    for p in (dev or {}).get("peers", []):
        hs = p.get("last_handshake_time") or 0
        peers.append({
            "public_key": base64.b64encode(p["public_key"]).decode(),
            "endpoint": p.get("endpoint"),
            "allowed_ips": p.get("allowed_ips", []),
            "latest_handshake": hs or None,
            "latest_handshake_ago": round(now - hs, 1) if hs else None,
            "rx_bytes": p.get("rx_bytes", 0),
            "tx_bytes": p.get("tx_bytes", 0),
            "persistent_keepalive": p.get("persistent_keepalive_interval", 0),
        })
    healthy = engine_alive and dev is not None and tstate != "missing"
    info = {
        "state": "up" if st.complete and healthy else ("broken" if st.complete else "incomplete"),
        "mode": st.mode,
        "config": st.config_path,
        "physical_namespace": st.physical or None,
        "into": st.into,
        "interfaces": ifaces,
        "tunnel": {"name": st.ifname, "state": tstate, "addresses": taddrs,
                   "listen_port": (dev or {}).get("listen_port")},
        "backend": st.backend,
        "engine": {"pid": st.engine.pid if st.engine and not kernel else None, "running": engine_alive,
                   "answering": dev is not None},
        "dns": {"file": st.resolv_path or None, "managed": bool(st.resolv_path),
                "resolved_link": st.resolved_link or None},
        "dhcp_clients": [p.pid for p in dhcp_procs if procs.alive(p)],
        "guard": _guard(st, guard) if full else None,
        "peers": peers,
        "physical_present": there if st.mode == "host" else None,
        "physical_default_routes": _default_routes(st.physical) if there else None,
        "protected_links": _protected_links(tun_ns, st.ifname) if full else None,
        "steps": st.steps,
    }
    info["problems"], info["warnings"] = health.assess(info)
    info["healthy"] = not info["problems"]
    return info



def to_json(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = int(seconds)
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''} ago"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s ago"
    h, m = divmod(m, 60)
    return f"{h} h {m} min ago"


def _guard_lines(g: dict[str, Any] | None) -> list[str]:
    """The guard's part of `render`: its process, what it moved, revived and renewed."""
    if g is None:
        return []
    lines = [f"guard:     {'pid ' + str(g['pid']) + ', running' if g['running'] else 'NOT RUNNING'}"
             f"; block table {'in place' if g['block'] else 'MISSING'}"]
    for m in g["moved"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["time"]))
        extra = f" ({', '.join(m['netdevs'])})" if m["netdevs"] else ""
        lines.append(f"  moved {m['what']} {m['name']}{extra} at {when}")
    for r in g["revived"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
        lines.append(f"  {r['name']} came back (as {r['arrived_as']}) at {when}: set up again"
                     + "".join(f"; {f}" for f in r["failures"]))
    for r in g.get("renewed", [])[-3:]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
        what = ("static addresses and routes added again" if r.get("static") else
                "DHCP renewal asked of pid " + (", ".join(map(str, r["pids"])) or "none"))
        lines.append(f"  {r['name']} up again at {when}: {what}" + "".join(f"; {f}" for f in r.get("failures", [])))
    for e in g["errors"]:
        lines.append(f"  error: {e}")
    return lines


def render(info: dict[str, Any]) -> str:
    """A few lines that answer 'am I protected?' first, details after."""
    t, e = info["tunnel"], info["engine"]
    head = {"up": "up: all traffic goes through the tunnel" if not info.get("problems") else
            f"up, NOT HEALTHY: {len(info['problems'])} problem{'s' if len(info['problems']) != 1 else ''}",
            "broken": ("BROKEN: the WireGuard link is gone" if info.get("backend") == "kernel" else
                       "BROKEN: the engine is not running")
            + " - nothing leaks, but nothing passes; run `nsroute up` again",
            "incomplete": "INCOMPLETE: an `nsroute up` stopped half-way; run `nsroute down`"}[info["state"]]
    lines = [f"nsroute {head}"]
    lines += [f"problem:   {p['message']}" for p in info.get("problems", [])]
    lines += [f"warning:   {w['message']}" for w in info.get("warnings", [])]
    where = f"namespace {info['into']}" if info["mode"] == "into" else "this namespace"
    lines.append(f"tunnel:    {t['name']} ({t['state']}) in {where}  {' '.join(t['addresses'])}")
    eng = f"pid {e['pid']}, " if e["pid"] else ""
    if info.get("backend") == "kernel":
        lines.append("engine:    kernel WireGuard" + ("" if e["running"] else ": the link is GONE"))
    else:
        lines.append(f"engine:    {eng}{'running' if e['running'] else 'NOT RUNNING'}"
                     + ("" if e["answering"] or not e["running"] else ", not answering"))
    lines.append(f"config:    {info['config']}")
    if info["mode"] == "host":
        lines.append(f"physical:  namespace '{info['physical_namespace']}' (ip netns exec "
                     f"{info['physical_namespace']} CMD, or nsroute exec, to go around the tunnel)")
        for i in info["interfaces"]:
            extra = " wireless" if i["wireless"] else ""
            extra += f" SWITCHED OFF (rfkill {i['rfkill']} block)" if i.get("rfkill") else ""
            extra += " NOT ASSOCIATED" if i.get("associated") is False else ""
            extra += f" dhcp pid {i['dhcp_pid']}" if i["dhcp_pid"] else ""
            lines.append(f"  {i['name']:<10} {i['state']:<8} {' '.join(i['addresses']) or '-'}{extra}")
    lines += _guard_lines(info.get("guard"))
    if info["dns"]["managed"]:
        lines.append(f"dns:       {info['dns']['file']} points into the tunnel")
    if info["dns"].get("resolved_link"):
        lines.append(f"dns:       systemd-resolved sends every name (~.) to {info['dns']['resolved_link']}")
    for p in info["peers"]:
        lines += [
            f"peer {p['public_key']}",
            f"  endpoint:            {p['endpoint'] or '(none)'}",
            f"  allowed ips:         {', '.join(p['allowed_ips']) or '(none)'}",
            f"  latest handshake:    {_ago(p['latest_handshake_ago'])}",
            f"  transfer:            {_size(p['rx_bytes'])} received, {_size(p['tx_bytes'])} sent",
        ]
        if p["persistent_keepalive"]:
            lines.append(f"  persistent keepalive: every {p['persistent_keepalive']} seconds")
    return "\n".join(lines)


def render_check(info: dict[str, Any]) -> str:
    """`status --check`: the verdict and each problem, one line each, for scripts and logs."""
    if info["problems"]:
        return "\n".join(f"problem: {p['kind']}: {p['message']}" for p in info["problems"])
    return "healthy: all traffic goes through the tunnel"
