"""Host side of the desktop tier: build the image, boot it once, run tests/desktop/guest in it.

Why one boot per session: a TCG boot of a systemd desktop plus the guest's Python start
costs minutes on this machine, so every guest test shares one VM; the host-side tests
read its JUnit report (as tests/vm does).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.junit import parse_junit
from tests.vm.conftest import EXIT_NO_QEMU, GuestRun

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "scripts" / "desktop-image"
RUN = REPO / "scripts" / "desktop-run"
PACKAGE = REPO / "scripts" / "package"
# the backends the unit scenarios run with (the guest's desk.py reads the same variable);
# CI runs both, NSROUTE_DESKTOP_BACKENDS=userspace narrows a run by hand
UNIT_BACKENDS = os.environ.get("NSROUTE_DESKTOP_BACKENDS", "userspace kernel").split()


@pytest.fixture(scope="session")
def desktop_build(tmp_path_factory) -> tuple[str, str]:
    """The image (built or reused) and the nsroute package built from this tree, once for
    every boot of the tier: the guest installs nsroute from it, as a user would."""
    if os.environ.get("NSROUTE_DESKTOP") == "1":
        pytest.skip("already inside the desktop VM")
    build = subprocess.run([str(IMAGE)], cwd=REPO, capture_output=True, text=True)
    assert build.returncode == 0, f"scripts/desktop-image failed:\n{build.stderr[-3000:]}"
    dist = tmp_path_factory.mktemp("desktop-deb")
    pkg = subprocess.run([str(PACKAGE), "--out", str(dist)], cwd=REPO, capture_output=True, text=True)
    assert pkg.returncode == 0, f"scripts/package failed:\n{pkg.stderr[-3000:]}"
    return build.stdout.strip().splitlines()[-1], pkg.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def desktop_run(tmp_path_factory, desktop_build) -> GuestRun:
    """`pytest tests/desktop/guest` in the booted image; skip only when qemu cannot run here."""
    image, deb = desktop_build
    reports = tmp_path_factory.mktemp("desktop-reports")
    selection = os.environ.get("NSROUTE_DESKTOP_TESTS", "tests/desktop/guest").split()
    # the unit scenarios' backends (desk.py's BACKENDS): the guest sees only its command line
    guest = (f"NSROUTE_DESKTOP_BACKENDS={shlex.quote(' '.join(UNIT_BACKENDS))} python3 -m pytest " + " ".join(selection)
             + " -p no:cacheprovider -v "
             "--junitxml $NSROUTE_DESKTOP_OUT/guest.xml -o junit_family=xunit2 -o junit_logging=system-out")
    # seven scenarios under TCG: 20-30 min on a loaded 2-core machine (desktop-run's default is 15)
    cmd = [sys.executable, str(RUN), "--image", image, "--deb", deb, "--timeout", "3000",
           "--rwdir", str(reports), "--",
           "sh", "-c", guest]
    start = time.monotonic()
    p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = GuestRun(p.returncode, p.stdout, time.monotonic() - start,
                   parse_junit(reports / "guest.xml"))
    sys.stderr.write(f"\n[desktop tier] guest session: exit {p.returncode} in {run.seconds:.0f}s\n")
    if p.returncode == EXIT_NO_QEMU:
        pytest.skip(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "qemu cannot run")
    return run
