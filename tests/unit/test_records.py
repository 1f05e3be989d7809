"""host/records.py: snapshots hold nsroute's own records, and the previous version's `ip -j` reads the same."""

from __future__ import annotations

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from nsroute.host import records


def _addr_msg():
    m = ifaddrmsg()
    m["family"], m["prefixlen"], m["scope"], m["flags"], m["index"] = 2, 24, 0, 0, 3
    m["attrs"] = [("IFA_ADDRESS", "192.0.2.7"), ("IFA_LOCAL", "192.0.2.7"), ("IFA_LABEL", "eth0"),
                  ("IFA_BROADCAST", "192.0.2.255"), ("IFA_FLAGS", 0x200),
                  ("IFA_CACHEINFO", {"ifa_preferred": 50, "ifa_valid": 60, "cstamp": 0, "tstamp": 0})]
    return m


def _route_msg():
    m = rtmsg()
    m["family"], m["dst_len"], m["table"], m["proto"], m["scope"], m["type"], m["flags"] = 2, 0, 254, 16, 0, 1, 4
    m["attrs"] = [("RTA_TABLE", 254), ("RTA_GATEWAY", "192.0.2.1"), ("RTA_PRIORITY", 600), ("RTA_OIF", 3),
                  ("RTA_METRICS", {"attrs": [("RTAX_MTU", 1400)]})]
    return m


def test_kernel_messages_and_ip_json_give_the_same_records():
    from_kernel = records.address_from_msg(_addr_msg())
    from_ip = records.address_from_ip({"family": "inet", "local": "192.0.2.7", "prefixlen": 24,
                                       "broadcast": "192.0.2.255", "scope": "global", "dynamic": True,
                                       "noprefixroute": True, "label": "eth0", "valid_life_time": 60,
                                       "preferred_life_time": 50})
    assert from_kernel == from_ip == {
        "family": 4, "cidr": "192.0.2.7/24", "peer": None, "broadcast": "192.0.2.255", "scope": 0,
        "label": "eth0", "valid": 60, "preferred": 50, "flags": ["noprefixroute", "dynamic"]}
    route = records.route_from_msg(_route_msg())
    old = records.route_from_ip({"dst": "default", "gateway": "192.0.2.1", "protocol": "dhcp", "metric": 600,
                                 "flags": ["onlink"], "metrics": [{"mtu": 1400}]}, 4)
    assert route == old
    assert (route["dst"], route["proto"], route["table"], route["onlink"], route["metrics"]) == (
        "0.0.0.0/0", records.PROTO_DHCP, 254, True, {"mtu": 1400})


def test_a_snapshot_of_this_version_is_left_as_it_is():
    old = {"name": "eth0", "addresses": [{"family": "inet6", "local": "fd00::2", "prefixlen": 64,
                                          "scope": "global"}],
           "routes": {"4": [], "6": [{"dst": "fd01::/64", "gateway": "fd00::1", "pref": "high"}]}}
    new = records.upgrade_snapshot(old)
    assert new["addresses"][0]["cidr"] == "fd00::2/64" and new["routes"][0]["pref"] == 1
    assert records.upgrade_snapshot(new) == new
