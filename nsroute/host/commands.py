"""`nsroute up`, `down` and `status`: the choreography, step by step, with its undo.

Every step is recorded in the state file as soon as it is done (the snapshot before the
first change), and `teardown` undoes whatever the file says was done, in reverse. The
same `teardown` serves `nsroute down`, the rollback of a failed `up`, and the clean-up
after an `up` or engine that was killed: there is one way back, and it is always tested.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from .. import config as wgconfig
from .. import fsmode
from . import (
    block,
    dhcp,
    dns,
    hooks,
    hotplug,
    kernelwg,
    netns,
    networkmanager,
    nmphysical,
    procs,
    resolved,
    tunnel,
    wifi,
)
from . import guard as guard_mod
from . import interfaces as ifaces
from . import status as status_mod
from .errors import HostError
from .state import Proc, State, Store, run_dir, state_key

__all__ = ["HostError", "up", "down", "status"]


def _require_root() -> None:
    if os.geteuid() != 0:
        raise HostError("must be run as root (it moves network interfaces)")


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


def _say(msg: str) -> None:
    print(f"[#] {msg}", file=sys.stderr)


def _tunnel_name(config: str) -> str:
    """The interface name for `down`, even when the config file is gone by then."""
    base = os.path.basename(config)
    return base[:-5] if base.endswith(".conf") else base


# --------------------------------------------------------------------------- up


def up(config: str, physical: str = "physical", interfaces: list[str] | None = None,
       into: str | None = None, backend: str = "auto") -> None:
    """Move the physical interfaces out, start the engine, route everything through it."""
    _require_root()
    cfg = _load(config)
    if into is not None:
        return _up_into(cfg, into, backend)
    store = Store(state_key(physical))
    if store.exists():
        st = _load_state(store)
        if not st.complete:
            raise HostError(f"an earlier `nsroute up` stopped half-way; run `nsroute down --physical {physical}` first")
        if _tunnel_alive(st, None) and procs.alive(st.guard):
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
    wireless = [n for w in wiphys for n in w["ifaces"]]
    st.wpa_original = [argv for _, argv in wifi.wpa_supplicants(wireless)] if wireless else []
    store.mark(st, "prepare")
    try:
        _up_steps(cfg, st, store, wireless)
    except BaseException as e:
        _rolled_back(e, st, store)


def _rolled_back(e: BaseException, st: State, store: Store) -> None:
    """Undo a failed `up`, then report it as one line (Ctrl-C and exit pass through)."""
    _rollback(st, store)
    if isinstance(e, HostError):
        raise HostError(f"{e} (rolled back: nothing changed)") from None
    if isinstance(e, KeyboardInterrupt | SystemExit):
        raise e
    raise HostError(f"unexpected error: {e!r} (rolled back: nothing changed)") from None


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


def _up_steps(cfg: wgconfig.Config, st: State, store: Store, wireless: list[str]) -> None:
    phys = st.physical
    _say(f"ip netns add {phys}")
    st.netns_created = True
    store.save(st)
    netns.create(phys)
    store.mark(st, "netns")

    etc = Path("/etc/netns") / phys
    st.etc_netns_created = not etc.exists()
    store.save(st)
    fsmode.make_dirs(etc, 0o755)  # programs run by `exec` as any user read resolv.conf here
    dns.write_in_place(str(etc / "resolv.conf"), dns.physical_side(dns.read()))
    if st.etc_netns_created:  # removed with the directory
        resolved.write_physical_nsswitch(etc)
    store.mark(st, "etc-netns")

    _guard_up(st, store)

    if st.wpa_original:
        for pid, _argv in wifi.wpa_supplicants(wireless):
            procs.stop(procs.record(pid, "wpa_supplicant"))
        store.mark(st, "wpa-stopped")

    _networkmanager_lets_go(st, store)

    for w in st.wiphys:
        _say(f"move wiphy {w['phy']} ({', '.join(w['ifaces'])}) to {phys}")
        wifi.move_wiphy(w["index"], None, phys)
        store.mark(st, f"moved-phy:{w['phy']}")
    for snap in st.interfaces:
        if snap["name"] not in wireless:
            _say(f"ip link set {snap['name']} netns {phys}")
            ifaces.move(snap["name"], None, phys)
            store.mark(st, f"moved:{snap['name']}")
    for snap in st.interfaces:
        failures = ifaces.restore(snap, phys)
        for f in failures:
            _say(f"warning: {f}")
        store.mark(st, f"restored:{snap['name']}")
    if st.nm_physical:
        _say(f"systemctl start NetworkManager (in {phys}: it reconnects {', '.join(st.nm_managed) or 'its devices'})")
        nmphysical.start_in(phys, [i["name"] for i in st.interfaces if i["name"] not in st.nm_managed],
                            store.dir / f"{store.path.stem}.sysfs")
        store.mark(st, "nm-physical")

    hook = None
    for snap in st.interfaces:
        if not (snap.get("dynamic") or snap.get("unconfigured")) or snap["name"] in st.nm_managed:
            continue
        if snap.get("unconfigured") and not snap.get("up"):
            netns.run(["ip", "-n", phys, "link", "set", "dev", snap["name"], "up"])
        hook = hook or dhcp.write_hook(store.dir, f"{store.path.stem}.dhcp-hook")
        p = dhcp.start(snap["name"], phys, str(etc / "resolv.conf"), hook,
                       store.dir / f"{store.path.stem}.dhcp-{snap['name']}.log", _lease_ip(snap),
                       _default_metric(snap), _has_default(snap) or bool(snap.get("unconfigured")))
        if p is None:
            _say(f"warning: no DHCP client (busybox udhcpc) installed: the lease on {snap['name']} will not be renewed")
            continue
        _say(f"udhcpc -i {snap['name']} in {phys} (pid {p.pid})")
        st.dhcp.append(p)
        store.mark(st, f"dhcp:{snap['name']}")
        if snap.get("unconfigured"):
            _await_lease(snap["name"], phys)

    for argv in st.wpa_original:
        pidfile = store.dir / f"{store.path.stem}.wpa-{len(st.wpa)}.pid"
        pidfile.unlink(missing_ok=True)
        netns.run(["ip", "netns", "exec", phys, *wifi.daemon_argv(argv, str(pidfile))])
        pid = wifi.read_pidfile(pidfile)
        st.wpa.append(procs.record(pid, "wpa_supplicant", argv))
        store.mark(st, f"wpa:{len(st.wpa)}")

    hooks.run("PreUp", cfg.interface.hooks["preup"], cfg.name)
    store.mark(st, "preup")
    _engine_and_tunnel(cfg, st, store, tun_ns=None, socket_ns=phys)
    _dns(cfg, st, store, "/etc/resolv.conf")
    hooks.run("PostUp", cfg.interface.hooks["postup"], cfg.name)
    store.mark(st, "postup")
    st.complete = True
    store.mark(st, "complete")


def _networkmanager_lets_go(st: State, store: Store) -> None:
    """Before the moves: where systemd runs NetworkManager and it manages some of the
    devices, it stops, to start again in physical; otherwise it is told to leave them alone."""
    names = [i["name"] for i in st.interfaces]
    managed = networkmanager.managed(names) if nmphysical.available() else []
    if managed:  # it configures some of them: it goes with them
        st.nm_managed = managed
        st.nm_physical = True  # before the change: teardown starts it at home again
        store.save(st)
        _say("systemctl stop NetworkManager wpa_supplicant (to run them in the physical namespace)")
        nmphysical.stop()
        store.mark(st, "nm-stopped")
        return
    st.nm_released = networkmanager.release(names, warn=lambda m: _say(f"warning: {m}"))
    store.mark(st, "nm-released")


def _guard_up(st: State, store: Store) -> None:
    """Before anything moves: the block table, then the guard (both stay until `down`)."""
    st.guard_block = True  # before the change: teardown removes it
    store.save(st)
    if block.install(None):
        _say("nft: hot-plug block table in this namespace (IP through physical devices dropped)")
    else:
        _say("warning: nft not found: no in-kernel block; the guard alone moves new devices out")
    store.mark(st, "block")
    _start_guard(st, store)


def _start_guard(st: State, store: Store) -> None:
    st.guard = hotplug.start(st.physical, store.dir, store.path.stem)
    _say(f"hot-plug guard (pid {st.guard.pid}): new devices here move to {st.physical}")
    store.mark(st, "guard")


def _lease_ip(snap: dict) -> str | None:
    for a in snap["addresses"]:
        if a.get("family") == "inet" and a.get("valid_life_time", ifaces.FOREVER) != ifaces.FOREVER:
            return a["local"]
    return None


def _defaults(snap: dict) -> list[dict]:
    return [r for r in snap["routes"].get("4", []) if r.get("dst") == "default" and not r.get("table")]


def _has_default(snap: dict) -> bool:
    return bool(_defaults(snap))


def _await_lease(ifname: str, phys: str, timeout: float = 10.0) -> None:
    """At boot the endpoint may only be reachable once the first lease is in."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(a.get("family") == "inet" for a in ifaces.current_addresses(ifname, phys) or []):
            return
        time.sleep(0.2)
    _say(f"warning: no DHCP lease on {ifname} yet; the client keeps trying in {phys}")


