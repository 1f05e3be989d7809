"""Which uplink a device that comes back was (revive.former_uplink), and what down skips."""

from __future__ import annotations

from nsroute.host import guardrecord, revive
from nsroute.host.state import Proc, State

ETH = {"name": "eth1", "address": "02:00:00:aa:bb:01", "permaddr": ""}
USB = {"name": "enx020000aabb02", "address": "de:ad:be:ef:00:02", "permaddr": "02:00:00:aa:bb:02"}
SNAPS = [ETH, USB]


def test_by_current_mac_under_a_new_name():
    assert revive.former_uplink("eth7", {"02:00:00:AA:BB:01"}, SNAPS, taken=["lo"]) is ETH


def test_by_permanent_mac_when_the_mac_had_been_changed():
    assert revive.former_uplink("usb0", {"02:00:00:aa:bb:02"}, SNAPS, taken=[]) is USB


def test_by_name_when_the_mac_is_new():
    assert revive.former_uplink("eth1", {"0a:0b:0c:0d:0e:0f"}, SNAPS, taken=[]) is ETH


def test_an_unknown_device_is_not_an_uplink():
    assert revive.former_uplink("eth9", {"0a:0b:0c:0d:0e:0f"}, SNAPS, taken=[]) is None
    assert revive.former_uplink("eth9", {"", "00:00:00:00:00:00"}, [{"name": "x", "address": ""}], []) is None


def test_an_uplink_still_present_is_not_replaced():
    # same MAC as eth1, but eth1 is still there (e.g. a second port cloning its MAC)
    assert revive.former_uplink("eth7", {"02:00:00:aa:bb:01"}, SNAPS, taken=["eth1"]) is None
    assert revive.former_uplink("eth1", set(), SNAPS, taken=["eth1"]) is None


def test_stale_processes_are_those_bound_to_the_name():
    wpa = Proc(10, 1, "wpa_supplicant", ["wpa_supplicant", "-B", "-iwlan0", "-c", "/etc/w.conf"])
    st = State(mode="host", physical="p", config_path="c", ifname="wg0",
               dhcp=[Proc(11, 1, "dhcp wlan0"), Proc(12, 1, "dhcp eth1")], wpa=[wpa])
    earlier = [{"name": "wlan0", "procs": [{"pid": 13, "start_time": 1, "what": "dhcp wlan0", "argv": []}]}]
    assert sorted(p.pid for p in revive.stale_processes("wlan0", st, earlier)) == [10, 11, 13]
    assert [p.pid for p in revive.stale_processes("eth1", st, earlier)] == [12]


def test_record_keeps_what_was_revived(tmp_path):
    path = tmp_path / "g.json"
    rec = guardrecord.Record(pid=1)
    rec.moved.append(guardrecord.Moved("netdev", "eth1", 9, 1.0, mac="02:00:00:aa:bb:01"))
    rec.revived.append({"name": "eth1", "arrived_as": "eth5", "what": "netdev", "index": 9, "time": 2.0,
                        "procs": [{"pid": 5, "start_time": 7, "what": "dhcp eth1", "argv": []}], "failures": []})
    rec.save(path)
    back = guardrecord.Record.load(path)
    assert back.moved[0].mac == "02:00:00:aa:bb:01"
    assert revive.revived_processes(back.revived) == [Proc(5, 7, "dhcp eth1", [])]


def test_status_tells_an_uplink_came_back():
    from nsroute.host import status
    from tests.unit.test_status_health import _info

    info = _info()
    info["guard"]["revived"] = [{"name": "eth0", "arrived_as": "eth3", "what": "netdev", "time": 0.0,
                                 "failures": ["ip addr add 1.2.3.4/24 dev eth0: busy"], "pids": [77]}]
    info["problems"], info["warnings"] = [], []
    text = status.render(info)
    assert "eth0 came back (as eth3)" in text and "; ip addr add 1.2.3.4/24 dev eth0: busy" in text
