"""`nsroute status`: gather once, render for a terminal or as JSON."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from . import kernelwg, netns, procs
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
    link = netns.link(ns, dev)
    if link is None:
        return "missing", []
    data = netns.ip_json(ns, "addr", "show", "dev", dev)
    addrs = [f"{a['local']}/{a['prefixlen']}" for a in (data[0].get("addr_info", []) if data else [])
             if a.get("scope") != "link"]
    return str(link.get("operstate", "UNKNOWN")), addrs


def gather(st: State, now: float | None = None) -> dict[str, Any]:
    """Everything `status` shows, as plain data."""
    now = time.time() if now is None else now
    tun_ns = st.into if st.mode == "into" else None
    ifaces = []
    if st.mode == "host":
        there = netns.exists(st.physical)
        for snap in st.interfaces:
            state_, addrs = _addrs(st.physical, snap["name"]) if there else ("missing", [])
            dhcp = [p.pid for p in st.dhcp if p.what == f"dhcp {snap['name']}" and procs.alive(p)]
            ifaces.append({"name": snap["name"], "state": state_, "addresses": addrs,
                           "dhcp_pid": dhcp[0] if dhcp else None,
                           "wireless": any(snap["name"] in w["ifaces"] for w in st.wiphys)})
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
    return {
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
        "dhcp_clients": [p.pid for p in st.dhcp if procs.alive(p)],
        "peers": peers,
        "steps": st.steps,
    }


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


def render(info: dict[str, Any]) -> str:
    """A few lines that answer 'am I protected?' first, details after."""
    t, e = info["tunnel"], info["engine"]
    head = {"up": "up: all traffic goes through the tunnel",
            "broken": ("BROKEN: the WireGuard link is gone" if info.get("backend") == "kernel" else
                       "BROKEN: the engine is not running")
            + " - nothing leaks, but nothing passes; run `nsroute up` again",
            "incomplete": "INCOMPLETE: an `nsroute up` stopped half-way; run `nsroute down`"}[info["state"]]
    lines = [f"nsroute {head}"]
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
            extra += f" dhcp pid {i['dhcp_pid']}" if i["dhcp_pid"] else ""
            lines.append(f"  {i['name']:<10} {i['state']:<8} {' '.join(i['addresses']) or '-'}{extra}")
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
