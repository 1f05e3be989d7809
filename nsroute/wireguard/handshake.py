"""A device's handshake messages, out and in: initiations, responses, cookie replies, and
the load check that asks for cookies. The Noise computation itself is noise.py's; this is
what the device does around it (indices, sessions, endpoints, counters, timer events)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import noise, tai64n, timers
from .constants import INITIATIONS_PER_SECOND, MSG_INITIATION, REKEY_TIMEOUT
from .cookie import source_bytes
from .messages import COOKIE_REPLY, RESPONSE
from .peer import Keypair, Peer

if TYPE_CHECKING:
    from .device import Device, Endpoint

# More handshake messages than this in one second puts the device "under load" (cookies
# required) for the following second.
UNDER_LOAD_PER_SECOND = 128
UNDER_LOAD_HOLD = 1.0


class LoadMeter:
    """Counts handshake messages per second to tell when the device is under load."""

    def __init__(self) -> None:
        self.window_start = float("-inf")
        self.count = 0
        self.until = float("-inf")

    def under_load(self, now: float) -> bool:
        """Count one message at `now`; True while the device is under load."""
        if now - self.window_start >= 1.0:
            self.window_start, self.count = now, 0
        self.count += 1
        if self.count > UNDER_LOAD_PER_SECOND:
            self.until = now + UNDER_LOAD_HOLD
        return now < self.until


def _new_index(device: Device) -> int:
    while True:
        i = int.from_bytes(device.rng(4), "little")
        if i not in device.index:
            return i


def initiate(device: Device, peer: Peer, now: float, retry: bool = False) -> None:
    """Send an initiation to `peer`; at most one per REKEY_TIMEOUT unless it is the
    retransmit timer's `retry`."""
    if device.identity is None or peer.endpoint is None or peer.static_static is None:
        return
    if not retry:
        if now - peer.last_initiation_sent < REKEY_TIMEOUT:
            return
        peer.handshake_attempts = 0
    if peer.initiation:
        device.index.pop(peer.initiation.local_index, None)
    idx = _new_index(device)
    eph = X25519PrivateKey.from_private_bytes(device.rng(32))
    body, state = noise.create_initiation(
        device.identity, peer.public_key, peer.static_static, idx, eph,
        tai64n.encode(now + device.wall_offset))
    peer.initiation = state
    device.index[idx] = peer
    msg = peer.jar.stamp(body, now)
    device.udp_out.append((msg, peer.endpoint))
    peer.tx_bytes += len(msg)
    peer.last_initiation_sent = now
    timers.handshake_initiated(peer, now, device.jitter)
    timers.authenticated_sent(peer, now)


def receive(device: Device, mtype: int, data: bytes, addr: Endpoint, now: float) -> None:
    """An initiation or response of the right length: MACs and load first, then the
    message (noise.HandshakeError or ValueError when it does not hold)."""
    checker = device.checker
    assert checker is not None
    if not checker.mac1_ok(data):
        device.drops["handshake_bad_mac1"] += 1
        return
    if device.load.under_load(now) or device.force_under_load:
        src = source_bytes(addr)
        if not checker.mac2_ok(data, src, now):
            sender = struct.unpack_from("<I", data, 4)[0]
            device.udp_out.append((checker.make_reply(data, sender, src, now), addr))
            device.drops["handshake_cookie_sent"] += 1
            return
        if not device.limiter.allow(addr[0], now):
            device.drops["handshake_rate_limited"] += 1
            return
    if mtype == MSG_INITIATION:
        _receive_initiation(device, data, addr, now)
    else:
        _receive_response(device, data, addr, now)


def _receive_initiation(device: Device, data: bytes, addr: Endpoint, now: float) -> None:
    me = device.identity
    assert me is not None

    def ss_for(pub: bytes) -> bytes | None:
        p = device.peers.get(pub)
        return p.static_static if p else None

    init = noise.consume_initiation(me, data, ss_for)
    peer = device.peers[init.peer_public]
    if init.timestamp <= peer.latest_timestamp:
        device.drops["handshake_replayed"] += 1
        return
    if now - peer.last_initiation_consumed < 1 / INITIATIONS_PER_SECOND:
        device.drops["handshake_flood"] += 1
        return
    eph = X25519PrivateKey.from_private_bytes(device.rng(32))
    idx = _new_index(device)
    body, keys = noise.create_response(init, peer.public_key, peer.preshared_key, idx, eph)
    peer.latest_timestamp = init.timestamp
    peer.last_initiation_consumed = now
    peer.endpoint = addr
    device.authenticated_rx += 1
    kp = Keypair(peer, keys.send, keys.recv, idx, keys.remote_index, now, False)
    # The new session waits in `next` until the initiator uses it (device._confirm_next).
    if peer.next:
        device.index.pop(peer.next.local_index, None)
    if peer.previous:
        device.index.pop(peer.previous.local_index, None)
    peer.next, peer.previous = kp, None
    device.index[idx] = kp
    msg = peer.jar.stamp(body, now)
    device.udp_out.append((msg, addr))
    peer.rx_bytes += len(data)
    peer.tx_bytes += len(msg)
    timers.authenticated_received(peer, now)
    timers.session_derived(peer, now)
    timers.authenticated_sent(peer, now)  # the response


def _receive_response(device: Device, data: bytes, addr: Endpoint, now: float) -> None:
    receiver = RESPONSE.unpack_from(data)[2]
    peer = device.index.get(receiver)
    if not isinstance(peer, Peer) or peer.initiation is None:
        device.drops["handshake_unknown_index"] += 1
        return
    assert device.identity is not None
    keys = noise.consume_response(device.identity, peer.initiation, data, peer.preshared_key)
    device.index.pop(receiver, None)
    peer.initiation = None
    kp = Keypair(peer, keys.send, keys.recv, keys.local_index, keys.remote_index, now, True)
    device.index[kp.local_index] = kp
    old_prev = peer.previous
    if peer.next:
        peer.previous = peer.next
        peer.next = None
        if peer.current:
            device.index.pop(peer.current.local_index, None)
    else:
        peer.previous = peer.current
    if old_prev and old_prev is not peer.previous:
        device.index.pop(old_prev.local_index, None)
    peer.current = kp
    peer.endpoint = addr
    device.authenticated_rx += 1
    peer.rx_bytes += len(data)
    timers.handshake_complete(peer, now, device.wall_offset)
    timers.session_derived(peer, now)
    timers.authenticated_received(peer, now)
    if peer.staged:
        device._flush_staged(peer, now)
    else:
        device._encrypt(peer, kp, b"", now)  # confirm the session to the responder


def receive_cookie_reply(device: Device, data: bytes, now: float) -> None:
    """A cookie for our next handshake message to the peer whose index it names."""
    receiver = COOKIE_REPLY.unpack_from(data)[1]
    owner = device.index.get(receiver)
    peer = owner.peer if isinstance(owner, Keypair) else owner
    if peer is None or not peer.jar.consume_reply(data, now):
        device.drops["cookie_invalid"] += 1
