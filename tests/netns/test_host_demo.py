"""`nsroute demo` runs to the end and leaves nothing behind."""

from __future__ import annotations

import subprocess

import pytest

from nsroute.host.selfcmd import nsroute_argv

pytestmark = pytest.mark.root


def _demo_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.startswith("nsrdemo-")}


def test_demo_runs_to_the_end(tmp_path):
    before = _demo_namespaces()
    p = subprocess.run([*nsroute_argv(), "demo"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "FAILED" not in p.stdout
    assert "the router saw 0 packets from the laptop" in p.stdout
    assert "the laptop is exactly as before" in p.stdout
    assert _demo_namespaces() == before
