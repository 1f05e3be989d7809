"""Naps and warm-up: keeping the CPU and the data path's code warm for a while after traffic.

For LINGER seconds after the last packet the loop wakes at least every NAP seconds (epoll's
resolution is a millisecond). A packet that arrives after ~10 ms of complete quiet finds a
cold CPU and pays ~10x for every line and syscall; with the naps, ping RTT at 10 ms
intervals fell by a fifth here (docs/bench.md, "Lingering"). The Go runtime behind
wireguard-go does alike: its monitor thread keeps waking for a while after activity.
An idle engine is never woken for it. NSROUTE_LINGER_MS sets LINGER (0: off).
Every WARM_EVERY seconds of naps the loop also runs the data path once on scratch devices
(warmup.Scratch): the naps alone keep the CPU awake, not the code a packet runs, which on
this shared VM is evicted within milliseconds (a lone packet's TUN read to UDP send: 99 us
at 10 ms spacing, 48 us with a pass at every nap). Ping RTT at 10 ms, ns-ns: 0.64 ms
without, 0.54 with a pass every 2 ms, 0.52 every 1 ms; engine CPU at 100 pings/s +3.7 and
+5.5 % of a core (docs/bench.md). NSROUTE_NAP_WARM=0 turns the pass off (for comparison).
The engine's start-up runs one such pass too (a scratch handshake, Naps.warm_up).
"""

from __future__ import annotations

from collections import Counter

from ..wireguard.warmup import Scratch
from .options import Options
from .pacing import ReadPacer
from .stats import internal_error

NAP = 0.001
WARM_EVERY = 0.002


class Naps:
    """When the loop naps, and the scratch passes it makes on them."""

    def __init__(self, options: Options, errors: Counter[str],
                 loop_counters: Counter[str]) -> None:
        self.linger = options.linger
        self.warm = options.nap_warm
        self.errors = errors
        self.loop_counters = loop_counters
        self.scratch: Scratch | None = None
        self._last_warm = float("-inf")

    def wait(self, wait: float, pacer: ReadPacer, real: float) -> float:
        """`wait`, cut to a nap while lingering after traffic."""
        if wait > NAP and pacer.since_traffic(real) < self.linger:
            return NAP
        return wait

    def woke(self, pacer: ReadPacer, real: float, now: float) -> None:
        """A wait ended with nothing to do: while lingering, a scratch pass every WARM_EVERY."""
        if (self.warm and real - self._last_warm >= WARM_EVERY
                and pacer.since_traffic(real) < self.linger):
            self._last_warm = real
            self.nap_pass(now)

    def warm_up(self, now: float) -> bool:
        """The start-up pass (a scratch handshake and a packet each way); its scratch devices
        stay for the naps. True when the packets arrived."""
        self.scratch = Scratch(now)
        return self.scratch.exercise(now)

    def nap_pass(self, now: float) -> None:
        """A nap's pass over the data path on scratch devices; a failure turns it off for
        good, never the tunnel."""
        try:
            if self.scratch is None or self.scratch.stale(now):
                self.scratch = Scratch(now)
            if not self.scratch.exercise(now):
                raise RuntimeError("scratch packets did not arrive")
            self.loop_counters["nap_warm_passes"] += 1
        except Exception:
            self.warm = False
            internal_error(self.errors, "nap_warm")
