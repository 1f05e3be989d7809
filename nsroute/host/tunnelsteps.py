"""The tunnel's steps (engine, or kernel link created then moved in) and its DNS.

Where things live follows from the mode alone: host mode keeps the tunnel here and its
socket in `physical`; container mode (`--into`) puts the tunnel in the container and
keeps the socket here.
"""

from __future__ import annotations

from pathlib import Path

from .. import fsmode
from . import dns, hotplug, kernel, kernelwg, listenport, netns, procs, resolved, tunnel
from .errors import HostError
from .state import State
from .steps import Ctx, Step, say


def tun_ns(st: State) -> str | None:
    return st.into if st.mode == "into" else None


def socket_ns(st: State) -> str:
    return st.physical if st.mode == "host" else netns.path_of(None)


def create_ns(st: State) -> str | None:
    """Where the kernel backend creates its link: physical (host mode), else our own namespace."""
    return st.physical if st.mode == "host" else None


def alive(st: State) -> bool:
    """The tunnel serves: its kernel WireGuard link, or the engine and its TUN, are there."""
    if st.backend == "kernel":
        return kernelwg.is_wireguard(st.ifname, tun_ns(st))
    return procs.alive(st.engine) and kernel.link(tun_ns(st), st.ifname) is not None


# ------------------------------------------------------------------ userspace


def _start_engine(ctx: Ctx) -> None:
    cfg, st, store = ctx.config, ctx.st, ctx.store
    endpoints = tunnel.resolve_endpoints(cfg, socket_ns(st), local=st.mode == "into")
    setconf = store.dir / f"{store.path.stem}.setconf"
    port = listenport.to_ask(cfg, st, socket_ns(st))
    tunnel.write_private(setconf, tunnel.setconf_text(cfg, endpoints, port))
    st.engine_config = str(setconf)
    store.save(st)
    say(f"nsroute engine {cfg.name} (socket in {socket_ns(st)})")
    st.engine = tunnel.start_engine(cfg.name, setconf, tun_ns(st), socket_ns(st),
                                    cfg.interface.mtu or tunnel.DEFAULT_MTU,
                                    store.dir / f"{store.path.stem}.engine.log")
    store.save(st)
    # the engine's PID for scripts (the systemd units watch the guard's pidfile instead)
    fsmode.replace_file(_pidfile(ctx), f"{st.engine.pid}\n", 0o644)


def _pidfile(ctx: Ctx) -> Path:
    return ctx.store.dir / f"{ctx.store.path.stem}.engine.pid"


def _stop_engine(ctx: Ctx) -> None:
    procs.stop(ctx.st.engine)
    _remove_link(ctx)


def _remove_link(ctx: Ctx) -> None:
    st = ctx.st
    if st.mode == "into" and not netns.exists(st.into or ""):
        return  # the container is gone, and its tunnel with it
    tunnel.remove_tun(st.ifname, tun_ns(st))


# --------------------------------------------------------------------- kernel


def _create_kernel(ctx: Ctx) -> None:
    """WireGuard's netns recipe: create where the socket must live, configure, move in."""
    cfg, st, store = ctx.config, ctx.st, ctx.store
    where = create_ns(st)
    spec = kernelwg.device_spec(cfg, kernelwg.resolve_endpoints(cfg, where, local=st.mode == "into"))
    if kernel.link(where, cfg.name) is not None:
        raise HostError(f"interface {cfg.name} already exists in {where or 'this namespace'}")
    spec["listen_port"] = listenport.to_ask(cfg, st, where)
    st.engine = None
    _pidfile(ctx).unlink(missing_ok=True)
    st.kernel_link = "created"  # before the change: its undo removes it from `where`
    store.save(st)
    say(f"ip link add {cfg.name} type wireguard (in {where or 'this namespace'}, where its socket stays)")
    kernelwg.create(cfg.name, where, cfg.interface.mtu or tunnel.DEFAULT_MTU)
    kernelwg.configure(cfg.name, where, spec)


def _delete_created(ctx: Ctx) -> None:
    st = ctx.st
    if st.kernel_link == "created" and (st.mode == "into" or netns.exists(st.physical)):
        kernelwg.delete(st.ifname, create_ns(st))  # made, not yet moved in


def _move_kernel(ctx: Ctx) -> None:
    st = ctx.st
    say(f"ip link set {st.ifname} netns {tun_ns(st) or 'this namespace'}")
    kernel.move(st.ifname, create_ns(st), tun_ns(st))
    st.kernel_link = "moved"


def _configure(ctx: Ctx) -> None:
    cfg, st = ctx.config, ctx.st
    tunnel.configure(cfg, cfg.name, tun_ns(st))
    st.tunnel_addresses = [str(a) for a in cfg.interface.addresses]
    st.listen_port = listenport.current(st, tun_ns(st)) or st.listen_port  # for a restart
    hotplug.nudge(st.guard)


ENGINE = Step("engine", _start_engine, _stop_engine)
KERNEL_CREATED = Step("kernel-created", _create_kernel, _delete_created)
KERNEL_MOVED = Step("kernel-moved", _move_kernel, _remove_link)
TUNNEL = Step("tunnel", _configure)  # addresses and routes go with the link


def steps_for(st: State) -> list[Step]:
    if st.backend == "kernel":
        return [KERNEL_CREATED, KERNEL_MOVED, TUNNEL]
    return [ENGINE, TUNNEL]


# ------------------------------------------------------------------------ DNS


def resolv_path(st: State) -> str | None:
    """The resolv.conf the tunnel's DNS goes to; None for a container named by path."""
    if st.mode == "host":
        return "/etc/resolv.conf"
    etc = st.etc_netns()
    return str(etc / "resolv.conf") if etc is not None else None


def _wants_dns(ctx: Ctx) -> bool:
    i = ctx.config.interface
    return bool(i.dns_servers or i.dns_search) and resolv_path(ctx.st) is not None


def _set_dns(ctx: Ctx) -> None:
    cfg, st, store = ctx.config, ctx.st, ctx.store
    path = resolv_path(st)
    assert path is not None
    servers = [str(s) for s in cfg.interface.dns_servers]
    if st.mode == "host" and resolved.in_use(path):
        st.resolved_link = cfg.name
        store.save(st)
        say(f"systemd-resolved: DNS {' '.join(servers)} for {cfg.name}, domain ~.")
        resolved.set_link(cfg.name, servers, cfg.interface.dns_search)
        return
    st.resolv_path = path
    st.resolv_saved = dns.read(path) or ""
    store.save(st)  # the old content is safe on disk before the file changes
    dns.write_in_place(path, dns.render(servers, cfg.interface.dns_search))


def _revert_dns(ctx: Ctx) -> None:
    st = ctx.st
    if st.resolved_link:  # while the link is there to name
        ctx.warnings += [w for w in [resolved.revert_link(st.resolved_link)] if w]
    if st.resolv_path and st.resolv_saved is not None:
        try:
            dns.write_in_place(st.resolv_path, st.resolv_saved)
        except OSError as e:
            ctx.problems.append(f"cannot restore {st.resolv_path}: {e}")


DNS = Step("dns", _set_dns, _revert_dns, when=_wants_dns)
