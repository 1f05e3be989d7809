"""The engine's event loop: TUN, UDP sockets and UAPI around one sans-IO Device.

Each wake-up drains every ready descriptor in batches (up to BATCH packets per source),
feeds the device, then flushes everything the device produced at once. Batching the
syscalls is where a Python data path gets its speed; the device never does I/O itself.
Latency is the other side: a lone packet is sent on before looking for more (.pacing), and
for a while after traffic the loop naps in 1 ms steps instead of sleeping through, and every
other nap sends a packet each way between scratch devices, so the next real packet finds a
warm CPU and warm code (NAP, WARM_EVERY, NSROUTE_LINGER_MS, wireguard.warmup).

TUN offload (nsroute.engine.tun, .vnet): the TUN is opened with IFF_VNET_HDR. With
NSROUTE_TUN_TSO=1 (off by default: it costs more than it saves, see docs/bench.md) it also
takes TSO, so one read may carry a TCP super-packet that is cut into MTU-sized packets
before the device sees them. Every write carries a virtio_net_hdr: consecutive TCP
segments of one flow that a flush writes are coalesced into one GSO super-packet (GRO in
userspace, vnet.coalesce), so the kernel's TCP receives, and acknowledges, far fewer
packets; same-size datagrams of one UDP flow likewise (GSO_UDP_L4, Linux 6.2+). It falls
back to the plain TUN where the kernel refuses it, and to one packet per write, for good
and per protocol, the first time a coalesced write is refused.

Counters: on SIGUSR1 the engine writes its drop, error, loop and offload counters
(`device.drops`, `errors`, `loop_counters`, `offload`) as JSON to
`$NSROUTE_RUN_DIR/engine-IFNAME.stats.json` (default run dir /run/nsroute), mode 0600,
never half-written: replaced by rename, or, once the engine has dropped its privileges and
can only rewrite the file it opened, in one write padded with spaces (see write_stats).
Its "time" field says when: a reader that signalled waits for a time after its signal.
The write happens in the loop, not in the signal handler; a failure (say, an unprivileged
engine and a root-owned run dir) is logged and the engine carries on.

Time scale (TEST ONLY): NSROUTE_TIME_SCALE=N (a number from 1 to 1000; anything else is
ignored with a warning) runs the protocol's clock N times faster, so a soak test sees a
rekey every 120/N seconds. The `now` given to the device is start + (monotonic - start) * N,
and its deadlines are converted back to real seconds for the epoll wait. TAI64N stamps and
latest-handshake stay on real wall time (the peer checks TAI64N against its own record of
us): device.wall_offset is kept at wall time minus the scaled `now`. Never set it in
production: every timer of the protocol, keepalives and rate limits included, runs fast.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import signal
import socket
import time
from collections import Counter

from ..wireguard.device import Device
from ..wireguard.warmup import Scratch
from . import gso, sticky, uapi, vnet
from .control import ControlSocket
from .pacing import BATCH, ReadPacer
from .tun import Tun
from .udp import UDPSockets

log = logging.getLogger("nsroute.engine")
# For LINGER seconds after the last packet the loop wakes at least every NAP seconds (epoll's
# resolution is a millisecond). A packet that arrives after ~10 ms of complete quiet finds a
# cold CPU and pays ~10x for every line and syscall; with the naps, ping RTT at 10 ms
# intervals fell by a fifth here (docs/bench.md, "Lingering"). The Go runtime behind
# wireguard-go does alike: its monitor thread keeps waking for a while after activity.
# An idle engine is never woken for it. NSROUTE_LINGER_MS sets LINGER (0: off).
# Every WARM_EVERY seconds of naps the loop also runs the data path once on scratch devices
# (warmup.Scratch): the naps alone keep the CPU awake, not the code a packet runs, which on
# this shared VM is evicted within milliseconds (a lone packet's TUN read to UDP send: 99 us
# at 10 ms spacing, 48 us with a pass at every nap). Ping RTT at 10 ms, ns-ns: 0.64 ms
# without, 0.54 with a pass every 2 ms, 0.52 every 1 ms; engine CPU at 100 pings/s +3.7 and
# +5.5 % of a core (docs/bench.md). NSROUTE_NAP_WARM=0 turns the pass off (for comparison).
NAP = 0.001
WARM_EVERY = 0.002
HOUSEKEEPING = 1.0
_RECV_SIZE = 65536
# TUN reads without TSO/USO are at most one MTU-sized packet. A 64 KB read buffer costs
# about 0.6 us more per read than a 32 KB one here (glibc gives a buffer that large back to
# the system on each shrink), a tenth of the sender's time per packet. A read that fills
# the small buffer may have been cut short: that packet is dropped and counted
# (tun_read_truncated) and reads use 64 KB from then on (someone raised the MTU past 32 KB).
_TUN_SMALL_READ = 32768
# NSROUTE_OFFLOAD=0 turns off UDP GSO/GRO and the TUN offload (to compare, or to rule
# them out).
OFFLOAD = os.environ.get("NSROUTE_OFFLOAD", "1") != "0"
# NSROUTE_TUN_GRO=0 keeps the TUN offload but writes one packet at a time (no coalescing);
# NSROUTE_TUN_USO=0 coalesces TCP segments only, not UDP datagrams.
TUN_GRO = os.environ.get("NSROUTE_TUN_GRO", "1") != "0"
TUN_USO = os.environ.get("NSROUTE_TUN_USO", "1") != "0"
# A long TUN drain is sealed and sent every SEND_EVERY packets, not at its end: the peer's
# socket then meets one burst at a time and drains it while the engine reads and seals the
# next. wireguard-go 0.0.20220316 reads one datagram per call from a 208 KB buffer, and
# dropped 18 % of them with whole 128-packet passes, 15 % with bursts of 64; ns->wggo TCP
# +3-21 %, sender CPU -5-12 % (two interleaved A/B runs, creation order swapped;
# docs/bench.md, seventh session). nsroute<->nsroute did not move.
SEND_EVERY = gso.MAX_SEGMENTS
NAP_WARM = os.environ.get("NSROUTE_NAP_WARM", "1") != "0"


def _env_number(name: str, default: float, lo: float, hi: float) -> float:
    """A number from the environment within [lo, hi]; `default` when unset or refused."""
    raw = os.environ.get(name, "").strip()
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


def linger_seconds() -> float:
    """NSROUTE_LINGER_MS as seconds (default 50 ms; 0 turns lingering off)."""
    return _env_number("NSROUTE_LINGER_MS", 50.0, 0.0, 10000.0) / 1000.0


def time_scale() -> float:
    """NSROUTE_TIME_SCALE (test only, see the module docstring); 1 when unset or refused."""
    n = _env_number("NSROUTE_TIME_SCALE", 1.0, 1.0, 1000.0)
    if n != 1.0:
        log.warning("NSROUTE_TIME_SCALE=%g: protocol timers run %g times fast (test only)", n, n)
    return n


class Engine:
    _stats_requested = False  # set by SIGUSR1, served by the loop

    def __init__(self, ifname: str, mtu: int = 1420, socket_netns: str | None = None,
                 bring_up: bool = False) -> None:
        self.device = Device(wall_offset=time.time() - time.monotonic(), mtu=mtu)
        self.scale = time_scale()
        self._t0 = time.monotonic()
        self.errors: Counter[str] = Counter()
        self.offload: Counter[str] = Counter()
        self.udp = UDPSockets(socket_netns)
        try:
            self.tun = Tun(ifname, mtu, offload=OFFLOAD)
        except BaseException:
            self.udp.release()
            raise
        self.control: ControlSocket | None = None
        if self.tun.offload_refused:
            log.info("TUN offload refused (%s): %s", "; ".join(self.tun.offload_refused),
                     f"using flags {self.tun.offload_flags:#x}" if self.tun.vnet else "plain TUN")
        try:
            self.udp.bind(0)
            self.device.listen_port = self.udp.port
            self.control = ControlSocket(self.tun.name, self._uapi_guarded)
            if bring_up:
                self.tun.set_up()
        except BaseException:
            self.close()
            raise
        # Coalesced TUN writes, by group kind (vnet.*.KIND): off for good once refused.
        self._coalesce = {"gro": TUN_GRO, "uso": TUN_GRO and TUN_USO}
        # Super-packets need the whole 64 KB; otherwise a smaller buffer (see _TUN_SMALL_READ).
        self._tun_read = _RECV_SIZE + vnet.HDR_LEN if self.tun.offload_flags else _TUN_SMALL_READ
        self._senders: dict[socket.socket, gso.Sender] = {}
        self._gro: dict[socket.socket, bool] = {}
        self._sticky: dict[gso.Endpoint, tuple] = {}  # endpoint -> pktinfo cmsg (.sticky)
        self.loop_counters: Counter[str] = Counter()
        self._scratch: Scratch | None = None  # warm-up devices (warm_up, _warm_pass)
        self._nap_warm = NAP_WARM
        self.privileged = True  # False once daemon.run_engine dropped to an unprivileged user
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

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
            self._internal_error("uapi")
            raise uapi.UAPIError(errno.EIO, "internal error") from None

    def apply(self, plan: uapi.Plan) -> None:
        uapi.apply(self.device, plan, self.clock(time.monotonic()), rebind=self._rebind)
        for pp in plan.peers:  # a user-set endpoint starts with no sticky source
            if pp.endpoint is not uapi.UNSET and pp.endpoint:
                sticky.forget(self._sticky, pp.endpoint)
        self._flush_udp()

    def _rebind(self, port: int, fwmark: int) -> int:
        if not self.privileged:
            raise OSError(errno.EPERM, "the engine runs unprivileged: restart it to change "
                                       "listen port or fwmark")
        if port == self.udp.port and port != 0:
            self.udp.set_fwmark(fwmark)
        else:
            self.udp.bind(port, fwmark)
            self._senders.clear()
            self._gro.clear()
            self._register_udp()
        return self.udp.port

    # ------------------------------------------------------------------ loop

    def clock(self, real: float) -> float:
        """The protocol's `now` for monotonic time `real` (scaled under NSROUTE_TIME_SCALE)."""
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

    def _register_udp(self) -> None:
        if not hasattr(self, "_ep"):
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
        self._udp_fds: dict[int, socket.socket] = {}
        tun_fd = self.tun.fd
        ep.register(tun_fd, select.EPOLLIN)
        assert self.control is not None
        listen_fd = self.control.listener.fileno()
        ep.register(listen_fd, select.EPOLLIN)
        ep.register(self._wake_r.fileno(), select.EPOLLIN)
        self._register_udp()
        device = self.device
        linger = linger_seconds()
        pacer = ReadPacer()
        last_warm = float("-inf")
        next_house = time.monotonic() + HOUSEKEEPING
        reason = "stopped"
        scale = self.scale
        while not self._stop:
            real = time.monotonic()
            pacer.end(real)
            now = self.clock(real)
            deadline = device.next_deadline()
            wait = next_house - real
            if deadline is not None:
                wait = min(wait, (deadline - now) / scale)
            if pacer.since_traffic(real) < linger and wait > NAP:
                wait = NAP
            try:
                events = ep.poll(max(0.0, wait), 64)
            except InterruptedError:
                continue
            real = time.monotonic()
            now = self.clock(real)
            if (not events and self._nap_warm and pacer.since_traffic(real) < linger
                    and real - last_warm >= WARM_EVERY):
                last_warm = real
                self._warm_pass(now)
            pacer.start(real)
            for fd, ev in events:
                if fd == tun_fd:
                    if not self._read_tun(now, pacer.limit(fd)):
                        reason = "TUN device removed"
                        self._stop = True
                elif fd in self._udp_fds:
                    self._read_udp(self._udp_fds[fd], now, pacer.limit(fd))
                elif fd == listen_fd:
                    for conn in self.control.accept():
                        ep.register(conn.fileno(), select.EPOLLIN)
                elif fd == self._wake_r.fileno():
                    try:
                        self._wake_r.recv(64)
                    except BlockingIOError:
                        pass
                    if self._stats_requested:
                        self._stats_requested = False
                        self.write_stats()
                elif fd in self.control.clients:
                    if ev & (select.EPOLLHUP | select.EPOLLERR) and not ev & select.EPOLLIN:
                        ep.unregister(fd)
                        self.control.drop(fd)
                    elif not self.control.readable(fd):
                        try:
                            ep.unregister(fd)
                        except (OSError, ValueError):
                            pass
            # What the pass produced goes out before the timers are looked at: on the
            # latency path every microsecond before the send counts, after it none does.
            self._flush_udp()
            self._flush_tun()
            deadline = device.next_deadline()
            if deadline is not None and now >= deadline:
                try:
                    device.handle_timers(now)
                except Exception:
                    self._internal_error("handle_timers")
                self._flush_udp()
            if real >= next_house:
                next_house = real + HOUSEKEEPING
                if not self.tun.attached():
                    reason, self._stop = "TUN device removed", True
                elif not self.control.still_there():
                    reason, self._stop = "UAPI socket removed", True
                else:
                    self._follow_mtu()
        log.info("engine exiting: %s", reason)
        ep.close()
        return 0

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
        """The start-up pass (a scratch handshake and a packet each way); its scratch devices
        stay for the naps. True when the packets arrived."""
        self._scratch = Scratch(now)
        return self._scratch.exercise(now)

    def _warm_pass(self, now: float) -> None:
        """A nap's pass over the data path on scratch devices; a failure turns it off for
        good, never the tunnel."""
        try:
            if self._scratch is None or self._scratch.stale(now):
                self._scratch = Scratch(now)
            if not self._scratch.exercise(now):
                raise RuntimeError("scratch packets did not arrive")
            self.loop_counters["nap_warm_passes"] += 1
        except Exception:
            self._nap_warm = False
            self._internal_error("nap_warm")

    def _internal_error(self, where: str) -> None:
        self.errors[f"internal_{where}"] += 1
        if self.errors[f"internal_{where}"] <= 10:
            log.exception("internal error in %s (packet dropped, engine continues)", where)

    # ------------------------------------------------------------------ data path

    def _read_tun(self, now: float, limit: int = BATCH) -> bool:
        """Drain the TUN (up to `limit` reads) and hand what it gave to the device at once.
        With a virtio_net_hdr, a read may need its checksum finished or be a super-packet
        to cut; False when the TUN is gone."""
        fd = self.tun.fd
        vnet_hdr = self.tun.vnet
        hdr_len = vnet.HDR_LEN
        size = self._tun_read
        pkts: list[bytes] = []
        append = pkts.append
        alive = True
        for _ in range(limit):
            try:
                buf = os.read(fd, size)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in (errno.EBADFD, errno.ENODEV, errno.EIO):
                    alive = False
                else:
                    self.errors[f"tun_read_{e.errno}"] += 1
                break
            if len(buf) >= size:
                size = self._truncated_read()
            elif not vnet_hdr:
                append(buf)
            elif len(buf) > hdr_len and buf[0] == 0 and buf[1] == 0:  # nothing to finish: as is
                append(buf[hdr_len:])
            else:
                pkts.extend(self._finish_vnet_read(buf))
            if len(pkts) >= SEND_EVERY:
                self._send_read(pkts, now)
                self._flush_udp()
                pkts = []
                append = pkts.append
        if pkts:
            self._send_read(pkts, now)
        return alive

    def _send_read(self, pkts: list[bytes], now: float) -> None:
        try:
            self.device.send_packets(pkts, now)
        except Exception:  # a bug must cost this batch, never the tunnel
            self._internal_error("send_packet")

    def _finish_vnet_read(self, buf: bytes) -> list[bytes]:
        """A read whose checksum is partial or that is a super-packet -> its packets."""
        try:
            split = vnet.packets(buf)
        except vnet.VnetError:
            self.errors["tun_bad_vnet_hdr"] += 1
            return []
        except Exception:  # a bug must cost one read, never the tunnel
            self._internal_error("tun_vnet")
            return []
        if buf[1]:  # gso_type
            self.offload["tun_gso_split"] += 1
            self.offload["tun_gso_segments"] += len(split)
        else:
            self.offload["tun_csum_completed"] += 1
        return split

    def _truncated_read(self) -> int:
        """A TUN read filled the buffer: the packet may be cut short, so it is dropped, and
        reads take 64 KB from now on."""
        self.errors["tun_read_truncated"] += 1
        if self._tun_read < _RECV_SIZE:
            log.info("a TUN packet filled the %d-byte read buffer (MTU raised?): dropped it, "
                     "reading 64 KB from now on", self._tun_read)
        self._tun_read = _RECV_SIZE + vnet.HDR_LEN
        return self._tun_read

    def _read_udp(self, sock: socket.socket, now: float, limit: int = BATCH) -> None:
        """Up to `limit` receives from `sock`; the datagrams go to the device in runs from one
        sender (Device.receive_datagrams). A run's pktinfo becomes its sender's sticky source
        (.sticky) only when the device authenticated one of its datagrams: a forged source
        must not choose the address our replies leave from."""
        gro = self._gro.get(sock)
        if gro is None:
            gro = self._gro[sock] = OFFLOAD and gso.enable_gro(sock)
        device = self.device
        receive = device.receive_datagrams
        table = self._sticky
        for ep, src, datagrams in self._recv_runs(sock, limit, gro):
            before = device.authenticated_rx
            try:
                receive(datagrams, ep, now)
            except Exception:  # a bug must cost this run, never the tunnel
                self._internal_error("receive_datagram")
            if (src is not None and device.authenticated_rx != before
                    and table.get(ep) != src and sticky.is_pktinfo(src[0], src[1])):
                sticky.learn(table, ep, src)

    def _recv_runs(self, sock: socket.socket, limit: int, gro: bool) -> list:
        """Up to `limit` receives, as [(endpoint, pktinfo, [datagram, ...])] runs of
        consecutive datagrams from one sender to one local address; with UDP_GRO one
        receive may carry many."""
        recvmsg = sock.recvmsg
        space = gso.GRO_CMSG_SPACE + sticky.CMSG_SPACE
        runs: list[tuple[gso.Endpoint, tuple | None, list[bytes]]] = []
        last = last_src = None
        for _ in range(limit):
            try:
                data, anc, _flags, addr = recvmsg(_RECV_SIZE, space)
            except BlockingIOError:
                break
            except OSError as e:
                self.errors[f"udp_read_{e.errno}"] += 1
                break
            size = 0
            src = None
            ep = (addr[0], addr[1])
            for msg in anc:
                if msg[1] == gso.UDP_GRO and msg[0] == gso.SOL_UDP:
                    size = gso.gro_size((msg,))
                else:  # the socket asks for nothing else: pktinfo (checked when learnt)
                    src = msg
            if ep != last or src != last_src:
                runs.append((ep, src, []))
                last, last_src = ep, src
            if size:
                runs[-1][2].extend(gso.split(data, size))
            else:
                runs[-1][2].append(data)
        return runs

    def _flush_udp(self) -> None:
        out = self.device.udp_out
        if not out:
            return
        self.device.udp_out = []
        errors = self.errors
        table = self._sticky
        for ep, group in gso.runs(out):
            sender = self._sender(ep)
            if sender is None:
                errors["udp_no_socket_for_family"] += len(group)
                continue
            src = table.get(ep)
            if not sender.send(ep, group, errors, src):
                # That address or interface is no longer ours: the kernel chooses anew.
                table.pop(ep, None)
                self.loop_counters["sticky_source_dropped"] += 1
                sender.send(ep, group, errors)

    def _sender(self, ep: gso.Endpoint) -> gso.Sender | None:
        """The sender for `ep`'s address family; None when the engine has no such socket."""
        sock = self.udp.v6 if ":" in ep[0] else self.udp.v4
        if sock is None:
            return None
        senders = self._senders
        sender = senders.get(sock)
        if sender is None:
            if len(senders) > 4:  # sockets of earlier binds
                senders.clear()
            sender = senders[sock] = gso.Sender(sock, OFFLOAD)
        return sender

    def _flush_tun(self) -> None:
        out = self.device.tun_out
        if not out:
            return
        self.device.tun_out = []
        fd = self.tun.fd
        if self.tun.vnet:
            self._flush_tun_vnet(fd, out)
            return
        write = os.write
        for pkt in out:
            try:
                write(fd, pkt)
            except OSError as e:
                self._tun_write_error(e)

    def _tun_write_error(self, e: OSError, n: int = 1) -> None:
        self.errors[f"tun_write_{errno.errorcode.get(e.errno, e.errno)}"] += n

    def _flush_tun_vnet(self, fd: int, out: list[bytes]) -> None:
        """Write behind virtio_net_hdrs, TCP segments of a flow coalesced into one write."""
        writev, hdr = os.writev, vnet.ZERO_HDR
        coalesce = self._coalesce
        gro, uso = coalesce["gro"], coalesce["uso"]
        items = vnet.coalesce(out, gro, uso) if (gro or uso) and len(out) > 1 else out
        for item in items:
            if type(item) is bytes:
                pkts = (item,)
            elif coalesce[item.KIND] and self._write_group(fd, item):
                continue
            else:
                pkts = item.pkts  # its kind refused, now or earlier in this flush
            for pkt in pkts:
                try:
                    writev(fd, (hdr, pkt))
                except OSError as e:
                    self._tun_write_error(e)

    def _write_group(self, fd: int, item) -> bool:
        """One super-packet write for a coalesced group; False only when the kernel refuses
        the kind (its packets are then to be written one by one, and that kind from now on)."""
        kind = item.KIND
        try:
            os.writev(fd, item.render())
        except OSError as e:
            if e.errno != errno.EINVAL:
                self._tun_write_error(e, len(item.pkts))
                return True
            # Kernels before 6.2 take TCP super-packets on a TUN but not UDP ones.
            self._coalesce[kind] = False
            self.offload[f"tun_{kind}_refused"] += 1
            log.info("TUN refused a coalesced write (tun_%s_refused, EINVAL): "
                     "one packet per write for those from now on", kind)
            return False
        self.offload[f"tun_{kind}_writes"] += 1
        self.offload[f"tun_{kind}_segments"] += len(item.pkts)
        return True

    # ------------------------------------------------------------------ counters

    def stats_path(self) -> str:
        return stats_path(self.tun.name)

    def stats(self) -> dict:
        return {"ifname": self.tun.name, "pid": os.getpid(), "time": time.time(),
                "drops": dict(self.device.drops), "errors": dict(self.errors),
                "loop": dict(self.loop_counters),
                "offload": {"tun_vnet": self.tun.vnet, "tun_flags": self.tun.offload_flags,
                            "tun_refused": self.tun.offload_refused, **self.offload}}

    def request_stats(self, *_args) -> None:
        """SIGUSR1: ask the loop to write the counters (nothing else is safe in a handler)."""
        self._stats_requested = True
        self._wake()

    def prepare_stats_file(self) -> None:
        """Write the counters once and keep the file open while still root: once
        unprivileged, the engine can no longer create files in the root-owned run directory,
        only rewrite this one (see write_stats)."""
        path = self.stats_path()
        if self._replace_stats_file(path):
            try:
                self._stats_fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                self._stats_len = os.fstat(self._stats_fd).st_size
            except OSError as e:
                log.warning("cannot prepare counters file %s: %s", path, e)

    def write_stats(self) -> None:
        """Counters to the file, never half-written for a reader: replaced by rename where
        the engine may create files; rewritten in place by one pwrite otherwise, the JSON
        padded with spaces to the length before, so the file never shrinks or empties."""
        fd = getattr(self, "_stats_fd", None)
        if fd is None:
            self._replace_stats_file(self.stats_path())
            return
        data = json.dumps(self.stats(), sort_keys=True).encode()
        data = data.ljust(self._stats_len)
        try:
            os.pwrite(fd, data, 0)
            self._stats_len = len(data)
        except OSError as e:
            log.warning("cannot write counters: %s", e)

    def _replace_stats_file(self, path: str) -> bool:
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self.stats(), f, sort_keys=True)
            os.replace(tmp, path)
            return True
        except OSError as e:
            log.warning("cannot write counters to %s: %s", path, e)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False

    def close(self) -> None:
        if self.control:
            self.control.close()
            self.control = None
        self.udp.release()
        self.tun.close()


def stats_path(ifname: str) -> str:
    run_dir = os.environ.get("NSROUTE_RUN_DIR") or "/run/nsroute"
    return os.path.join(run_dir, f"engine-{ifname}.stats.json")


def install_signal_handlers(engine: Engine) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, engine.stop)
    signal.signal(signal.SIGUSR1, engine.request_stats)
