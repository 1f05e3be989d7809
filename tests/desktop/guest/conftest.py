"""Fixtures for tests that run inside the desktop VM (booted by scripts/desktop-run).

The guest is a Debian bookworm system booted by systemd, with D-Bus, NetworkManager and
systemd-resolved running; its job runner sets NSROUTE_DESKTOP=1. Outside it every test
here is skipped (and tests/conftest.py does not even collect them on the host).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

IN_DESKTOP = os.environ.get("NSROUTE_DESKTOP") == "1"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="runs only inside the desktop VM (NSROUTE_DESKTOP=1)")
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.vm)
            if not IN_DESKTOP:
                item.add_marker(skip)


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command, text output; raise with its output on failure."""
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p
