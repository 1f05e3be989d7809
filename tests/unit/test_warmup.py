"""The warm-up: a real handshake on scratch devices at start-up, a packet each way through
them at each nap; neither can ever stop the engine."""

from __future__ import annotations

import logging

from nsroute.engine import daemon
from nsroute.wireguard import warmup
from nsroute.wireguard.constants import REKEY_AFTER_TIME


def test_the_scratch_session_carries_packets_each_way_again_and_again():
    s = warmup.Scratch(100.0)
    for t in (100.0, 100.001, 150.0):
        assert s.exercise(t) is True
    assert not s.stale(100.0 + REKEY_AFTER_TIME - 1)
    assert s.stale(100.0 + REKEY_AFTER_TIME)
    # nothing piles up on the scratch devices, however often they are used
    for i in range(500):
        s.exercise(160.0 + i / 1000)
    for dev in (s.a, s.b):
        assert not dev.udp_out and not dev.tun_out and not dev.drops
        assert all(not p.staged for p in dev.peers.values())


def test_fresh_keys_and_devices_each_time():
    a, b = warmup.Scratch(1.0), warmup.Scratch(1.0)
    assert a.a.public_key != b.a.public_key and a.b.public_key != b.b.public_key


class _Engine:
    def __init__(self, result) -> None:
        self.result = result

    def clock(self, real: float) -> float:
        return real

    def warm_up(self, now: float) -> bool:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_a_failing_warm_up_is_logged_and_the_engine_carries_on(caplog):
    with caplog.at_level(logging.WARNING, logger="nsroute.engine"):
        daemon._warm_up(_Engine(RuntimeError("boom")))  # must not raise
    assert "warm-up handshake failed" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nsroute.engine"):
        daemon._warm_up(_Engine(False))
    assert "did not deliver" in caplog.text


def test_a_failing_nap_pass_turns_itself_off_and_is_counted(monkeypatch):
    from collections import Counter

    from nsroute.engine.naps import Naps
    from nsroute.engine.options import Options

    errors, counters = Counter(), Counter()
    naps = Naps(Options(), errors, counters)
    naps.nap_pass(10.0)
    naps.nap_pass(10.001)
    assert counters["nap_warm_passes"] == 2 and naps.warm
    first = naps.scratch
    naps.nap_pass(10.0 + REKEY_AFTER_TIME)  # an old scratch session is replaced
    assert naps.scratch is not first and counters["nap_warm_passes"] == 3

    monkeypatch.setattr(warmup.Scratch, "exercise", lambda self, now: False)
    naps.nap_pass(200.0)
    assert not naps.warm and errors["internal_nap_warm"] == 1
    assert counters["nap_warm_passes"] == 3
