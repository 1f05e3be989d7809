"""`--backend` on a machine without the wireguard module (as CI): auto falls back to the
userspace engine; `--backend kernel` fails with one line and changes nothing.
(The kernel backend itself runs in the VM tier: tests/vm/guest/test_kernel_backend.py.)"""

from __future__ import annotations

import json
import os

import pytest

from nsroute.host import kernelwg
from tests.support.hosts import BEHIND4, Site

pytestmark = pytest.mark.root


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


@pytest.fixture
def site(lab, tmp_path):
    if kernelwg.module_available():
        pytest.skip("this kernel has the wireguard module (the VM tier tests the kernel backend)")
    return Site(lab, tmp_path, dhcp=False)


def test_kernel_backend_without_module_fails_and_changes_nothing(site):
    before = site.picture()
    p = site.up("--backend", "kernel")
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "wireguard module" in lines[0] and "nothing changed" in lines[0]
    assert site.picture() == before
    assert not os.path.exists(f"/run/netns/{site.physical}")
    assert not os.path.exists(f"/etc/netns/{site.physical}")
    assert not os.path.exists(site.run_dir) or not os.listdir(site.run_dir)


def test_auto_picks_userspace_without_module(site):
    before = site.picture()
    p = _ok(site.up())  # --backend auto is the default
    assert "backend userspace (no wireguard kernel module)" in p.stderr
    L = site.laptop
    assert sorted(L.links()) == sorted(["lo", site.tun])
    assert os.path.exists(f"/run/netns/{site.physical}")
    L.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)
    info = json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)
    assert info["backend"] == "userspace" and info["state"] == "up" and info["engine"]["pid"]
    state = json.load(open(os.path.join(site.run_dir, f"host-{site.physical}.json")))
    assert state["backend"] == "userspace"
    _ok(site.down())
    assert site.picture() == before
