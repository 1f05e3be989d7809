"""NSROUTE_LINGER_MS: how long the engine keeps napping after traffic (loop.linger_seconds)."""

from __future__ import annotations

import pytest

from nsroute.engine import loop


@pytest.mark.parametrize("raw, want", [
    ("", 0.05), ("0", 0.0), ("20", 0.02), ("10000", 10.0), ("1.5", 0.0015),
    ("-1", 0.05), ("10001", 0.05), ("nan", 0.05), ("inf", 0.05), ("soon", 0.05),
])
def test_linger_knob(monkeypatch, caplog, raw, want):
    monkeypatch.setenv("NSROUTE_LINGER_MS", raw)
    assert loop.linger_seconds() == pytest.approx(want)
    refused = "ignored" in caplog.text
    assert refused == (raw not in ("", "0", "20", "10000", "1.5")), caplog.text
