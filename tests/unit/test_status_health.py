"""`nsroute status` tells the truth: problems found in gathered facts, and leak_capable (issue 14, item 4)."""

from __future__ import annotations

import copy

import pytest

from nsroute.host import health, inventory, status
from nsroute.host.inventory import LinkFacts, leak_capable

KEY = "hY8bH7aQ2n1Jx2l6m0Yh3mB0Yl8b9bF1p7k6r5s4t3U="


# ------------------------------------------------------------------ leak_capable


def _sysfs(tmp_path, name, device=False, phy=False, wwan=False):
    d = tmp_path / name
    d.mkdir()
    if device:
        (d / "device").symlink_to(tmp_path)
    if phy:
        (d / "phy80211").symlink_to(tmp_path)
    (d / "uevent").write_text(f"INTERFACE={name}\n" + ("DEVTYPE=wwan\n" if wwan else ""))
    return str(tmp_path)


def _link(name, kind=None, parentdev=None):
    """A link record as host/kernel.py gives it."""
    return {"ifname": name, "up": True, "kind": kind or "", "parentdev": parentdev or ""}


@pytest.mark.parametrize("what", [{"device": True}, {"phy": True}, {"wwan": True}])
def test_hardware_backed_devices_are_leak_capable_even_down_and_unaddressed(tmp_path, what):
    sysfs = _sysfs(tmp_path, "x0", **what)
    facts = inventory.from_netlink(_link("x0"), [], [], sysfs)
    assert inventory.hardware_backed(facts) and leak_capable(facts, "wg0")


def test_a_parent_device_in_netlink_counts_without_sysfs():
    """Another namespace's sysfs is not mounted here (container mode): netlink still tells."""
    facts = inventory.from_netlink(_link("usb0", parentdev="1-1:1.0"), [], [], sys_class_net=None)
    assert leak_capable(facts)


@pytest.mark.parametrize("kind", ["veth", "bridge", "dummy", "tun", "vlan", "macvlan", "wireguard"])
def test_user_made_virtual_devices_are_left_alone(tmp_path, kind):
    sysfs = _sysfs(tmp_path, "v0")
    addrs = [{"family": 4, "cidr": "172.17.0.1/16", "scope": 0}]
    routes = [{"dst": "172.17.0.0/16", "devs": ["v0"], "family": 4, "type": 1}]
    facts = inventory.from_netlink(_link("v0", kind), addrs, routes, sysfs)
    assert not inventory.hardware_backed(facts)
    assert facts.global_addresses == ("172.17.0.1/16",)
    assert not leak_capable(facts, "wg0")  # docker0, virbr0: local subnets, not a way out


@pytest.mark.parametrize("route", [
    {"dst": "0.0.0.0/0", "gateway": "10.1.1.1", "devs": ["v0"], "family": 4, "type": 1},
    {"dst": "::/0", "gateway": "fd00::1", "devs": ["v0"], "family": 6, "type": 1},
    {"dst": "128.0.0.0/1", "devs": ["v0"], "family": 4, "type": 1},
    {"dst": "0.0.0.0/0", "table": 51820, "devs": ["v0"], "family": 4, "type": 1},
    {"dst": "0.0.0.0/0", "multipath": True, "devs": ["v0"], "family": 4, "type": 1},
])
def test_a_virtual_device_with_a_default_route_around_the_tunnel_is_leak_capable(tmp_path, route):
    facts = inventory.from_netlink(_link("v0", "veth"), [], [route], _sysfs(tmp_path, "v0"))
    assert leak_capable(facts, "wg0")
    assert "default route" in inventory.leak_reason(facts, "wg0")


def test_routes_through_the_tunnel_or_other_devices_or_non_unicast_do_not_count(tmp_path):
    routes = [{"dst": "0.0.0.0/0", "devs": ["wg0"], "family": 4, "type": 1},
              {"dst": "0.0.0.0/1", "devs": ["wg0"], "family": 4, "type": 1},
              {"type": 7, "dst": "0.0.0.0/0", "devs": ["v0"], "family": 4},  # unreachable
              {"dst": "10.0.0.0/8", "devs": ["v0"], "family": 4, "type": 1}]
    facts = inventory.from_netlink(_link("v0", "veth"), [], routes, _sysfs(tmp_path, "v0"))
    assert not leak_capable(facts, "wg0")


