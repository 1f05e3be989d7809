"""The receive counter's sliding window (RFC 6479 idea, 8128 packets wide as in WireGuard).

A packet is checked before decryption (cheap rejection of replays) and recorded only after
its tag verified, so forged packets cannot move the window.

The bitmap is a ring of 128 words of 64 bits, as in the kernel (noise.h): counter c lives
at bit c % 64 of word (c // 64) % 128, and moving the window clears only the words it
moves into. In-order packets, nearly all of them, then touch one small int each, where
one big integer for the whole window cost three 8,128-bit operations per packet.
The window is a word short of the ring (8192 - 64), so a counter inside it never shares
its word with the newest one's.
"""

from __future__ import annotations

from .constants import REJECT_AFTER_MESSAGES

_WORD_BITS = 64
_WORDS = 128
WINDOW = _WORDS * _WORD_BITS - _WORD_BITS


class ReplayWindow:
    __slots__ = ("greatest", "words", "started")

    def __init__(self) -> None:
        self.greatest = 0
        self.words = [0] * _WORDS
        self.started = False

    def check(self, counter: int) -> bool:
        """Could `counter` be fresh? Does not change the window."""
        if counter >= REJECT_AFTER_MESSAGES:
            return False
        greatest = self.greatest
        if counter > greatest or not self.started:
            return True
        return (greatest - counter < WINDOW
                and not (self.words[(counter >> 6) & 127] >> (counter & 63)) & 1)

    def accept(self, counter: int) -> bool:
        """Record `counter`; False when it was a replay or is too old."""
        if not self.check(counter):
            return False
        self.record(counter)
        return True

    def record(self, counter: int) -> None:
        """Record a counter that check() has just called fresh."""
        words = self.words
        if not self.started:
            self.started = True
            self.greatest = counter
        elif counter > self.greatest:
            new, old = counter >> 6, self.greatest >> 6
            if new - old >= _WORDS:
                words[:] = [0] * _WORDS
            else:
                for w in range(old + 1, new + 1):
                    words[w & 127] = 0
            self.greatest = counter
        words[(counter >> 6) & 127] |= 1 << (counter & 63)
