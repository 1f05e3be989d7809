"""Fixtures for tests that run inside the desktop VM (booted by scripts/desktop-run).

The guest is a Debian bookworm system booted by systemd, with D-Bus, NetworkManager and
systemd-resolved running; its job runner sets NSROUTE_DESKTOP=1. Outside it every test
here is skipped (and tests/conftest.py does not even collect them on the host).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.guest import mark_guest_only, sh  # noqa: F401 (sh: for the tests here)

IN_DESKTOP = os.environ.get("NSROUTE_DESKTOP") == "1"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    mark_guest_only(items, HERE, IN_DESKTOP, "runs only inside the desktop VM (NSROUTE_DESKTOP=1)")

from .desk import desk, unit  # noqa: E402,F401 (the NetworkManager site and the unit on it, for the scenarios)
