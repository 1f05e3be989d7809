"""PreUp/PostUp/PreDown/PostDown, run as wg-quick runs them: `sh -c` with %i replaced."""

from __future__ import annotations

import subprocess

from .errors import HostError


def expand(command: str, ifname: str) -> str:
    return command.replace("%i", ifname)


def run(kind: str, commands: list[str], ifname: str, strict: bool = True) -> list[str]:
    """Run each hook in order; a failure aborts (strict) or is returned as a warning."""
    warnings = []
    for cmd in commands:
        line = expand(cmd, ifname)
        p = subprocess.run(["sh", "-c", line], timeout=120)
        if p.returncode != 0:
            msg = f"{kind} hook `{line}` exited with {p.returncode}"
            if strict:
                raise HostError(msg)
            warnings.append(msg)
    return warnings
