"""The hot-plug guard: every uplink that appears in the protected namespace while up is moved out.

The kernel creates each new network device and wiphy (a USB NIC, a tethered phone, a
Wi-Fi dongle, a driver re-creating its device after resume) in the initial namespace,
which is the protected one. Two things keep such a device from carrying traffic:

- an nftables table in the protected namespace (see `block`), present from `up` to
  `down` and independent of any process, that drops IP traffic in and out of every
  device that is not lo and has no rtnetlink kind: physical devices have none, while
  everything a user makes on purpose (veth, bridge, vlan, tun, wireguard, ...) has one;
- this process, which reacts to the kernel's own notifications (RTM_NEWLINK, and
  nl80211's NEW_WIPHY) by moving the device, or its wiphy, into the physical namespace,
  before udev and NetworkManager have had their turn with it.

Devices present when `up` began (the baseline, by ifindex and wiphy index) are left to
`up`; only what appears later is moved. What moved, and when, is written to a record
that `status` shows and `down` reads to hand the devices back.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from . import interfaces as ifaces
from . import kernel, procs, wifi
from .errors import HostError
from .guardrecord import Moved, Record
from .revivals import Revivals
from .state import Proc

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
RTMGRP_LINK = 1
GENL_ID_CTRL = 0x10  # the controller; its "notify" group has the same id
RTM_NEWLINK, RTM_DELLINK = 16, 17
TUNNEL_GONE = 3  # exit status when a watched tunnel went away (systemd then runs `up` again)
NETLINK_GENERIC = 16  # the socket module names NETLINK_ROUTE but not this one
REVIVE_GRACE = 25.0  # seconds an ending guard gives the uplink it is setting up again


# ----------------------------------------------------------------- what moves


def should_move(ifname: str, ifindex: int, baseline: Iterable[int], hardware: bool, wireless: bool) -> bool:
    """A device that is backed by hardware (or a radio) and was not there when `up` began."""
    if ifname == "lo" or ifindex in set(baseline):
        return False
    return hardware or wireless


def phy_index_of(ifname: str, sys_class_net: str = "/sys/class/net") -> int | None:
    """The wiphy index behind a wireless netdev (which moves only with its wiphy)."""
    try:
        return int(Path(sys_class_net, ifname, "phy80211", "index").read_text())
    except (OSError, ValueError):
        return None


def present_wiphys(sys_class: str = "/sys/class/ieee80211") -> dict[int, str]:
    """Wiphys of the current network namespace, index -> name."""
    out = {}
    try:
        names = os.listdir(sys_class)
    except OSError:
        return {}
    for name in names:
        try:
            out[int(Path(sys_class, name, "index").read_text())] = name
        except (OSError, ValueError):
            continue
    return out


def present_links() -> dict[int, str]:
    """Links of the current network namespace, ifindex -> name (from sysfs)."""
    out = {}
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return {}
    for name in names:
        try:
            out[int(Path("/sys/class/net", name, "ifindex").read_text())] = name
        except (OSError, ValueError):
            continue
    return out


# ------------------------------------------------------------------ the watcher


class Extra(Protocol):
    """A socket the guard's loop listens to besides its own: `ready` when readable."""

    def fileno(self) -> int: ...
    def ready(self) -> None: ...
    def close(self) -> None: ...


def netlink(proto: int, groups: Iterable[int]) -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((0, 0))
    for g in groups:
        s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)
    return s


def _nl80211_config_group() -> int | None:
    """The multicast id of nl80211's "config" group (NEW_WIPHY), None while cfg80211 is absent."""
    try:
        from pyroute2.netlink.nl80211 import NL80211

        nl = NL80211()
        try:
            nl.bind()
            return int(nl.mcast_groups["config"])
        finally:
            nl.close()
    except Exception:
        return None


