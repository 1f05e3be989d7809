"""What `up` did, on disk, so that `down` can undo it from any point.

The state file is written before the first change and rewritten (atomically: it is our
own file, so rename is fine here) before and after each step. `down`, and the rollback
of a failed `up`, read only this file: they never guess from the system what nsroute did.
"""

from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import fsmode
from . import records

VERSION = 1
FAULT_ENV = "NSROUTE_FAULT_AFTER_STEP"


def run_dir() -> Path:
    """Where state lives: NSROUTE_RUN_DIR, or /run/nsroute."""
    return Path(os.environ.get("NSROUTE_RUN_DIR") or "/run/nsroute")


def state_key(physical: str, into: str | None = None, ifname: str | None = None) -> str:
    """File stem for one deployment: by physical namespace, or by container and tunnel."""
    if into is None:
        return f"host-{physical}"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", into.strip("/"))
    return f"into-{safe}-{ifname}"


@dataclass
class Proc:
    """A process nsroute started, identified by PID and kernel start time (no PID reuse)."""

    pid: int
    start_time: int
    what: str = ""
    argv: list[str] = field(default_factory=list)


@dataclass
class State:
    mode: str  # "host" or "into"
    physical: str  # host mode: the namespace we create; into mode: "" (unused)
    config_path: str
    ifname: str
    into: str | None = None
    version: int = VERSION
    steps: list[str] = field(default_factory=list)
    doing: str | None = None  # the step begun and not yet done ("" none; None: an older state file)
    netns_created: bool = False
    etc_netns_created: bool = False
    snapshot_time: float = 0.0
    interfaces: list[dict[str, Any]] = field(default_factory=list)
    wiphys: list[dict[str, Any]] = field(default_factory=list)
    dhcp: list[Proc] = field(default_factory=list)
    wpa: list[Proc] = field(default_factory=list)
    wpa_original: list[list[str]] = field(default_factory=list)
    nm_released: list[str] = field(default_factory=list)  # devices NetworkManager gave up to us
    nm_physical: bool = False  # NetworkManager (under systemd) moved into the physical namespace
    nm_managed: list[str] = field(default_factory=list)  # devices it configures there (no DHCP of ours)
    backend: str = "userspace"  # "userspace" (engine process) or "kernel" (wireguard link)
    kernel_link: str = ""  # kernel backend: "" none made, "created" (not yet moved), "moved"
    engine: Proc | None = None
    # the hot-plug guard (host mode): what was there before `up`, the block table, the process
    guard_baseline: dict[str, list[int]] = field(default_factory=dict)  # "links": ifindexes, "phys": wiphys
    guard_block: bool = False
    guard: Proc | None = None
    engine_config: str = ""
    listen_port: int = 0  # the tunnel's UDP port once up (0: not known); a restart asks for it again
    tunnel_addresses: list[str] = field(default_factory=list)
    resolv_path: str = ""
    resolv_saved: str | None = None  # previous content, written back by `down`
    resolved_link: str = ""  # the tunnel link given DNS in systemd-resolved (reverted by `down`)
    complete: bool = False

    def done(self, step: str) -> bool:
        return step in self.steps

    def etc_netns(self) -> Path | None:
        """/etc/netns/NAME of the namespace `up` gives files to (`physical`, or a named
        container); None for a container given by path, which `ip netns exec` never binds."""
        name = self.physical if self.mode == "host" else self.into
        return Path("/etc/netns") / name if name and "/" not in name else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> State:
        raw = json.loads(text)
        if raw.get("version") != VERSION:
            raise ValueError(f"state version {raw.get('version')} is not {VERSION}")
        raw["dhcp"] = [Proc(**p) for p in raw.get("dhcp", [])]
        raw["wpa"] = [Proc(**p) for p in raw.get("wpa", [])]
        raw["engine"] = Proc(**raw["engine"]) if raw.get("engine") else None
        raw["guard"] = Proc(**raw["guard"]) if raw.get("guard") else None
        # snapshots of the previous version hold `ip -j` JSON: read as records
        raw["interfaces"] = [records.upgrade_snapshot(s) for s in raw.get("interfaces", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


class Store:
    """One state file; `mark` records a step and is the fault-injection point for tests."""

    def __init__(self, key: str, directory: Path | None = None) -> None:
        self.dir = directory or run_dir()
        self.path = self.dir / f"{key}.json"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> State:
        return State.from_json(self.path.read_text())

    def save(self, st: State) -> None:
        fsmode.make_dirs(self.dir, 0o700)
        fsmode.replace_file(self.path, st.to_json(), 0o600, fsync=True)

    def mark(self, st: State, step: str) -> None:
        """Record that `step` is done; die here if a test asked to (NSROUTE_FAULT_AFTER_STEP)."""
        if step not in st.steps:
            st.steps.append(step)
        self.save(st)
        if os.environ.get(FAULT_ENV) == step:
            os.kill(os.getpid(), signal.SIGKILL)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_suffix(".tmp").unlink(missing_ok=True)

    def remove_all(self) -> None:
        """The state and every file of this deployment (logs, hook, setconf): `down` succeeded."""
        for f in self.dir.glob(f"{self.path.stem}.*"):
            f.unlink(missing_ok=True)

    def all_keys(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.json"))
