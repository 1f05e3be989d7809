"""Per-source token bucket for handshake messages when the device is under load."""

from __future__ import annotations

import ipaddress

PACKETS_PER_SECOND = 20
PACKETS_BURSTABLE = 5
_GC_INTERVAL = 1.0


class RateLimiter:
    def __init__(self, rate: float = PACKETS_PER_SECOND, burst: int = PACKETS_BURSTABLE) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: dict[bytes, tuple[float, float]] = {}
        self.last_gc = 0.0

    @staticmethod
    def _key(host: str) -> bytes:
        ip = ipaddress.ip_address(host.split("%")[0])
        # One IPv6 host usually owns its whole /64: limit the prefix, not each address.
        return ip.packed if ip.version == 4 else ip.packed[:8]

    def allow(self, host: str, now: float) -> bool:
        if now - self.last_gc > _GC_INTERVAL:
            self._gc(now)
        key = self._key(host)
        tokens, last = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1.0, now)
        return True

    def _gc(self, now: float) -> None:
        full = self.burst / self.rate
        self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < full}
        self.last_gc = now
