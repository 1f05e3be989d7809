"""Per-device sysctls that a namespace move resets and that decide how a link behaves.

A device moved to another namespace gets that namespace's defaults (accept_ra,
forwarding, rp_filter, …), so they are read before the move and written after it.
/proc/sys/net is per network namespace of the reading thread: `netns.entered` picks it.
"""

from __future__ import annotations

from pathlib import Path

from . import netns

DEVICE_KEYS = {
    "ipv4": ("forwarding", "rp_filter", "accept_redirects", "send_redirects", "arp_ignore",
             "arp_announce", "proxy_arp", "accept_local"),
    "ipv6": ("disable_ipv6", "accept_ra", "autoconf", "forwarding", "use_tempaddr",
             "addr_gen_mode", "accept_dad", "accept_redirects", "mtu"),
}


def _path(key: str, dev: str) -> Path:
    fam, name = key.split("/", 1)
    return Path("/proc/sys/net", fam, "conf", dev, name)


def read_device(dev: str, ns: str | None = None) -> dict[str, str]:
    """{"ipv6/accept_ra": "1", ...} for `dev` in `ns` (keys the kernel lacks are left out)."""
    out: dict[str, str] = {}
    with netns.entered(ns):
        for fam, names in DEVICE_KEYS.items():
            for name in names:
                try:
                    out[f"{fam}/{name}"] = _path(f"{fam}/{name}", dev).read_text().strip()
                except OSError:
                    pass
    return out


def write_device(dev: str, values: dict[str, str], ns: str | None = None) -> list[str]:
    """Write back what differs; returns the keys that could not be written."""
    failed = []
    with netns.entered(ns):
        for key, value in values.items():
            p = _path(key, dev)
            try:
                if p.read_text().strip() != value:
                    p.write_text(value + "\n")
            except OSError:
                failed.append(key)
    return failed
