"""The engine's settings (engine.options): read once from the environment; a number out of
range falls back to its default with one warning line, a value with no sane default is
refused with one line."""

from __future__ import annotations

import pytest

from nsroute.engine.options import Options, OptionsError


@pytest.mark.parametrize("raw, want", [
    ("", 0.05), ("0", 0.0), ("20", 0.02), ("10000", 10.0), ("1.5", 0.0015),
    ("-1", 0.05), ("10001", 0.05), ("nan", 0.05), ("inf", 0.05), ("soon", 0.05),
])
def test_linger_knob(caplog, raw, want):
    assert Options.from_env({"NSROUTE_LINGER_MS": raw}).linger == pytest.approx(want)
    refused = "ignored" in caplog.text
    assert refused == (raw not in ("", "0", "20", "10000", "1.5")), caplog.text


def test_switches_and_their_defaults():
    assert Options.from_env({}) == Options()
    off = Options.from_env({"NSROUTE_OFFLOAD": "0", "NSROUTE_TUN_GRO": "0", "NSROUTE_TUN_USO": "0",
                            "NSROUTE_NAP_WARM": "0", "NSROUTE_TUN_TSO": "1",
                            "NSROUTE_TUN_OFFLOAD_FLAGS": "0x7", "NSROUTE_RUN_DIR": "/tmp/x"})
    assert off == Options(offload=False, tun_gro=False, tun_uso=False, nap_warm=False,
                          tun_tso=True, tun_offload_flags=7, run_dir="/tmp/x")


def test_offload_flags_that_are_not_a_number_are_refused_in_one_line():
    with pytest.raises(OptionsError) as e:
        Options.from_env({"NSROUTE_TUN_OFFLOAD_FLAGS": "lots"})
    assert e.value.strerror == "NSROUTE_TUN_OFFLOAD_FLAGS='lots' is not an integer"
