"""Fixtures for tests that run inside the VM tier's guest (booted by scripts/vm-run).

Why a separate directory: these tests need the distribution kernel's modules (wireguard,
mac80211_hwsim), which the host does not have. scripts/vm-run sets NSROUTE_VM=1 in the
guest; everywhere else every test here is skipped, and tests/vm/test_vm_smoke.py runs
this whole directory in one boot. The namespace tier's `lab` fixture (tests/conftest.py)
works here unchanged: the guest runs as root with its own writable /etc, /run and /tmp.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.guest import mark_guest_only, sh  # noqa: F401 (sh: for the tests here)

IN_VM = os.environ.get("NSROUTE_VM") == "1"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    mark_guest_only(items, HERE, IN_VM, "runs only inside the VM guest (scripts/vm-run sets NSROUTE_VM=1)")


def modprobe(module: str, *params: str) -> None:
    """Load a module of the distribution kernel (none of them are built in)."""
    sh("modprobe", module, *params)


def module_loaded(module: str) -> bool:
    return Path(f"/sys/module/{module}").exists()


def phys() -> set[str]:
    """Wireless phys visible in the current network namespace (via sysfs in the guest root)."""
    d = Path("/sys/class/ieee80211")
    return {p.name for p in d.iterdir()} if d.exists() else set()


@pytest.fixture(scope="session")
def kernel_modules() -> None:
    """tun, veth and wireguard, loaded once per guest session."""
    for m in ("tun", "veth", "wireguard"):
        modprobe(m)


@pytest.fixture
def hwsim():
    """Two fresh mac80211_hwsim radios; yields their phy names; unloads the module after.

    Why reload: radios= is a load-time parameter, and a test that moved a phy into a
    namespace must not leak it into the next test.
    """
    if module_loaded("mac80211_hwsim"):
        sh("rmmod", "mac80211_hwsim")
    modprobe("mac80211_hwsim", "radios=2")
    deadline = time.monotonic() + 10
    while len(phys()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    names = sorted(phys())
    try:
        yield names
    finally:
        sh("rmmod", "mac80211_hwsim", check=False)
