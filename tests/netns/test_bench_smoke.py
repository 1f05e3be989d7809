"""CI's smoke check of scripts/bench: every mode comes up and moves data. Never a timed test."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys

import pytest

from tests.support.wgpair import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]

MODES = {"raw", "wggo-wggo", "wggo2022-wggo2022", "ns-wggo", "ns-ns"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One `scripts/bench --quick` run: its stdout and its JSON."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "bench"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout, json.loads(out.read_text())


def test_bench_quick_runs_every_mode(bench):
    _stdout, result = bench
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == MODES, rows
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
        assert row["ratio"]["tcp_up_mbps"] and row["ratio"]["tcp_up_mbps"] > 0, (mode, row)


def test_bench_anchor_is_the_backports_build_and_both_versions_are_named(bench):
    stdout, result = bench
    anchor, old = result["wireguard-go"]["anchor"], result["wireguard-go"]["2022"]
    assert "error" not in anchor, anchor
    assert anchor["suite"].endswith("-backports"), anchor
    # Not the machine's own binary, and a newer package than it.
    assert anchor["path"] != old["path"], (anchor, old)
    newer = subprocess.run(["dpkg", "--compare-versions", anchor["package"], "gt", old["package"]])
    assert newer.returncode == 0, (anchor, old)
    # The anchor's row is the reference; the engine serving it runs the backports binary.
    rows = {r["mode"]: r for r in result["rows"]}
    assert result["reference"] == "wggo-wggo"
    assert rows["wggo-wggo"]["ratio"]["tcp_up_mbps"] == 1.0
    assert rows["wggo-wggo"]["engine_exe"] == [anchor["path"]] * 2, rows["wggo-wggo"]
    assert rows["ns-wggo"]["engine_exe"][1] == anchor["path"], rows["ns-wggo"]
    assert rows["wggo2022-wggo2022"]["engine_exe"] == [old["path"]] * 2, rows["wggo2022-wggo2022"]
    # A reader of the output sees both package versions.
    assert anchor["package"] in stdout and old["package"] in stdout, stdout


def _fetch_module():
    loader = importlib.machinery.SourceFileLoader("fetch_wg", str(REPO / "scripts" / "fetch-wireguard-go"))
    spec = importlib.util.spec_from_loader("fetch_wg", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("fmt", ["one-line", "deb822"])
def test_fetch_finds_the_machines_own_mirror(tmp_path, fmt):
    """The backports suite is fetched from the mirror the machine already uses for its
    release, in either apt sources format; security and disabled entries are passed over."""
    fetch = _fetch_module()
    (tmp_path / "sources.list.d").mkdir()
    if fmt == "one-line":
        (tmp_path / "sources.list").write_text(
            "# deb http://wrong.example/debian bookworm main\n"
            "deb http://security.example/debian-security bookworm-security main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n")
    else:
        (tmp_path / "sources.list.d" / "debian.sources").write_text(
            "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nComponents: main\n"
            "Enabled: no\n\n"
            "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main\nSigned-By: /k.gpg\n")
    assert fetch.machine_mirror("bookworm", str(tmp_path)) == ("http://mirror.example/debian", "/k.gpg")
    with pytest.raises(fetch.FetchError):
        fetch.machine_mirror("trixie", str(tmp_path))
