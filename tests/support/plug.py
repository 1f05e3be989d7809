"""Devices to plug in at run time, as a real kernel sees them: a Wi-Fi dongle (a new
mac80211_hwsim radio, made over generic netlink) and a USB NIC (dummy_hcd + g_ether, its
host side appearing when the gadget's port is authorized), and when the kernel announced
each new netdev.

Why shared: the VM tier (a shell client on the protected side) and the desktop tier
(NetworkManager in `physical`) plug the same devices in while up.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from nsroute.host import guard, netns

USB_DEV = "/sys/bus/usb/devices/1-1"  # the gadget as the host side sees it (dummy_hcd's one port)


class Hwsim:
    """mac80211_hwsim radios made and removed at run time (HWSIM_CMD_NEW_RADIO / DEL_RADIO)."""

    NEW, DEL = 4, 5

    def __init__(self) -> None:
        from pyroute2.netlink import genlmsg
        from pyroute2.netlink.generic import GenericNetlinkSocket

        class hwsimmsg(genlmsg):
            nla_map = tuple([(f"HWSIM_ATTR_{i}", "none") for i in range(17)]
                            + [("HWSIM_ATTR_RADIO_NAME", "asciiz")]
                            + [(f"HWSIM_ATTR_{i}", "none") for i in range(18, 22)]
                            + [("HWSIM_ATTR_PERM_ADDR", "l2addr")])

        self.msg_class = hwsimmsg
        self.sock = GenericNetlinkSocket()
        self.sock.bind("MAC80211_HWSIM", hwsimmsg)

    def _request(self, cmd: int, attrs: list) -> None:
        from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
        from pyroute2.netlink.exceptions import NetlinkError

        msg = self.msg_class()
        msg["cmd"], msg["version"], msg["attrs"] = cmd, 1, attrs
        try:
            self.sock.nlm_request(msg, msg_type=self.sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)
        except NetlinkError as e:
            if e.code < 0 or cmd != self.NEW:  # NEW_RADIO acks with the radio's number
                raise

    def new_radio(self, mac: str | None = None) -> None:
        """A new radio; with `mac`, the same permanent address as a radio that went (a dongle re-plugged)."""
        self._request(self.NEW, [("HWSIM_ATTR_PERM_ADDR", mac)] if mac else [])

    def close(self) -> None:
        self.sock.close()


def del_radio_in(ns: str, phy: str) -> None:
    """Remove a radio; hwsim only deletes radios of the asking namespace, so ask from there."""
    with netns.entered(ns):
        h = Hwsim()
    try:
        h._request(Hwsim.DEL, [("HWSIM_ATTR_RADIO_NAME", phy)])
    finally:
        h.close()


class LinkWatch:
    """When each netdev appeared here, from the same kernel notification the guard gets.

    A thread receives as the messages come, so each is stamped on arrival, not when the
    test gets round to reading them.
    """

    def __init__(self) -> None:
        self.sock = guard.netlink(socket.NETLINK_ROUTE, [guard.RTMGRP_LINK])
        self.first: dict[int, tuple[float, str]] = {}
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            now = time.time()
            for index, name in guard.new_links(data):
                self.first.setdefault(index, (now, name))

    def appeared(self, name: str | None = None, index: int | None = None) -> float:
        for i, (t, n) in list(self.first.items()):
            if i == index or n == name:
                return t
        raise AssertionError(f"no RTM_NEWLINK seen for {name or index}: {self.first}")


def phys_here() -> set[str]:
    return set(os.listdir("/sys/class/ieee80211")) if os.path.isdir("/sys/class/ieee80211") else set()


def usb_host_netdevs() -> list[str]:
    """Netdevs here behind dummy_hcd, i.e. the host side of the USB NIC (names vary with udev)."""
    out = []
    for n in os.listdir("/sys/class/net"):
        if "dummy_hcd" in os.path.realpath(f"/sys/class/net/{n}/device"):
            out.append(n)
    return out


def gadget_netdev() -> str:
    for n in os.listdir("/sys/class/net"):
        if "dummy_udc" in os.path.realpath(f"/sys/class/net/{n}/device"):
            return n
    raise AssertionError(f"no gadget netdev in {os.listdir('/sys/class/net')}")