def _default_metric(snap: dict) -> int | None:
    d = _defaults(snap)
    return d[0].get("metric") if d else None


def _choose_backend(requested: str) -> str:
    """Before the first change: `kernel` without the module fails here, nothing touched."""
    chosen = kernelwg.choose(requested)
    if requested == "auto":
        _say(f"backend {chosen}" + (" (wireguard module present)" if chosen == "kernel"
                                    else " (no wireguard kernel module)"))
    return chosen


def _tunnel_alive(st: State, ns: str | None) -> bool:
    """The tunnel serves: its kernel WireGuard link, or the engine and its TUN, are there."""
    if st.backend == "kernel":
        return kernelwg.is_wireguard(st.ifname, ns)
    return procs.alive(st.engine) and netns.link(ns, st.ifname) is not None


def _engine_and_tunnel(cfg: wgconfig.Config, st: State, store: Store, tun_ns: str | None, socket_ns: str,
                       local_resolve: bool = False) -> None:
    if st.backend == "kernel":
        create_ns = None if st.mode == "into" else socket_ns
        return _kernel_tunnel(cfg, st, store, tun_ns, create_ns, local_resolve)
    endpoints = tunnel.resolve_endpoints(cfg, socket_ns, local=local_resolve)
    setconf = store.dir / f"{store.path.stem}.setconf"
    tunnel.write_private(setconf, tunnel.setconf_text(cfg, endpoints))
    st.engine_config = str(setconf)
    store.save(st)
    _say(f"nsroute engine {cfg.name} (socket in {socket_ns})")
    st.engine = tunnel.start_engine(cfg.name, setconf, tun_ns, socket_ns,
                                    cfg.interface.mtu or tunnel.DEFAULT_MTU,
                                    store.dir / f"{store.path.stem}.engine.log")
    store.mark(st, "engine")
    _write_engine_pidfile(store, st.engine.pid)
    tunnel.configure(cfg, cfg.name, tun_ns)
    st.tunnel_addresses = [str(a) for a in cfg.interface.addresses]
    store.mark(st, "tunnel")
    hotplug.tunnel_started(st.guard)


