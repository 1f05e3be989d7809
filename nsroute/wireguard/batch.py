"""A whole drain at once: the TUN's packets (send_packets) and a socket's datagrams from one
sender (receive_datagrams), with exactly the outcome of the single-packet paths packet by
packet (tests/unit/test_send_batch.py and test_receive_batch.py hold them to it).

Both are built on the single-packet path: the first packet of a run takes it in full, and
the packets after it that could only come out the same way (same peer, session, endpoint and
`now`) are just sealed or opened. What those would each have done to the peer is done once
per run: byte counters summed, timer events reported once (timers.py says why that is the
same), data_received with the count. Device binds these functions as its methods of the
same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag

from . import timers
from .constants import MIN_TRANSPORT_LEN, MSG_TRANSPORT
from .transport import NONCE_PAD, can_send, is_transport, seal, unpack_header, wants_rekey_on_send

if TYPE_CHECKING:
    from .device import Device, Endpoint
    from .peer import Peer


def send_packets(device: Device, packets: list[bytes], now: float) -> None:
    """IP packets from one drain of the TUN, exactly as send_packet on each in turn.

    After a packet has gone out the usual way, the packets after it with the same
    destination address are only sealed while nothing else send_packet does could come out
    differently for them: same peer and session, no counter or age limit within the
    batch's reach. Anything else takes the usual way."""
    if len(packets) == 1:  # a lone packet (a ping after quiet): nothing to share
        device.send_packet(packets[0], now)
        return
    fast_dst = None
    peer = kp = ep = None
    mtu = device.mtu
    append = device.udp_out.append
    tx = 0
    for packet in packets:
        n = len(packet)
        if n >= 20 and packet[0] >> 4 == 4:
            dst = packet[16:20]
        elif n >= 40 and packet[0] >> 4 == 6:
            dst = packet[24:40]
        else:
            dst = None
        if dst is not None and dst == fast_dst:
            data = seal(kp, packet, mtu)
            append((data, ep))
            tx += len(data)
            continue
        if tx:
            peer.tx_bytes += tx
            tx = 0
        fast_dst = None
        peer = device.send_packet(packet, now)
        if peer is None:
            continue
        kp, ep = peer.current, peer.endpoint
        # What send_packet would check for each later packet, for the whole batch (its
        # timer events are done: data_sent and authenticated_sent at this `now`):
        if (kp is not None and ep is not None and not peer.staged and can_send(kp, now)
                and not wants_rekey_on_send(kp, now, len(packets))):
            fast_dst = dst
    if tx:
        peer.tx_bytes += tx


def receive_datagrams(device: Device, datagrams: list[bytes], addr: Endpoint,
                      now: float) -> None:
    """Datagrams from one sender (one drain of a socket), exactly as receive_datagram on
    each in turn; never raises on any input.

    A bulk transfer brings runs of transport messages under one session. After one has been
    taken the usual way, the ones after it under the same receiver index are only checked
    against the replay window, decrypted and delivered; the rest is done once for the run
    (_end_run)."""
    i, n = 0, len(datagrams)
    drops = device.drops
    deliver = device._deliver
    while i < n:
        data = datagrams[i]
        i += 1
        if not is_transport(data):
            device.receive_datagram(data, addr, now)
            continue
        kp = device._receive_transport(data, addr, now)
        if kp is None or i == n:
            continue
        check, record = kp.replay.check, kp.replay.record
        decrypt, receiver, peer = kp.recv.decrypt, kp.local_index, kp.peer
        rx = data_packets = 0
        while i < n:
            data = datagrams[i]
            if len(data) < MIN_TRANSPORT_LEN:
                break
            mtype, rcv, counter = unpack_header(data)
            if mtype != MSG_TRANSPORT or rcv != receiver:
                break
            i += 1
            if not check(counter):
                drops["transport_replay_or_expired"] += 1
                continue
            try:
                plain = decrypt(NONCE_PAD + data[8:16], data[16:], None)
            except InvalidTag:
                drops["transport_bad_tag"] += 1
                continue
            record(counter)  # check() said it is fresh, and nothing came between
            rx += len(data)
            if plain:
                data_packets += 1
                deliver(peer, plain)
        _end_run(peer, rx, data_packets, now)


def _end_run(peer: Peer, rx: int, data_packets: int, now: float) -> None:
    """What the packets of a run after its first would each have done to the peer: their
    bytes, and data_received for those that carried data (authenticated_received was
    reported for the first at this same `now`)."""
    peer.rx_bytes += rx
    if data_packets:
        timers.data_received(peer, now, data_packets)
