"""An uplink that comes back while up: the guard moved it, this configures it again.

A driver reset, suspend/resume, rfkill or a USB re-plug destroys an uplink's netdev (or
its whole wiphy) and makes a new one, in the protected namespace, where the guard moves
it to the physical one. If it is one of the uplinks `up` moved, what `up` set up for it
is gone with the old device: its addresses and routes, its DHCP client (bound to the old
ifindex) and wpa_supplicant's hold on it. This module recognises it and sets it up
again exactly as `up` did, with the same functions (`interfaces.restore`,
`dhcp.start_uplink`, `wifi.start_daemon`), under the snapshot's name, so that `status`
and `down` find it as they find any uplink.

How a device is recognised: by its MAC address (the permanent one, IFLA_PERM_ADDRESS, or
the one it has), matched against the snapshots' addresses; else by name (udev gives the
same device the same predictable name). Only a snapshot whose name is free in the
physical namespace can match: an uplink that is still there is not replaced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import dhcp, netns, procs, wifi
from . import interfaces as ifaces
from .errors import HostError
from .guard import links_in
from .state import Proc, State, Store

NO_MAC = {"", "00:00:00:00:00:00"}


def former_uplink(name: str, macs: Iterable[str], snaps: list[dict[str, Any]],
                  taken: Iterable[str]) -> dict[str, Any] | None:
    """The snapshot of the uplink a device that just arrived was, or None.

    By MAC first (the snapshot's current or permanent address), then by name; only
    snapshots whose name no other device in the physical namespace has now."""
    busy = set(taken)
    free = [s for s in snaps if s["name"] not in busy]
    have = {m.lower() for m in macs if m and m.lower() not in NO_MAC}
    for s in free:
        if have & {str(s.get(k) or "").lower() for k in ("address", "permaddr")}:
            return s
    return next((s for s in free if s["name"] == name), None)


def wireless_names(st: State) -> set[str]:
    return {n for w in st.wiphys for n in w["ifaces"]}


def link_macs(ns: str, name: str) -> set[str]:
    """A link's MAC and permanent MAC (`ip -j link` shows `permaddr` when they differ)."""
    link = netns.link(ns, name) or {}
    return {str(link.get(k) or "") for k in ("address", "permaddr")} - NO_MAC


class Reviver:
    """Sets up again an uplink the guard moved; reads the state `up` wrote, never writes it."""

    def __init__(self, physical: str, store_dir: Path, stem: str, log: Callable[[str], None]) -> None:
        self.physical = physical
        self.store = Store(stem, store_dir)
        self.stem = stem
        self.log = log

    def netdev(self, index: int, name: str, mac: str, earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A wired device moved as link `index` (it may have a new name by now)."""
        st = self._state()
        if st is None:
            return []
        there = links_in(self.physical)
        now = there.get(index, name)
        wired = [s for s in st.interfaces if s["name"] not in wireless_names(st)]
        snap = former_uplink(now, {mac} | link_macs(self.physical, now), wired, set(there.values()) - {now})
        return [] if snap is None else [self._bring_up(snap, now, "netdev", index, st, earlier)]

    def wiphy(self, index: int, mac: str, earlier: list[dict[str, Any]],
              wait: float = 10.0) -> list[dict[str, Any]]:
        """A radio moved as wiphy `index`; mac80211 makes its netdev in `physical` (wait for it)."""
        st = self._state()
        if st is None:
            return []
        wireless = [s for s in st.interfaces if s["name"] in wireless_names(st)]
        if not wireless:
            return []
        end = time.monotonic() + wait
        while True:
            radios = wifi.radios_in(self.physical)
            mine = sorted(n for n, (phy, _) in radios.items() if phy == index)
            if mine or time.monotonic() > end:
                break
            time.sleep(0.1)
        out = []
        for now in mine:
            others = set(radios) - {now}
            taken = set(links_in(self.physical).values()) - {now}
            snap = former_uplink(now, {mac, radios[now][1]} | link_macs(self.physical, now), wireless,
                                 taken | others)
            if snap is not None:
                out.append(self._bring_up(snap, now, "wiphy", index, st, earlier))
        return out

    # -- as `up` does it
    def _bring_up(self, snap: dict[str, Any], now: str, what: str, index: int, st: State,
                  earlier: list[dict[str, Any]]) -> dict[str, Any]:
        name, phys = snap["name"], self.physical
        failures: list[str] = []
        if now != name:  # under the name `up` gave it, which state, status and down use
            netns.ip(phys, "link", "set", "dev", now, "down", check=False)
            p = netns.ip(phys, "link", "set", "dev", now, "name", name, check=False)
            if p.returncode != 0:
                failures.append(f"cannot rename {now} to {name}: {p.stderr.strip()}")
                name = now
        for old in stale_processes(name, st, earlier):
            procs.stop(old)
        replay = ifaces.restore({**snap, "name": name}, phys)
        if dhcp.wanted(snap):  # routes through an expired lease's subnet: the DHCP client sets them
            for f in (f for f in replay if " route add " in f):
                self.log(f"guard: {name}: {f} (left to the DHCP client)")
            replay = [f for f in replay if " route add " not in f]
        failures += replay
        started: list[Proc] = []
        try:
            if dhcp.wanted(snap):
                p_dhcp = dhcp.start_uplink({**snap, "name": name}, phys, self.store.dir, self.stem)
                if p_dhcp is None:
                    failures.append("no DHCP client (busybox udhcpc) installed")
                else:
                    started.append(p_dhcp)
            for i, argv in enumerate(a for a in st.wpa_original if wifi.binds(a, name)):
                pidfile = self.store.dir / f"{self.stem}.wpa-{name}-{i}.revived.pid"
                started.append(wifi.start_daemon(argv, phys, pidfile))
        except HostError as e:
            failures.append(str(e))
        for f in failures:
            self.log(f"guard: {name}: {f}")
        self.log(f"guard: {name} is back (arrived as {now}): addressing replayed"
                 + "".join(f", {p.what} pid {p.pid}" for p in started))
        return {"name": name, "arrived_as": now, "what": what, "index": index, "time": time.time(),
                "procs": [asdict(p) for p in started], "failures": failures}

    def _state(self) -> State | None:
        try:
            st = self.store.load()
        except (OSError, ValueError, TypeError):
            return None
        return st if st.complete else None  # `up` itself still sets the uplinks up


def stale_processes(name: str, st: State, earlier: list[dict[str, Any]]) -> list[Proc]:
    """DHCP clients and wpa_supplicants that served `name` before it went (bound to a dead device)."""
    every = [*st.dhcp, *st.wpa, *revived_processes(earlier)]
    return [p for p in every if p.what == f"dhcp {name}" or (p.what == "wpa_supplicant" and wifi.binds(p.argv, name))]


def revived_processes(revived: list[dict[str, Any]]) -> list[Proc]:
    return [Proc(**p) for r in revived for p in r.get("procs", [])]