def _kernel_tunnel(cfg: wgconfig.Config, st: State, store: Store, tun_ns: str | None, create_ns: str | None,
                   local_resolve: bool) -> None:
    """WireGuard's netns recipe: create where the socket must live, configure, move in."""
    spec = kernelwg.device_spec(cfg, kernelwg.resolve_endpoints(cfg, create_ns, local=local_resolve))
    if netns.link(create_ns, cfg.name) is not None:
        raise HostError(f"interface {cfg.name} already exists in {create_ns or 'this namespace'}")
    st.engine = None
    (store.dir / f"{store.path.stem}.engine.pid").unlink(missing_ok=True)
    st.kernel_link = "created"  # before the change: teardown removes it from create_ns
    store.save(st)
    _say(f"ip link add {cfg.name} type wireguard (in {create_ns or 'this namespace'}, where its socket stays)")
    kernelwg.create(cfg.name, create_ns, cfg.interface.mtu or tunnel.DEFAULT_MTU)
    store.mark(st, "kernel-created")
    kernelwg.configure(cfg.name, create_ns, spec)
    _say(f"ip link set {cfg.name} netns {tun_ns or 'this namespace'}")
    kernelwg.move(cfg.name, create_ns, tun_ns)
    st.kernel_link = "moved"
    store.mark(st, "kernel-moved")
    tunnel.configure(cfg, cfg.name, tun_ns)
    st.tunnel_addresses = [str(a) for a in cfg.interface.addresses]
    store.mark(st, "tunnel")
    hotplug.tunnel_started(st.guard)


def _create_ns(st: State) -> str | None:
    """Where the kernel backend creates its link: physical (host mode), else our own namespace."""
    return st.physical if st.mode == "host" else None


