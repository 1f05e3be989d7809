"""The step framework: `up` records each step, and the way back undoes exactly what was touched."""

from __future__ import annotations

import pytest

from nsroute.host import plan, steps
from nsroute.host.errors import HostError
from nsroute.host.state import State, Store, state_key
from nsroute.host.steps import Ctx, Step


def _ctx(tmp_path) -> Ctx:
    st = State(mode="host", physical="p", config_path="/x/wg0.conf", ifname="wg0")
    return Ctx(st, Store(state_key("p"), tmp_path))


def _steps(log: list[str], fail: str = "", skip: str = "") -> list[Step]:
    def make(name: str, stop: bool = False) -> Step:
        def do(ctx: Ctx) -> None:
            log.append(f"do {name}")
            assert ctx.store.load().doing == name  # on disk before the change starts
            if name == fail:
                raise HostError(f"{name} failed")

        return Step(name, do, lambda ctx: log.append(f"undo {name}"), when=lambda ctx: name != skip,
                    stop=(lambda ctx: log.append(f"stop {name}")) if stop else None)

    return [make("a"), make("b", stop=True), make("c"), make("d")]


def test_run_records_each_step_and_undo_reverses_them(tmp_path):
    log: list[str] = []
    ctx = _ctx(tmp_path)
    steps.run(_steps(log, skip="c"), ctx)
    back = ctx.store.load()
    assert back.steps == ["a", "b", "d"] and back.doing == ""
    log.clear()
    steps.undo(_steps(log), Ctx(back, ctx.store))
    assert log == ["stop b", "undo d", "undo b", "undo a"]


def test_a_failed_step_is_undone_with_those_before_it(tmp_path):
    log: list[str] = []
    ctx = _ctx(tmp_path)
    with pytest.raises(HostError):
        steps.run(_steps(log, fail="c"), ctx)
    back = ctx.store.load()
    assert back.steps == ["a", "b"] and back.doing == "c"
    log.clear()
    steps.undo(_steps(log), Ctx(back, ctx.store))
    assert log == ["stop b", "undo c", "undo b", "undo a"]


def test_a_state_without_doing_is_undone_whole(tmp_path):
    """Files of the version before `doing` existed: every undo runs (each tolerates it)."""
    log: list[str] = []
    ctx = _ctx(tmp_path)
    ctx.st.steps = ["a"]
    ctx.store.path.parent.mkdir(exist_ok=True)
    raw = ctx.st.to_json().replace('"doing": null,', "")
    ctx.store.path.write_text(raw)
    back = ctx.store.load()
    assert back.doing is None
    steps.undo(_steps(log), Ctx(back, ctx.store))
    assert log == ["stop b", "undo d", "undo c", "undo b", "undo a"]


def test_a_failing_undo_is_a_problem_and_the_rest_still_run(tmp_path):
    log: list[str] = []
    ctx = _ctx(tmp_path)
    ctx.st.steps, ctx.st.doing = ["a", "b"], ""

    def broken(ctx: Ctx) -> None:
        raise RuntimeError("boom")

    steps.undo([Step("a", steps.nothing, lambda c: log.append("undo a")), Step("b", steps.nothing, broken)], ctx)
    assert log == ["undo a"] and ctx.problems == ["undoing b: RuntimeError('boom')"]


def test_the_plan_has_a_step_per_radio_and_interface():
    st = State(mode="host", physical="p", config_path="/x/wg0.conf", ifname="wg0",
               interfaces=[{"name": "eth0"}, {"name": "wlan0", "dynamic": True}],
               wiphys=[{"phy": "phy0", "index": 0, "ifaces": ["wlan0"]}], wpa_original=[["wpa_supplicant"]])
    names = [s.name for s in plan.for_state(st)]
    assert names == ["prepare", "netns", "etc-netns", "block", "guard", "wpa-stopped", "nm-released",
                     "moved-phy:phy0", "moved:eth0", "restored:eth0", "restored:wlan0", "nm-physical", "dhcp:eth0",
                     "dhcp:wlan0", "wpa:1", "preup", "engine", "tunnel", "dns", "postup", "complete"]
    assert len(names) == len(set(names))
    st.backend = "kernel"
    assert "kernel-created" in [s.name for s in plan.for_state(st)]
