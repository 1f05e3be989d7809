"""The udev-format rfkill event the guard passes into `physical` for NetworkManager (udevmsg.py)."""

from __future__ import annotations

import struct

from nsroute.host import rfkill, udevmsg

DEVPATH = "/devices/virtual/mac80211_hwsim/hwsim2/ieee80211/phy2/rfkill2"


def test_murmur2_known_values():
    # MurmurHash2 (32-bit, seed 0): the hash libudev's socket filter compares subsystems by;
    # "rfkill" as systemd's own MurmurHash2.c computes it (checked against a build of that file)
    assert udevmsg.murmur2(b"") == 0
    assert udevmsg.murmur2(b"rfkill") == 0x757514C8


def test_the_message_is_what_a_libudev_monitor_accepts():
    props = udevmsg.rfkill_props(2, rfkill.TYPE_WLAN, rfkill.OP_CHANGE, 1, 0, 7, DEVPATH)
    msg = udevmsg.message(props)
    prefix, magic, size, off, length, subsys, devtype, hi, lo = udevmsg.HEADER.unpack_from(msg)
    assert prefix == b"libudev\0" and struct.unpack(">I", magic)[0] == 0xFEEDCAFE
    assert size == off == 40 and length == len(msg) - off and off + 32 <= len(msg)
    assert struct.unpack(">I", subsys)[0] == udevmsg.murmur2(b"rfkill")  # what the filter loads, big-endian
    assert devtype == hi == lo == b"\0\0\0\0"
    body = dict(kv.split("=", 1) for kv in msg[off:].decode().split("\0") if kv)
    assert body == {"ACTION": "change", "DEVPATH": DEVPATH, "SUBSYSTEM": "rfkill", "SEQNUM": "7",
                    "RFKILL_TYPE": "wlan", "RFKILL_INDEX": "2", "RFKILL_STATE": "0"}  # 0: soft-blocked
    assert msg.endswith(b"\0")


def test_rfkill_state_and_action_as_the_kernel_words_them():
    def state(soft, hard):
        return udevmsg.rfkill_props(0, 1, rfkill.OP_CHANGE, soft, hard, 1, DEVPATH)["RFKILL_STATE"]
    assert (state(0, 0), state(1, 0), state(0, 1), state(1, 1)) == ("1", "0", "2", "2")
    assert udevmsg.rfkill_props(0, 1, rfkill.OP_ADD, 0, 0, 1, DEVPATH)["ACTION"] == "add"
    assert udevmsg.rfkill_props(0, 2, rfkill.OP_DEL, 0, 0, 1, DEVPATH)["ACTION"] == "remove"
    assert udevmsg.rfkill_props(0, 2, rfkill.OP_DEL, 0, 0, 1, DEVPATH)["RFKILL_TYPE"] == "bluetooth"


def test_devpath_from_the_class_link_even_when_it_dangles(tmp_path):
    (tmp_path / "rfkill2").symlink_to("../../devices/virtual/mac80211_hwsim/hwsim2/ieee80211/phy2/rfkill2")
    assert udevmsg.devpath_of(2, str(tmp_path)) == DEVPATH
    assert udevmsg.devpath_of(9, str(tmp_path)) == "/devices/virtual/rfkill/rfkill9"  # gone already


def test_which_radio_a_switch_belongs_to():
    assert rfkill.phy_of_switch("../../devices/virtual/mac80211_hwsim/hwsim2/ieee80211/phy2/rfkill2") == "phy2"
    assert rfkill.phy_of_switch("../../devices/platform/thinkpad_acpi/rfkill/rfkill0") is None  # a platform switch
