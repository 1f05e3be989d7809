"""An uplink that goes down and comes back up while up gets its routes back.

When a link goes down (`ip link set down`; rfkill blocking a radio, whose netdevs
cfg80211 then closes) the kernel flushes every IPv4 route through it; when it comes back
up, only the prefix routes of its addresses return. Its DHCP client still holds a valid
lease and does nothing, so the uplink is up, associated and addressed, but without its
default route: the tunnel's endpoint is out of reach until the lease's renewal time.
A cable pulled and plugged again only takes the carrier away; a renewal then also checks
that the lease still holds on whatever network the cable now goes to.

This watch lives in the guard process (one more rtnetlink socket, opened in the physical
namespace, see `Guard.extras`): when an uplink of the deployment that was down or
without carrier is up with carrier again, it sends SIGUSR1 to that uplink's udhcpc, which
renews at once; the hook (dhcp.py) then puts address and routes back. A client started
after the link went down (`up`'s own, or the one the guard starts for a device that came
back, revive.py) is left alone: it is already asking for a lease on the link as it is.
An uplink configured by hand (no DHCP client) has nobody to ask: its snapshot's addresses
and routes are added again, as `up` added them (interfaces.restore; what is still there
stays). The same goes for the static part of a DHCP uplink before its client is asked:
the kernel drops IPv6 addresses (all but link-local) with the link, and a renewal brings
back only IPv4 (interfaces.static_part).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..nsutil import entered
from . import dhcp, guard, kernel, netns, procs
from . import interfaces as ifaces
from .state import Proc, State, Store

DHCP_PROGRAMS = ("udhcpc", "busybox")  # how dhcp.start runs the client


def usable(link: dict[str, Any]) -> bool:
    """Up, with carrier (for Wi-Fi: associated): what a DHCP renewal needs."""
    return bool(link["up"] and link["lower_up"])


class Edges:
    """Since when each link (by ifindex) has been unusable; None while usable."""

    def __init__(self) -> None:
        self.down_since: dict[int, float | None] = {}

    def seen(self, ifindex: int, ok: bool, now: float) -> float | None:
        """Record one state of a link; on its unusable -> usable edge, since when it was down."""
        since = self.down_since.get(ifindex)
        if ok:
            self.down_since[ifindex] = None
            return since
        if since is None:
            self.down_since[ifindex] = now
        return None

    def forget(self, ifindex: int) -> None:
        self.down_since.pop(ifindex, None)


def due(edges: Edges, events: Iterable[tuple[int, dict[str, Any]]], uplinks: set[str],
        now: float) -> list[tuple[str, float]]:
    """(name, down since) of each of `uplinks` that these link events bring back (pure)."""
    out = []
    for kind, link in events:
        if kind == guard.RTM_DELLINK:
            edges.forget(link["index"])
            continue
        since = edges.seen(link["index"], usable(link), now)
        if since is not None and link["ifname"] in uplinks:
            out.append((link["ifname"], since))
    return out


def to_renew(clients: Iterable[Proc], name: str, since: float) -> list[Proc]:
    """The DHCP clients of `name` that were already running when it went down."""
    return [p for p in clients if dhcp.serves(p.argv, name) and p.start_time < since]


def complete_state(store: Store) -> State | None:
    """The deployment's state once `up` has finished (None before, or unreadable): what the
    guard's watches act on, never a half-made deployment."""
    try:
        st = store.load()
    except (OSError, ValueError, TypeError):
        return None
    return st if st.complete else None


def uplinks_of(store: Store) -> dict[str, dict[str, Any]]:
    """The deployment's uplinks that nsroute configures, by name (their snapshots); none
    while `up` still works. Those NetworkManager configures in `physical` are its own: it
    reconnects them on carrier, maybe on another network than the snapshot's."""
    st = complete_state(store)
    return {s["name"]: s for s in st.interfaces if s["name"] not in st.nm_managed} if st else {}


class Watch:
    """Link changes in the physical namespace, and the renewals they call for."""

    def __init__(self, physical: str, store_dir: Path, stem: str, marker: str,
                 log: Callable[[str], None], note: Callable[[dict[str, Any]], None]) -> None:
        """`marker`: the prefix of the deployment's files on its daemons' command lines
        (hotplug.marker); `note` keeps what was done in the guard's record."""
        self.physical, self.marker, self.log, self.note = physical, marker, log, note
        self.store = Store(stem, store_dir)
        self.edges = Edges()
        with entered(physical):  # subscribed before the first look: nothing falls in between
            self.sock = guard.netlink(socket.NETLINK_ROUTE, [guard.RTMGRP_LINK])
        now = procs.now_ticks()
        for _, ln in self._links_now():  # the first look: states only, no edges yet
            self.edges.seen(ln["index"], usable(ln), now)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def ready(self) -> None:
        """The socket is readable: read the events, renew what came back."""
        try:
            events = kernel.link_messages(self.sock.recv(1 << 16))
        except OSError as e:
            if e.errno != errno.ENOBUFS:
                raise
            events = self._links_now()  # events were lost: compare with what is there now
        snaps = uplinks_of(self.store)
        for name, since in due(self.edges, events, set(snaps), procs.now_ticks()):
            snap = snaps[name]
            # what the kernel flushed and no DHCP client brings back (IPv6 addresses, static
            # routes), for every uplink; then the lease's part from its client
            failures = ifaces.restore(ifaces.static_part(snap), self.physical)
            if dhcp.wanted(snap):
                self.renew(name, since, failures)
            else:
                self.restored(name, failures)

    def restored(self, name: str, failures: list[str]) -> None:
        """A static uplink up again, with its addresses and routes as `up` left them."""
        self.log(f"guard: {name} is up again: its static addresses and routes added again"
                 + "".join(f"; {f}" for f in failures))
        self.note({"name": name, "time": time.time(), "pids": [], "static": True, "failures": failures})

    def renew(self, name: str, since: float, failures: list[str]) -> None:
        mine = procs.marked(DHCP_PROGRAMS, netns.path_of(self.physical), self.marker)
        told = []
        for p in to_renew(mine, name, since):
            try:
                os.kill(p.pid, signal.SIGUSR1)
                told.append(p.pid)
            except ProcessLookupError:
                continue
        extra = "".join(f"; {f}" for f in failures)
        if told:
            self.log(f"guard: {name} is up again: DHCP client pid {', '.join(map(str, told))} asked to renew{extra}")
        elif not any(dhcp.serves(p.argv, name) for p in mine):
            self.log(f"guard: {name} is up again, but no DHCP client of this deployment serves it{extra}")
        self.note({"name": name, "time": time.time(), "pids": told, "failures": failures})

    def _links_now(self) -> list[tuple[int, dict[str, Any]]]:
        return [(guard.RTM_NEWLINK, ln) for ln in kernel.links(self.physical)]
