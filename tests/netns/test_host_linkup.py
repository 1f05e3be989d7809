"""An uplink on DHCP that goes down and comes back up while up carries the tunnel again.

`ip link set down` (and rfkill, which closes a radio's netdevs: the VM tier's
test_revive) makes the kernel flush the uplink's routes; on the way back up only the
prefix route returns. The DHCP client holds a valid lease and would stay quiet until its
renewal time (a minute here, hours on many networks): the guard asks it to renew.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.hosts import BEHIND4, Site
from tests.support.netns import Netns, ok, wait_for

pytestmark = pytest.mark.root


def _default_via_eth1(ph: Netns) -> bool:
    return "default via 192.168.60.1 dev eth1" in ph.ip("-4", "route", "show").stdout


def _tunnel_answers(site: Site) -> bool:
    return site.laptop.exec("ping", "-c", "1", "-W", "1", BEHIND4, check=False).returncode == 0


def _v6_back(ph: Netns, dev: str, addr: str, router: str) -> bool:
    """The uplink's static IPv6 address is there and settled, and the LAN answers on it."""
    shown = ph.ip("-6", "addr", "show", "dev", dev).stdout
    if addr not in shown or "tentative" in shown:
        return False
    return ph.exec("ping", "-6", "-c", "1", "-W", "1", router, check=False).returncode == 0


def test_dhcp_uplink_down_and_up_gets_its_default_route_back(lab, tmp_path):
    site = Site(lab, tmp_path, lease="2m")  # renewal time (T1) one minute away
    ok(site.up())
    ph = Netns(site.physical)
    try:
        # eth1 (DHCP) the only way out: eth0 (static) down for good, nobody restores it
        ph.ip("link", "set", "eth0", "down")
        assert _default_via_eth1(ph), ph.ip("-4", "route").stdout
        wait_for(lambda: _tunnel_answers(site), 20, what="the tunnel over eth1")

        acks = site.acks()
        ph.ip("link", "set", "eth1", "down")
        assert not _default_via_eth1(ph)  # the kernel flushed it
        assert not _tunnel_answers(site)
        ph.ip("link", "set", "eth1", "up")
        t = time.monotonic()
        wait_for(lambda: _default_via_eth1(ph), 10, what="the default route through eth1 again")
        print(f"default route back {time.monotonic() - t:.1f}s after the link came up")
        assert site.acks() > acks  # a renewal, not a route made up by someone else
        # the kernel dropped eth1's IPv6 address with the link; no renewal brings it back
        wait_for(lambda: _v6_back(ph, "eth1", "fd60::2/64", "fd60::1"), 10, what="eth1's IPv6 address again")
        wait_for(lambda: _tunnel_answers(site), 20, what="the tunnel to answer again")
        ping = site.laptop.exec("ping", "-c", "3", "-i", "0.3", BEHIND4, check=False)
        assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout

        g = json.loads(ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)["guard"]
        assert [r["name"] for r in g["renewed"]] == ["eth1"] and g["renewed"][0]["pids"], g
        assert g["renewed"][0]["failures"] == [], g
        assert g["errors"] == [], g
        log = Path(site.run_dir, f"host-{site.physical}.guard.log").read_text()
        assert "eth1 is up again: DHCP client pid" in log, log
    finally:
        ok(site.down())


def _default_via_eth0(ph: Netns) -> bool:
    return "default via 192.168.50.1 dev eth0" in ph.ip("-4", "route", "show").stdout


def test_static_uplink_down_and_up_gets_its_routes_back(lab, tmp_path):
    """No DHCP client to ask: the guard adds the snapshot's routes again, as `up` did."""
    site = Site(lab, tmp_path)
    ok(site.up())
    ph = Netns(site.physical)
    try:
        ph.ip("link", "set", "eth1", "down")  # eth0 (static) the only way out
        assert _default_via_eth0(ph), ph.ip("-4", "route").stdout
        wait_for(lambda: _tunnel_answers(site), 20, what="the tunnel over eth0")

        ph.ip("link", "set", "eth0", "down")
        assert not _default_via_eth0(ph)  # the kernel flushed it
        ph.ip("link", "set", "eth0", "up")
        wait_for(lambda: _default_via_eth0(ph), 10, what="the default route through eth0 again")
        wait_for(lambda: _v6_back(ph, "eth0", "fd50::2/64", "fd50::1"), 10, what="eth0's IPv6 address again")
        assert "default via fd50::1 dev eth0" in ph.ip("-6", "route", "show").stdout
        wait_for(lambda: _tunnel_answers(site), 20, what="the tunnel to answer again")
        ping = site.laptop.exec("ping", "-c", "3", "-i", "0.3", BEHIND4, check=False)
        assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout

        g = json.loads(ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)["guard"]
        assert [(r["name"], r.get("static")) for r in g["renewed"]] == [("eth0", True)], g
        assert g["renewed"][0]["failures"] == [] and g["errors"] == [], g
    finally:
        ok(site.down())
