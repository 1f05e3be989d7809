"""How to start nsroute itself again (for the engine and the DHCP hook)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

ENGINE_ENV = "NSROUTE_ENGINE"


def nsroute_argv() -> list[str]:
    """The `nsroute` command of this installation (the script beside our interpreter first)."""
    sibling = Path(sys.executable).with_name("nsroute")
    if sibling.exists() and os.access(sibling, os.X_OK):
        return [str(sibling)]
    found = shutil.which("nsroute")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from nsroute.cli import main; sys.argv[0] = 'nsroute'; main()"]


def engine_argv() -> list[str]:
    """`nsroute engine`, or the command in NSROUTE_ENGINE (same arguments; for testing other engines)."""
    override = os.environ.get(ENGINE_ENV)
    if override:
        return shlex.split(override)
    return [*nsroute_argv(), "engine"]
