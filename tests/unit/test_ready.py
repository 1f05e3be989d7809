"""`up`'s wait for readiness: polls status's checks with an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from nsroute import config as wgconfig
from nsroute.host import health, ready
from nsroute.host.state import State

from .test_status_health import _info


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        assert s > 0
        self.sleeps.append(s)
        self.t += s


PROBLEM = {"kind": "no-handshake", "message": "no handshake with peer abc… yet"}


def test_returns_as_soon_as_the_checks_pass():
    clock = FakeClock()
    answers = iter([[PROBLEM], [PROBLEM], []])
    assert ready.poll(lambda: next(answers), 20, clock, clock.sleep) == []
    assert clock.t == 101.0  # two half-second naps, not the 20 s


def test_gives_up_at_the_deadline_with_what_is_still_wrong():
    clock = FakeClock()
    assert ready.poll(lambda: [PROBLEM], 3.2, clock, clock.sleep) == [PROBLEM]
    assert clock.t == 103.2 and clock.sleep and max(clock.sleeps) <= ready.POLL


def test_not_ready_names_each_condition_as_status_check_does():
    info = _info(physical_default_routes=[], peers=[{"public_key": "A" * 44, "latest_handshake_ago": None}])
    info["interfaces"][0].update(global_addresses=[], addresses=[], dhcp_pid=4242)
    found = health.traffic_problems(info)
    assert [f["kind"] for f in found] == ["no-handshake", "uplink-no-address", "no-default-route"]
    err = ready.NotReady(20, found)
    assert err.exit_code == ready.EXIT_NOT_READY == 3
    lines = str(err).splitlines()
    assert "not ready after 20 s" in lines[0] and "kill switch stays in place" in lines[0]
    assert lines[1:] == [f"problem: {f['kind']}: {f['message']}" for f in found]
    assert "no DHCP lease yet" in lines[2] and "eth0" in lines[2]


def test_leaks_and_the_guard_are_reported_by_status_but_not_waited_for():
    info = _info(guard={"running": False, "block": True, "moved": [], "errors": []},
                 protected_links=[{"name": "usb0", "leak": "a hardware network device"}])
    assert health.traffic_problems(info) == []
    assert sorted(f["kind"] for f in health.assess(info)[0]) == ["guard-not-running", "leak-capable-device"]


def test_await_ready_kicks_silent_peers_then_waits(monkeypatch, tmp_path):
    conf = tmp_path / "wg0.conf"
    k = "hY8bH7aQ2n1Jx2l6m0Yh3mB0Yl8b9bF1p7k6r5s4t3U="
    conf.write_text(f"[Interface]\nPrivateKey = {k}\n\n"
                    "[Peer]\nPublicKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAllowedIPs = 0.0.0.0/0\n"
                    "Endpoint = 192.0.2.1:51820\n\n"
                    "[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.1.0.0/16\n"
                    "Endpoint = 192.0.2.2:51820\nPersistentKeepalive = 25\n\n"
                    "[Peer]\nPublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\nAllowedIPs = 10.2.0.0/16\n")
    cfg = wgconfig.load(str(conf))
    sent: list[tuple[bytes, int]] = []
    monkeypatch.setattr(ready, "_uapi_keepalive", lambda ifname, key, s: sent.append((key, s)))
    st = State(mode="host", physical="physical", config_path=str(conf), ifname="wg0", backend="userspace")
    clock, said = FakeClock(), []
    answers = iter([[PROBLEM], []])
    ready.await_ready(st, cfg, 20, said.append, clock, clock.sleep, probe=lambda: next(answers))
    # only the peer that would stay silent: keepalive on (sends one at once), then off again
    assert sent == [(cfg.peers[0].public_key, ready.KICK_INTERVAL), (cfg.peers[0].public_key, 0)]
    assert said[-1].startswith("ready after 0.5 s")


def test_a_kick_that_fails_is_a_warning_and_the_checks_decide(monkeypatch, tmp_path):
    conf = tmp_path / "wg0.conf"
    conf.write_text("[Interface]\nPrivateKey = hY8bH7aQ2n1Jx2l6m0Yh3mB0Yl8b9bF1p7k6r5s4t3U=\n\n"
                    "[Peer]\nPublicKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAllowedIPs = 0.0.0.0/0\n"
                    "Endpoint = 192.0.2.1:51820\n")
    cfg = wgconfig.load(str(conf))

    def refuse(ifname, key, seconds):
        raise ready.HostError("cannot reach the engine of wg0 to start the handshake: gone")
    monkeypatch.setattr(ready, "_uapi_keepalive", refuse)
    st = State(mode="host", physical="physical", config_path=str(conf), ifname="wg0", backend="userspace")
    clock, said = FakeClock(), []
    gone = {"kind": "engine-not-running", "message": "the engine is not running: nothing passes"}
    with pytest.raises(ready.NotReady) as err:
        ready.await_ready(st, cfg, 2, said.append, clock, clock.sleep, probe=lambda: [gone])
    assert said[0].startswith("warning: cannot reach the engine")
    assert err.value.problems == [gone] and "problem: engine-not-running: " in str(err.value)
