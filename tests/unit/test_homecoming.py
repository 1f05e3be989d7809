"""Which link a device that came home under another name is (interfaces.same_device).

udev renames a device that arrives in its namespace as it likes (a move is an "add" to
it); `down` finds the uplink again by what the move keeps: its ifindex and its MAC.
"""

from __future__ import annotations

from nsroute.host import interfaces as ifaces

WAS = {"index": 10, "ifname": "upusb", "address": "7a:47:d9:9c:d8:0b"}


def test_same_index_and_mac_under_the_name_udev_gave():
    links = [{"index": 1, "ifname": "lo", "address": "00:00:00:00:00:00"},
             {"index": 10, "ifname": "enx7a47d99cd80b", "address": "7A:47:D9:9C:D8:0B"}]
    assert ifaces.same_device(links, WAS) == "enx7a47d99cd80b"


def test_a_new_index_is_found_by_mac_and_a_reused_index_is_not_taken():
    # the index was taken at home meanwhile: the kernel gave the device another
    links = [{"index": 10, "ifname": "veth3", "address": "02:00:00:00:00:99"},
             {"index": 14, "ifname": "usb0", "address": "de:ad:be:ef:00:01", "permaddr": "7a:47:d9:9c:d8:0b"}]
    assert ifaces.same_device(links, WAS) == "usb0"


def test_no_guess_when_the_mac_is_ambiguous_or_unknown():
    twins = [{"index": 11, "ifname": "a", "address": WAS["address"]},
             {"index": 12, "ifname": "b", "address": WAS["address"]}]
    assert ifaces.same_device(twins, WAS) is None
    assert ifaces.same_device([{"index": 10, "ifname": "x", "address": "02:00:00:00:00:01"}], WAS) is None
    assert ifaces.same_device([{"index": 10, "ifname": "x", "address": ""}], {"index": 10, "address": ""}) is None