def _write_engine_pidfile(store: Store, pid: int) -> None:
    """The engine's PID for scripts (the systemd units watch the guard's pidfile instead)."""
    pidfile = store.dir / f"{store.path.stem}.engine.pid"
    fsmode.replace_file(pidfile, f"{pid}\n", 0o644)


def _dns(cfg: wgconfig.Config, st: State, store: Store, path: str) -> None:
    if not (cfg.interface.dns_servers or cfg.interface.dns_search):
        return
    if st.mode == "host" and resolved.in_use(path):
        st.resolved_link = cfg.name
        store.save(st)
        _say(f"systemd-resolved: DNS {' '.join(map(str, cfg.interface.dns_servers))} for {cfg.name}, domain ~.")
        resolved.set_link(cfg.name, [str(s) for s in cfg.interface.dns_servers], cfg.interface.dns_search)
        store.mark(st, "dns")
        return
    st.resolv_path = path
    st.resolv_saved = dns.read(path) or ""
    store.save(st)  # the old content is safe on disk before the file changes
    dns.write_in_place(path, dns.render([str(s) for s in cfg.interface.dns_servers], cfg.interface.dns_search))
    store.mark(st, "dns")


def _resume(cfg: wgconfig.Config, st: State, store: Store, backend: str = "auto") -> None:
    """The engine died (or the kernel link was deleted), or the guard did, while the
    interfaces stayed put: start what is gone again, move nothing. `auto` keeps the backend
    the state records."""
    try:
        if not _tunnel_alive(st, None if st.mode == "host" else st.into):
            _restart_tunnel(cfg, st, store, backend)
    finally:  # after the tunnel: a guard that watches it must find it running
        if st.mode == "host" and not procs.alive(st.guard):
            _say("hot-plug guard is gone; restarting it")
            if not st.guard_baseline:  # a deployment brought up before the guard existed
                st.guard_baseline = hotplug.baseline()
            st.guard_block = True
            store.save(st)
            if not block.present(None):
                block.install(None)
            _start_guard(st, store)


def _restart_tunnel(cfg: wgconfig.Config, st: State, store: Store, backend: str) -> None:
    new_backend = st.backend if backend == "auto" else kernelwg.choose(backend)
    if st.backend == "kernel":
        _say(f"WireGuard link {st.ifname} is gone; recreating it (interfaces stay in '{st.physical}')")
    else:
        _say(f"engine of {st.ifname} is gone; restarting it (interfaces stay in '{st.physical}')")
    procs.stop(st.engine)
    tun_ns = st.into if st.mode == "into" else None
    tunnel.remove_tun(st.ifname, tun_ns)
    if st.kernel_link == "created" and (st.mode == "into" or netns.exists(st.physical)):
        kernelwg.delete(st.ifname, _create_ns(st))  # an earlier resume stopped before the move
    st.kernel_link = ""
    st.backend = new_backend
    socket_ns = st.physical if st.mode == "host" else netns.path_of(None)
    try:
        _engine_and_tunnel(cfg, st, store, tun_ns=tun_ns, socket_ns=socket_ns, local_resolve=st.mode == "into")
        if st.resolved_link:  # a new link: resolved knows nothing of it yet
            resolved.set_link(st.ifname, [str(s) for s in cfg.interface.dns_servers], cfg.interface.dns_search)
    except HostError as e:
        raise HostError(f"{e} (the interfaces stay in the physical namespace: nothing leaks)") from None


