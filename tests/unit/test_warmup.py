"""The start-up warm-up: a real handshake on scratch devices that can never stop the engine."""

from __future__ import annotations

import logging

from nsroute.engine import daemon
from nsroute.wireguard import warmup


def test_the_scratch_handshake_carries_a_packet_each_way():
    assert warmup.warm_up(100.0) is True
    assert warmup.warm_up(200.0) is True  # fresh keys and devices each time


def test_a_failing_warm_up_is_logged_and_the_engine_carries_on(monkeypatch, caplog):
    def broken(now: float) -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(daemon, "warm_up", broken)
    with caplog.at_level(logging.WARNING, logger="nsroute.engine"):
        daemon._warm_up()  # must not raise
    assert "warm-up handshake failed" in caplog.text

    monkeypatch.setattr(daemon, "warm_up", lambda now: False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nsroute.engine"):
        daemon._warm_up()
    assert "did not deliver" in caplog.text
