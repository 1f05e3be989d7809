"""Host side of the VM tier: boot the distribution kernel once and run tests/vm/guest/ in it.

Why one boot per session: a TCG boot plus the guest's Python start costs a minute or
more, so every guest test shares one VM; the host-side tests only read its JUnit report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.junit import parse_junit

REPO = Path(__file__).resolve().parents[2]
VM_RUN = REPO / "scripts" / "vm-run"
EXIT_NO_QEMU = 77


@dataclass
class GuestRun:
    """The outcome of one guest pytest session: status, output and per-test outcomes."""

    returncode: int
    output: str
    seconds: float
    outcomes: dict[str, str] = field(default_factory=dict)  # "file::test" -> passed/failed/...

    def tail(self, n: int = 80) -> str:
        return "\n".join(self.output.splitlines()[-n:])


def venv_for_vm() -> str:
    """NSROUTE_VENV, else VENV (what scripts/setup and scripts/test use), else this venv.

    Why not fall back to the dev venv: the guest must run the same packages as this run.
    """
    return os.environ.get("NSROUTE_VENV") or os.environ.get("VENV") or sys.prefix


@pytest.fixture(scope="session")
def guest_run(tmp_path_factory) -> GuestRun:
    """Run `pytest tests/vm/guest` inside the VM; skip only when qemu cannot run here at all."""
    if os.environ.get("NSROUTE_VM") == "1":
        pytest.skip("already inside the VM")
    reports = tmp_path_factory.mktemp("vm-reports")
    junit = reports / "guest.xml"
    selection = os.environ.get("NSROUTE_VM_TESTS", "tests/vm/guest").split()
    # every guest test in one boot: hot-plug, revive (USB NIC, radio), readiness, Wi-Fi, kernel
    # backend -- more than vm-run's default 18 min under TCG on this 2-core machine
    limit = os.environ.get("NSROUTE_VM_TIMEOUT", "3000")
    cmd = [
        sys.executable, str(VM_RUN), "--venv", venv_for_vm(), "--timeout", limit,
        "--rwdir", str(reports), "--",
        "python", "-m", "pytest", *selection, "-p", "no:cacheprovider", "-v",
        "--junitxml", str(junit), "-o", "junit_family=xunit2",
    ]  # fmt: skip
    start = time.monotonic()
    p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = GuestRun(p.returncode, p.stdout, time.monotonic() - start, parse_junit(junit))
    sys.stderr.write(f"\n[vm tier] guest session: exit {p.returncode} in {run.seconds:.0f}s\n")
    if p.returncode == EXIT_NO_QEMU:
        pytest.skip(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "qemu cannot run")
    return run