def _up_into(cfg: wgconfig.Config, into: str, backend: str = "auto") -> None:
    """Container mode: the tunnel becomes the only interface (with lo) of `into`."""
    if not netns.exists(into):
        raise HostError(f"no such network namespace: {into}")
    store = Store(state_key("", into, cfg.name))
    if store.exists():
        st = _load_state(store)
        if not st.complete:
            raise HostError(f"an earlier `nsroute up --into {into}` stopped half-way; run `nsroute down {cfg.name} --into {into}` first")
        if _tunnel_alive(st, into):
            raise HostError(f"already up: tunnel {st.ifname} in {into} (nothing changed)")
        return _resume(cfg, st, store, backend)
    if netns.same(into, None):
        raise HostError(f"{into} is the namespace nsroute runs in; --into needs another one")
    if netns.link(into, cfg.name) is not None:
        raise HostError(f"interface {cfg.name} already exists in {into}")
    chosen = _choose_backend(backend)
    st = State(mode="into", physical="", into=into, config_path=os.path.abspath(cfg.path), ifname=cfg.name,
               backend=chosen)
    store.mark(st, "prepare")
    try:
        hooks.run("PreUp", cfg.interface.hooks["preup"], cfg.name)
        store.mark(st, "preup")
        lo = netns.link(into, "lo")
        if lo is not None and "UP" not in lo.get("flags", []):
            netns.ip(into, "link", "set", "lo", "up")
        _engine_and_tunnel(cfg, st, store, tun_ns=into, socket_ns=netns.path_of(None), local_resolve=True)
        if "/" not in into:
            etc = Path("/etc/netns") / into
            if not etc.exists():
                st.etc_netns_created = True
                store.save(st)
                fsmode.make_dirs(etc, 0o755)
            _dns(cfg, st, store, str(etc / "resolv.conf"))
        hooks.run("PostUp", cfg.interface.hooks["postup"], cfg.name)
        store.mark(st, "postup")
        st.complete = True
        store.mark(st, "complete")
    except BaseException as e:
        _rolled_back(e, st, store)


def _load_state(store: Store) -> State:
    try:
        return store.load()
    except (OSError, ValueError, TypeError) as e:
        raise HostError(f"cannot read state {store.path}: {e}") from None


# ------------------------------------------------------------------------- down


def down(config: str | None = None, physical: str = "physical", into: str | None = None) -> None:
    """Undo `up`: stop what it started, move everything back, restore what it changed."""
    _require_root()
    if into is not None:
        store = _into_store(config, into)
    else:
        store = Store(state_key(physical))
        if not store.exists():
            raise HostError(f"not up: no state for physical namespace '{physical}' in {run_dir()}")
    st = _load_state(store)
    problems = teardown(st, store, run_hooks=st.complete)
    if problems:
        raise HostError("; ".join(problems) + f" (state kept in {store.path}; fix and run `nsroute down` again)")


def _into_store(config: str | None, into: str) -> Store:
    if config:
        store = Store(state_key("", into, _tunnel_name(config)))
        if not store.exists():
            raise HostError(f"not up: no tunnel {_tunnel_name(config)} in {into}")
        return store
    prefix = state_key("", into, "")
    keys = [k for k in Store("x").all_keys() if k.startswith(prefix)]
    if len(keys) != 1:
        raise HostError(f"name the config: {len(keys)} tunnels are up in {into}" if keys else f"not up: no tunnel in {into}")
    return Store(keys[0])


def _rollback(st: State, store: Store) -> None:
    problems = teardown(st, store, run_hooks=False)
    for p in problems:
        _say(f"rollback: {p}")


def teardown(st: State, store: Store, run_hooks: bool) -> list[str]:
    """Undo everything the state records, tolerating steps that never happened.

    Returns the problems that prevented a complete restore (then the state is kept).
    """
    problems: list[str] = []
    warnings: list[str] = []
    if run_hooks:
        warnings += hooks.run("PreDown", _hooks_of(st, "predown"), st.ifname, strict=False)
    tun_ns = st.into if st.mode == "into" else None
    procs.stop(st.guard)
    if st.resolved_link:  # while the link is there to name
        warnings += [w for w in [resolved.revert_link(st.resolved_link)] if w]
    procs.stop(st.engine)
    if st.mode == "into" and not netns.exists(st.into or ""):
        pass  # the container is gone, and its tunnel with it
    else:
        tunnel.remove_tun(st.ifname, tun_ns)
    if st.kernel_link == "created" and (st.mode == "into" or netns.exists(st.physical)):
        kernelwg.delete(st.ifname, _create_ns(st))  # made, not yet moved in
    if st.resolv_path and st.resolv_saved is not None:
        try:
            dns.write_in_place(st.resolv_path, st.resolv_saved)
        except OSError as e:
            problems.append(f"cannot restore {st.resolv_path}: {e}")
    for p in [*st.wpa, *st.dhcp]:
        procs.stop(p)
    if st.mode == "host":
        if st.nm_physical:  # before the devices go home, so it does not follow them half-way
            nmphysical.leave(warnings, store.dir / f"{store.path.stem}.sysfs")
        if netns.exists(st.physical):
            hotplug.hand_back(hotplug.record_path(store.dir, store.path.stem), st.physical, warnings.append)
        problems += _bring_back(st)
        if st.guard_block:
            block.remove(None)
        if st.nm_physical:
            nmphysical.come_home(problems)
        networkmanager.restore(st.nm_released, warn=problems.append)
        if st.done("wpa-stopped"):
            for argv in st.wpa_original:
                p = netns.run(["sh", "-c", 'exec "$@" </dev/null >/dev/null 2>&1 &', "sh",
                               *wifi.restart_argv(argv)], check=False)
                if p.returncode != 0:
                    warnings.append(f"could not restart {' '.join(argv)}")
        if st.netns_created and netns.exists(st.physical):
            left = [ln["ifname"] for ln in netns.links(st.physical) if ln.get("ifname") != "lo"]
            if any(left_name in [s["name"] for s in st.interfaces] for left_name in left):
                problems.append(f"interfaces {', '.join(left)} are still in '{st.physical}'")
            else:
                netns.delete(st.physical)
        if st.etc_netns_created:
            shutil.rmtree(Path("/etc/netns") / st.physical, ignore_errors=True)
    elif st.etc_netns_created and st.into:
        shutil.rmtree(Path("/etc/netns") / st.into, ignore_errors=True)
    if run_hooks:
        warnings += hooks.run("PostDown", _hooks_of(st, "postdown"), st.ifname, strict=False)
    for w in warnings:
        _say(f"warning: {w}")
    if not problems:
        store.remove_all()
    return problems


