"""An interactive shell on a pseudo-terminal, driven by keystrokes as a person would.

What a terminal user sees of a program (who is in the foreground, what Ctrl-Z and Ctrl-C
do, what the shell's `jobs` and `fg` say) exists only under a controlling terminal, so the
tests get one: the shell is a session leader with the pty's slave as its terminal.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import time
from collections.abc import Mapping, Sequence


class Terminal:
    """A shell (the last exec of `argv`) on the slave side of a fresh pty; we hold the master."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: setsid and the controlling terminal are done by pty.fork
            try:
                os.execvpe(argv[0], list(argv), dict(env))
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.seen = ""

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, needle: str, timeout: float = 30.0) -> str:
        """Read until `needle` appears in what the terminal shows; returns everything so far."""
        end = time.monotonic() + timeout
        while needle not in self.seen:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"terminal never showed {needle!r}; it showed:\n{self.seen[-2000:]}")
            if select.select([self.fd], [], [], min(left, 0.5))[0]:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # EIO: the shell and everything on the terminal is gone
                    data = b""
                if not data:
                    raise AssertionError(f"terminal closed before {needle!r}:\n{self.seen[-2000:]}")
                self.seen += data.decode(errors="replace")
        return self.seen

    def close(self) -> None:
        """End the shell (by its PID), then release the master."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def proc_stat(pid: int) -> dict[str, int | str]:
    """State, process group and the terminal's foreground group, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return {"state": fields[0], "pgrp": int(fields[2]), "tpgid": int(fields[5])}
