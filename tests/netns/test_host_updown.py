"""`nsroute up` / `down` on a simulated laptop, end to end, against a real VPN server."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.hosts import BEHIND4, BEHIND6, Site
from tests.support.netns import Netns

pytestmark = pytest.mark.root


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


@pytest.fixture
def site(lab, tmp_path):
    return Site(lab, tmp_path)


def test_up_routes_everything_through_the_tunnel_and_down_restores(site):
    before = site.picture()
    _ok(site.up())
    L = site.laptop
    # the protected namespace keeps only lo and the tunnel
    assert sorted(L.links()) == sorted(["lo", site.tun])
    # traffic to an address behind the server arrives, v4 and v6
    L.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)
    L.exec("ping", "-6", "-c", "2", "-W", "3", BEHIND6, timeout=20)
    # DNS points into the tunnel, in place
    resolv = open(f"/etc/netns/{L.name}/resolv.conf").read()
    assert "nameserver 10.99.0.1" in resolv and "vpn.internal" in resolv
    # the physical side has the uplinks with their addresses and routes
    phys = Netns(site.physical)
    routes = phys.ip("route").stdout
    assert "default via 192.168.50.1 dev eth0 metric 100" in routes
    assert "default via 192.168.60.1 dev eth1 proto dhcp metric 200" in routes
    # status, human and JSON
    st = _ok(site.nsroute("status", "--physical", site.physical)).stdout
    assert "up: all traffic goes through the tunnel" in st and "latest handshake" in st
    info = json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)
    assert info["state"] == "up" and info["peers"][0]["latest_handshake"]
    assert {i["name"] for i in info["interfaces"]} == {"eth0", "eth1"}
    _ok(site.down())
    after = site.picture()
    assert after == before
    assert not os.path.exists(f"/run/netns/{site.physical}")
    assert not os.path.exists(f"/etc/netns/{site.physical}")
    assert not os.listdir(site.run_dir)
    assert L.pids() == [], "processes left on the laptop"


def test_against_nsroute_wg_server(lab, tmp_path):
    """The same laptop, with nsroute's own engine as the VPN server (nsroute-wg)."""
    site = Site(lab, tmp_path, server="nsroute-wg", dhcp=False)
    before = site.picture()
    _ok(site.up())
    site.laptop.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)
    site.laptop.exec("ping", "-6", "-c", "2", "-W", "3", BEHIND6, timeout=20)
    _ok(site.down())
    assert site.picture() == before
