"""The two wireguard-go builds every protocol feature is checked against, and where each is.

OLD is Debian bookworm's own /usr/bin/wireguard-go (0.0.20220316, on PATH): plain TUN, one
datagram per sendmmsg entry. NEW is bookworm-backports' 0.0.20231211 (TUN TSO/GRO through
virtio-net headers, UDP GSO/GRO on its socket): what a user who wants userspace WireGuard
runs today. NEW is never installed: scripts/fetch-wireguard-go (run by scripts/setup)
unpacks it under the bench cache, and this module asks that script for its path, once per
process. Tests and scripts/bench share this lookup; a NEW that cannot be had is an error
with the fetch script's reason, never a skip.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OLD = "wireguard-go"
NEW = "wireguard-go-new"
BUILDS = [OLD, NEW]
FETCH = REPO / "scripts" / "fetch-wireguard-go"


class MissingBuild(RuntimeError):
    """The backports wireguard-go is not here: says why and how to get it."""


@functools.cache
def new_info() -> dict:
    """{"path", "package", "reports", "suite", "mirror"} of the backports build, or {"error"}.
    Offline once unpacked; otherwise the fetch script downloads it (root only)."""
    try:
        p = subprocess.run([sys.executable, str(FETCH), "--json"], capture_output=True, text=True,
                           timeout=900)
        if p.returncode == 0:
            return json.loads(p.stdout)
        return {"error": p.stderr.strip() or f"exit {p.returncode}"}
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def new_path() -> str:
    """The backports binary's path; MissingBuild (with the fetch script's reason) if absent."""
    info = new_info()
    if "error" in info:
        raise MissingBuild(f"no {NEW} (bookworm-backports wireguard-go): {info['error']} "
                           f"(run scripts/fetch-wireguard-go as root)")
    return info["path"]


def old_info() -> dict:
    """Debian bookworm's /usr/bin/wireguard-go (the 2022 build): its path and versions."""
    info: dict = {"path": shutil.which("wireguard-go")}
    try:
        info["package"] = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "wireguard-go"],
                                         capture_output=True, text=True, timeout=10).stdout.strip()
        out = subprocess.run(["wireguard-go", "--version"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"v\d[\w.+~-]*", out)
        info["reports"] = m.group(0) if m else ""
    except (OSError, subprocess.TimeoutExpired) as e:
        info["error"] = f"{type(e).__name__}: {e}"
    return info


def command(impl: str) -> list[str]:
    """argv (before IFNAME) that starts build IMPL as a daemon."""
    if impl == OLD:
        return ["wireguard-go"]
    if impl == NEW:
        return [new_path()]
    raise ValueError(impl)


def is_wggo(impl: str) -> bool:
    return impl in BUILDS