class Guard:
    """Moves new uplinks out of the protected namespace as the kernel announces them."""

    def __init__(self, physical: str, baseline_links: Iterable[int], baseline_phys: Iterable[int],
                 record_path: Path, log: Callable[[str], None] | None = None,
                 watch: Callable[[], tuple[Proc | None, str | None]] | None = None,
                 revive: Callable[[Moved, list[dict]], list[dict]] | None = None) -> None:
        """`revive`: given what just moved (and what was revived before), sets it up again
        when it is a former uplink and returns what it did (see revive.py).
        `watch`: when given, it names the engine process or kernel link to end with
        (TUNNEL_GONE), so that a supervisor watching the guard restarts both; it is asked
        again on SIGHUP, which `up` sends once it has (re)started the tunnel."""
        self.physical = physical
        self.watch = watch
        self.revive = revive
        self.engine: Proc | None = None
        self.tunnel: str | None = None
        self.baseline_links = set(baseline_links)
        self.baseline_phys = set(baseline_phys)
        self.record_path = record_path
        self.record = Record.load(record_path)
        self.record.pid, self.record.started = os.getpid(), time.time()
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self._nl80211: socket.socket | None = None
        self.extras: list[Extra] = []  # more to listen to in the same loop (linkup.py)
        # extras that can start only once `up` is further along: asked at the start and
        # on each SIGHUP until they give one (None: not yet)
        self.later: list[Callable[[], Extra | None]] = []
        # setting up a former uplink waits; moving never does (revivals.py). The record is
        # written from both threads: under this lock.
        self._lock = threading.RLock()
        self._revivals: Revivals[Moved] = Revivals(self._set_up_again)

    # -- moving
    def sweep(self) -> None:
        """Move every new wiphy, then every new hardware netdev, present now."""
        for index, name in sorted(present_wiphys().items()):
            if index not in self.baseline_phys:
                self._move_wiphy(index, name)
        for ifindex, name in sorted(present_links().items()):
            self.consider(name, ifindex)

    def consider(self, ifname: str, ifindex: int) -> None:
        if not should_move(ifname, ifindex, self.baseline_links, ifaces.is_hardware(ifname),
                           wifi.phy_of(ifname) is not None):
            return
        phy = phy_index_of(ifname)
        if phy is not None:
            if phy not in self.baseline_phys:
                self._move_wiphy(phy, wifi.phy_of(ifname) or f"phy#{phy}")
            return
        mac = _read(Path("/sys/class/net", ifname, "address"))
        t = time.time()
        try:
            move_link(ifindex, self.physical)
        except OSError as e:
            if e.errno == errno.ENODEV:  # gone already (unplugged again)
                return
            self._error(f"cannot move {ifname} to {self.physical}: {e}")
            return
        # udev may have renamed it between the announcement and the move; the kernel keeps
        # the index across the move where it is free, so ask under which name it arrived.
        index, name = _arrived(ifindex, ifname, self.physical)
        self._moved(Moved("netdev", name, index, t, mac=mac))

    def _move_wiphy(self, index: int, name: str) -> None:
        netdevs = wifi.interfaces_of(name)
        mac = wifi.phy_mac(name)
        t = time.time()
        try:
            wifi.move_wiphy(index, None, self.physical)
        except HostError as e:
            if e.errno == errno.ENODEV:
                return  # unplugged again
            self._error(str(e))
            return
        self._moved(Moved("wiphy", name, index, t, netdevs, mac))

    def _moved(self, m: Moved) -> None:
        with self._lock:
            self.record.moved.append(m)
            self.record.save(self.record_path)
        extra = f" with {', '.join(m.netdevs)}" if m.netdevs else ""
        self.log(f"guard: moved {m.what} {m.name}{extra} to {self.physical}")
        if self.revive is not None:
            self._revivals.submit(m)  # the loop goes on moving meanwhile

    def _set_up_again(self, m: Moved) -> None:
        """In the revivals thread: a former uplink is set up again as `up` did."""
        assert self.revive is not None
        with self._lock:
            earlier = list(self.record.revived)
        try:
            done = self.revive(m, earlier)
        except Exception as e:  # the move stands; what failed is told, the guard goes on
            self._error(f"cannot set up {m.name} again: {e!r}")
            return
        if done:
            with self._lock:
                self.record.revived += done
                self.record.save(self.record_path)

    def note(self, entry: dict, keep: int = 50) -> None:
        """What an extra watch did (the last `keep`), for `status`."""
        with self._lock:
            self.record.renewed = [*self.record.renewed, entry][-keep:]
            self.record.save(self.record_path)

    def _error(self, msg: str) -> None:
        with self._lock:
            self.record.errors.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}")
            self.record.save(self.record_path)
        self.log(f"guard: {msg}")

    # -- listening
    def run(self, ready: Callable[[], None] | None = None) -> int:
        """Serve until SIGTERM/SIGINT; subscriptions first, then one sweep, then events."""
        rtnl = netlink(socket.NETLINK_ROUTE, [RTMGRP_LINK])
        ctrl = netlink(NETLINK_GENERIC, [GENL_ID_CTRL])
        self._subscribe_nl80211()
        stop_r, stop_w = os.pipe()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: os.write(stop_w, b"x"))
        signal.signal(signal.SIGHUP, lambda *_: os.write(stop_w, b"h"))
        engine_fd = self._rewatch(None)
        self._start_later()
        self.sweep()
        with self._lock:
            self.record.save(self.record_path)
        if ready:
            ready()
        try:
            while True:
                fds = [rtnl, ctrl, stop_r] + ([self._nl80211] if self._nl80211 else [])
                fds += [engine_fd] if engine_fd is not None else []
                fds += self.extras
                readable, _, _ = select.select(fds, [], [])
                if stop_r in readable:
                    if b"x" in os.read(stop_r, 64):
                        return 0
                    engine_fd = self._rewatch(engine_fd)
                    self._start_later()
                    continue
                if engine_fd is not None and engine_fd in readable:
                    self.log(f"guard: the engine (pid {self.engine.pid}) ended; ending too")
                    return TUNNEL_GONE
                if rtnl in readable and self._on_links(rtnl.recv(1 << 16)):
                    self.log(f"guard: the tunnel {self.tunnel} is gone; ending too")
                    return TUNNEL_GONE
                self._on_wireless(readable, ctrl)
                self._on_extras(readable)
        finally:
            # the uplink being set up is finished (hotplug.STOP_TIMEOUT allows for it)
            self._revivals.close(REVIVE_GRACE)
            for x in self.extras:
                x.close()
            for s in (rtnl, ctrl, self._nl80211):
                if s is not None:
                    s.close()
            if engine_fd is not None:
                os.close(engine_fd)

    def _on_wireless(self, readable: list, ctrl: socket.socket) -> None:
        """cfg80211 loaded (the controller announces nl80211), or a wiphy came: sweep."""
        if ctrl in readable:
            ctrl.recv(1 << 16)
            if self._nl80211 is None and self._subscribe_nl80211():
                self.sweep()
        if self._nl80211 is not None and self._nl80211 in readable:
            self._nl80211.recv(1 << 16)
            self.sweep()

    def _on_extras(self, readable: list) -> None:
        for x in self.extras:
            if x in readable:
                try:
                    x.ready()
                except Exception as e:  # told, and the guard goes on guarding
                    self._error(f"{type(x).__name__}: {e!r}")

    def _start_later(self) -> None:
        for make in list(self.later):
            try:
                x = make()
            except Exception as e:  # told, and never asked again: the guard goes on guarding
                self._error(f"{getattr(make, '__name__', 'extra')}: {e!r}")
                x = None
                self.later.remove(make)
            if x is not None:
                self.extras.append(x)
                self.later.remove(make)

    def _rewatch(self, old_fd: int | None) -> int | None:
        """Learn (again) what to end with; a pidfd of the engine (readable once it ends)."""
        if old_fd is not None:
            os.close(old_fd)
        if self.watch is None:
            return None
        self.engine, self.tunnel = self.watch()
        if self.engine is None:
            return None
        try:
            fd: int | None = os.pidfd_open(self.engine.pid)
        except ProcessLookupError:
            fd = None
        if fd is not None and procs.alive(self.engine):
            return fd
        if fd is not None:
            os.close(fd)
        self.log(f"guard: the engine (pid {self.engine.pid}) is not running")
        r, w = os.pipe()  # readable at once: the loop ends as if the engine just died
        os.write(w, b"x")
        os.close(w)
        return r

    def _subscribe_nl80211(self) -> bool:
        group = _nl80211_config_group()
        if group is None:
            return False
        self._nl80211 = netlink(NETLINK_GENERIC, [group])
        return True

    def _on_links(self, data: bytes) -> bool:
        """Consider each new link; True when the watched tunnel link was deleted."""
        gone = False
        for kind, ifindex, name in link_events(data):
            if kind == RTM_NEWLINK:
                self.consider(name, ifindex)
            elif name == self.tunnel:
                gone = True
        return gone


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def link_events(data: bytes) -> list[tuple[int, int, str]]:
    """(RTM_NEWLINK or RTM_DELLINK, ifindex, name) of each link message in a datagram."""
    return [(kind, link["index"], link["ifname"]) for kind, link in kernel.link_messages(data)]


def new_links(data: bytes) -> list[tuple[int, str]]:
    """(ifindex, name) of each RTM_NEWLINK in a netlink datagram."""
    return [(i, n) for kind, i, n in link_events(data) if kind == RTM_NEWLINK]


def move_link(ifindex: int, dst: str | None, src: str | None = None) -> None:
    """One netlink request moving link `ifindex` from `src` to `dst`; errors as OSError."""
    kernel.move_index(ifindex, src, dst)


def links_in(ns: str | None) -> dict[int, str]:
    """index -> name of every link in `ns`, over netlink (sysfs shows only our own namespace)."""
    return {ln["index"]: ln["ifname"] for ln in kernel.links(ns)}


def _arrived(ifindex: int, ifname: str, physical: str) -> tuple[int, str]:
    """(index, name) of a link just moved into `physical`: same index, maybe a new name."""
    try:
        there = links_in(physical)
    except Exception:
        return ifindex, ifname
    if ifindex in there:
        return ifindex, there[ifindex]
    return ifindex, ifname
