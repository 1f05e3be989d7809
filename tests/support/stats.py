"""Reading an engine's counters (SIGUSR1 -> engine-IFNAME.stats.json) in tests.

The file's mtime can change before its new bytes are readable, so a reader waits for
content that parses and whose "time" is after the signal, not for a new mtime.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from .netns import wait_for


def request_stats(pid: int, path: Path | str, timeout: float = 5.0) -> dict:
    """Signal engine `pid` and return the counters it wrote to `path` after the signal."""
    path = Path(path)
    stamp = time.time()
    os.kill(pid, signal.SIGUSR1)
    got: dict = {}

    def fresh() -> bool:
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if stats.get("time", 0) < stamp:
            return False
        got.update(stats)
        return True

    wait_for(fresh, timeout, what=f"engine counters in {path} after SIGUSR1")
    return got
