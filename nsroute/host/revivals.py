"""Setting up a former uplink again beside the guard's loop, never in it.

Why: setting one up waits (for a moved radio's interface to appear in `physical`, up to
seconds under load), and while the guard's loop waits, a device plugged in at the same
time stays in the protected namespace, where udev renames it and anything there may use
it (the desktop tier saw a USB NIC wait 7.7 s there behind a Wi-Fi dongle). So the guard
only moves, and hands each setting-up to one worker thread, in the order the moves came.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Revivals(Generic[T]):
    """One worker thread that calls `work(item)` for each submitted item, in order."""

    def __init__(self, work: Callable[[T], None]) -> None:
        self._work = work
        self._queue: queue.Queue[T | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, item: T) -> None:
        """Queue `item`; the worker starts with the first one."""
        if self._stopping.is_set():
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="revivals", daemon=True)
            self._thread.start()
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stopping.is_set():
                return
            self._work(item)  # `work` reports its own failures (the guard's record)

    def close(self, timeout: float) -> bool:
        """Take no more and drop what has not begun; wait up to `timeout` s for the one in
        progress (as the guard did when it set up in its loop). True once the worker ended."""
        self._stopping.set()
        if self._thread is None:
            return True
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()
