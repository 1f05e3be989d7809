"""The uplinks' steps: into `physical` with their addressing, DHCP and wpa_supplicant, and home.

One step per wiphy and per interface, so that the state says exactly which moved. Moving
an interface home also replays its snapshot there (a move strips its addresses), keeping
any newer DHCP lease it got in `physical`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import dhcp, hotplug, kernel, netns, networkmanager, nmphysical, procs, ready, wifi
from . import interfaces as ifaces
from .errors import HostError
from .state import State
from .steps import Ctx, Step, say


def wireless(st: State) -> list[str]:
    """Interfaces that travel with their wiphy, not on their own."""
    return [n for w in st.wiphys for n in w["ifaces"]]


# ------------------------------------------------------------- hand-offs first


def _stop_wpa(ctx: Ctx) -> None:
    for pid, _argv in wifi.wpa_supplicants(wireless(ctx.st)):
        procs.stop(procs.record(pid, "wpa_supplicant"))


def _restart_wpa(ctx: Ctx) -> None:
    for argv in ctx.st.wpa_original:
        p = netns.run(["sh", "-c", 'exec "$@" </dev/null >/dev/null 2>&1 &', "sh", *wifi.restart_argv(argv)],
                      check=False)
        if p.returncode != 0:
            ctx.warnings.append(f"could not restart {' '.join(argv)}")


def _release_nm(ctx: Ctx) -> None:
    """Before the moves: where systemd runs NetworkManager and it manages some of the
    devices, it stops, to start again in physical (NM_PHYSICAL); at boot, where it has
    yet to start, it will start there; otherwise it is told to leave them alone."""
    st, names = ctx.st, [i["name"] for i in ctx.st.interfaces]
    presence = nmphysical.presence()
    if presence == nmphysical.RUNNING:
        managed = networkmanager.managed(names)
    else:
        managed = networkmanager.would_manage(names) if presence == nmphysical.STARTING else []
    if managed:  # it configures some of them: it goes with them
        st.nm_managed = managed
        st.nm_physical = True  # before the change: the undo starts it at home again
        ctx.store.save(st)
        if presence == nmphysical.RUNNING:
            say("systemctl stop NetworkManager wpa_supplicant (to run them in the physical namespace)")
            nmphysical.stop()
        return
    st.nm_released = networkmanager.release(names, warn=lambda m: say(f"warning: {m}"))


def _restore_nm(ctx: Ctx) -> None:
    """Once the devices are home (this undo comes after the moves'): NetworkManager there."""
    if ctx.st.nm_physical:
        nmphysical.come_home(ctx.problems)
    networkmanager.restore(ctx.st.nm_released, warn=ctx.problems.append)


def _sysfs(ctx: Ctx) -> Path:
    return ctx.store.dir / f"{ctx.store.path.stem}.sysfs"


def _nm_in_physical(ctx: Ctx) -> None:
    st = ctx.st
    say(f"systemctl start NetworkManager (in {st.physical}: it reconnects {', '.join(st.nm_managed) or 'its devices'})")
    nmphysical.start_in(st.physical, [i["name"] for i in st.interfaces if i["name"] not in st.nm_managed],
                        _sysfs(ctx))
    hotplug.nudge(st.guard)  # it passes NetworkManager's DNS servers on from now (nmdns.py)


def _nm_leaves_physical(ctx: Ctx) -> None:
    """Before the devices go home, so that it does not follow them half-way."""
    if ctx.st.nm_physical:  # an older state file undoes every step
        nmphysical.leave(ctx.warnings, _sysfs(ctx))


WPA_STOPPED = Step("wpa-stopped", _stop_wpa, _restart_wpa, when=lambda ctx: bool(ctx.st.wpa_original))
NM_RELEASED = Step("nm-released", _release_nm, _restore_nm)
# after the addresses are replayed; before DHCP (which it does itself for its devices)
NM_PHYSICAL = Step("nm-physical", _nm_in_physical, _nm_leaves_physical, when=lambda ctx: ctx.st.nm_physical)


# ------------------------------------------------------------------ the moves


def _home(ctx: Ctx, snaps: list[dict[str, Any]], move: Callable[[], None]) -> None:
    """Move `snaps`' interfaces home with `move` (if any is in `physical`), under their own
    names again (udev may rename a device that arrives), then replay each snapshot there
    with the leases they hold now."""
    phys = ctx.st.physical
    fresh: dict[str, list[dict] | None] = {}
    was: dict[str, dict[str, Any]] = {}  # ifindex and MAC: how to know it under another name
    if netns.exists(phys):
        for snap in snaps:
            link = kernel.link(phys, snap["name"])
            if link is not None:
                was[snap["name"]] = link
                fresh[snap["name"]] = ifaces.current_addresses(snap["name"], phys)
    if fresh:
        try:
            move()
        except HostError as e:
            ctx.problems.append(str(e))
        ifaces.settle_udev()
    for snap in snaps:
        problem = ifaces.reclaim_name(snap["name"], was.get(snap["name"]), None)
        if problem:
            ctx.problems.append(problem)
            continue
        for f in ifaces.restore(snap, None, addresses=ifaces.merge_leases(snap, fresh.get(snap["name"]))):
            say(f"warning: {f}")


def wiphy_step(w: dict[str, Any]) -> Step:
    """A radio moves with all its interfaces (nl80211 moves the wiphy, not a netdev)."""
    def do(ctx: Ctx) -> None:
        say(f"move wiphy {w['phy']} ({', '.join(w['ifaces'])}) to {ctx.st.physical}")
        wifi.move_wiphy(w["index"], None, ctx.st.physical)

    def undo(ctx: Ctx) -> None:
        snaps = [s for s in ctx.st.interfaces if s["name"] in w["ifaces"]]
        # a radio that went and came back while up has a new index: the one behind its names now
        _home(ctx, snaps, lambda: wifi.move_wiphy(
            wifi.index_now(ctx.st.physical, w["ifaces"], w["index"]), ctx.st.physical, None))

    return Step(f"moved-phy:{w['phy']}", do, undo)


def move_step(snap: dict[str, Any]) -> Step:
    name = snap["name"]

    def do(ctx: Ctx) -> None:
        say(f"ip link set {name} netns {ctx.st.physical}")
        kernel.move(name, None, ctx.st.physical)

    def undo(ctx: Ctx) -> None:
        _home(ctx, [snap], lambda: kernel.move(name, ctx.st.physical, None))

    return Step(f"moved:{name}", do, undo)


def restore_step(snap: dict[str, Any]) -> Step:
    """Its addresses and routes, replayed in `physical` (undone by the move home)."""
    def do(ctx: Ctx) -> None:
        for f in ifaces.restore(snap, ctx.st.physical):
            say(f"warning: {f}")

    return Step(f"restored:{snap['name']}", do)


# -------------------------------------------------------- DHCP, wpa_supplicant


def dhcp_step(snap: dict[str, Any]) -> Step:
    """A client in `physical` renews the lease (or takes the first one, unconfigured)."""
    name = snap["name"]

    def do(ctx: Ctx) -> None:
        st, store, phys = ctx.st, ctx.store, ctx.st.physical
        p = dhcp.start_uplink(snap, phys, store.dir, store.path.stem)
        if p is None:
            say(f"warning: no DHCP client (busybox udhcpc) installed: the lease on {name} will not be renewed")
            return
        say(f"udhcpc -i {name} in {phys} (pid {p.pid})")
        st.dhcp.append(p)
        store.save(st)
        if snap.get("unconfigured"):
            _await_lease(name, phys)

    def undo(ctx: Ctx) -> None:
        for p in ctx.st.dhcp:
            if p.what == f"dhcp {name}":
                procs.stop(p)

    return Step(f"dhcp:{name}", do, undo,
                when=lambda ctx: dhcp.wanted(snap) and snap["name"] not in ctx.st.nm_managed)


def wpa_step(i: int) -> Step:
    """The i-th wpa_supplicant that ran before `up`, started again in `physical`."""
    def do(ctx: Ctx) -> None:
        st, store = ctx.st, ctx.store
        argv = st.wpa_original[i]
        pidfile = store.dir / f"{store.path.stem}.wpa-{i}.pid"
        st.wpa.append(wifi.start_daemon(argv, st.physical, pidfile))

    def undo(ctx: Ctx) -> None:
        if i < len(ctx.st.wpa):
            procs.stop(ctx.st.wpa[i])

    return Step(f"wpa:{i + 1}", do, undo)


def _await_lease(ifname: str, phys: str, timeout: float = 10.0) -> None:
    """At boot the endpoint may only be reachable once the first lease is in."""
    def missing() -> list[str]:
        addrs = ifaces.current_addresses(ifname, phys) or []
        return [] if any(a.get("family") == 4 for a in addrs) else [f"no IPv4 address on {ifname}"]

    if ready.poll(missing, timeout, interval=0.2):
        say(f"warning: no DHCP lease on {ifname} yet; the client keeps trying in {phys}")


def steps_for(st: State) -> list[Step]:
    """Stop the hand-offs, move radios then wired links, replay, then their daemons."""
    alone = [s for s in st.interfaces if s["name"] not in wireless(st)]
    return [WPA_STOPPED, NM_RELEASED,
            *[wiphy_step(w) for w in st.wiphys],
            *[move_step(s) for s in alone],
            *[restore_step(s) for s in st.interfaces],
            NM_PHYSICAL,
            *[dhcp_step(s) for s in st.interfaces],
            *[wpa_step(i) for i in range(len(st.wpa_original))]]
