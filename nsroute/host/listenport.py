"""The UDP port a (re)started tunnel listens on: the config's ListenPort, else the port it
listened on before, so that a restart looks to the peers like the tunnel it replaces.

Without ListenPort a new engine (or a re-created kernel link) would bind a random port:
the server keeps sending to the old one until our next handshake roams it, and a server
or middlebox that pinned our endpoint (a firewall rule, a NAT mapping, a static Endpoint
on the other side) loses us. `choose` is the rule; the tunnel steps only ask and record.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import config as wgconfig
from . import kernelwg, netns
from .state import State
from .steps import say


@dataclass(frozen=True)
class Choice:
    port: int | None  # None: any port (the engine or the kernel picks one)
    warning: str = ""


def choose(configured: int | None, recorded: int, free: Callable[[int], bool]) -> Choice:
    """ListenPort from the config always, busy or not (the start fails as it would the first
    time); else the recorded port while it is `free`; else any port, with a warning."""
    if configured is not None:
        return Choice(configured)
    if not recorded:
        return Choice(None)
    if free(recorded):
        return Choice(recorded)
    return Choice(None, f"UDP port {recorded}, where the tunnel listened before, is in use now; "
                        "listening on a new random port (peers learn it from the next handshake)")


def is_free(ns: str | None, port: int) -> bool:
    """Could the tunnel bind UDP `port` in `ns` now? Both families, as the engine and the
    kernel bind them (IPv6 only where the namespace has it). A probe that fails says no:
    a new random port is better than a failed restart."""
    try:
        with netns.entered(ns):
            return all(_bindable(family, port) for family in (socket.AF_INET, socket.AF_INET6))
    except OSError:
        return False


def _bindable(family: int, port: int) -> bool:
    v6 = family == socket.AF_INET6
    try:
        s = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return v6  # no IPv6 in this kernel: nothing to collide with
    with s:
        try:
            if v6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("::" if v6 else "0.0.0.0", port))
        except OSError as e:
            return v6 and e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL)  # no IPv6 here
    return True


def to_ask(cfg: wgconfig.Config, st: State, ns: str | None) -> int | None:
    """The port to give the new engine or link whose socket lives in `ns`; warns when the
    recorded one is taken."""
    choice = choose(cfg.interface.listen_port, st.listen_port, lambda p: is_free(ns, p))
    if choice.warning:
        say(f"warning: {choice.warning}")
    return choice.port


def current(st: State, ns: str | None) -> int:
    """The port the tunnel (in `ns`) listens on now, read back as `wg show` does; 0 unknown."""
    dev: dict[str, Any] | None
    if st.backend == "kernel":
        dev = kernelwg.device(st.ifname, ns)
    else:
        from ..engine import uapi

        try:
            dev = uapi.get(st.ifname)
        except (OSError, ValueError):
            dev = None
    return int((dev or {}).get("listen_port") or 0)
