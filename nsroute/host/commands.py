"""`nsroute up`: check everything, snapshot, then run the plan (nsroute/host/plan.py).

The plan's steps record themselves in the state file as they go; a failure rolls back
with the same way back as `down` (nsroute/host/down.py). `up` on a deployment whose
tunnel or guard died restarts just those steps, moving nothing.
"""

from __future__ import annotations

import os
import sys

from .. import config as wgconfig
from . import (
    hotplug,
    kernelwg,
    netns,
    plan,
    procs,
    ready,
    resolved,
    steps,
    tunnelsteps,
    uplinks,
    wifi,
)
from . import interfaces as ifaces
from .down import down, rolled_back
from .errors import HostError
from .reports import guard, load_state, require_root, status
from .state import State, Store, state_key
from .steps import Ctx, say

__all__ = ["HostError", "up", "down", "guard", "status"]


def _load(name: str) -> wgconfig.Config:
    try:
        cfg = wgconfig.load(name)
        path = cfg.path
    except wgconfig.ConfigError as e:
        raise HostError(str(e)) from None
    except ValueError as e:  # interface name derived from the file name
        raise HostError(f"{name}: {e}") from None
    if cfg.interface.private_key is None:
        raise HostError(f"{path}: [Interface] has no PrivateKey")
    warning = wgconfig.world_accessible_warning(path)
    if warning:
        print(warning, file=sys.stderr)
    return cfg


def up(config: str, physical: str = "physical", interfaces: list[str] | None = None,
       into: str | None = None, backend: str = "auto", wait: float = 0.0) -> None:
    """Move the physical interfaces out, start the engine, route everything through it;
    with `wait` > 0, return only once the tunnel carries traffic (ready.NotReady if not)."""
    require_root()
    cfg = _load(config)
    _up(cfg, physical, interfaces, into, backend)
    if wait > 0:
        key = state_key("", into, cfg.name) if into is not None else state_key(physical)
        ready.await_ready(load_state(Store(key)), cfg, wait, say)


def _up(cfg: wgconfig.Config, physical: str, interfaces: list[str] | None, into: str | None,
        backend: str) -> None:
    if into is not None:
        return _up_into(cfg, into, backend)
    store = Store(state_key(physical))
    if store.exists():
        st = load_state(store)
        if not st.complete:
            raise HostError(f"an earlier `nsroute up` stopped half-way; run `nsroute down --physical {physical}` first")
        if tunnelsteps.alive(st) and procs.alive(st.guard):
            raise HostError(f"already up: tunnel {st.ifname}, physical namespace '{physical}' (nothing changed)")
        if st.ifname != cfg.name:
            raise HostError(f"physical namespace '{physical}' serves tunnel {st.ifname}, not {cfg.name}; "
                            "run `nsroute down` first")
        return _resume(cfg, st, store, backend)
    if netns.exists(physical):
        raise HostError(f"namespace '{physical}' already exists and was not made by nsroute; "
                        "pick another name with --physical")
    if netns.link(None, cfg.name) is not None:
        raise HostError(f"interface {cfg.name} already exists")
    names = _select(interfaces or [], cfg.name)
    chosen = _choose_backend(backend)
    wiphys = _wiphys(names)
    for w in wiphys:
        names += [n for n in w["ifaces"] if n not in names]
    snaps = [ifaces.snapshot(n) for n in names]
    st = State(mode="host", physical=physical, config_path=os.path.abspath(cfg.path), ifname=cfg.name,
               interfaces=snaps, wiphys=wiphys, snapshot_time=snaps[0]["time"] if snaps else 0.0,
               backend=chosen, guard_baseline=hotplug.baseline())
    wireless = uplinks.wireless(st)
    st.wpa_original = [argv for _, argv in wifi.wpa_supplicants(wireless)] if wireless else []
    _run(cfg, st, store)


def _run(cfg: wgconfig.Config, st: State, store: Store) -> None:
    try:
        steps.run(plan.for_state(st), Ctx(st, store, cfg))
    except BaseException as e:
        rolled_back(e, st, store)


