"""Wireless devices: they move by their wiphy, over nl80211, with every interface of the phy.

A wireless netdev cannot be moved on its own (the kernel refuses: it is NETIF_F_NETNS_LOCAL);
the phy is moved instead (NL80211_CMD_SET_WIPHY_NETNS), taking all its interfaces along.
wpa_supplicant is bound to the interface it was started on, so it is started again in the
physical namespace with the same arguments.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import netns, procs
from .errors import HostError
from .state import Proc


def phy_of(ifname: str, sys_class_net: str = "/sys/class/net") -> str | None:
    """The wiphy name (phy0) behind `ifname`, or None for a wired device."""
    link = Path(sys_class_net, ifname, "phy80211")
    if not link.exists():
        return None
    return os.path.basename(os.path.realpath(link))


def phy_index(phy: str) -> int:
    return int(Path("/sys/class/ieee80211", phy, "index").read_text())


def interfaces_of(phy: str, sys_class_net: str = "/sys/class/net") -> list[str]:
    """Every netdev of `phy` in the current namespace: they all move together."""
    out = []
    for name in sorted(os.listdir(sys_class_net)):
        if phy_of(name, sys_class_net) == phy:
            out.append(name)
    return out


def radios_in(ns: str) -> dict[str, tuple[int, str]]:
    """Wireless netdevs of named namespace `ns`: name -> (wiphy index, wiphy MAC address).

    Through `ip netns exec`, which mounts that namespace's own sysfs."""
    script = ('for d in /sys/class/net/*/phy80211; do [ -e "$d" ] || continue; '
              'n=${d%/phy80211}; echo "${n##*/} $(cat "$d/index") $(cat "$d/macaddress")"; done')
    p = netns.run(["ip", "netns", "exec", ns, "sh", "-c", script], check=False)
    out = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            out[parts[0]] = (int(parts[1]), parts[2])
    return out


def index_now(ns: str, ifnames: list[str], recorded: int) -> int:
    """The wiphy index behind `ifnames` in `ns` now: a radio that came back has a new one."""
    radios = radios_in(ns)
    return next((radios[n][0] for n in ifnames if n in radios), recorded)


def phy_mac(phy: str) -> str:
    """A wiphy's permanent MAC address ("" when unknown): how a radio that comes back is known."""
    try:
        return Path("/sys/class/ieee80211", phy, "macaddress").read_text().strip()
    except OSError:
        return ""


def move_wiphy(index: int, src: str | None, dst: str | None) -> None:
    """Move wiphy number `index` from namespace `src` to `dst` over nl80211."""
    from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
    from pyroute2.netlink.nl80211 import NL80211, NL80211_NAMES, nl80211cmd

    fd = os.open(netns.path_of(dst), os.O_RDONLY)
    try:
        with netns.entered(src):  # the request must come from where the phy is now
            sock = NL80211()
            sock.bind()
        try:
            msg = nl80211cmd()
            msg["cmd"] = NL80211_NAMES["NL80211_CMD_SET_WIPHY_NETNS"]
            msg["attrs"] = [["NL80211_ATTR_WIPHY", index], ["NL80211_ATTR_NETNS_FD", fd]]
            sock.nlm_request(msg, msg_type=sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)
        finally:
            sock.close()
    except HostError:
        raise
    except Exception as e:
        raise HostError(f"cannot move wiphy {index}: {e}", getattr(e, "code", None)) from None
    finally:
        os.close(fd)


def wpa_supplicants(ifnames: list[str], ns: str | None = None) -> list[tuple[int, list[str]]]:
    """Running wpa_supplicant processes (PID, argv) bound to one of `ifnames` in `ns`."""
    found = []
    for pid, argv in procs.find("wpa_supplicant", netns.path_of(ns)):
        if any(i in ifnames for i in _iface_args(argv)):
            found.append((pid, argv))
    return found


def _iface_args(argv: list[str]) -> list[str]:
    out = []
    for i, a in enumerate(argv):
        if a == "-i" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith("-i") and len(a) > 2:
            out.append(a[2:])
    return out


def daemon_argv(argv: list[str], pidfile: str) -> list[str]:
    """The same wpa_supplicant command, forced to detach (-B) and write `pidfile` (-P)."""
    out = [a for a in argv if a != "-B"]
    clean: list[str] = []
    skip = False
    for a in out:
        if skip:
            skip = False
            continue
        if a == "-P":
            skip = True
            continue
        if a.startswith("-P") and len(a) > 2:
            continue
        clean.append(a)
    return [*clean, "-B", "-P", pidfile]


def start_daemon(argv: list[str], ns: str, pidfile: Path) -> Proc:
    """wpa_supplicant with its original arguments, detached, inside `ns` (`up`, and the
    guard when a radio comes back)."""
    pidfile.unlink(missing_ok=True)
    netns.run(["ip", "netns", "exec", ns, *daemon_argv(argv, str(pidfile))])
    return procs.record(read_pidfile(pidfile), "wpa_supplicant", argv)


def binds(argv: list[str], ifname: str) -> bool:
    """Whether a wpa_supplicant command line serves `ifname` (-i NAME or -iNAME)."""
    return ifname in _iface_args(argv)


def restart_argv(argv: list[str]) -> list[str]:
    """The original wpa_supplicant command, detached (-B), keeping its own -P if it had one.

    Why not a throwaway pid file such as /dev/null: wpa_supplicant unlinks its -P file when
    it exits, so the next stop of the restored daemon would delete /dev/null.
    """
    return list(argv) if "-B" in argv else [*argv, "-B"]


def read_pidfile(path: Path, timeout: float = 10.0) -> int:
    """The PID a `-B` wpa_supplicant wrote to `path`.

    Why wait: with -B the process we ran exits as soon as it has forked, and the detached
    child writes the pid file only afterwards.
    """
    end = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        if time.monotonic() > end:
            raise HostError(f"wpa_supplicant wrote no pid to {path} within {timeout:g}s")
        time.sleep(0.05)
