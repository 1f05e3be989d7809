"""TUN I/O for the loop: batched reads (virtio headers finished, super-packets cut) and
flushes (coalesced writes).

The TUN is opened with IFF_VNET_HDR (tun.py). With NSROUTE_TUN_TSO=1 (off by default: it
costs more than it saves, see docs/bench.md) it also takes TSO, so one read may carry a TCP
super-packet that is cut into MTU-sized packets before the device sees them. Every write
carries a virtio_net_hdr: consecutive TCP segments of one flow that a flush writes are
coalesced into one GSO super-packet (GRO in userspace, vnet.coalesce), so the kernel's TCP
receives, and acknowledges, far fewer packets; same-size datagrams of one UDP flow likewise
(GSO_UDP_L4, Linux 6.2+). It falls back to the plain TUN where the kernel refuses it, and to
one packet per write, for good and per protocol, the first time a coalesced write is
refused.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import Counter
from collections.abc import Callable

from . import gso, vnet
from .options import Options
from .pacing import BATCH
from .stats import internal_error

log = logging.getLogger("nsroute.engine")
RECV_SIZE = 65536
# TUN reads without TSO/USO are at most one MTU-sized packet. A 64 KB read buffer costs
# about 0.6 us more per read than a 32 KB one here (glibc gives a buffer that large back to
# the system on each shrink), a tenth of the sender's time per packet. A read that fills
# the small buffer may have been cut short: that packet is dropped and counted
# (tun_read_truncated) and reads use 64 KB from then on (someone raised the MTU past 32 KB).
TUN_SMALL_READ = 32768
# A long TUN drain is sealed and sent every SEND_EVERY packets, not at its end: the peer's
# socket then meets one burst at a time and drains it while the engine reads and seals the
# next. wireguard-go 0.0.20220316 reads one datagram per call from a 208 KB buffer, and
# dropped 18 % of them with whole 128-packet passes, 15 % with bursts of 64; ns->wggo TCP
# +3-21 %, sender CPU -5-12 % (two interleaved A/B runs, creation order swapped;
# docs/bench.md, seventh session). nsroute<->nsroute did not move.
SEND_EVERY = gso.MAX_SEGMENTS


class TunIO:
    """Reads and writes of one TUN (`tun`: fd, vnet, offload_flags) for `device`.
    `flush_udp` sends what the device sealed (a long drain sends as it goes)."""

    def __init__(self, tun, device, options: Options, errors: Counter[str],
                 offload: Counter[str], flush_udp: Callable[[], None]) -> None:
        self.tun = tun
        self.device = device
        self.errors = errors
        self.offload = offload
        self.flush_udp = flush_udp
        # Coalesced writes, by group kind (vnet.*.KIND): off for good once refused.
        self.coalesce = {"gro": options.tun_gro, "uso": options.tun_gro and options.tun_uso}
        # Super-packets need the whole 64 KB; otherwise a smaller buffer (TUN_SMALL_READ).
        self.read_size = RECV_SIZE + vnet.HDR_LEN if tun.offload_flags else TUN_SMALL_READ

    # ------------------------------------------------------------------ reads

    def read(self, now: float, limit: int = BATCH) -> bool:
        """Drain the TUN (up to `limit` reads) and hand what it gave to the device at once.
        With a virtio_net_hdr, a read may need its checksum finished or be a super-packet
        to cut; False when the TUN is gone."""
        fd = self.tun.fd
        vnet_hdr = self.tun.vnet
        hdr_len = vnet.HDR_LEN
        size = self.read_size
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
                self.flush_udp()
                pkts = []
                append = pkts.append
        if pkts:
            self._send_read(pkts, now)
        return alive

    def _send_read(self, pkts: list[bytes], now: float) -> None:
        try:
            self.device.send_packets(pkts, now)
        except Exception:  # a bug must cost this batch, never the tunnel
            internal_error(self.errors, "send_packet")

    def _finish_vnet_read(self, buf: bytes) -> list[bytes]:
        """A read whose checksum is partial or that is a super-packet -> its packets."""
        try:
            split = vnet.packets(buf)
        except vnet.VnetError:
            self.errors["tun_bad_vnet_hdr"] += 1
            return []
        except Exception:  # a bug must cost one read, never the tunnel
            internal_error(self.errors, "tun_vnet")
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
        if self.read_size < RECV_SIZE:
            log.info("a TUN packet filled the %d-byte read buffer (MTU raised?): dropped it, "
                     "reading 64 KB from now on", self.read_size)
        self.read_size = RECV_SIZE + vnet.HDR_LEN
        return self.read_size

    # ------------------------------------------------------------------ writes

    def flush(self) -> None:
        """Write what the device decrypted for the TUN."""
        out = self.device.tun_out
        if not out:
            return
        self.device.tun_out = []
        fd = self.tun.fd
        if self.tun.vnet:
            self.flush_vnet(fd, out)
            return
        write = os.write
        for pkt in out:
            try:
                write(fd, pkt)
            except OSError as e:
                self._write_error(e)

    def _write_error(self, e: OSError, n: int = 1) -> None:
        self.errors[f"tun_write_{errno.errorcode.get(e.errno, e.errno)}"] += n

    def flush_vnet(self, fd: int, out: list[bytes]) -> None:
        """Write behind virtio_net_hdrs, TCP segments of a flow coalesced into one write."""
        writev, hdr = os.writev, vnet.ZERO_HDR
        coalesce = self.coalesce
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
                    self._write_error(e)

    def _write_group(self, fd: int, item) -> bool:
        """One super-packet write for a coalesced group; False only when the kernel refuses
        the kind (its packets are then to be written one by one, and that kind from now on)."""
        kind = item.KIND
        try:
            os.writev(fd, item.render())
        except OSError as e:
            if e.errno != errno.EINVAL:
                self._write_error(e, len(item.pkts))
                return True
            # Kernels before 6.2 take TCP super-packets on a TUN but not UDP ones.
            self.coalesce[kind] = False
            self.offload[f"tun_{kind}_refused"] += 1
            log.info("TUN refused a coalesced write (tun_%s_refused, EINVAL): "
                     "one packet per write for those from now on", kind)
            return False
        self.offload[f"tun_{kind}_writes"] += 1
        self.offload[f"tun_{kind}_segments"] += len(item.pkts)
        return True
