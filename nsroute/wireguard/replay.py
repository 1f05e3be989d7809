"""The receive counter's sliding window (RFC 6479 idea, 8128 packets wide as in WireGuard).

A packet is checked before decryption (cheap rejection of replays) and recorded only after
its tag verified, so forged packets cannot move the window.
"""

from __future__ import annotations

from .constants import REJECT_AFTER_MESSAGES

WINDOW = 8192 - 64
_MASK = (1 << WINDOW) - 1


class ReplayWindow:
    __slots__ = ("greatest", "bits", "started")

    def __init__(self) -> None:
        self.greatest = 0
        self.bits = 0  # bit i set: counter (greatest - i) was seen
        self.started = False

    def check(self, counter: int) -> bool:
        """Could `counter` be fresh? Does not change the window."""
        if counter >= REJECT_AFTER_MESSAGES:
            return False
        if not self.started or counter > self.greatest:
            return True
        diff = self.greatest - counter
        return diff < WINDOW and not (self.bits >> diff) & 1

    def accept(self, counter: int) -> bool:
        """Record `counter`; False when it was a replay or is too old."""
        if not self.check(counter):
            return False
        if not self.started:
            self.started = True
            self.greatest = counter
            self.bits = 1
        elif counter > self.greatest:
            shift = counter - self.greatest
            self.bits = ((self.bits << shift) | 1) & _MASK if shift < WINDOW else 1
            self.greatest = counter
        else:
            self.bits |= 1 << (self.greatest - counter)
        return True
