"""The plan of `up`: which steps, in which order, for a deployment's state.

The plan is a function of the state file alone (interfaces, radios, backend, mode), so
that `down` rebuilds the very list `up` ran, even when the config file is gone; adding a
step to `up` is adding it here. Conditions that need the config (`when`) are only asked
going forward.
"""

from __future__ import annotations

import shutil

from .. import config as wgconfig
from .. import fsmode
from . import block, dns, hooks, hotplug, kernel, netns, resolved, tunnelsteps, uplinks
from .state import State, Store
from .steps import Ctx, Step, planned, say

# ------------------------------------------------------------ the namespace


def _create_netns(ctx: Ctx) -> None:
    say(f"ip netns add {ctx.st.physical}")
    ctx.st.netns_created = True  # before the change (read by state files of older versions)
    ctx.store.save(ctx.st)
    netns.create(ctx.st.physical)


def _delete_netns(ctx: Ctx) -> None:
    st = ctx.st
    if not (st.netns_created and netns.exists(st.physical)):
        return
    left = [ln["ifname"] for ln in kernel.links(st.physical) if ln["ifname"] != "lo"]
    if any(n in [s["name"] for s in st.interfaces] for n in left):
        ctx.problems.append(f"interfaces {', '.join(left)} are still in '{st.physical}'")
    else:
        netns.delete(st.physical)


def _physical_etc(ctx: Ctx) -> None:
    """resolv.conf (and nsswitch.conf) that programs run in `physical` read."""
    etc = ctx.st.etc_netns()
    assert etc is not None
    ctx.st.etc_netns_created = not etc.exists()
    ctx.store.save(ctx.st)
    fsmode.make_dirs(etc, 0o755)  # programs run by `exec` as any user read resolv.conf here
    dns.write_in_place(str(etc / "resolv.conf"), dns.physical_side(dns.read()))
    if ctx.st.etc_netns_created:  # removed with the directory
        resolved.write_physical_nsswitch(etc)


def _container_etc(ctx: Ctx) -> None:
    etc = ctx.st.etc_netns()
    if etc is not None and not etc.exists():
        ctx.st.etc_netns_created = True
        ctx.store.save(ctx.st)
        fsmode.make_dirs(etc, 0o755)


def _remove_etc(ctx: Ctx) -> None:
    etc = ctx.st.etc_netns()
    if ctx.st.etc_netns_created and etc is not None:
        shutil.rmtree(etc, ignore_errors=True)


# ---------------------------------------------------------------- the guard


def _install_block(ctx: Ctx) -> None:
    """Before anything moves: the block table, then the guard (both stay until `down`)."""
    ctx.st.guard_block = True  # before the change: its undo removes it
    ctx.store.save(ctx.st)
    if ctx.st.complete and block.present(None):
        return  # a resumed deployment whose guard died: the table held meanwhile
    if block.install(None):
        say("nft: hot-plug block table in this namespace (IP through physical devices dropped)")
    else:
        say("warning: nft not found: no in-kernel block; the guard alone moves new devices out")


def _remove_block(ctx: Ctx) -> None:
    if ctx.st.guard_block:
        block.remove(None)


def _start_guard(ctx: Ctx) -> None:
    st, store = ctx.st, ctx.store
    st.guard = hotplug.start(st.physical, store.dir, store.path.stem)
    say(f"hot-plug guard (pid {st.guard.pid}): new devices here move to {st.physical}")


def _stop_guard(ctx: Ctx) -> None:
    """First of all: a running guard would move back what `down` returns; then the
    daemons in `physical` (some the guard may have started but not recorded)."""
    store = ctx.store
    hotplug.stop(ctx.st.guard, hotplug.record_path(store.dir, store.path.stem), ctx.st.physical,
                 hotplug.marker(store.dir, store.path.stem))


def _hand_back(ctx: Ctx) -> None:
    st, store = ctx.st, ctx.store
    if netns.exists(st.physical):
        hotplug.hand_back(hotplug.record_path(store.dir, store.path.stem), st.physical, ctx.warnings.append)


BLOCK = Step("block", _install_block, _remove_block)
GUARD = Step("guard", _start_guard, _hand_back, stop=_stop_guard)


# ------------------------------------------------------------- hooks, the end


def _hook(kind: str, label: str) -> Step:
    def do(ctx: Ctx) -> None:
        hooks.run(label, ctx.config.interface.hooks[kind], ctx.config.name)

    return Step(kind, do)  # PreDown and PostDown wrap the whole way back instead


def _up_lo(ctx: Ctx) -> None:
    lo = kernel.link(ctx.st.into, "lo")
    if lo is not None and not lo["up"]:
        kernel.set_link(ctx.st.into, "lo", up=True)


def _complete(ctx: Ctx) -> None:
    ctx.st.complete = True


PREPARE = Step("prepare", lambda ctx: None)  # the snapshot is on disk: from here, `down` can undo
NETNS = Step("netns", _create_netns, _delete_netns)
PHYSICAL_ETC = Step("etc-netns", _physical_etc, _remove_etc)
CONTAINER_ETC = Step("etc-netns", _container_etc, _remove_etc, when=lambda ctx: ctx.st.etc_netns() is not None)
PREUP = _hook("preup", "PreUp")
POSTUP = _hook("postup", "PostUp")
LO = Step("lo", _up_lo)
COMPLETE = Step("complete", _complete)


def host(st: State) -> list[Step]:
    """The whole host: `physical` first, the guard before anything moves, the tunnel last."""
    return [PREPARE, NETNS, PHYSICAL_ETC, BLOCK, GUARD, *uplinks.steps_for(st),
            PREUP, *tunnelsteps.steps_for(st), tunnelsteps.DNS, POSTUP, COMPLETE]


def container(st: State) -> list[Step]:
    """`--into`: the tunnel becomes the container's only interface besides lo."""
    return [PREPARE, PREUP, LO, *tunnelsteps.steps_for(st), CONTAINER_ETC, tunnelsteps.DNS, POSTUP, COMPLETE]


def for_state(st: State) -> list[Step]:
    return host(st) if st.mode == "host" else container(st)


def step_names(st: State, cfg: wgconfig.Config) -> list[str]:
    """The steps a whole `up` records for this state and config, in order."""
    return planned(for_state(st), Ctx(st, Store("plan"), cfg))