def test_lo_and_the_tunnel_itself_never_count(tmp_path):
    assert not leak_capable(LinkFacts("lo", has_device=True), "wg0")
    assert not leak_capable(LinkFacts("wg0", catch_all_routes=("default",)), "wg0")
    assert leak_capable(LinkFacts("wg1", kind="wireguard", catch_all_routes=("default",)), "wg0")


def test_a_new_link_message_as_the_guard_receives_it(tmp_path):
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    usb = ifinfmsg()
    usb["attrs"] = [("IFLA_IFNAME", "usb0"), ("IFLA_PARENT_DEV_NAME", "1-1:1.0")]
    assert inventory.hardware_backed(inventory.from_rtnl(usb, sys_class_net=None))
    plain = ifinfmsg()
    plain["attrs"] = [("IFLA_IFNAME", "x0")]
    assert not inventory.hardware_backed(inventory.from_rtnl(plain, _sysfs(tmp_path, "x0")))
    radio = tmp_path / "radio"
    radio.mkdir()
    assert inventory.hardware_backed(inventory.from_rtnl(plain, _sysfs(radio, "x0", phy=True)))


def test_iw_phy_output_names_every_radio():
    text = "Wiphy phy0\n\twiphy index: 0\n\tmax # scan SSIDs: 4\nWiphy phy3\n\tBand 1:\n"
    assert inventory.parse_iw_phy(text) == ["phy0", "phy3"]
    assert inventory.parse_iw_phy("") == []


# ------------------------------------------------------------------ problems


def _info(**over):
    info = {
        "state": "up", "mode": "host", "backend": "userspace", "into": None, "physical_namespace": "physical",
        "config": "/etc/wireguard/wg0.conf",
        "tunnel": {"name": "wg0", "state": "UNKNOWN", "addresses": ["10.99.0.2/32"], "listen_port": 51000},
        "engine": {"pid": 42, "running": True, "answering": True},
        "interfaces": [{"name": "eth0", "state": "UP", "addresses": ["192.168.50.2/24"],
                        "global_addresses": ["192.168.50.2/24"], "admin_up": True, "carrier": True,
                        "wireless": False, "associated": None, "dhcp_pid": None}],
        "physical_present": True, "physical_default_routes": ["default dev eth0"],
        "protected_links": [],
        "peers": [{"public_key": KEY, "endpoint": "172.16.70.2:51820", "allowed_ips": ["0.0.0.0/0"],
                   "latest_handshake": 1000.0, "latest_handshake_ago": 30.0, "rx_bytes": 1, "tx_bytes": 1,
                   "persistent_keepalive": 0}],
        "dns": {"file": None, "managed": False},
        "guard": {"pid": 43, "running": True, "block": True, "moved": [], "revived": [], "errors": []},
    }
    for k, v in over.items():
        info[k] = v
    return info


def kinds(findings):
    return [f["kind"] for f in findings]


def test_a_healthy_tunnel_has_no_problems_and_says_so():
    info = _info()
    assert health.assess(info) == ([], [])
    info["problems"], info["warnings"] = [], []
    assert status.render(info).startswith("nsroute up: all traffic goes through the tunnel")


@pytest.mark.parametrize("ago, expect", [
    (None, ["no-handshake"]),
    (health.STALE_AFTER + 1, ["stale-handshake"]),
    (health.STALE_AFTER - 1, []),
    (125.0, []),  # a peer with traffic rekeys every 120 s: this is normal
])
def test_handshake_age(ago, expect):
    info = _info()
    info["peers"][0]["latest_handshake_ago"] = ago
    problems, _ = health.assess(info)
    assert kinds(problems) == expect
    assert health.STALE_AFTER > 180  # REJECT_AFTER_TIME plus a margin
    for p in problems:
        assert "\n" not in p["message"] and KEY[:8] in p["message"] and p["subject"] == KEY


