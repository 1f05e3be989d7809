"""Host side of the desktop tier: build the image, boot it once, run tests/desktop/guest in it.

Why one boot per session: a TCG boot of a systemd desktop plus the guest's Python start
costs minutes on this machine, so every guest test shares one VM; the host-side tests
read its JUnit report (as tests/vm does).
"""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def desktop_run(tmp_path_factory) -> GuestRun:
    """`pytest tests/desktop/guest` in the booted image; skip only when qemu cannot run here."""
    if os.environ.get("NSROUTE_DESKTOP") == "1":
        pytest.skip("already inside the desktop VM")
    build = subprocess.run([str(IMAGE)], cwd=REPO, capture_output=True, text=True)
    assert build.returncode == 0, f"scripts/desktop-image failed:\n{build.stderr[-3000:]}"
    image = build.stdout.strip().splitlines()[-1]
    # the guest installs nsroute from the package built from this tree, as a user would
    dist = tmp_path_factory.mktemp("desktop-deb")
    pkg = subprocess.run([str(PACKAGE), "--out", str(dist)], cwd=REPO, capture_output=True, text=True)
    assert pkg.returncode == 0, f"scripts/package failed:\n{pkg.stderr[-3000:]}"
    deb = pkg.stdout.strip().splitlines()[-1]
    reports = tmp_path_factory.mktemp("desktop-reports")
    selection = os.environ.get("NSROUTE_DESKTOP_TESTS", "tests/desktop/guest").split()
    guest = ("python3 -m pytest " + " ".join(selection) + " -p no:cacheprovider -v "
             "--junitxml $NSROUTE_DESKTOP_OUT/guest.xml -o junit_family=xunit2")
    # six scenarios under TCG: 15-25 min on a loaded 2-core machine (desktop-run's default is 15)
    cmd = [sys.executable, str(RUN), "--image", image, "--deb", deb, "--timeout", "2400",
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
