"""The VM tier runs for real: the guest session passed and its smoke tests were not skipped.

Why check names and not only the exit status: a guest test that skipped (module missing,
env var not set) exits 0 too, and would turn the tier green without testing anything.
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.vm

MUST_PASS = [
    "test_kernel_basics::test_running_distribution_kernel",
    "test_kernel_basics::test_guest_has_no_real_network_device",
    "test_kernel_basics::test_project_venv_and_repo",
    "test_kernel_basics::test_modprobe_wireguard",
    "test_kernel_basics::test_wireguard_link_in_fresh_netns",
    "test_kernel_basics::test_kernel_wireguard_pair_pings",
    "test_kernel_basics::test_tun_in_fresh_netns",
    "test_kernel_basics::test_hwsim_two_radios",
    "test_kernel_backend::test_kernel_backend_up_killswitch_resume_down",
    "test_kernel_backend::test_kernel_backend_into_container_and_crash_before_move",
    "test_kernel_interop::test_kernel_interop[nsroute]",
    "test_kernel_interop::test_kernel_interop[kernel]",
    "test_offload_kernel::test_uso_writes_or_their_fallback",
    "test_kernel_interop::test_nsroute_follows_roaming_kernel_peer",
    "test_wifi::test_wifi_moves_to_physical_and_back",
    "test_hotplug::test_new_uplinks_move_out_and_nothing_leaks[userspace]",
    "test_hotplug::test_new_uplinks_move_out_and_nothing_leaks[kernel]",
    "test_revive::test_usb_uplink_on_dhcp_comes_back[userspace]",
    "test_revive::test_usb_uplink_on_dhcp_comes_back[kernel]",
    "test_revive::test_wifi_uplink_reassociates_after_a_driver_reset[userspace]",
    "test_revive::test_wifi_uplink_reassociates_after_a_driver_reset[kernel]",
    "test_revive::test_wifi_uplink_comes_back_after_rfkill[userspace]",
    "test_revive::test_wifi_uplink_comes_back_after_rfkill[kernel]",
]


def test_guest_session_passed(guest_run):
    assert guest_run.returncode == 0, (
        f"guest pytest exited {guest_run.returncode}:\n{guest_run.tail()}"
    )


@pytest.mark.parametrize("name", MUST_PASS)
def test_guest_smoke_ran(guest_run, name):
    if os.environ.get("NSROUTE_VM_TESTS"):
        pytest.skip("NSROUTE_VM_TESTS chose another guest selection")
    outcome = guest_run.outcomes.get(name, "missing")
    assert outcome == "passed", f"{name}: {outcome}\n{guest_run.tail(40)}"


def test_no_guest_test_failed(guest_run):
    bad = {k: v for k, v in guest_run.outcomes.items() if v == "failed"}
    assert guest_run.outcomes and not bad, f"{bad}\n{guest_run.tail()}"
