"""UDP I/O for the loop: batched receives (GRO) and flushes (GSO), with sticky sources.

Receives are handed to the device in runs of consecutive datagrams from one sender to one
local address (Device.receive_datagrams); with UDP_GRO one receive may carry many. A run's
pktinfo becomes its sender's sticky source (sticky.py) only when the device authenticated
one of its datagrams (Device.authenticated_rx, compared once per run). Flushes group the
device's datagrams by endpoint into GSO sends (gso.Sender) from that sticky source.
"""

from __future__ import annotations

import socket
from collections import Counter

from . import gso, sticky
from .options import Options
from .pacing import BATCH
from .stats import internal_error

RECV_SIZE = 65536


class UdpIO:
    """Receives and sends over `udp` (udp.UDPSockets, or anything with v4 and v6 sockets)
    for `device`."""

    def __init__(self, udp, device, options: Options, errors: Counter[str],
                 loop_counters: Counter[str]) -> None:
        self.udp = udp
        self.device = device
        self.offload = options.offload
        self.errors = errors
        self.loop_counters = loop_counters
        self.sticky: dict[gso.Endpoint, tuple] = {}  # endpoint -> pktinfo cmsg (.sticky)
        self._senders: dict[socket.socket, gso.Sender] = {}
        self._gro: dict[socket.socket, bool] = {}

    def rebound(self) -> None:
        """The sockets were replaced (a new port): forget what was kept per socket."""
        self._senders.clear()
        self._gro.clear()

    def read(self, sock: socket.socket, now: float, limit: int = BATCH) -> None:
        """Up to `limit` receives from `sock`; the datagrams go to the device in runs from one
        sender (Device.receive_datagrams). A run's pktinfo becomes its sender's sticky source
        only when the device authenticated one of its datagrams: a forged source must not
        choose the address our replies leave from."""
        gro = self._gro.get(sock)
        if gro is None:
            gro = self._gro[sock] = self.offload and gso.enable_gro(sock)
        device = self.device
        receive = device.receive_datagrams
        table = self.sticky
        for ep, src, datagrams in self._recv_runs(sock, limit, gro):
            before = device.authenticated_rx
            try:
                receive(datagrams, ep, now)
            except Exception:  # a bug must cost this run, never the tunnel
                internal_error(self.errors, "receive_datagram")
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
                data, anc, _flags, addr = recvmsg(RECV_SIZE, space)
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

    def flush(self) -> None:
        """Send what the device produced, each endpoint's datagrams in GSO batches from its
        sticky source."""
        out = self.device.udp_out
        if not out:
            return
        self.device.udp_out = []
        errors = self.errors
        table = self.sticky
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
            sender = senders[sock] = gso.Sender(sock, self.offload)
        return sender
