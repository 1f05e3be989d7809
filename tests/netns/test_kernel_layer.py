"""host/kernel.py on the real kernel: a snapshot replayed over netlink reads back in `ip`
as it was, twice without error (EEXIST is "already there"), and one move takes a link
by name or by path in both directions."""

from __future__ import annotations

import json
import os
import time

import pytest

from nsroute.host import interfaces, kernel, records
from nsroute.host.errors import HostError

pytestmark = pytest.mark.root

# what the previous version stored for an uplink (`ip -j`): read as records
OLD_SNAP = {
    "name": "up0", "mtu": 1400, "up": True,
    "addresses": [
        {"family": "inet", "local": "192.168.61.20", "prefixlen": 24, "broadcast": "192.168.61.255",
         "scope": "global", "dynamic": True, "label": "up0", "valid_life_time": 300, "preferred_life_time": 300},
        {"family": "inet", "local": "10.61.0.2", "prefixlen": 24, "scope": "global", "noprefixroute": True,
         "valid_life_time": interfaces.FOREVER, "preferred_life_time": interfaces.FOREVER},
        {"family": "inet6", "local": "fd61::2", "prefixlen": 64, "scope": "global",
         "valid_life_time": interfaces.FOREVER, "preferred_life_time": interfaces.FOREVER},
    ],
    "routes": {
        "4": [{"dst": "default", "gateway": "192.168.61.1", "protocol": "dhcp", "metric": 200, "flags": [],
               "metrics": [{"mtu": 1300}]},
              {"dst": "10.61.0.0/24", "protocol": "kernel", "scope": "link", "prefsrc": "10.61.0.2",
               "metric": 600, "flags": []},
              {"dst": "10.62.0.0/16", "gateway": "192.168.61.254", "table": "100", "flags": ["onlink"]}],
        "6": [{"dst": "fd62::/64", "gateway": "fd61::1", "metric": 100, "flags": [], "pref": "high"}],
    },
    "sysctls": {},
}


def test_a_snapshot_replays_over_netlink_as_ip_shows_it(lab):
    ns = lab.netns("k")
    ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "up1")
    ns.ip("link", "set", "up1", "up")
    snap = {**records.upgrade_snapshot(OLD_SNAP), "time": time.time() - 10}
    assert interfaces.restore(snap, ns.name) == []
    assert interfaces.restore(snap, ns.name) == []  # all there already: EEXIST, no failure
    link = ns.ip("link", "show", "dev", "up0").stdout
    assert "mtu 1400" in link and ",UP" in link
    addrs = ns.ip("addr", "show", "dev", "up0").stdout
    assert "inet 192.168.61.20/24 brd 192.168.61.255 scope global dynamic up0" in addrs
    info = json.loads(ns.ip("-j", "addr", "show", "dev", "up0").stdout)[0]["addr_info"]
    lease = next(x for x in info if x["local"] == "192.168.61.20")
    assert 280 <= lease["valid_life_time"] <= 290, lease  # the 10 s since the snapshot are gone
    assert "inet 10.61.0.2/24 scope global noprefixroute up0" in addrs
    assert "inet6 fd61::2/64 scope global nodad" in addrs
    r4 = ns.ip("-4", "route", "show", "table", "all", "dev", "up0").stdout
    assert "default via 192.168.61.1 proto dhcp metric 200 mtu 1300" in r4
    assert "10.61.0.0/24 proto kernel scope link src 10.61.0.2 metric 600" in r4
    assert "10.62.0.0/16 via 192.168.61.254 table 100 onlink" in r4
    r6 = ns.ip("-6", "route", "show", "dev", "up0").stdout
    assert "fd62::/64 via fd61::1 metric 100 pref high" in r6
    # and read back as records, a second snapshot holds the same addressing
    again = interfaces.snapshot("up0", ns.name)
    assert {a["cidr"] for a in again["addresses"]} >= {"192.168.61.20/24", "10.61.0.2/24", "fd61::2/64"}
    assert any(r["dst"] == "0.0.0.0/0" and r["gateway"] == "192.168.61.1" and r["metric"] == 200
               and r["metrics"] == {"mtu": 1300} for r in again["routes"])
    assert again["dynamic"] and not again["unconfigured"]


def test_one_move_by_name_or_path_and_clear_errors(lab):
    a, b = lab.netns("a"), lab.netns("b")
    a.ip("link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
    kernel.move("mv0", a.name, f"/run/netns/{b.name}")  # to a path (a container's /proc/PID/ns/net)
    assert "mv0" in b.links() and "mv0" not in a.links()
    kernel.move("mv0", f"/run/netns/{b.name}", a.name)  # from a path, to a name
    assert "mv0" in a.links()
    with pytest.raises(HostError, match="no such interface nope"):
        kernel.move("nope", a.name, b.name)
    with pytest.raises(HostError, match="cannot move mv0 into .*: No such file"):  # errno, one line
        kernel.move("mv0", a.name, "/run/netns/nsr-no-such-namespace")
    with pytest.raises(HostError, match="unknown routing table"):
        kernel.add_route(a.name, "mv0", {"dst": "10.70.0.0/16", "table": "no-such-table-name"})
    assert kernel.link(a.name, "mv0")["kind"] == "veth"
    assert kernel.link("nsr-no-such-namespace", "lo") is None
    assert kernel.add_address(a.name, "mv0", {"cidr": "10.71.0.1/24"})
    assert not kernel.add_address(a.name, "mv0", {"cidr": "10.71.0.1/24"})  # EEXIST
    assert os.path.exists(f"/run/netns/{a.name}")
