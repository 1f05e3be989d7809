"""systemd-resolved: the tunnel's DNS goes to resolved for the tunnel link, not into a file.

Why: on a desktop that uses resolved, /etc/resolv.conf is its stub (127.0.0.53) and
nss-resolve asks resolved over a socket under /run. Rewriting the file would write into
resolved's own stub file and leave nss-resolve asking resolved, whose uplink DNS left with
the uplinks: no name would resolve. Instead, as wg-quick does through resolvconf, the
tunnel link gets its servers, the `~.` routing domain (every name) and the default route.

And the way around the tunnel (`nsroute exec`, `ip netns exec physical`) must not ask
resolved at all (its socket crosses namespaces, so its answers would come through the
tunnel): the physical side gets an nsswitch.conf without `resolve`, and exec hides
resolved's socket directory, so glibc reads the physical side's resolv.conf.

Why `busctl` and not a Python D-Bus binding: no new dependency, and busctl ships with
systemd itself, so it is there wherever resolved is; it speaks resolved's documented
D-Bus API (org.freedesktop.resolve1.Manager) directly, where `resolvectl` would add its
own argument parsing between us and the same calls.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .. import fsmode
from .errors import HostError

STUB = "/run/systemd/resolve/stub-resolv.conf"
RUN_DIR = "/run/systemd/resolve"
STUB_ADDRESSES = ("127.0.0.53", "127.0.0.54")
_DEST = ["org.freedesktop.resolve1", "/org/freedesktop/resolve1", "org.freedesktop.resolve1.Manager"]
# resolved learns of a new link from rtnetlink; a call that races it is told the link is unknown
_LINK_WAIT = 5.0


def in_use(resolv_conf: str = "/etc/resolv.conf") -> bool:
    """True when this namespace's names go through resolved's stub and resolved can be told.

    The stub: resolv.conf is (a link to) resolved's stub file, or names only 127.0.0.53/54.
    Told: busctl exists, resolved runs, and we share the network namespace of PID 1 (where
    resolved runs on a desktop), so the tunnel's link index means the same link to it.
    """
    if not (shutil.which("busctl") and os.path.isdir(RUN_DIR)):
        return False
    try:
        if os.stat("/proc/self/ns/net").st_ino != os.stat("/proc/1/ns/net").st_ino:
            return False
    except OSError:
        return False
    if os.path.realpath(resolv_conf) == STUB:
        return True
    try:
        text = Path(resolv_conf).read_text()
    except OSError:
        return False
    servers = [ln.split()[1] for ln in text.splitlines()
               if ln.startswith("nameserver") and len(ln.split()) > 1]
    return bool(servers) and all(s in STUB_ADDRESSES for s in servers)


def _busctl(method: str, signature: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["busctl", "call", *_DEST, method, signature, *args],
                          capture_output=True, text=True, timeout=30, check=False)


def _ifindex(ifname: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{ifname}/ifindex").read_text())
    except (OSError, ValueError):
        return None


def _call(method: str, signature: str, ifindex: int, *args: str) -> None:
    """One Manager call for a link; waits briefly while resolved has not yet seen the link."""
    end = time.monotonic() + _LINK_WAIT
    while True:
        p = _busctl(method, signature, str(ifindex), *args)
        if p.returncode == 0:
            return
        err = (p.stderr.strip() or p.stdout.strip() or f"exit status {p.returncode}").splitlines()[-1]
        if "not known" not in err or time.monotonic() > end:
            raise HostError(f"systemd-resolved refused {method} for link {ifindex}: {err}")
        time.sleep(0.2)


def dns_args(servers: Sequence[str]) -> list[str]:
    """SetLinkDNS's a(iay) as busctl arguments: count, then family, length and bytes each."""
    out = [str(len(servers))]
    for s in servers:
        ip = ipaddress.ip_address(s)
        family = 2 if ip.version == 4 else 10  # AF_INET, AF_INET6
        out += [str(family), str(len(ip.packed)), *(str(b) for b in ip.packed)]
    return out


def domain_args(search: Sequence[str]) -> list[str]:
    """SetLinkDomains's a(sb): the root domain, routing only (`~.` in resolvectl's terms),
    sends every name to this link; search domains too. D-Bus takes no `~` prefix: the
    boolean says routing-only."""
    pairs = [(".", "true")] + [(d, "false") for d in search if d]
    return [str(len(pairs))] + [x for pair in pairs for x in pair]


def set_link(ifname: str, servers: Sequence[str], search: Sequence[str] = ()) -> None:
    """Give resolved the tunnel's DNS servers for `ifname`, for every name (`~.`)."""
    index = _ifindex(ifname)
    if index is None:
        raise HostError(f"cannot give DNS to systemd-resolved: no interface {ifname}")
    if servers:
        _call("SetLinkDNS", "ia(iay)", index, *dns_args(servers))
    _call("SetLinkDomains", "ia(sb)", index, *domain_args(search))
    _call("SetLinkDefaultRoute", "ib", index, "true")
    _busctl("FlushCaches", "")  # answers cached from the uplink's servers must not be reused


def revert_link(ifname: str) -> str | None:
    """Drop what `set_link` gave resolved; a link already gone has nothing left to drop."""
    index = _ifindex(ifname)
    if index is None:
        return None
    p = _busctl("RevertLink", "i", str(index))
    _busctl("FlushCaches", "")
    if p.returncode != 0 and "not known" not in p.stderr:
        return f"systemd-resolved: RevertLink {ifname}: {p.stderr.strip() or p.returncode}"
    return None


# ------------------------------------------------------------------ the physical side


def nsswitch_without_resolve(text: str) -> str | None:
    """nsswitch.conf with `resolve` (and its [action]) taken off the hosts line; None if absent.

    `dns` is added when the line had none, so names still come from resolv.conf.
    """
    out, changed = [], False
    for line in text.splitlines():
        m = re.match(r"(\s*hosts\s*:)(.*)$", line)
        if m and re.search(r"(^|\s)resolve(\s|$|\[)", m.group(2)):
            body = re.sub(r"(^|\s)resolve(\s*\[[^\]]*\])?", " ", m.group(2))
            words = body.split()
            if "dns" not in words:
                words.append("dns")
            line = f"{m.group(1)} {' '.join(words)}"
            changed = True
        out.append(line)
    return "\n".join(out) + "\n" if changed else None


def write_physical_nsswitch(etc_dir: Path, host: str = "/etc/nsswitch.conf") -> bool:
    """Put an nsswitch.conf without nss-resolve in /etc/netns/PHYSICAL (bound by exec)."""
    try:
        text = nsswitch_without_resolve(Path(host).read_text())
    except OSError:
        return False
    if text is None:
        return False
    fsmode.write_file(etc_dir / "nsswitch.conf", text, 0o644)  # read by exec'd programs of any user
    return True
