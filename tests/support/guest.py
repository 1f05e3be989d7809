"""What the VM tiers' guest directories share: collection rules and a command runner."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def mark_guest_only(items, here: Path, inside: bool, reason: str) -> None:
    """Every test below `here` is a vm test (`-m "not vm"` leaves it out), skipped outside its guest.

    Why at collection: a skip in a fixture would come after session fixtures that load
    kernel modules, which fail on a host without them.
    """
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.vm)
            if not inside:
                item.add_marker(skip)


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command, text output; raise with its output on failure."""
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p
