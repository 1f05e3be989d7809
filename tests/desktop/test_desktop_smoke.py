"""The desktop tier runs for real: the guest session passed, and its tests were not skipped.

Why names and not only the exit status: a guest test that skipped exits 0 too, and would
turn the tier green without testing anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import UNIT_BACKENDS

pytestmark = pytest.mark.vm

# guest tests whose ids do not depend on NSROUTE_DESKTOP_BACKENDS
FIXED = [
    "test_boot::test_systemd_desktop_booted",
    "test_boot::test_kernel_modules_load",
    "test_package::test_installed_from_the_package",
    "test_package::test_units_man_pages_and_completion",
    "test_package::test_dhcp_hook_runs_from_the_package_on_a_noexec_run",
    "test_resolved::test_resolved_gets_tunnel_dns_and_exec_asks_the_lan[userspace]",
    "test_resolved::test_resolved_gets_tunnel_dns_and_exec_asks_the_lan[kernel]",
    "test_networkmanager::test_networkmanager_keeps_ethernet_and_wifi_connected[userspace]",
    "test_networkmanager::test_networkmanager_keeps_ethernet_and_wifi_connected[kernel]",
]
# the unit scenarios run once per backend named in NSROUTE_DESKTOP_BACKENDS (desk.py)
UNIT_SCENARIOS = [
    "test_nm_while_up::test_unit_under_networkmanager_renews_roams_and_reconnects",
    "test_nm_radio::test_wifi_off_and_on_under_networkmanager",
    "test_nm_hotplug::test_plugged_in_while_up_networkmanager_in_physical_connects_them",
]
MUST_PASS = FIXED + [
    f"{name}[{backend}]"
    for name in UNIT_SCENARIOS
    for backend in UNIT_BACKENDS
]


def selected(name: str) -> bool:
    """Whether NSROUTE_DESKTOP_TESTS (paths, optionally ::test) chose the module of `name`."""
    chosen = os.environ.get("NSROUTE_DESKTOP_TESTS", "tests/desktop/guest").split()
    module = name.split("::")[0]
    return any(Path(c.split("::")[0]).stem in (module, "guest") for c in chosen)


def test_desktop_session_passed(desktop_run):
    assert desktop_run.returncode == 0, (
        f"guest pytest exited {desktop_run.returncode}:\n{desktop_run.tail()}"
    )


@pytest.mark.parametrize("name", MUST_PASS)
def test_desktop_test_ran(desktop_run, name):
    if not selected(name):
        pytest.skip("NSROUTE_DESKTOP_TESTS chose other guest modules")
    outcome = desktop_run.outcomes.get(name, "missing")
    assert outcome == "passed", f"{name}: {outcome}\n{desktop_run.tail(40)}"
