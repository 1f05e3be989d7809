"""`up` claims success only once it has seen it: the uplinks back and the first handshake done.

After `up` has built everything, it polls the very checks `nsroute status` makes
(health.traffic_problems over status.gather: one rule in one place) until none is left or
the time given with `--wait` runs out. On time-out it reports each unmet condition with
the same line `status --check` prints, exits with EXIT_NOT_READY and tears nothing down:
the kill switch is the point of `up`, and the tunnel comes up by itself once the user
fixes the Wi-Fi or the cable (`nsroute down` still undoes everything).

WireGuard starts a handshake only when it has something to send. A peer without
PersistentKeepalive would stay silent while `up` waits, so `kick` turns keepalives on and
straight off again: turning them on sends one keepalive at once (the kernel, wireguard-go
and our engine alike), which starts the handshake and keeps retrying it as WireGuard
does, and no packet of the user's goes anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import config as wgconfig
from . import health, kernelwg
from . import status as status_mod
from .errors import HostError
from .state import State

DEFAULT_WAIT = 20.0  # seconds: association, a DHCP lease and a handshake, with retries to spare
EXIT_NOT_READY = 3  # distinct from 1 (an error, nothing changed) and 2 (bad usage)
POLL = 0.5
KICK_INTERVAL = 25  # any non-zero value: only the on/off edge matters

Finding = health.Finding
Clock = Callable[[], float]


class NotReady(HostError):
    """`up` built the kill switch, but the tunnel does not carry traffic yet."""

    exit_code = EXIT_NOT_READY

    def __init__(self, waited: float, problems: list[Finding]) -> None:
        self.problems = problems
        lines = [f"problem: {p['kind']}: {p['message']}" for p in problems]
        super().__init__(
            f"not ready after {waited:g} s; the kill switch stays in place (nothing leaks, and the "
            "tunnel comes up by itself once this is fixed; `nsroute down` undoes it):\n" + "\n".join(lines))


def poll(probe: Callable[[], list[Finding]], timeout: float, clock: Clock = time.monotonic,
         sleep: Callable[[float], None] = time.sleep, interval: float = POLL) -> list[Finding]:
    """Run `probe` until it finds nothing or `timeout` has passed; what it found last
    ([] as soon as it was clean, so `up` returns the moment it is ready)."""
    end = clock() + timeout
    while True:
        found = probe()
        now = clock()
        if not found or now >= end:
            return found
        sleep(min(interval, end - now))


def problems(st: State) -> list[Finding]:
    """What keeps the tunnel from carrying traffic now, as `status` sees it."""
    return health.traffic_problems(status_mod.gather(st, full=False))


def silent_peers(cfg: wgconfig.Config) -> list[bytes]:
    """Peers we can reach (an endpoint) that would send nothing unasked (no keepalive)."""
    return [p.public_key for p in cfg.peers if p.endpoint is not None and not p.persistent_keepalive]


def kick(st: State, peers: list[bytes]) -> None:
    """Start the handshake with each of `peers` now: keepalives on, then off again."""
    ns = st.into if st.mode == "into" else None
    for key in peers:
        for seconds in (KICK_INTERVAL, 0):
            if st.backend == "kernel":
                kernelwg.set_keepalive(st.ifname, ns, key, seconds)
            else:
                _uapi_keepalive(st.ifname, key, seconds)


def _uapi_keepalive(ifname: str, key: bytes, seconds: int) -> None:
    from ..engine import uapi

    raw = f"set=1\npublic_key={key.hex()}\npersistent_keepalive_interval={seconds}\n\n".encode()
    try:
        answer = uapi.request(ifname, raw)
    except OSError as e:
        raise HostError(f"cannot reach the engine of {ifname} to start the handshake: {e}") from None
    if "errno=0" not in answer:
        raise HostError(f"the engine of {ifname} refused to start the handshake: {answer.strip()}")


def await_ready(st: State, cfg: wgconfig.Config, timeout: float, say: Callable[[str], None],
                clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                probe: Callable[[], list[Finding]] | None = None) -> None:
    """Return once the tunnel carries traffic; raise NotReady after `timeout` seconds."""
    start = clock()
    try:
        kick(st, silent_peers(cfg))
    except HostError as e:  # the checks below say what is wrong with the engine or link
        say(f"warning: {e}")
    say(f"waiting up to {timeout:g} s for the uplinks and the first handshake (--wait)")
    left = poll(probe or (lambda: problems(st)), timeout, clock, sleep)
    if left:
        raise NotReady(timeout, left)
    say(f"ready after {clock() - start:.1f} s: all traffic goes through the tunnel")