def _hooks_of(st: State, kind: str) -> list[str]:
    try:
        return wgconfig.load(st.config_path).interface.hooks[kind]
    except (wgconfig.ConfigError, ValueError):
        return []


def _bring_back(st: State) -> list[str]:
    """Move every snapshotted interface (and wiphy) home and replay its snapshot."""
    problems = []
    phys = st.physical
    fresh: dict[str, list[dict] | None] = {}
    inside = netns.exists(phys)
    for snap in st.interfaces:
        if inside and netns.link(phys, snap["name"]) is not None:
            fresh[snap["name"]] = ifaces.current_addresses(snap["name"], phys)
    if inside:
        for w in st.wiphys:
            if any(n in fresh for n in w["ifaces"]):
                try:
                    wifi.move_wiphy(w["index"], phys, None)
                except HostError as e:
                    problems.append(str(e))
        wireless = {n for w in st.wiphys for n in w["ifaces"]}
        for snap in st.interfaces:
            if snap["name"] in fresh and snap["name"] not in wireless:
                try:
                    ifaces.move(snap["name"], phys, None)
                except HostError as e:
                    problems.append(str(e))
    for snap in st.interfaces:
        if netns.link(None, snap["name"]) is None:
            problems.append(f"{snap['name']} is missing")
            continue
        addrs = ifaces.merge_leases(snap, fresh.get(snap["name"]))
        for f in ifaces.restore(snap, None, addresses=addrs):
            _say(f"warning: {f}")
    return problems


# ----------------------------------------------------------------------- status


def guard(physical: str = "physical", watch_tunnel: bool = False) -> int:
    """`nsroute guard`: serve as the hot-plug guard of the deployment in `physical`
    (with `watch_tunnel`, end when its engine or kernel link does)."""
    _require_root()
    store = Store(state_key(physical))
    if not store.exists():
        raise HostError(f"not up: no state for physical namespace '{physical}' in {run_dir()}")
    st = _load_state(store)

    def watch() -> tuple[Proc | None, str | None]:
        """The tunnel as the state says now: set only once `up` has started it."""
        now = _load_state(store)
        if "tunnel" not in now.steps:
            return None, None
        return (None, now.ifname) if now.backend == "kernel" else (now.engine, None)

    return hotplug.serve(physical, st.guard_baseline, store.dir, store.path.stem,
                           watch if watch_tunnel else None)


def status(physical: str = "physical", as_json: bool = False, check: bool = False) -> bool:
    """Print the state of the tunnel, the moved interfaces and each peer; True when healthy.

    `check` prints only the verdict and the problems (the JSON stays whole)."""
    store = Store(state_key(physical))
    if not store.exists():
        raise HostError(f"not up: no state for physical namespace '{physical}' in {run_dir()}")
    st = _load_state(store)
    info = status_mod.gather(st, guard=guard_mod.Record.load(hotplug.record_path(store.dir, store.path.stem)))
    if as_json:
        print(status_mod.to_json(info))
    else:
        print(status_mod.render_check(info) if check else status_mod.render(info))
    return info["healthy"]
