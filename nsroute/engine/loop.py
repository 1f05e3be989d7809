"""The engine's event loop and clock: TUN, UDP sockets and UAPI around one sans-IO Device.

Each wake-up drains every ready descriptor in batches (up to BATCH packets per source),
feeds the device, then flushes everything the device produced at once. Batching the
syscalls is where a Python data path gets its speed; the device never does I/O itself.
Latency is the other side: a lone packet is sent on before looking for more (.pacing), and
for a while after traffic the loop naps (.naps). The concerns around the loop have their
own modules: TUN reads and coalesced writes (.tunio), UDP with GSO/GRO and sticky sources
(.udpio), the counters file (.stats), the settings (.options).

The clock counts time asleep (CLOCK_BOOTTIME, as the kernel's WireGuard does; see
`boot_clock`). CLOCK_MONOTONIC stands still while a laptop is suspended: on waking after
more than REJECT_AFTER_TIME, an engine on it would take its session for fresh and send
under keys every peer has since dropped, until its own timers gave up on them (about 15
s of silence); on boot time the session is expired and the first packet shakes hands.

Time scale (TEST ONLY): NSROUTE_TIME_SCALE=N (a number from 1 to 1000; anything else is
ignored with a warning) runs the protocol's clock N times faster, so a soak test sees a
rekey every 120/N seconds. The `now` given to the device is start + (boot time - start) * N,
and its deadlines are converted back to real seconds for the epoll wait. TAI64N stamps and
latest-handshake stay on real wall time (the peer checks TAI64N against its own record of
us): device.wall_offset is kept at wall time minus the scaled `now`. Never set it in
production: every timer of the protocol, keepalives and rate limits included, runs fast.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import time
from collections import Counter

from ..wireguard.device import Device
from . import sticky, uapi
from .control import ControlSocket
from .naps import Naps
from .options import Options
from .pacing import ReadPacer
from .stats import StatsFile, internal_error, stats_path
from .tun import Tun, offload_sets
from .tunio import TunIO
from .udp import UDPSockets
from .udpio import UdpIO

log = logging.getLogger("nsroute.engine")
HOUSEKEEPING = 1.0


def boot_clock() -> float:
    """Seconds since boot, time asleep included: the clock of every `now` the engine gives."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Engine:
    """One WireGuard interface served over an open TUN and UDP sockets.

    Engine.open creates them (the daemon's way in); the constructor takes them already
    open: `tun` is a tun.Tun or anything with its fd, vnet, offload_flags and name, `udp` a
    udp.UDPSockets or anything with v4 and v6 sockets (tests pass socket pairs)."""

    _stats_requested = False  # set by SIGUSR1, served by the loop

    def __init__(self, tun, udp, options: Options | None = None,
                 device: Device | None = None, control: ControlSocket | None = None) -> None:
        self.options = options = options or Options()
        self.tun, self.udp, self.control = tun, udp, control
        self.device = device or Device(wall_offset=time.time() - boot_clock())
        self.scale = options.time_scale
        self._t0 = boot_clock()
        self.errors: Counter[str] = Counter()
        self.offload: Counter[str] = Counter()
        self.loop_counters: Counter[str] = Counter()
        self.udpio = UdpIO(udp, self.device, options, self.errors, self.loop_counters)
        self.tunio = TunIO(tun, self.device, options, self.errors, self.offload,
                           self.udpio.flush)
        self.naps = Naps(options, self.errors, self.loop_counters)
        self.statsfile = StatsFile(stats_path(tun.name, options.run_dir), self.stats)
        self.privileged = True  # False once daemon.run_engine dropped to an unprivileged user
        self._stop = False
        self._reason = "stopped"
        self._ep: select.epoll | None = None
        self._udp_fds: dict[int, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    @classmethod
    def open(cls, ifname: str, mtu: int = 1420, socket_netns: str | None = None,
             bring_up: bool = False, options: Options | None = None) -> Engine:
        """Create the TUN, bind the UDP sockets and the UAPI socket, and serve them."""
        options = options or Options.from_env()
        device = Device(wall_offset=time.time() - boot_clock(), mtu=mtu)
        udp = UDPSockets(socket_netns)
        try:
            tun = Tun(ifname, mtu, offload=options.offload,
                      sets=offload_sets(options.tun_tso, options.tun_offload_flags))
        except BaseException:
            udp.release()
            raise
        if tun.offload_refused:
            log.info("TUN offload refused (%s): %s", "; ".join(tun.offload_refused),
                     f"using flags {tun.offload_flags:#x}" if tun.vnet else "plain TUN")
        engine = cls(tun, udp, options, device)
        try:
            udp.bind(0)
            device.listen_port = udp.port
            engine.control = ControlSocket(tun.name, engine._uapi_guarded)
            if bring_up:
                tun.set_up()
        except BaseException:
            engine.close()
            raise
        return engine

    # ------------------------------------------------------------------ UAPI

    def _uapi(self, op: str, lines: list[str]) -> str:
        if op == "get":
            return uapi.serialize_get(self.device)
        if op == "set":
            plan = uapi.parse_set(lines)
            self.apply(plan)
            return ""
        raise uapi.UAPIError(errno.EPROTO, "request is neither get=1 nor set=1")

    def _uapi_guarded(self, op: str, lines: list[str]) -> str:
        try:
            return self._uapi(op, lines)
        except uapi.UAPIError:
            raise
        except Exception:
            internal_error(self.errors, "uapi")
            raise uapi.UAPIError(errno.EIO, "internal error") from None

    def apply(self, plan: uapi.Plan) -> None:
        uapi.apply(self.device, plan, self.clock(boot_clock()), rebind=self._rebind)
        for pp in plan.peers:  # a user-set endpoint starts with no sticky source
            if pp.endpoint is not uapi.UNSET and pp.endpoint:
                sticky.forget(self.udpio.sticky, pp.endpoint)
        self.udpio.flush()

    def _rebind(self, port: int, fwmark: int) -> int:
        if not self.privileged:
            raise OSError(errno.EPERM, "the engine runs unprivileged: restart it to change "
                                       "listen port or fwmark")
        if port == self.udp.port and port != 0:
            self.udp.set_fwmark(fwmark)
        else:
            self.udp.bind(port, fwmark)
            self.udpio.rebound()
            self._register_udp()
        return self.udp.port

    # ------------------------------------------------------------------ clock and signals

    def clock(self, real: float) -> float:
        """The protocol's `now` for boot time `real` (scaled under NSROUTE_TIME_SCALE)."""
        if self.scale == 1.0:
            return real
        now = self._t0 + (real - self._t0) * self.scale
        self.device.wall_offset = time.time() - now  # wall-clock values stay real
        return now

    def _wake(self) -> None:
        """Interrupt epoll from a signal handler; the loop does the real work."""
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def stop(self, *_args) -> None:
        self._stop = True
        self._wake()

    def request_stats(self, *_args) -> None:
        """SIGUSR1: ask the loop to write the counters (nothing else is safe in a handler)."""
        self._stats_requested = True
        self._wake()

    # ------------------------------------------------------------------ loop

    def _register_udp(self) -> None:
        if self._ep is None:
            return
        for fd in list(self._udp_fds):
            try:
                self._ep.unregister(fd)
            except OSError:
                pass
        self._udp_fds = {}
        for s in self.udp.sockets():
            self._udp_fds[s.fileno()] = s
            self._ep.register(s.fileno(), select.EPOLLIN)

    def run(self) -> int:
        """Serve until a signal, the TUN's removal or the UAPI socket's removal."""
        ep = self._ep = select.epoll()
        assert self.control is not None
        for fd in (self.tun.fd, self.control.listener.fileno(), self._wake_r.fileno()):
            ep.register(fd, select.EPOLLIN)
        self._register_udp()
        try:
            self._serve(ep)
        finally:
            self._ep = None
            ep.close()
        log.info("engine exiting: %s", self._reason)
        return 0

    def _serve(self, ep: select.epoll) -> None:
        """The loop: wait, drain what is ready, flush, run the timers, look around."""
        tun_fd = self.tun.fd
        udp_fds = self._udp_fds
        read_tun, read_udp = self.tunio.read, self.udpio.read
        flush_udp, flush_tun = self.udpio.flush, self.tunio.flush
        naps, clock, poll = self.naps, self.clock, ep.poll
        pacer = ReadPacer()
        next_house = boot_clock() + HOUSEKEEPING
        while not self._stop:
            real = boot_clock()
            pacer.end(real)
            wait = naps.wait(self._wait(real, clock(real), next_house), pacer, real)
            try:
                events = poll(max(0.0, wait), 64)
            except InterruptedError:
                continue
            real = boot_clock()
            now = clock(real)
            if not events:  # a nap that ended with nothing to do
                naps.woke(pacer, real, now)
            pacer.start(real)
            for fd, ev in events:
                if fd == tun_fd:
                    if not read_tun(now, pacer.limit(fd)):
                        self._reason, self._stop = "TUN device removed", True
                elif fd in udp_fds:
                    read_udp(udp_fds[fd], now, pacer.limit(fd))
                else:
                    self._other_event(ep, fd, ev)
                    udp_fds = self._udp_fds  # a UAPI set may have bound new sockets
            # What the pass produced goes out before the timers are looked at: on the
            # latency path every microsecond before the send counts, after it none does.
            flush_udp()
            flush_tun()
            self._timers(now)
            if real >= next_house:
                next_house = real + HOUSEKEEPING
                self._housekeeping()

    def _wait(self, real: float, now: float, next_house: float) -> float:
        """Seconds until the next protocol deadline or housekeeping, whichever is first."""
        wait = next_house - real
        deadline = self.device.next_deadline()
        if deadline is not None:
            wait = min(wait, (deadline - now) / self.scale)
        return wait

    def _timers(self, now: float) -> None:
        deadline = self.device.next_deadline()
        if deadline is not None and now >= deadline:
            try:
                self.device.handle_timers(now)
            except Exception:
                internal_error(self.errors, "handle_timers")
            self.udpio.flush()

    def _other_event(self, ep: select.epoll, fd: int, ev: int) -> None:
        """The UAPI listener and its clients, and the signal handlers' wake-ups."""
        control = self.control
        assert control is not None
        if fd == control.listener.fileno():
            for conn in control.accept():
                ep.register(conn.fileno(), select.EPOLLIN)
        elif fd == self._wake_r.fileno():
            try:
                self._wake_r.recv(64)
            except BlockingIOError:
                pass
            if self._stats_requested:
                self._stats_requested = False
                self.write_stats()
        elif fd in control.clients:
            if ev & (select.EPOLLHUP | select.EPOLLERR) and not ev & select.EPOLLIN:
                ep.unregister(fd)
                control.drop(fd)
            elif not control.readable(fd):
                try:
                    ep.unregister(fd)
                except (OSError, ValueError):
                    pass

    def _housekeeping(self) -> None:
        """Once a second: is the TUN still ours, the UAPI socket still there, the MTU new?"""
        assert self.control is not None
        if not self.tun.attached():
            self._reason, self._stop = "TUN device removed", True
        elif not self.control.still_there():
            self._reason, self._stop = "UAPI socket removed", True
        else:
            self._follow_mtu()

    def _follow_mtu(self) -> None:
        """`ip link set IF mtu N` (wg-quick does it after start): pad to the new MTU, as
        wireguard-go does. Seen while the TUN is in the engine's namespace, by name; moved
        elsewhere it keeps the last MTU it saw (wireguard-go, which watches its own
        namespace's link events, likewise)."""
        try:
            if socket.if_nametoindex(self.tun.name) != self.tun.ifindex:
                return
            mtu = self.tun.read_mtu()
        except OSError:
            return
        if mtu != self.device.mtu:
            log.info("TUN MTU is now %d", mtu)
            self.device.mtu = mtu

    def warm_up(self, now: float) -> bool:
        """The start-up scratch pass (naps.Naps.warm_up); True when its packets arrived."""
        return self.naps.warm_up(now)

    # ------------------------------------------------------------------ counters

    def stats(self) -> dict:
        return {"ifname": self.tun.name, "pid": os.getpid(), "time": time.time(),
                "drops": dict(self.device.drops), "errors": dict(self.errors),
                "loop": dict(self.loop_counters),
                "offload": {"tun_vnet": self.tun.vnet, "tun_flags": self.tun.offload_flags,
                            "tun_refused": self.tun.offload_refused, **self.offload}}

    def prepare_stats_file(self) -> None:
        """Open the counters file while still root (stats.StatsFile.prepare)."""
        self.statsfile.prepare()

    def write_stats(self) -> None:
        self.statsfile.write()

    def close(self) -> None:
        if self.control:
            self.control.close()
            self.control = None
        self.udp.release()
        self.tun.close()
        self.statsfile.close()
        self._wake_r.close()
        self._wake_w.close()


def install_signal_handlers(engine: Engine) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, engine.stop)
    signal.signal(signal.SIGUSR1, engine.request_stats)