def _select(names: list[str], tunnel_name: str) -> list[str]:
    chosen = list(dict.fromkeys(names)) or ifaces.hardware_interfaces()
    if not chosen:
        raise HostError("no physical interfaces found; name them with --interface")
    for n in chosen:
        if n in ("lo", tunnel_name):
            raise HostError(f"{n} cannot be moved to the physical namespace")
        if netns.link(None, n) is None:
            raise HostError(f"no such interface: {n}")
    return chosen


def _wiphys(names: list[str]) -> list[dict]:
    out: dict[str, dict] = {}
    for n in names:
        phy = wifi.phy_of(n)
        if phy and phy not in out:
            out[phy] = {"phy": phy, "index": wifi.phy_index(phy), "ifaces": wifi.interfaces_of(phy)}
    return list(out.values())


def _choose_backend(requested: str) -> str:
    """Before the first change: `kernel` without the module fails here, nothing touched."""
    chosen = kernelwg.choose(requested)
    if requested == "auto":
        say(f"backend {chosen}" + (" (wireguard module present)" if chosen == "kernel"
                                   else " (no wireguard kernel module)"))
    return chosen


def _up_into(cfg: wgconfig.Config, into: str, backend: str = "auto") -> None:
    """Container mode: the tunnel becomes the only interface (with lo) of `into`."""
    if not netns.exists(into):
        raise HostError(f"no such network namespace: {into}")
    store = Store(state_key("", into, cfg.name))
    if store.exists():
        st = load_state(store)
        if not st.complete:
            raise HostError(f"an earlier `nsroute up --into {into}` stopped half-way; run `nsroute down {cfg.name} --into {into}` first")
        if tunnelsteps.alive(st):
            raise HostError(f"already up: tunnel {st.ifname} in {into} (nothing changed)")
        return _resume(cfg, st, store, backend)
    if netns.same(into, None):
        raise HostError(f"{into} is the namespace nsroute runs in; --into needs another one")
    if netns.link(into, cfg.name) is not None:
        raise HostError(f"interface {cfg.name} already exists in {into}")
    chosen = _choose_backend(backend)
    st = State(mode="into", physical="", into=into, config_path=os.path.abspath(cfg.path), ifname=cfg.name,
               backend=chosen)
    _run(cfg, st, store)


# ----------------------------------------------------------------------- resume


def _resume(cfg: wgconfig.Config, st: State, store: Store, backend: str = "auto") -> None:
    """The engine died (or the kernel link was deleted), or the guard did, while the
    interfaces stayed put: run the steps of what is gone again, move nothing. `auto`
    keeps the backend the state records."""
    ctx = Ctx(st, store, cfg)
    try:
        if not tunnelsteps.alive(st):
            _restart_tunnel(ctx, backend)
    finally:  # after the tunnel: a guard that watches it must find it running
        if st.mode == "host" and not procs.alive(st.guard):
            say("hot-plug guard is gone; restarting it")
            if not st.guard_baseline:  # a deployment brought up before the guard existed
                st.guard_baseline = hotplug.baseline()
            steps.run([plan.BLOCK, plan.GUARD], ctx)


def _restart_tunnel(ctx: Ctx, backend: str) -> None:
    st = ctx.st
    new_backend = st.backend if backend == "auto" else kernelwg.choose(backend)
    if st.backend == "kernel":
        say(f"WireGuard link {st.ifname} is gone; recreating it (interfaces stay in '{st.physical}')")
    else:
        say(f"engine of {st.ifname} is gone; restarting it (interfaces stay in '{st.physical}')")
    old = tunnelsteps.steps_for(st)
    steps.undo(old, ctx, everything=True)  # what is left of it: an engine, a TUN, a link
    st.kernel_link = ""
    st.backend = new_backend
    new = tunnelsteps.steps_for(st)
    gone = {s.name for s in old} - {s.name for s in new}
    st.steps = [s for s in st.steps if s not in gone]
    try:
        steps.run(new, ctx)
        if st.resolved_link:  # a new link: resolved knows nothing of it yet
            cfg = ctx.config
            resolved.set_link(st.ifname, [str(s) for s in cfg.interface.dns_servers], cfg.interface.dns_search)
    except HostError as e:
        raise HostError(f"{e} (the interfaces stay in the physical namespace: nothing leaks)") from None
