"""Run a command on a simulated host: a named network namespace treated as a whole machine.

`ip netns exec` is not enough for `nsroute up`: it gives the command a mount namespace
whose mounts never propagate back, so the `physical` namespace that nsroute creates inside
would be invisible outside and vanish with it. This runs the command the way it would run
on a real machine (DESIGN.md):
  unshare --mount --propagation unchanged    new mount namespace, /run/netns stays shared
  mount --make-private /                     our resolv.conf bind stays ours
  mount --bind /etc/netns/H/resolv.conf /etc/resolv.conf
  nsenter --net=/run/netns/H                 the host's network
  mount -t sysfs sysfs /sys                  /sys/class/net shows the host's interfaces
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import fsmode


def prepare(host: str, resolv: str = "# simulated host\n") -> None:
    """Give the host its own resolv.conf (required before anything runs in it)."""
    d = Path("/etc/netns") / host
    fsmode.make_dirs(d, 0o755)
    f = d / "resolv.conf"
    if not f.exists():
        fsmode.write_file(f, resolv, 0o644)


def argv(host: str, command: Sequence[str]) -> list[str]:
    """The full command line running `command` on simulated host `host`."""
    resolv = f"/etc/netns/{host}/resolv.conf"
    # A host that is the namespace we run in (a VM guest's initial one) already has its
    # sysfs on /sys, and a second mount of it there fails.
    mount_sys = "" if _is_ours(host) else "mount -t sysfs sysfs /sys && "
    inner = f"{mount_sys}exec {shlex.join(command)}"
    outer = (
        "mount --make-private / && "
        f"mount --bind {shlex.quote(resolv)} /etc/resolv.conf && "
        f"exec nsenter --net={shlex.quote('/run/netns/' + host)} sh -c {shlex.quote(inner)}"
    )
    return ["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", outer]


def _is_ours(host: str) -> bool:
    try:
        a, b = os.stat(f"/run/netns/{host}"), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def run(host: str, command: Sequence[str], env: Mapping[str, str] | None = None,
        timeout: float = 120, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run `command` on `host` and wait; output captured as text."""
    if not Path(f"/etc/netns/{host}/resolv.conf").exists():
        raise RuntimeError(f"simulated host {host} has no /etc/netns/{host}/resolv.conf; call prepare()")
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(argv(host, command), capture_output=True, text=True, timeout=timeout,
                          env=full_env, check=check, **kw)


def popen(host: str, command: Sequence[str], env: Mapping[str, str] | None = None, **kw) -> subprocess.Popen:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen(argv(host, command), env=full_env, **kw)
