"""Tests that run inside the desktop VM after it rebooted with an nsroute unit enabled.

tests/desktop/test_desktop_reboot.py boots a copy of the image several times (scripts/
desktop-run --persistent --lan): `python3 -m tests.desktop.reboot.lan prepare BACKEND`
sets the machine up, the next boot runs the tests here. Outside the VM they are skipped
(and tests/conftest.py does not collect them on the host).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.guest import mark_guest_only

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    inside = os.environ.get("NSROUTE_DESKTOP") == "1"
    mark_guest_only(items, HERE, inside, "runs only inside the rebooted desktop VM")
