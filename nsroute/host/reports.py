"""`nsroute guard` and `nsroute status`: the commands that read a deployment's state."""

from __future__ import annotations

import os

from . import guardrecord, hotplug
from . import status as status_mod
from .errors import HostError
from .state import Proc, State, Store, run_dir, state_key


def require_root() -> None:
    if os.geteuid() != 0:
        raise HostError("must be run as root (it moves network interfaces)")


def load_state(store: Store) -> State:
    try:
        return store.load()
    except (OSError, ValueError, TypeError) as e:
        raise HostError(f"cannot read state {store.path}: {e}") from None


def _existing(physical: str) -> tuple[Store, State]:
    store = Store(state_key(physical))
    if not store.exists():
        raise HostError(f"not up: no state for physical namespace '{physical}' in {run_dir()}")
    return store, load_state(store)


def guard(physical: str = "physical", watch_tunnel: bool = False) -> int:
    """`nsroute guard`: serve as the hot-plug guard of the deployment in `physical`
    (with `watch_tunnel`, end when its engine or kernel link does)."""
    require_root()
    store, st = _existing(physical)

    def watch() -> tuple[Proc | None, str | None]:
        """The tunnel as the state says now: set only once `up` has started it (the
        tunnel step signals us from inside itself, before the runner records it done)."""
        now = load_state(store)
        if "tunnel" not in now.steps and now.doing != "tunnel":
            return None, None
        return (None, now.ifname) if now.backend == "kernel" else (now.engine, None)

    return hotplug.serve(physical, st.guard_baseline, store.dir, store.path.stem,
                         watch if watch_tunnel else None)


def status(physical: str = "physical", as_json: bool = False, check: bool = False) -> bool:
    """Print the state of the tunnel, the moved interfaces and each peer; True when healthy.

    `check` prints only the verdict and the problems (the JSON stays whole)."""
    store, st = _existing(physical)
    info = status_mod.gather(st, guard=guardrecord.Record.load(hotplug.record_path(store.dir, store.path.stem)))
    if as_json:
        print(status_mod.to_json(info))
    else:
        print(status_mod.render_check(info) if check else status_mod.render(info))
    return info["healthy"]
