"""Is nsroute doing its job right now? Problems found in what `status` gathered (pure).

Each finding is a machine-readable `kind` plus one line for people. A problem means
traffic cannot pass (engine gone, no session with the peer, no usable uplink) or could
pass around the tunnel (a leak-capable device in the protected namespace); `status
--check` fails on any. An uplink that is down while another one works (Ethernet unplugged
on a laptop on Wi-Fi) is a warning instead: the tunnel still has a way out.
"""

from __future__ import annotations

from typing import Any

from ..wireguard.constants import REJECT_AFTER_TIME, REKEY_TIMEOUT

# Past REJECT_AFTER_TIME no session key may be used; with traffic a peer rekeys every
# REKEY_AFTER_TIME (120 s), so a handshake older than this, plus a few retries' worth of
# margin, means the tunnel carries nothing now.
STALE_AFTER = REJECT_AFTER_TIME + 6 * REKEY_TIMEOUT

Finding = dict[str, str]


def _f(kind: str, message: str, subject: str = "") -> Finding:
    out = {"kind": kind, "message": message}
    if subject:
        out["subject"] = subject
    return out


def tunnel_problems(info: dict[str, Any]) -> list[Finding]:
    """The engine (or kernel link), the tunnel device and every peer's latest handshake."""
    out: list[Finding] = []
    t, e = info["tunnel"], info["engine"]
    if info["state"] == "incomplete":
        out.append(_f("incomplete", "an `nsroute up` stopped half-way; run `nsroute down`"))
    kernel = info.get("backend") == "kernel"
    if not kernel and not e["running"]:
        out.append(_f("engine-not-running", "the engine is not running: nothing passes; run `nsroute up` again"))
    elif not kernel and not e["answering"]:
        out.append(_f("engine-not-answering", "the engine does not answer on its control socket"))
    if t["state"] == "missing":
        out.append(_f("tunnel-missing", f"the tunnel interface {t['name']} is gone: nothing passes", t["name"]))
    elif t["state"] == "DOWN":
        out.append(_f("tunnel-down", f"the tunnel interface {t['name']} is down", t["name"]))
    if not e["answering"]:
        return out  # no peer list to judge
    for p in info["peers"]:
        key = p["public_key"][:8] + "…"
        ago = p["latest_handshake_ago"]
        if ago is None:
            out.append(_f("no-handshake", f"no handshake with peer {key} yet: the tunnel carries nothing",
                          p["public_key"]))
        elif ago > STALE_AFTER:
            out.append(_f("stale-handshake", f"latest handshake with peer {key} was {int(ago)} s ago "
                          f"(sessions expire after {int(REJECT_AFTER_TIME)} s): the tunnel carries nothing now",
                          p["public_key"]))
    return out


def uplink_findings(iface: dict[str, Any]) -> list[Finding]:
    """Why one uplink in the physical namespace cannot carry the tunnel's packets."""
    name = iface["name"]
    if iface["state"] == "missing":
        return [_f("uplink-missing", f"uplink {name} is not in the physical namespace", name)]
    if iface.get("rfkill"):  # cfg80211 closed its interface: say why, not just "down"
        return [_f("wifi-blocked", f"Wi-Fi uplink {name} is switched off (rfkill {iface['rfkill']} block: "
                   "airplane mode, the Wi-Fi key or switch, or `nmcli radio wifi off`)", name)]
    if iface.get("admin_up") is False:
        return [_f("uplink-down", f"uplink {name} is administratively down", name)]
    if iface.get("wireless") and iface.get("associated") is False:
        return [_f("wifi-not-associated", f"Wi-Fi uplink {name} is not associated with any network", name)]
    if iface.get("carrier") is False:
        return [_f("uplink-no-carrier", f"uplink {name} has no carrier (cable or radio link down)", name)]
    if not iface.get("global_addresses"):
        why = ": no DHCP lease yet (its DHCP client keeps asking)" if iface.get("dhcp_pid") else ""
        return [_f("uplink-no-address", f"uplink {name} has no address{why}", name)]
    return []


def physical_findings(info: dict[str, Any]) -> tuple[list[Finding], list[Finding]]:
    """(problems, warnings) about the uplinks; a dead uplink is only a warning while another works."""
    if info["mode"] != "host":
        return [], []
    if info.get("physical_present") is False:
        return [_f("physical-missing", f"the physical namespace '{info['physical_namespace']}' is gone")], []
    per = {i["name"]: uplink_findings(i) for i in info["interfaces"]}
    found = [f for fs in per.values() for f in fs]
    defaults = info.get("physical_default_routes")
    no_default = [] if defaults is None or defaults else [
        _f("no-default-route", f"no default route in the physical namespace '{info['physical_namespace']}'")]
    some_uplink_works = any(not fs for fs in per.values())
    if some_uplink_works:
        return no_default, found
    return found + no_default, []


def leak_findings(info: dict[str, Any]) -> list[Finding]:
    """Leak-capable devices next to the tunnel (see inventory.leak_reason)."""
    where = f"namespace {info['into']}" if info["mode"] == "into" else "the protected namespace"
    return [_f("leak-capable-device", f"{d['name']} in {where} could carry traffic around the tunnel: {d['leak']}",
               d["name"])
            for d in info.get("protected_links") or [] if d.get("leak")]


def guard_problems(info: dict[str, Any]) -> list[Finding]:
    """The hot-plug guard and its block: without them a device plugged in now could leak."""
    g = info.get("guard")
    if g is None:
        return []
    out = []
    if not g["running"]:
        out.append(_f("guard-not-running", "the hot-plug guard is not running: a device plugged in now stays "
                      "next to the tunnel; run `nsroute up` again"))
    if not g["block"]:
        out.append(_f("block-missing", "the hot-plug block table (nft inet nsroute_guard) is not loaded"))
    return out


def traffic_problems(info: dict[str, Any]) -> list[Finding]:
    """The problems that stop the tunnel from carrying anything: what `up` waits to see
    gone (ready.py). Leaks and a missing guard are not waited for: time does not mend them."""
    return tunnel_problems(info) + physical_findings(info)[0]


def assess(info: dict[str, Any]) -> tuple[list[Finding], list[Finding]]:
    """(problems, warnings) for everything `status` gathered."""
    phys_problems, warnings = physical_findings(info)
    return tunnel_problems(info) + guard_problems(info) + leak_findings(info) + phys_problems, warnings
