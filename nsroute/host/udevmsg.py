"""rfkill changes told to NetworkManager in the physical namespace, as udev would tell them.

Why: NetworkManager learns that a radio was blocked or unblocked (the airplane-mode key,
`rfkill block`) from udev's "rfkill" events, and reads the switch's state then (its
RFKILL_STATE in sysfs). udevd runs in the initial namespace and multicasts its events on
a netlink socket there; netlink is per network namespace, so NetworkManager running in
`physical` (nmphysical.py) never hears one. It then keeps showing Wi-Fi on during a block
(the applet's switch, `nmcli radio wifi`), and after an unblock it does not know that it
may use the radio again. The guard, which reads /dev/rfkill (not per namespace), sends
each change into `physical` in udev's own format (the "libudev" header of systemd's
sd-device monitor: magic, property offsets, and the subsystem hash its socket filter
matches), on the same multicast group; NetworkManager then re-reads every switch it
knows from its sysfs, as at home. Nothing leaves the machine: netlink is local, and only
listeners in `physical` (NetworkManager) receive it.
"""

from __future__ import annotations

import os
import socket
import struct

from .. import nsutil

NETLINK_KOBJECT_UEVENT = 15
GROUP_UDEV = 2  # libudev's "udev" multicast group (1 is the kernel's)
MAGIC = 0xFEEDCAFE
# prefix[8], magic (big-endian), header_size, properties_off, properties_len (host order),
# subsystem hash, devtype hash, tag bloom hi, lo (big-endian: the socket filter loads them so)
HEADER = struct.Struct("=8s4sIII4s4s4s4s")
TYPES = {0: "all", 1: "wlan", 2: "bluetooth", 3: "uwb", 4: "wimax", 5: "wwan", 6: "gps", 7: "fm", 8: "nfc"}
ACTIONS = {0: "add", 1: "remove", 2: "change"}  # struct rfkill_event's op


def murmur2(data: bytes, seed: int = 0) -> int:
    """MurmurHash2, 32-bit (what libudev hashes a subsystem name with for its socket filter)."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (seed ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if tail:
        for i in reversed(range(len(tail))):
            h ^= tail[i] << (8 * i)
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def message(props: dict[str, str]) -> bytes:
    """One udev monitor message: header, then KEY=VALUE strings each ended by a NUL (pure)."""
    body = b"".join(f"{k}={v}".encode() + b"\0" for k, v in props.items())
    be = struct.Struct(">I").pack
    head = HEADER.pack(b"libudev\0", be(MAGIC), HEADER.size, HEADER.size, len(body),
                       be(murmur2(props["SUBSYSTEM"].encode())), be(0), be(0), be(0))
    return head + body


def rfkill_props(idx: int, kind: int, op: int, soft: int, hard: int, seqnum: int, devpath: str) -> dict[str, str]:
    """What udev says of rfkill switch `idx` after the /dev/rfkill event (pure).

    RFKILL_STATE as the kernel's uevent has it: 0 soft-blocked, 1 unblocked, 2 hard-blocked."""
    return {"ACTION": ACTIONS.get(op, "change"), "DEVPATH": devpath, "SUBSYSTEM": "rfkill",
            "SEQNUM": str(seqnum), "RFKILL_TYPE": TYPES.get(kind, "unknown"),
            "RFKILL_INDEX": str(idx), "RFKILL_STATE": "2" if hard else ("0" if soft else "1")}


def devpath_of(idx: int, sys_class: str = "/sys/class/rfkill") -> str:
    """/devices/.../rfkillN: the class link names it even where its target is not shown
    (a radio in another namespace); a switch already gone gets a path with its name
    (NetworkManager knows switches by that last part)."""
    try:
        target = os.readlink(f"{sys_class}/rfkill{idx}")
    except OSError:
        target = ""
    if "devices/" not in target:
        return f"/devices/virtual/rfkill/rfkill{idx}"
    return "/" + target[target.index("devices/"):]


def send(ns: str, data: bytes) -> None:
    """Multicast `data` to udev's group in named namespace `ns` (OSError when it cannot)."""
    with nsutil.entered(ns):
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT)
    try:
        try:
            s.sendto(data, (0, GROUP_UDEV))
        except ConnectionRefusedError:
            pass  # the unicast half (to the kernel, which takes none); the multicast went out
    finally:
        s.close()
