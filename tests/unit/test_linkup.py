"""Which link changes make the guard ask an uplink's DHCP client to renew (linkup.py).

The kernel flushes an uplink's routes when it goes down; only its way back up (up with
carrier, after being down or without carrier) calls for a renewal, only for an uplink of
the deployment on DHCP, and only of a client that was running before it went down.
"""

from __future__ import annotations

import socket
import struct

from nsroute.host import dhcp, guard, kernel, linkup
from nsroute.host.state import Proc, State, Store

NEW, DEL = guard.RTM_NEWLINK, guard.RTM_DELLINK
UP, LOWER_UP = kernel.IFF_UP, kernel.IFF_LOWER_UP


def link(index: int, name: str, up: bool, carrier: bool) -> dict:
    return {"index": index, "ifname": name, "up": up, "lower_up": carrier}


def test_down_then_up_asks_for_one_renewal_with_the_time_it_went_down():
    e = linkup.Edges()
    assert linkup.due(e, [(NEW, link(5, "eth1", True, True))], {"eth1"}, 100.0) == []  # first look
    assert linkup.due(e, [(NEW, link(5, "eth1", False, False))], {"eth1"}, 200.0) == []  # down
    assert linkup.due(e, [(NEW, link(5, "eth1", False, False))], {"eth1"}, 250.0) == []  # still down
    assert linkup.due(e, [(NEW, link(5, "eth1", True, True))], {"eth1"}, 300.0) == [("eth1", 200.0)]
    # up again and again (an address, an MTU change): no edge, no renewal
    assert linkup.due(e, [(NEW, link(5, "eth1", True, True))], {"eth1"}, 310.0) == []


def test_up_without_carrier_is_still_down_until_the_carrier_comes():
    """rfkill unblocked: wpa_supplicant brings the radio up, association brings the carrier."""
    e = linkup.Edges()
    events = [(NEW, link(7, "wlan0", True, True)), (NEW, link(7, "wlan0", False, False)),
              (NEW, link(7, "wlan0", True, False))]
    assert linkup.due(e, events, {"wlan0"}, 10.0) == []
    assert linkup.due(e, [(NEW, link(7, "wlan0", True, True))], {"wlan0"}, 20.0) == [("wlan0", 10.0)]
    # a cable pulled (carrier lost, still up) and plugged again
    assert linkup.due(e, [(NEW, link(7, "wlan0", True, False))], {"wlan0"}, 30.0) == []
    assert linkup.due(e, [(NEW, link(7, "wlan0", True, True))], {"wlan0"}, 40.0) == [("wlan0", 30.0)]


def test_only_the_deployments_dhcp_uplinks():
    e = linkup.Edges()
    events = [(NEW, link(3, "eth0", False, False)), (NEW, link(4, "veth9", False, False)),
              (NEW, link(3, "eth0", True, True)), (NEW, link(4, "veth9", True, True))]
    assert linkup.due(e, events, {"eth1"}, 1.0) == []
    assert linkup.due(linkup.Edges(), events, {"eth0"}, 1.0) == [("eth0", 1.0)]


def test_a_link_first_seen_up_or_deleted_is_no_edge():
    e = linkup.Edges()
    assert linkup.due(e, [(NEW, link(9, "eth1", True, True))], {"eth1"}, 1.0) == []  # unknown: no edge
    linkup.due(e, [(NEW, link(9, "eth1", False, False)), (DEL, link(9, "eth1", False, False))], {"eth1"}, 2.0)
    assert linkup.due(e, [(NEW, link(9, "eth1", True, True))], {"eth1"}, 3.0) == []  # a new device


def test_only_clients_of_that_uplink_running_before_it_went_down():
    argv = ["busybox", "udhcpc", "-f", "-i", "eth1", "-s", "/hook", "-p", "/run/nsroute/h.dhcp-eth1.pid"]
    old = Proc(pid=10, start_time=50, what="busybox", argv=argv)
    new = Proc(pid=11, start_time=250, what="busybox", argv=argv)  # started after (revive.py, up)
    other = Proc(pid=12, start_time=50, what="busybox", argv=[*argv[:4], "eth10", *argv[5:]])
    assert linkup.to_renew([old, new, other], "eth1", since=200.0) == [old]
    assert linkup.to_renew([old, new, other], "eth2", since=200.0) == []


def test_dhcp_client_command_line_names_its_interface():
    assert dhcp.serves(["udhcpc", "-f", "-i", "wlan0", "-s", "x"], "wlan0")
    assert not dhcp.serves(["udhcpc", "-f", "-i", "wlan0"], "wlan")
    assert not dhcp.serves(["udhcpc", "-f", "wlan0"], "wlan0")


