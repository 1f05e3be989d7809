"""A radio unblocked (rfkill) while up: its interface in the physical namespace comes up again.

Blocking a radio (the Wi-Fi key, airplane mode) makes cfg80211 close its interfaces;
unblocking it leaves them down. wpa_supplicant brings its interface up again on the
unblock, but only when it found the radio's rfkill switch at start, and the one nsroute
runs in `physical` does not ("nl80211: RFKILL status not available", seen in the VM
tier): it then waits for an interface that nobody brings up. So the guard, which reads
/dev/rfkill (not per namespace), does it: on a Wi-Fi switch going from blocked to
unblocked, every wireless uplink of the deployment that is down in `physical` is set up;
wpa_supplicant then associates, and linkup.py has the DHCP client renew.
Which radio's switch it was is not matched to an interface (the switch's attributes are
only readable from the radio's namespace; its class link, which `blocked_phys` reads, is):
an unblock means the user wants Wi-Fi back.
Wi-Fi uplinks NetworkManager manages in `physical` are left to it, as linkup.py leaves
them (one rule, `linkup.uplinks_of`): it sets them up itself on the unblock it hears of.

Every change after the first states is also passed on into `physical` in udev's format
(udevmsg.py): NetworkManager there hears of rfkill only that way.
`blocked_phys` is what `status` asks: which radios are blocked now.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

from . import kernel, udevmsg
from .errors import HostError
from .linkup import complete_state, uplinks_of
from .revive import wireless_names
from .state import Store

DEV = "/dev/rfkill"
EVENT = struct.Struct("=IBBBB")  # struct rfkill_event: idx, type, op, soft, hard
TYPE_ALL, TYPE_WLAN = 0, 1
OP_ADD, OP_DEL, OP_CHANGE = 0, 1, 2


def unblocked(blocked: dict[int, bool], events: Iterable[tuple[int, int, int, int, int]]) -> bool:
    """Track each Wi-Fi switch's state; True when one of `events` unblocked one (pure)."""
    edge = False
    for idx, kind, op, soft, hard in events:
        if kind not in (TYPE_ALL, TYPE_WLAN):
            continue
        if op == OP_DEL:
            blocked.pop(idx, None)
            continue
        was, now = blocked.get(idx), bool(soft or hard)
        blocked[idx] = now
        edge = edge or (op == OP_CHANGE and was is True and not now)
    return edge


class Watch:
    """/dev/rfkill's events (the guard's extra descriptor), and the interfaces to bring up."""

    def __init__(self, physical: str, store_dir: Path, stem: str, log: Callable[[str], None]) -> None:
        self.fd = os.open(DEV, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # OSError: no rfkill here
        self.physical, self.log = physical, log
        self.store = Store(stem, store_dir)
        self.blocked: dict[int, bool] = {}
        self.seqnum = 0
        self.starting = True
        self.ready()  # the kernel queues an ADD for every switch there is: the first states
        self.starting = False

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        os.close(self.fd)

    def ready(self) -> None:
        events = read_events(self.fd)
        if not self.starting:
            self.tell_networkmanager(events)
        if unblocked(self.blocked, events):
            self.bring_up()

    def tell_networkmanager(self, events: list[tuple[int, int, int, int, int]]) -> None:
        for idx, kind, op, soft, hard in events:
            self.seqnum += 1
            props = udevmsg.rfkill_props(idx, kind, op, soft, hard, self.seqnum, udevmsg.devpath_of(idx))
            try:
                udevmsg.send(self.physical, udevmsg.message(props))
            except OSError as e:
                self.log(f"guard: cannot pass rfkill{idx}'s change into {self.physical}: {e}")
                continue
            self.log(f"guard: rfkill{idx} {props['ACTION']} ({props['RFKILL_TYPE']}, state "
                     f"{props['RFKILL_STATE']}) passed on into {self.physical} (udev's format)")

    def bring_up(self) -> None:
        st = complete_state(self.store)
        if st is None:
            return
        for name in sorted(wireless_names(st) & uplinks_of(self.store).keys()):
            link = kernel.link(self.physical, name)
            if link is None or link["up"]:
                continue
            try:
                kernel.set_link(self.physical, name, up=True)
                self.log(f"guard: Wi-Fi unblocked (rfkill): {name} up again in {self.physical}")
            except HostError as e:
                self.log(f"guard: Wi-Fi unblocked (rfkill), but {name} cannot come up: {e}")


def read_events(fd: int) -> list[tuple[int, int, int, int, int]]:
    """Every event queued on a non-blocking /dev/rfkill descriptor."""
    events = []
    while True:
        try:
            data = os.read(fd, 64)  # one event per read (8 bytes, 9 on newer kernels)
        except BlockingIOError:
            break
        if len(data) < EVENT.size:
            break
        events.append(EVENT.unpack_from(data))
    return events


def phy_of_switch(target: str) -> str | None:
    """The radio (phyN) a switch belongs to, from its /sys/class/rfkill link (pure):
    cfg80211 puts it under the wiphy, .../ieee80211/phyN/rfkillM."""
    parts = target.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 3 and parts[-3] == "ieee80211" else None


def blocked_phys(sys_class: str = "/sys/class/rfkill") -> dict[str, str] | None:
    """Each radio's switch now: phy -> "soft", "hard" or "" (None: no /dev/rfkill).

    From /dev/rfkill's first states and the class links, both readable from any
    namespace (the switch's own attributes only where its radio is)."""
    try:
        fd = os.open(DEV, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        events = read_events(fd)
    finally:
        os.close(fd)
    out = {}
    for idx, _kind, op, soft, hard in events:
        try:
            phy = phy_of_switch(os.readlink(f"{sys_class}/rfkill{idx}"))
        except OSError:
            continue
        if phy and op == OP_ADD:
            out[phy] = "hard" if hard else ("soft" if soft else "")
    return out
