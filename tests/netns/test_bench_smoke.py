"""CI's smoke check of scripts/bench: every mode comes up and moves data. Never a timed test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.wgpair import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_bench_quick_runs_every_mode(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "bench"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {r["mode"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"raw", "wggo-wggo", "ns-wggo", "ns-ns"}, rows
    for mode, row in rows.items():
        assert "error" not in row, (mode, row)
        for fig in ("tcp_up_mbps", "tcp_down_mbps", "tcp4_mbps", "udp_mbps", "rtt_median_ms",
                    "rtt_1ms_median_ms"):
            assert row[fig] and row[fig] > 0, (mode, fig, row)
        for fig in ("tcp_up_mbps", "tcp_down_mbps", "tcp4_mbps", "udp_mbps"):  # --quick: one run each
            assert row["runs"][fig] == [row[fig]], (mode, fig, row)
        if mode != "raw":
            assert row["handshake_ms"] and row["handshake_ms"] > 0, (mode, row)
            assert row["rss_mb"] and row["rss_mb"] > 0, (mode, row)
