"""The engine's counters and the file they are written to.

On SIGUSR1 the engine writes its drop, error, loop and offload counters (`device.drops`,
`errors`, `loop_counters`, `offload`) as JSON to `$NSROUTE_RUN_DIR/engine-IFNAME.stats.json`
(default run dir /run/nsroute), mode 0600, never half-written: replaced by rename, or, once
the engine has dropped its privileges and can only rewrite the file it opened, in one write
padded with spaces (see StatsFile.write). Its "time" field says when: a reader that
signalled waits for a time after its signal. The write happens in the loop, not in the
signal handler; a failure (say, an unprivileged engine and a root-owned run dir) is logged
and the engine carries on.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable

from .. import fsmode

log = logging.getLogger("nsroute.engine")


def stats_path(ifname: str, run_dir: str) -> str:
    return os.path.join(run_dir, f"engine-{ifname}.stats.json")


def internal_error(errors: Counter[str], where: str) -> None:
    """Count a bug caught on the data path (it costs a packet or a batch, never the
    tunnel); the first ten of each kind are logged with their traceback."""
    errors[f"internal_{where}"] += 1
    if errors[f"internal_{where}"] <= 10:
        log.exception("internal error in %s (packet dropped, engine continues)", where)


class StatsFile:
    """The counters file at `path`; `snapshot` gives the counters to write."""

    def __init__(self, path: str, snapshot: Callable[[], dict]) -> None:
        self.path = path
        self.snapshot = snapshot
        self._fd: int | None = None
        self._len = 0

    def prepare(self) -> None:
        """Write the counters once and keep the file open while still root: once
        unprivileged, the engine can no longer create files in the root-owned run
        directory, only rewrite this one (see write)."""
        if self._replace():
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
                self._len = os.fstat(self._fd).st_size
            except OSError as e:
                log.warning("cannot prepare counters file %s: %s", self.path, e)

    def write(self) -> None:
        """Counters to the file, never half-written for a reader: replaced by rename where
        the engine may create files; rewritten in place by one pwrite otherwise, the JSON
        padded with spaces to the length before, so the file never shrinks or empties."""
        if self._fd is None:
            self._replace()
            return
        data = json.dumps(self.snapshot(), sort_keys=True).encode()
        data = data.ljust(self._len)
        try:
            os.pwrite(self._fd, data, 0)
            self._len = len(data)
        except OSError as e:
            log.warning("cannot write counters: %s", e)

    def _replace(self) -> bool:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            fsmode.make_dirs(os.path.dirname(self.path), 0o755)
            fd = fsmode.open_file(tmp, os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self.snapshot(), f, sort_keys=True)
            os.replace(tmp, self.path)
            return True
        except OSError as e:
            log.warning("cannot write counters to %s: %s", self.path, e)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
