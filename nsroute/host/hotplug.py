"""The hot-plug guard's life around `up` and `down` (the guard itself is guard.py).

`up` takes the baseline before it changes anything, starts `nsroute guard` and tells it
when the tunnel is (re)started; `down` hands back what the guard moved.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .. import fsmode
from . import (
    guard,
    guardrecord,
    linkup,
    netns,
    nmdns,
    nmphysical,
    procs,
    revive,
    rfkill,
    selfcmd,
    wifi,
)
from .errors import HostError
from .state import Proc

# ------------------------------------------------------------------ handing back


STOP_TIMEOUT = 30.0  # it ends once the uplink it is setting up again is done (slow under load)
DAEMONS = ("udhcpc", "busybox", "wpa_supplicant")  # what nsroute starts in the physical namespace


def stop(guard_proc: Proc | None, record_path: Path, physical: str, marker: str) -> None:
    """`down`, before anything moves: the guard (it would move back what `down` returns),
    then every DHCP client and wpa_supplicant of this deployment in `physical`.

    Why all of them, not only those the record names: the guard records what it started
    once an uplink is set up again, so a guard ended half-way (killed after STOP_TIMEOUT)
    may have started a client it never recorded, and so may an `up` killed half-way
    through its DHCP step. Each names a file of the deployment on its command line (the
    DHCP hook, a pid file: `marker` is their common prefix); that is how they are known.
    """
    procs.stop(guard_proc, STOP_TIMEOUT)
    for p in revive.revived_processes(guardrecord.Record.load(record_path).revived):
        procs.stop(p)
    if not netns.exists(physical):
        return
    for p in procs.marked(DAEMONS, netns.path_of(physical), marker):
        procs.stop(p)


def hand_back(record_path: Path, physical: str, warn: Callable[[str], None]) -> None:
    """`down`: every device the guard moved, still in `physical`, goes back to where we run."""
    rec = guardrecord.Record.load(record_path)
    revived = {(r["what"], r["index"]) for r in rec.revived}
    try:
        there = guard.links_in(physical)
    except Exception as e:
        warn(f"cannot list the links of {physical}: {e}")
        there = {}
    for m in rec.moved:
        if (m.what, m.index) in revived:
            continue  # a former uplink, under its own name: `down` brings it back with the others
        try:
            if m.what == "wiphy":
                wifi.move_wiphy(m.index, physical, None)
                continue
            # by index, which survives renames; by name where the index changed on the way
            index = m.index if there.get(m.index) == m.name else next(
                (i for i, n in there.items() if n == m.name), None)
            if index is not None:
                guard.move_link(index, None, physical)
        except HostError as e:
            if e.errno == errno.ENODEV:
                continue  # unplugged meanwhile
            warn(f"could not hand back {m.what} {m.name}: {e}")
        except OSError as e:
            warn(f"could not hand back {m.what} {m.name}: {e}")


# ------------------------------------------------------------------ the process


def marker(store_dir: Path, stem: str) -> str:
    """The prefix of the deployment's files, one of which each of its daemons names on its
    command line (a DHCP client's pid file): how they are known without a record."""
    return f"{store_dir / stem}."


def record_path(store_dir: Path, stem: str) -> Path:
    return store_dir / f"{stem}.guard.json"


WATCH_ENV = "NSROUTE_GUARD_WATCH_TUNNEL"


def start(physical: str, store_dir: Path, stem: str, timeout: float = 60.0) -> Proc:
    """Start `nsroute guard` in a session of its own; return once its first sweep is done.

    Under the systemd units (which set NSROUTE_GUARD_WATCH_TUNNEL=1) the guard is the
    process systemd watches, and it ends with the tunnel, so that one restart of the unit
    brings back whichever of the two died. Elsewhere it keeps guarding when the tunnel dies.
    """
    argv = [*selfcmd.nsroute_argv(), "guard", "--physical", physical]
    if os.environ.get(WATCH_ENV) == "1":
        argv.append("--watch-tunnel")
    path = record_path(store_dir, stem)
    log = store_dir / f"{stem}.guard.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        p = netns.popen(None, argv, stdout=fd, stderr=fd)
    finally:
        os.close(fd)
    rec = procs.record(p.pid, "guard", argv)
    end = time.monotonic() + timeout
    while guardrecord.Record.load(path).pid != p.pid:
        code = p.poll()
        if code is not None:
            raise HostError(f"the hot-plug guard exited with status {code}: {procs.last_line(log)}")
        if time.monotonic() > end:
            procs.stop(rec)
            raise HostError(f"the hot-plug guard did not start within {timeout:g}s: {procs.last_line(log)}")
        time.sleep(0.02)
    pidfile = store_dir / f"{stem}.guard.pid"  # what the systemd units watch
    fsmode.replace_file(pidfile, f"{p.pid}\n", 0o644)
    return rec


def baseline() -> dict[str, list[int]]:
    """What is here before `up` changes anything: the guard never moves these."""
    return {"links": sorted(guard.present_links()), "phys": sorted(guard.present_wiphys())}


def serve(physical: str, baseline_: dict[str, list[int]], store_dir: Path, stem: str,
          watch: Callable[[], tuple[Proc | None, str | None]] | None = None) -> int:
    """The body of `nsroute guard`."""
    g = guard.Guard(physical, baseline_.get("links", []), baseline_.get("phys", []),
                    record_path(store_dir, stem), watch=watch)
    r = revive.Reviver(physical, store_dir, stem, g.log)

    def again(m: guardrecord.Moved, earlier: list[dict]) -> list[dict]:
        if m.what == "wiphy":
            return r.wiphy(m.index, m.mac, earlier)
        return r.netdev(m.index, m.name, m.mac, earlier)

    g.revive = again
    g.extras.append(linkup.Watch(physical, store_dir, stem, marker(store_dir, stem), g.log, g.note))
    try:
        g.extras.append(rfkill.Watch(physical, store_dir, stem, g.log))
    except OSError as e:  # no rfkill in this kernel (or not yet loaded): no radio to unblock either
        g.log(f"guard: not watching rfkill: {e}")

    def nm_servers() -> nmdns.Watch | None:
        """Once NetworkManager is set to run in `physical` (after the guard started: `up`
        nudges it then), its DNS servers go to that side's resolv.conf."""
        if not nmphysical.runs_in_physical():
            return None
        return nmdns.Watch(Path("/etc/netns") / physical / "resolv.conf", g.log)

    g.later.append(nm_servers)
    return g.run()


def nudge(proc: Proc | None) -> None:
    """Tell a running guard that `up` got further: NetworkManager started in `physical`, or
    the tunnel (re)started. It re-reads what to watch (SIGHUP)."""
    if procs.alive(proc):
        assert proc is not None
        try:
            os.kill(proc.pid, signal.SIGHUP)
        except ProcessLookupError:
            pass
