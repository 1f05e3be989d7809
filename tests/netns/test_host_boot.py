"""`nsroute up` at boot: an uplink with no address yet gets its lease on the physical side."""

from __future__ import annotations

import re

import pytest

from tests.support.hosts import BEHIND4, Site
from tests.support.netns import Netns, wait_for

pytestmark = pytest.mark.root


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def test_unconfigured_uplink_gets_dhcp_in_physical_and_comes_back_unconfigured(lab, tmp_path):
    site = Site(lab, tmp_path, server="nsroute-wg", dhcp=True)
    L = site.laptop
    # Boot: the DHCP uplink is down and has no IPv4 address; no network manager ran yet.
    L.ip("-4", "addr", "flush", "dev", "eth1")
    L.ip("link", "set", "eth1", "down")
    before = site.picture()
    _ok(site.up())
    phys = Netns(site.physical)
    eth1 = wait_for(lambda: "192.168.60." in (o := phys.ip("-4", "addr", "show", "dev", "eth1").stdout) and o,
                    timeout=20, what="a lease on eth1 in the physical namespace")
    assert "dynamic" in eth1
    assert "192.168.60." not in L.ip("-4", "addr").stdout  # nothing of it on the protected side
    # The lease's DNS went to the physical side only.
    assert "192.168.60.1" in open(f"/etc/netns/{site.physical}/resolv.conf").read()
    L.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)
    _ok(site.down())
    after = site.picture()
    # A link that was moved while down shows "qdisc noop" until it is next set up (the
    # kernel attaches the default qdisc on up); that is the only allowed difference.
    for pic in (before, after):
        pic["links"] = re.sub(r"qdisc (noop|noqueue) state DOWN", "qdisc - state DOWN", pic["links"])
    assert after == before
