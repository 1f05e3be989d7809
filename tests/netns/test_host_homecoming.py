"""`down` on the way home: a device renamed on arrival gets its name back, and no DHCP
client of the deployment outlives it, recorded or not.

udev itself only renames in the VM tier (tests/vm/guest/test_revive.py: a USB NIC comes
home as enx<MAC>); here the rename is made by hand, as udev would make it, and the DHCP
client is started as the guard starts one for an uplink that came back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsroute.host import dhcp, kernel, procs
from nsroute.host import interfaces as ifaces
from tests.support.hosts import BEHIND4, Site
from tests.support.netns import ok, wait_for

pytestmark = pytest.mark.root


def test_a_device_renamed_on_arrival_gets_its_name_back(lab):
    away, home = lab.netns("away"), lab.netns("home")
    away.ip("link", "add", "upusb", "address", "02:00:aa:bb:cc:01", "type", "veth", "peer", "name", "far")
    was = kernel.link(away.name, "upusb")
    away.ip("link", "set", "upusb", "netns", home.name)
    home.ip("link", "set", "upusb", "name", "enx0200aabbcc01")  # what udev does on "add"
    home.ip("link", "set", "enx0200aabbcc01", "up")  # someone brought it up meanwhile

    assert ifaces.reclaim_name("upusb", was, home.name) is None
    link = kernel.link(home.name, "upusb")
    assert link is not None and link["index"] == was["index"] and link["address"] == "02:00:aa:bb:cc:01"
    assert "enx0200aabbcc01" not in home.links()
    assert ifaces.reclaim_name("upusb", was, home.name) is None  # already home under its name
    assert ifaces.reclaim_name("gone0", {**was, "address": "02:00:aa:bb:cc:02"}, home.name) == "gone0 is missing"


def test_down_stops_a_dhcp_client_nobody_recorded(lab, tmp_path):
    """The guard records a DHCP client once the uplink is set up again; one killed in
    between (down's stop timeout) leaves a client no record names. down ends it too."""
    site = Site(lab, tmp_path)
    ok(site.up())
    stem = f"host-{site.physical}"
    st = json.loads(Path(site.run_dir, f"{stem}.json").read_text())
    snap = next(s for s in st["interfaces"] if s["name"] == "eth1")
    stray = dhcp.start_uplink(snap, site.physical, Path(site.run_dir), stem)
    assert stray is not None and procs.alive(stray)
    assert stray.pid not in [p["pid"] for p in st["dhcp"]]
    site.laptop.exec("ping", "-c", "1", "-W", "5", BEHIND4)

    ok(site.down())
    wait_for(lambda: not procs.alive(stray), 5, what="the unrecorded DHCP client to end")
    assert "eth1" in site.laptop.links()
