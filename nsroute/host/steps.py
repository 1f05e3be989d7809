"""`up` as an ordered list of steps, each with its undo; `down` is the same list reversed.

A Step names one change to the system. `run` does the steps in order and records each in
the state file: its name as `doing` before it starts (so that a kill half-way through it
is undone too) and in `steps` once it is done, where the fault-injection hook
(NSROUTE_FAULT_AFTER_STEP) may kill the process. `undo` walks the same list backwards and
undoes what the state records as done or begun: it serves `down`, the rollback of a failed
`up` and the clean-up after a crash alike. Every undo tolerates a change that was made
only in part, or not at all, and never raises: a failure is a problem (the state file is
kept) or a warning.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import HostError
from .state import State, Store

if TYPE_CHECKING:
    from .. import config as wgconfig


@dataclass
class Ctx:
    """What every step sees: the state it records into, and (going forward) the config."""

    st: State
    store: Store
    cfg: wgconfig.Config | None = None  # None when undoing: the file may be gone by then
    problems: list[str] = field(default_factory=list)  # keep the state: `down` again
    warnings: list[str] = field(default_factory=list)

    @property
    def config(self) -> wgconfig.Config:
        assert self.cfg is not None, "a forward step needs the config"
        return self.cfg


def nothing(ctx: Ctx) -> None:
    """The undo of a step whose change goes away with another step's undo."""


def always(ctx: Ctx) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One change: `do` makes it, `undo` reverts it; `when` (a pure function of the state
    and config) skips it; `stop` ends a process that would react to the other undos, so
    it runs before any of them."""

    name: str
    do: Callable[[Ctx], None]
    undo: Callable[[Ctx], None] = nothing
    when: Callable[[Ctx], bool] = always
    stop: Callable[[Ctx], None] | None = None


def say(msg: str) -> None:
    print(f"[#] {msg}", file=sys.stderr)


def planned(steps: Iterable[Step], ctx: Ctx) -> list[str]:
    """The names `run` records for these steps, in order (what a full `up` leaves in the state)."""
    return [s.name for s in steps if s.when(ctx)]


def run(steps: Iterable[Step], ctx: Ctx) -> None:
    """Do each step in order, recording it before and after; the first failure propagates
    (the caller decides whether to roll back)."""
    st, store = ctx.st, ctx.store
    for s in steps:
        if not s.when(ctx):
            continue
        st.doing = s.name
        store.save(st)
        s.do(ctx)
        st.doing = ""
        store.mark(st, s.name)


def touched(s: Step, st: State) -> bool:
    """Done, or begun and perhaps half-made. A state written before `doing` was recorded
    says neither: every step is undone then (each undo tolerates a change never made)."""
    return st.doing is None or s.name == st.doing or st.done(s.name)


def undo(steps: list[Step], ctx: Ctx, everything: bool = False) -> None:
    """Undo the touched steps (all of them with `everything`) in reverse: first every
    `stop`, then every `undo`. Failures land in ctx.problems, never as exceptions."""
    todo = [s for s in reversed(steps) if everything or touched(s, ctx.st)]
    for s in todo:
        if s.stop is not None:
            _guarded(s, s.stop, ctx)
    for s in todo:
        _guarded(s, s.undo, ctx)


def _guarded(s: Step, fn: Callable[[Ctx], None], ctx: Ctx) -> None:
    try:
        fn(ctx)
    except HostError as e:
        ctx.problems.append(str(e))
    except Exception as e:  # one broken undo must not keep the others from running
        ctx.problems.append(f"undoing {s.name}: {e!r}")