def test_uplinks_once_up_is_complete(tmp_path):
    store = Store("host-p", tmp_path)
    assert linkup.uplinks_of(store) == {}  # no state
    st = State(mode="host", physical="p", config_path="c", ifname="wg0", interfaces=[
        {"name": "eth0", "dynamic": False}, {"name": "eth1", "dynamic": True},
        {"name": "wlan0", "unconfigured": True}])
    store.save(st)
    assert linkup.uplinks_of(store) == {}  # `up` still works
    st.complete = True
    store.save(st)
    snaps = linkup.uplinks_of(store)
    assert set(snaps) == {"eth0", "eth1", "wlan0"}
    assert {n for n, s in snaps.items() if dhcp.wanted(s)} == {"eth1", "wlan0"}  # renewed; eth0 restored
    st.nm_managed = ["wlan0"]  # NetworkManager's in physical: it reconnects it itself
    store.save(st)
    assert set(linkup.uplinks_of(store)) == {"eth0", "eth1"}


def _link_msg(kind: int, index: int, name: str, flags: int) -> bytes:
    """One rtnetlink link message as the kernel sends it: nlmsghdr, ifinfomsg, IFLA_IFNAME."""
    ifname = name.encode() + b"\0"
    attr = struct.pack("HH", 4 + len(ifname), 3) + ifname
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("BxHiII", socket.AF_UNSPEC, 1, index, flags, 0) + attr
    return struct.pack("IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_link_states_from_a_netlink_datagram():
    data = (_link_msg(NEW, 5, "eth1", UP | LOWER_UP) + _link_msg(NEW, 5, "eth1", UP)
            + _link_msg(DEL, 6, "usb0", 0))
    got = [(k, ln["index"], ln["ifname"], linkup.usable(ln)) for k, ln in kernel.link_messages(data)]
    assert got == [(NEW, 5, "eth1", True), (NEW, 5, "eth1", False), (DEL, 6, "usb0", False)]
    assert guard.link_events(data) == [(NEW, 5, "eth1"), (NEW, 5, "eth1"), (DEL, 6, "usb0")]


def test_a_wifi_switch_unblocked_after_being_blocked_is_the_edge():
    from nsroute.host import rfkill

    seen: dict[int, bool] = {}
    W, ADD, CHANGE, DEL = rfkill.TYPE_WLAN, rfkill.OP_ADD, rfkill.OP_CHANGE, rfkill.OP_DEL
    assert not rfkill.unblocked(seen, [(0, W, ADD, 0, 0), (1, W, ADD, 1, 0)])  # first states only
    assert not rfkill.unblocked(seen, [(0, W, CHANGE, 1, 0)])  # blocked
    assert not rfkill.unblocked(seen, [(0, W, CHANGE, 0, 1)])  # hard-blocked still
    assert rfkill.unblocked(seen, [(0, W, CHANGE, 0, 0)])
    assert not rfkill.unblocked(seen, [(0, W, CHANGE, 0, 0)])  # unblocked again: no edge
    assert not rfkill.unblocked(seen, [(2, 2, ADD, 1, 0), (2, 2, CHANGE, 0, 0)])  # Bluetooth
    assert not rfkill.unblocked(seen, [(1, W, DEL, 1, 0), (1, W, CHANGE, 0, 0)])  # gone, then unknown


def test_an_unblock_sets_up_only_the_wifi_uplinks_nsroute_configures(tmp_path, monkeypatch):
    from nsroute.host import rfkill

    store = Store("host-p", tmp_path)
    st = State(mode="host", physical="p", config_path="c", ifname="wg0", complete=True,
               interfaces=[{"name": "wlan0"}, {"name": "wlan1"}, {"name": "eth0"}],
               wiphys=[{"name": "phy0", "ifaces": ["wlan0"]}, {"name": "phy1", "ifaces": ["wlan1"]}],
               nm_managed=["wlan1"])
    store.save(st)
    set_up: list[tuple[str, str]] = []
    monkeypatch.setattr(kernel, "link", lambda ns, name: {"up": False})
    monkeypatch.setattr(kernel, "set_link", lambda ns, name, up: set_up.append((ns, name)))
    w = object.__new__(rfkill.Watch)  # no /dev/rfkill needed for the rule
    w.physical, w.store, w.log = "p", store, lambda _msg: None
    w.bring_up()
    assert set_up == [("p", "wlan0")]  # wlan1 is NetworkManager's, eth0 has no radio
