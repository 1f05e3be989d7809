"""How many packets each pass of the engine's loop reads from a ready source.

Under load a pass drains each source in batches: the syscalls per packet are what a Python
data path pays for. A lone packet (a ping, a keystroke, the kernel's instant answer to one)
is better read alone and sent on: the read after it would only say "nothing else", and on
the cold CPU such a packet meets that read costs 10-30 us (docs/bench.md). If more was
waiting after all, epoll (level-triggered) says so at once and the next pass drains it in
batches, so a wrong guess costs one epoll call.

Two signs say a packet is alone:
- quiet: at least IDLE_WAKE since the last pass that moved packets ended. Counted from that
  end, not from the last wake-up (the loop's naps would cut it short) nor from the pass's
  start (a long batch pass under load would look like quiet).
- a chain: after a pass that read nothing but lone packets, a source that was not read in
  it. That is the kernel's answer to what the pass delivered: a ping's reply is in the TUN
  before the write of its request returns. A source read alone and still ready has more
  behind it, so it is drained in batches, and any batch read ends the chain; under load
  it costs at most one more epoll call.
"""

from __future__ import annotations

from collections.abc import Hashable

BATCH = 128
# 0.1 ms, not more: a ping's reply comes back 0.2-0.4 ms after its request's pass, and must
# get the lone pass too (with 0.5 ms it drew a cold EAGAIN receive per ping: ns-wggo RTT
# 0.577 -> 0.536 ms over ten interleaved rounds). Under bulk load 4-16 % of the passes are
# then lone ones, each costing one more epoll call; throughput did not move (docs/bench.md).
IDLE_WAKE = 0.0001


class ReadPacer:
    """The read limits of the loop's passes: start() when epoll returns, limit() for each
    ready packet source, end() when the next loop turn begins (the pass's flushes done)."""

    def __init__(self) -> None:
        self.last_traffic = float("-inf")  # when the last pass that moved packets ended
        self._quiet = False
        self._batched = False
        self._lone: set[Hashable] = set()
        # Sources the last traffic pass read alone, when it read none in batches; else None.
        self._chain: frozenset[Hashable] | None = None

    def start(self, now: float) -> None:
        self._quiet = now - self.last_traffic >= IDLE_WAKE

    def limit(self, source: Hashable) -> int:
        """The most packets to read from `source`, which epoll reported ready."""
        chain = self._chain
        if self._quiet or (chain is not None and source not in chain):
            self._lone.add(source)
            return 1
        self._batched = True
        return BATCH

    def end(self, now: float) -> None:
        if self._batched or self._lone:  # the pass moved packets (end() may come twice)
            self.last_traffic = now
            self._chain = None if self._batched else frozenset(self._lone)
            self._batched = False
            self._lone.clear()

    def since_traffic(self, now: float) -> float:
        return now - self.last_traffic
