"""`nsroute down`, the rollback of a failed `up`, and the clean-up after a crash: one way back.

It rebuilds `up`'s plan from the state file and undoes, in reverse, what the file says
was done or begun (nsroute/host/steps.py), between the PreDown and PostDown hooks.
"""

from __future__ import annotations

import os

from .. import config as wgconfig
from . import hooks, plan, steps
from .errors import HostError
from .reports import load_state, require_root
from .state import State, Store, run_dir, state_key
from .steps import Ctx, say


def down(config: str | None = None, physical: str = "physical", into: str | None = None) -> None:
    """Undo `up`: stop what it started, move everything back, restore what it changed."""
    require_root()
    if into is not None:
        store = _into_store(config, into)
    else:
        store = Store(state_key(physical))
        if not store.exists():
            raise HostError(f"not up: no state for physical namespace '{physical}' in {run_dir()}")
    st = load_state(store)
    problems = teardown(st, store, run_hooks=st.complete)
    if problems:
        raise HostError("; ".join(problems) + f" (state kept in {store.path}; fix and run `nsroute down` again)")


def _tunnel_name(config: str) -> str:
    """The interface name for `down`, even when the config file is gone by then."""
    base = os.path.basename(config)
    return base[:-5] if base.endswith(".conf") else base


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


def rolled_back(e: BaseException, st: State, store: Store) -> None:
    """Undo a failed `up`, then report it as one line (Ctrl-C and exit pass through)."""
    for p in teardown(st, store, run_hooks=False):
        say(f"rollback: {p}")
    if isinstance(e, HostError):
        raise HostError(f"{e} (rolled back: nothing changed)") from None
    if isinstance(e, KeyboardInterrupt | SystemExit):
        raise e
    raise HostError(f"unexpected error: {e!r} (rolled back: nothing changed)") from None


def teardown(st: State, store: Store, run_hooks: bool) -> list[str]:
    """Undo everything the state records, tolerating steps that never happened.

    Returns the problems that prevented a complete restore (then the state is kept).
    """
    ctx = Ctx(st, store)
    if run_hooks:
        ctx.warnings += hooks.run("PreDown", _hooks_of(st, "predown"), st.ifname, strict=False)
    steps.undo(plan.for_state(st), ctx)
    if run_hooks:
        ctx.warnings += hooks.run("PostDown", _hooks_of(st, "postdown"), st.ifname, strict=False)
    for w in ctx.warnings:
        say(f"warning: {w}")
    if not ctx.problems:
        store.remove_all()
    return ctx.problems


def _hooks_of(st: State, kind: str) -> list[str]:
    try:
        return wgconfig.load(st.config_path).interface.hooks[kind]
    except (wgconfig.ConfigError, ValueError):
        return []
