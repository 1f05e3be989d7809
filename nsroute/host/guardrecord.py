"""What the hot-plug guard did, written down: the devices it moved (which `down` hands
back), errors, and the uplinks it set up again. The guard writes it after every change;
`status`, `down` and a restarted guard read it, so it outlives the guard process."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import fsmode


@dataclass
class Moved:
    what: str  # "netdev" or "wiphy"
    name: str
    index: int  # ifindex (netdev) or wiphy index
    time: float
    netdevs: list[str] = field(default_factory=list)  # a wiphy's netdevs when it moved
    mac: str = ""  # its MAC (a wiphy's permanent one) before the move: how a former uplink is known


@dataclass
class Record:
    """What the guard did; written atomically after every change (status and down read it)."""

    pid: int = 0
    started: float = 0.0
    moved: list[Moved] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    revived: list[dict] = field(default_factory=list)  # former uplinks set up again (revive.py)
    renewed: list[dict] = field(default_factory=list)  # uplinks up again: renewed, static part re-added (linkup.py)

    def save(self, path: Path) -> None:
        fsmode.replace_file(path, json.dumps(asdict(self), indent=1), 0o600)

    @classmethod
    def load(cls, path: Path) -> Record:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        return cls(pid=raw.get("pid", 0), started=raw.get("started", 0.0),
                   moved=[Moved(**m) for m in raw.get("moved", [])], errors=list(raw.get("errors", [])),
                   revived=list(raw.get("revived", [])), renewed=list(raw.get("renewed", [])))
