"""A desktop that boots with nsroute's unit enabled (issue 17, "from boot").

Three boots of one copy of the image (scripts/desktop-run --persistent --lan: two NICs on
one cable, the laptop's enp0s8 and a router's enp0s9; and two mac80211_hwsim radios, the
laptop's Wi-Fi and the router's access point): the first installs the package and
enables nsroute@wg0 (tests/desktop/reboot/lan.py), the second boots with it and runs
tests/desktop/reboot (tunnel from boot, both uplinks connected in `physical`, router
counters on both links since the first frame, a kill and systemd's restart, `systemctl
stop`), then switches to nsroute-kernel@wg0, which the third boot checks the same way. The guest's JUnit reports name what passed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.support.junit import parse_junit
from tests.vm.conftest import EXIT_NO_QEMU

from .conftest import RUN
from .reboot.lan import ROUTER_UNIT, UNITS

pytestmark = pytest.mark.vm

GUEST_TESTS = [
    "test_tunnel_up_from_boot",
    "test_nothing_but_dhcp_arp_icmpv6_and_wireguard_since_the_first_frame",
    "test_killed_then_restarted_by_systemd_without_a_leak",
    "test_stop_hands_the_uplinks_back_to_networkmanager",
]


def _boot(disk, reports, *cmd: str, deb: str | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(RUN), "--image", str(disk), "--persistent", "--lan",
            "--rwdir", str(reports)] + (["--deb", deb] if deb else []) + ["--", *cmd]
    start = time.monotonic()
    p = subprocess.run(argv, cwd=RUN.parents[1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stderr.write(f"\n[desktop reboot] {' '.join(cmd)[:60]}: exit {p.returncode} in {time.monotonic() - start:.0f}s\n")
    if p.returncode == EXIT_NO_QEMU:
        pytest.skip("qemu cannot run here")
    return p


def _checks(backend: str, then: str | None) -> list[str]:
    tests = (f"NSROUTE_REBOOT_BACKEND={backend} python3 -m pytest tests/desktop/reboot -p no:cacheprovider -v "
             f"--junitxml $NSROUTE_DESKTOP_OUT/{backend}.xml -o junit_family=xunit2; rc=$?")
    journal = (f"; {{ journalctl -b --no-pager -o short-monotonic -u '{UNITS[backend]}' -u {ROUTER_UNIT} "
               "-u NetworkManager.service -u wpa_supplicant.service; ip -o link; ip netns list; ip -n physical -o addr; "
               "ip -n physical route; nmcli device; nsroute status; ip netns exec physical iw dev; "
               "for f in /run/nsroute/*.dhcp-*.log; do echo \"== $f\"; cat \"$f\"; done; } "
               f">> $NSROUTE_DESKTOP_OUT/{backend}.log 2>&1")  # after what a failing test wrote there
    switch = f"; python3 -m tests.desktop.reboot.lan prepare {then} || rc=3" if then else ""
    return ["sh", "-c", tests + journal + switch + "; exit $rc"]


@pytest.fixture(scope="module")
def reboots(tmp_path_factory, desktop_build):
    image, deb = desktop_build
    work = tmp_path_factory.mktemp("desktop-reboot")
    disk = work / "disk.img"  # a sparse copy: the cached image stays clean
    subprocess.run(["cp", "--sparse=always", image, str(disk)], check=True)
    reports = work / "reports"
    reports.mkdir()
    out = {}
    # NSROUTE_REBOOT_BACKENDS=userspace narrows a run by hand; CI runs both
    chosen = os.environ.get("NSROUTE_REBOOT_BACKENDS", "userspace kernel").split()
    plan = [(b, chosen[i + 1] if i + 1 < len(chosen) else None) for i, b in enumerate(chosen)]
    first = _boot(disk, reports, "python3", "-m", "tests.desktop.reboot.lan", "prepare", chosen[0],
                  deb=deb)
    assert first.returncode == 0, first.stdout[-4000:]
    for backend, then in plan:
        p = _boot(disk, reports, *_checks(backend, then))
        log = reports / f"{backend}.log"
        out[backend] = (p, parse_junit(reports / f"{backend}.xml"), log.read_text() if log.exists() else "")
        for line in out[backend][2].splitlines():
            if line.startswith("timing:"):
                sys.stderr.write(f"[desktop reboot] {line}\n")
    disk.unlink()
    return out


@pytest.mark.parametrize("backend", ["userspace", "kernel"])
def test_boot_session_passed(reboots, backend):
    if backend not in reboots:
        pytest.skip("NSROUTE_REBOOT_BACKENDS left it out")
    p, _, log = reboots[backend]
    assert p.returncode == 0, f"{backend} boot: exit {p.returncode}\n{p.stdout[-6000:]}\n{log[-8000:]}"


@pytest.mark.parametrize("backend", ["userspace", "kernel"])
@pytest.mark.parametrize("name", GUEST_TESTS)
def test_boot_check_ran(reboots, backend, name):
    if backend not in reboots:
        pytest.skip("NSROUTE_REBOOT_BACKENDS left it out")
    _, outcomes, _ = reboots[backend]
    outcome = outcomes.get(f"test_after_reboot::{name}", "missing")
    assert outcome == "passed", f"{backend} {name}: {outcome}"
