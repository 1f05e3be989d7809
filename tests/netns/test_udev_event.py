"""The rfkill change the guard passes into `physical` (host/udevmsg.py), received by libudev.

NetworkManager hears of rfkill through a libudev monitor on udev's netlink group; here the
same library (libudev.so.1, through ctypes) listens in a namespace the test makes, with
NetworkManager's filter (subsystem "rfkill"), and gets the event as a device: action,
subsystem, name and RFKILL_STATE. The same event with its subsystem hash zeroed is dropped
by the monitor's socket filter (so the hash udevmsg computes is the one libudev expects),
and an event sent into another namespace never arrives (why the guard sends into `physical`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import select

import pytest

from nsroute import nsutil
from nsroute.host import rfkill, udevmsg

pytestmark = pytest.mark.root

DEVPATH = "/devices/virtual/mac80211_hwsim/hwsim7/ieee80211/phy7/rfkill7"


def _libudev() -> ctypes.CDLL:
    name = ctypes.util.find_library("udev")
    if not name:
        pytest.skip("libudev.so.1 is not installed here (NetworkManager's own library; libudev1)")
    lib = ctypes.CDLL(name)
    for fn, args, res in (
        ("udev_new", [], ctypes.c_void_p),
        ("udev_monitor_new_from_netlink", [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_void_p),
        ("udev_monitor_filter_add_match_subsystem_devtype", [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p],
         ctypes.c_int),
        ("udev_monitor_enable_receiving", [ctypes.c_void_p], ctypes.c_int),
        ("udev_monitor_get_fd", [ctypes.c_void_p], ctypes.c_int),
        ("udev_monitor_receive_device", [ctypes.c_void_p], ctypes.c_void_p),
        ("udev_device_get_action", [ctypes.c_void_p], ctypes.c_char_p),
        ("udev_device_get_subsystem", [ctypes.c_void_p], ctypes.c_char_p),
        ("udev_device_get_sysname", [ctypes.c_void_p], ctypes.c_char_p),
        ("udev_device_get_property_value", [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_char_p),
        ("udev_device_unref", [ctypes.c_void_p], ctypes.c_void_p),
        ("udev_monitor_unref", [ctypes.c_void_p], ctypes.c_void_p),
        ("udev_unref", [ctypes.c_void_p], ctypes.c_void_p),
    ):
        getattr(lib, fn).argtypes, getattr(lib, fn).restype = args, res
    return lib


def _receive(lib: ctypes.CDLL, mon: int, timeout: float) -> dict[str, str] | None:
    """The next device the monitor passes, within `timeout` seconds (None: nothing came)."""
    readable, _, _ = select.select([lib.udev_monitor_get_fd(mon)], [], [], timeout)
    if not readable:
        return None
    dev = lib.udev_monitor_receive_device(mon)
    if not dev:
        return None
    try:
        return {"action": lib.udev_device_get_action(dev).decode(),
                "subsystem": lib.udev_device_get_subsystem(dev).decode(),
                "sysname": lib.udev_device_get_sysname(dev).decode(),
                "state": (lib.udev_device_get_property_value(dev, b"RFKILL_STATE") or b"").decode(),
                "type": (lib.udev_device_get_property_value(dev, b"RFKILL_TYPE") or b"").decode()}
    finally:
        lib.udev_device_unref(dev)


def test_networkmanagers_monitor_receives_the_rfkill_change(lab):
    lib = _libudev()
    physical, other = lab.netns("ph"), lab.netns("other")
    udev = lib.udev_new()
    with nsutil.entered(physical.name):  # the monitor's socket belongs to the namespace it is made in
        mon = lib.udev_monitor_new_from_netlink(udev, b"udev")
    try:
        assert mon, "libudev made no monitor"
        assert lib.udev_monitor_filter_add_match_subsystem_devtype(mon, b"rfkill", None) >= 0
        assert lib.udev_monitor_enable_receiving(mon) == 0

        blocked = udevmsg.rfkill_props(7, rfkill.TYPE_WLAN, rfkill.OP_CHANGE, 1, 0, 1, DEVPATH)
        udevmsg.send(other.name, udevmsg.message(blocked))  # another namespace: never arrives
        assert _receive(lib, mon, 1.0) is None

        msg = udevmsg.message(blocked)
        wrong = msg[:24] + bytes(4) + msg[28:]  # the subsystem hash zeroed: the socket filter drops it
        udevmsg.send(physical.name, wrong)
        assert _receive(lib, mon, 1.0) is None
        udevmsg.send(physical.name, msg)
        got = _receive(lib, mon, 5.0)
        assert got == {"action": "change", "subsystem": "rfkill", "sysname": "rfkill7", "state": "0", "type": "wlan"}
        assert _receive(lib, mon, 0.5) is None

        unblocked = udevmsg.rfkill_props(7, rfkill.TYPE_WLAN, rfkill.OP_CHANGE, 0, 0, 2, DEVPATH)
        udevmsg.send(physical.name, udevmsg.message(unblocked))
        got = _receive(lib, mon, 5.0)
        assert got is not None and got["state"] == "1", got
    finally:
        if mon:
            lib.udev_monitor_unref(mon)
        lib.udev_unref(udev)