def test_engine_gone_and_tunnel_missing():
    info = _info(state="broken", engine={"pid": 42, "running": False, "answering": False},
                 tunnel={"name": "wg0", "state": "missing", "addresses": [], "listen_port": None}, peers=[])
    assert kinds(health.assess(info)[0]) == ["engine-not-running", "tunnel-missing"]
    kernel = _info(state="broken", backend="kernel", engine={"pid": None, "running": False, "answering": False},
                   tunnel={"name": "wg0", "state": "missing", "addresses": [], "listen_port": None}, peers=[])
    assert kinds(health.assess(kernel)[0]) == ["tunnel-missing"]


@pytest.mark.parametrize("change, kind", [
    ({"state": "missing", "admin_up": None, "carrier": None}, "uplink-missing"),
    ({"admin_up": False, "carrier": None}, "uplink-down"),
    ({"carrier": False}, "uplink-no-carrier"),
    ({"wireless": True, "associated": False, "carrier": False}, "wifi-not-associated"),
    ({"wireless": True, "rfkill": "soft", "admin_up": False, "associated": False}, "wifi-blocked"),
    ({"global_addresses": [], "addresses": []}, "uplink-no-address"),
])
def test_the_only_uplink_failing_is_a_problem(change, kind):
    info = _info()
    info["interfaces"][0].update(change)
    problems, warnings = health.assess(info)
    assert kinds(problems) == [kind] and warnings == []
    assert problems[0]["subject"] == "eth0"


def test_an_unplugged_second_uplink_is_only_a_warning():
    info = _info()
    wlan = copy.deepcopy(info["interfaces"][0])
    wlan.update(name="wlan0", wireless=True, associated=False, carrier=False)
    info["interfaces"].append(wlan)
    problems, warnings = health.assess(info)
    assert problems == [] and kinds(warnings) == ["wifi-not-associated"]
    info["interfaces"][0]["carrier"] = False  # now neither works
    assert sorted(kinds(health.assess(info)[0])) == ["uplink-no-carrier", "wifi-not-associated"]


def test_no_default_route_on_the_physical_side():
    assert kinds(health.assess(_info(physical_default_routes=[]))[0]) == ["no-default-route"]
    assert health.assess(_info(physical_default_routes=None))[0] == []  # could not tell: no claim


def test_leak_capable_devices_next_to_the_tunnel_are_problems():
    links = [{"name": "usb0", "leak": "a hardware network device"}, {"name": "docker0", "leak": None}]
    problems, _ = health.assess(_info(protected_links=links))
    assert kinds(problems) == ["leak-capable-device"] and problems[0]["subject"] == "usb0"
    assert "usb0" in problems[0]["message"] and "around the tunnel" in problems[0]["message"]


def test_the_all_clear_line_appears_only_without_problems():
    info = _info()
    info["interfaces"][0].update(wireless=True, associated=False, carrier=False)
    info["problems"], info["warnings"] = health.assess(info)
    text = status.render(info)
    assert "all traffic goes through the tunnel" not in text
    assert text.startswith("nsroute up, NOT HEALTHY: 1 problem\nproblem:   Wi-Fi uplink eth0 is not associated")
    assert "NOT ASSOCIATED" in text
    check = status.render_check(info)
    assert check == "problem: wifi-not-associated: Wi-Fi uplink eth0 is not associated with any network"


def test_a_dead_guard_or_a_missing_block_is_a_problem():
    info = _info(guard={"pid": 43, "running": False, "block": False, "moved": [], "errors": []})
    problems, _ = health.assess(info)
    assert kinds(problems) == ["guard-not-running", "block-missing"]
    assert health.assess(_info(guard=None))[0] == []  # container mode has no guard


def test_a_switched_off_radio_is_named_as_such():
    """Airplane mode on the only uplink: not healthy, and the line says why (not just "down")."""
    info = _info()
    info["interfaces"][0].update(wireless=True, rfkill="soft", admin_up=False, associated=False, carrier=None)
    info["problems"], info["warnings"] = health.assess(info)
    text = status.render(info)
    assert "all traffic goes through the tunnel" not in text
    assert "SWITCHED OFF (rfkill soft block)" in text and "airplane mode" in text
    assert status.render_check(info).startswith("problem: wifi-blocked: Wi-Fi uplink eth0 is switched off")
