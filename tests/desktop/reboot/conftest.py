"""Tests that run inside the desktop VM after it rebooted with an nsroute unit enabled.

tests/desktop/test_desktop_reboot.py boots a copy of the image several times (scripts/
desktop-run --persistent --lan): `python3 -m tests.desktop.reboot.lan prepare BACKEND`
sets the machine up, the next boot runs the tests here. Outside the VM they are skipped
(and tests/conftest.py does not collect them on the host).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.guest import mark_guest_only

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    inside = os.environ.get("NSROUTE_DESKTOP") == "1"
    mark_guest_only(items, HERE, inside, "runs only inside the rebooted desktop VM")


# What the system looked like when a check failed (the journal at the end of the boot comes
# after `systemctl stop`, which removes nsroute's run files): into the boot's log.
DIAGNOSE = ("journalctl -b --no-pager -o short-monotonic -u 'nsroute*' -u NetworkManager.service -u wpa_supplicant.service | tail -80; "
            "ip -o link; ip -n physical -o addr; ip -n physical route; nmcli device; nsroute status; "
            "ip netns exec physical iw dev; iw dev; ip netns exec lan iw dev; "
            "dmesg | grep nsr-lan-other | tail -20; "
            'for f in /run/nsroute/*.dhcp-*.log; do echo "== $f"; cat "$f"; done')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    out = os.environ.get("NSROUTE_DESKTOP_OUT")
    if report.failed and out:
        backend = os.environ.get("NSROUTE_REBOOT_BACKEND", "userspace")
        p = subprocess.run(["sh", "-c", DIAGNOSE], capture_output=True, text=True, timeout=120)
        with open(Path(out) / f"{backend}.log", "a") as f:
            f.write(f"==== {item.name} failed ({report.when}); the system then:\n{p.stdout}{p.stderr}\n")
