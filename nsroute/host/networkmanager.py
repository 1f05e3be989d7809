"""Keeping NetworkManager's hands off the interfaces nsroute moves, and giving them back.

A device that NetworkManager manages is one it will reconfigure: when nsroute takes it
away NetworkManager tears its connection down, and when `down` brings it back
NetworkManager may fight the restore (or, with a profile remembered per ifindex in
/run/NetworkManager, leave it unmanaged for good). So `up` marks the devices unmanaged
(`nmcli device set IF managed no`) before moving them, and `down` hands back exactly the
ones it took (`managed yes`). Best-effort: without NetworkManager there is nothing to do
(and nothing is said: nmcli installed without the daemon running is common); when nmcli is
missing or refuses, one clear warning and nsroute carries on.

This is the fallback. Where systemd runs NetworkManager, `up` moves NetworkManager itself
into the physical namespace instead (nmphysical.py), so the uplinks stay connected.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

from . import procs

NMCLI = "nmcli"
TIMEOUT = 10.0


def _stderr(msg: str) -> None:
    print(f"[#] warning: {msg}", file=sys.stderr)


Warn = Callable[[str], None]


def _nmcli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NMCLI, *args], capture_output=True, text=True, timeout=TIMEOUT)


def _why(p: subprocess.CompletedProcess) -> str:
    lines = (p.stderr or p.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {p.returncode}"


def _daemon_running() -> bool:
    """NetworkManager is running here even though we cannot ask it (no nmcli)."""
    return bool(procs.find("NetworkManager"))


def _split_terse(line: str) -> list[str]:
    """One line of `nmcli -t` output: fields split at unescaped ':' (nmcli escapes ':' and '\\')."""
    fields, cur, esc = [], [], False
    for ch in line:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ":":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur))
    return fields


def _device_states() -> dict[str, str] | str:
    """DEVICE -> STATE as NetworkManager sees them ({} when it does not run); a str is an error."""
    try:
        p = _nmcli("-t", "-f", "RUNNING", "general")
        if p.returncode != 0:
            return _why(p)
        if p.stdout.strip() != "running":
            return {}
        p = _nmcli("-t", "-f", "DEVICE,STATE", "device")
    except subprocess.TimeoutExpired:
        return f"nmcli did not answer within {TIMEOUT:g}s"
    except OSError as e:
        return str(e)
    if p.returncode != 0:
        return _why(p)
    out = {}
    for line in p.stdout.splitlines():
        f = _split_terse(line)
        if len(f) >= 2:
            out[f[0]] = f[1]
    return out


def _set(names: Sequence[str], managed: bool) -> list[str]:
    """`nmcli device set IF managed yes|no` for each; returns 'IF: why' for each failure."""
    failed = []
    for n in names:
        try:
            p = _nmcli("device", "set", n, "managed", "yes" if managed else "no")
        except subprocess.TimeoutExpired:
            failed.append(f"{n}: nmcli did not answer within {TIMEOUT:g}s")
            continue
        except OSError as e:
            failed.append(f"{n}: {e}")
            continue
        if p.returncode != 0:
            failed.append(f"{n}: {_why(p)}")
    return failed


def release(ifnames: Sequence[str], warn: Warn = _stderr) -> list[str]:
    """Before the move: make NetworkManager let go of these devices.

    Returns the devices this changed (managed before, unmanaged now); keep that list in
    the state and pass it to `restore`, so a device the user had unmanaged stays so.
    """
    if not ifnames or not _daemon_running():
        return []
    if shutil.which(NMCLI) is None:
        warn(f"NetworkManager is running but nmcli is missing: it still manages {', '.join(ifnames)} "
             "and may fight nsroute over them (install nmcli, or mark them unmanaged)")
        return []
    states = _device_states()
    if isinstance(states, str):
        warn(f"could not ask NetworkManager to release {', '.join(ifnames)} ({states}); "
             "it may reconfigure them")
        return []
    wanted = [n for n in ifnames if states.get(n, "unmanaged") != "unmanaged"]
    failed = _set(wanted, managed=False)
    if failed:
        warn("NetworkManager did not release " + "; ".join(failed) + " (it may reconfigure them)")
    bad = {f.split(":", 1)[0] for f in failed}
    return [n for n in wanted if n not in bad]


def managed(ifnames: Sequence[str]) -> list[str]:
    """The devices among `ifnames` that NetworkManager manages (it configures them itself).

    When nmcli cannot tell, all of them: better no DHCP client of ours than two on one device.
    """
    states = _device_states() if shutil.which(NMCLI) else "nmcli is missing"
    if isinstance(states, str):
        return list(ifnames)
    return [n for n in ifnames if states.get(n, "unmanaged") != "unmanaged"]


def would_manage(ifnames: Sequence[str]) -> list[str]:
    """The devices among `ifnames` NetworkManager will manage once it starts (at boot it
    cannot be asked yet): all but those udev marks NM_UNMANAGED (its rules do so for veths
    and the like). When udev cannot tell, managed, as in `managed`."""
    out = []
    for n in ifnames:
        try:
            p = subprocess.run(["udevadm", "info", "--query=property", f"--path=/sys/class/net/{n}"],
                               capture_output=True, text=True, timeout=TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            p = None
        if p is None or "NM_UNMANAGED=1" not in p.stdout.splitlines():
            out.append(n)
    return out


def restore(ifnames: Sequence[str], warn: Warn = _stderr) -> None:
    """After the devices are home again: hand back to NetworkManager the ones `release` took."""
    if not ifnames or not _daemon_running():
        return  # not running: its runtime flags died with it
    if shutil.which(NMCLI) is None:
        warn(f"nmcli is missing: give {', '.join(ifnames)} back to NetworkManager with "
             "`nmcli device set IF managed yes`")
        return
    states = _device_states()
    if isinstance(states, str):
        warn(f"could not give {', '.join(ifnames)} back to NetworkManager ({states}); "
             "run `nmcli device set IF managed yes`")
        return
    if not states:
        return  # NetworkManager is not running: its runtime flags died with it
    failed = _set(list(ifnames), managed=True)
    if failed:
        warn("NetworkManager did not take back " + "; ".join(failed)
             + " (run `nmcli device set IF managed yes`)")
