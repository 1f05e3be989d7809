"""The engine's settings, read from the environment once, at start-up, into one object.

Every knob is an NSROUTE_* variable (comparison and test switches; production leaves them
unset). A value the engine cannot use either falls back to the default with one warning
line (numbers out of range: the engine still serves) or, where no default makes sense (an
offload flag set that is not a number), is refused with one line (OptionsError).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("nsroute.engine")


class OptionsError(OSError):
    """A setting the engine refuses; the message is one line for the user."""


@dataclass(frozen=True)
class Options:
    # NSROUTE_OFFLOAD=0: no UDP GSO/GRO and no TUN offload (to compare, or to rule them out).
    offload: bool = True
    # NSROUTE_TUN_GRO=0: TUN offload kept, but one packet per write (no coalescing);
    # NSROUTE_TUN_USO=0: TCP segments are coalesced, UDP datagrams are not.
    tun_gro: bool = True
    tun_uso: bool = True
    # NSROUTE_TUN_TSO=1: also ask the TUN for TSO/USO reads (tun.py says why it is off).
    tun_tso: bool = False
    # NSROUTE_TUN_OFFLOAD_FLAGS: exactly this TUN_F_* set (an integer, say 0x7), for tests.
    tun_offload_flags: int | None = None
    # NSROUTE_LINGER_MS / 1000: naps after traffic (naps.py); 0 turns them off.
    linger: float = 0.050
    # NSROUTE_NAP_WARM=0: no scratch pass on naps (naps.py).
    nap_warm: bool = True
    # NSROUTE_TIME_SCALE (TEST ONLY, loop.py): the protocol's clock runs this many times fast.
    time_scale: float = 1.0
    # NSROUTE_RUN_DIR: where the counters file goes (stats.py).
    run_dir: str = "/run/nsroute"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Options:
        """The settings in `environ`; OptionsError for one that cannot be used."""
        def on(name: str) -> bool:
            return environ.get(name, "1") != "0"

        scale = _number(environ, "NSROUTE_TIME_SCALE", 1.0, 1.0, 1000.0)
        if scale != 1.0:
            log.warning("NSROUTE_TIME_SCALE=%g: protocol timers run %g times fast (test only)",
                        scale, scale)
        return cls(offload=on("NSROUTE_OFFLOAD"), tun_gro=on("NSROUTE_TUN_GRO"),
                   tun_uso=on("NSROUTE_TUN_USO"), tun_tso=environ.get("NSROUTE_TUN_TSO") == "1",
                   tun_offload_flags=_flags(environ.get("NSROUTE_TUN_OFFLOAD_FLAGS")),
                   linger=_number(environ, "NSROUTE_LINGER_MS", 50.0, 0.0, 10000.0) / 1000.0,
                   nap_warm=on("NSROUTE_NAP_WARM"), time_scale=scale,
                   run_dir=environ.get("NSROUTE_RUN_DIR") or "/run/nsroute")


def _number(environ: Mapping[str, str], name: str, default: float, lo: float,
            hi: float) -> float:
    """A number within [lo, hi]; `default` when unset, or refused with one warning."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:
        log.warning("%s=%r ignored: it must be a number from %g to %g", name, raw, lo, hi)
        return default
    return value


def _flags(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        return int(raw, 0)
    except ValueError:
        raise OptionsError(errno.EINVAL,
                           f"NSROUTE_TUN_OFFLOAD_FLAGS={raw!r} is not an integer") from None
