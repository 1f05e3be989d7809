"""Fixtures for tests that run inside the desktop VM (booted by scripts/desktop-run).

The guest is a Debian bookworm system booted by systemd, with D-Bus, NetworkManager and
systemd-resolved running; its job runner sets NSROUTE_DESKTOP=1. Outside it every test
here is skipped (and tests/conftest.py does not even collect them on the host).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.guest import mark_guest_only, sh  # noqa: F401 (sh: for the tests here)

IN_DESKTOP = os.environ.get("NSROUTE_DESKTOP") == "1"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    mark_guest_only(items, HERE, IN_DESKTOP, "runs only inside the desktop VM (NSROUTE_DESKTOP=1)")

from .desk import ETH, desk  # noqa: E402,F401 (desk: the NetworkManager site, for every scenario that needs it)

UNIT = "nsroute@wg0.service"
CONF = Path("/etc/nsroute/wg0.conf")
DROPIN = Path(f"/run/systemd/system/{UNIT}.d/50-test-interfaces.conf")


@pytest.fixture
def unit(desk):  # noqa: F811 (the fixture imported above)
    """`nsroute@wg0` on the NetworkManager site, told which uplinks to take (eth5 is a veth,
    which `up` leaves alone unless named)."""
    CONF.parent.mkdir(mode=0o755, exist_ok=True)
    shutil.copyfile(desk["conf"], CONF)
    CONF.chmod(0o600)
    DROPIN.parent.mkdir(parents=True, exist_ok=True)
    DROPIN.write_text("[Service]\nExecStart=\nExecStart=/usr/bin/nsroute up %i --backend userspace "
                      f"--wait 0 --interface {ETH} --interface {desk['wlan']}\n")
    sh("systemctl", "daemon-reload")
    try:
        yield desk
    finally:
        subprocess.run(["systemctl", "stop", UNIT], capture_output=True, timeout=120)
        shutil.rmtree(DROPIN.parent, ignore_errors=True)
        subprocess.run(["systemctl", "daemon-reload"], check=False)
        subprocess.run(["systemctl", "reset-failed", UNIT], capture_output=True)
        CONF.unlink(missing_ok=True)
