"""A WireGuard device without I/O: datagrams and IP packets in, datagrams and IP packets out.

The I/O layer feeds `receive_datagram(data, addr, now)` and `send_packet(packet, now)` (or
a whole drain at once: `receive_datagrams`, `send_packets`, batch.py, which do exactly the
same), then drains `udp_out` (datagram, endpoint) and `tun_out` (IP packets) in batches, and
calls `handle_timers(now)` at `next_deadline()` (timers.py). `now` is monotonic seconds;
wall-clock values (TAI64N, latest handshake) are `now + wall_offset`.
`authenticated_rx` counts the received messages that authenticated (each set its peer's
endpoint to its sender): an I/O layer that keeps per-sender state, such as the local
address a datagram arrived on, updates it only when a receive raised the count.
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections import Counter

from cryptography.exceptions import InvalidTag

from . import batch, handshake, noise, timers
from .allowedips import AllowedIPs
from .constants import MSG_COOKIE_REPLY
from .cookie import CookieChecker
from .handshake import LoadMeter
from .keys import is_low_order
from .messages import expected_length_ok, message_type
from .peer import Keypair, Peer
from .ratelimiter import RateLimiter
from .transport import (
    NONCE_PAD,
    can_send,
    expired,
    is_transport,
    seal,
    unpack_header,
    wants_rekey_on_receive,
    wants_rekey_on_send,
)

Endpoint = tuple[str, int]


class ConfigurationError(ValueError):
    """A setting the device refuses; nothing was changed."""


class Device:
    """One WireGuard interface: its key, peers, routes and sessions (sans-IO).

    Concerns with their own module are bound here as methods: the batch paths (batch.py),
    the timers (timers.py) and sending an initiation (handshake.py)."""

    send_packets = batch.send_packets
    receive_datagrams = batch.receive_datagrams
    handle_timers = timers.expire
    _initiate = handshake.initiate

    def __init__(self, rng=os.urandom, wall_offset: float = 0.0, mtu: int = 1420) -> None:
        self.rng = rng
        self.jitter = random.Random(int.from_bytes(rng(8), "little"))
        self.wall_offset = wall_offset
        self.mtu = mtu
        self.identity: noise.Identity | None = None
        self.private_key: bytes | None = None
        self.listen_port = 0
        self.fwmark = 0
        self.peers: dict[bytes, Peer] = {}
        self.allowed: AllowedIPs[Peer] = AllowedIPs()
        self.index: dict[int, Peer | Keypair] = {}
        self.checker: CookieChecker | None = None
        self.limiter = RateLimiter()
        self.udp_out: list[tuple[bytes, Endpoint]] = []
        self.tun_out: list[bytes] = []
        self.drops: Counter[str] = Counter()
        self.authenticated_rx = 0  # see the module docstring
        self.load = LoadMeter()
        self.force_under_load = False
        self.up = True

    # ---------------------------------------------------------------- configuration

    def set_private_key(self, key: bytes | None) -> None:
        if key == self.private_key:
            return
        self.private_key = key
        self.identity = noise.Identity.from_private(key) if key else None
        self.checker = CookieChecker(self.identity.public, self.rng) if self.identity else None
        for pub in list(self.peers):
            if self.identity and pub == self.identity.public:
                self.remove_peer(pub)  # a peer cannot be ourselves
        for peer in self.peers.values():
            peer.update_static_static(self.identity)
            self._reset_sessions(peer)

    @property
    def public_key(self) -> bytes | None:
        return self.identity.public if self.identity else None

    def add_peer(self, public_key: bytes) -> Peer:
        if len(public_key) != 32:
            raise ConfigurationError("public key must be 32 bytes")
        peer = self.peers.get(public_key)
        if peer is not None:
            return peer
        if self.identity and public_key == self.identity.public:
            raise ConfigurationError("a peer cannot have the device's own public key")
        # Checked on its own: without a private key update_static_static cannot tell.
        if is_low_order(public_key):
            raise ConfigurationError("public key is of low order and cannot be used")
        peer = Peer(public_key)
        peer.update_static_static(self.identity)
        self.peers[public_key] = peer
        return peer

    def remove_peer(self, public_key: bytes) -> None:
        peer = self.peers.pop(public_key, None)
        if peer is None:
            return
        self.allowed.remove_value(peer)
        self._reset_sessions(peer)

    def set_allowed_ips(self, peer: Peer, nets: list, replace: bool) -> None:
        if replace:
            self.allowed.remove_value(peer)
        for net in nets:
            self.allowed.insert(ipaddress.ip_network(net, strict=False), peer)

    def set_persistent_keepalive(self, peer: Peer, interval: int, now: float) -> None:
        """Turning it on sends a keepalive at once, which brings the session up."""
        if timers.persistent_keepalive_set(peer, interval) and self.up and self.identity:
            self._send_keepalive(peer, now)

    def _zero_key_material(self, peer: Peer) -> None:
        """Forget every session and the handshake in flight; timers and staged packets stay."""
        for kp in peer.keypairs():
            self.index.pop(kp.local_index, None)
        if peer.initiation:
            self.index.pop(peer.initiation.local_index, None)
        peer.current = peer.previous = peer.next = None
        peer.initiation = None

    def _reset_sessions(self, peer: Peer) -> None:
        self._zero_key_material(peer)
        peer.staged.clear()
        timers.stopped(peer)

    def _abandon_handshake(self, peer: Peer) -> None:
        """The handshake never completed: drop what waited for it, and the attempt."""
        peer.staged.clear()
        if peer.initiation:
            self.index.pop(peer.initiation.local_index, None)
            peer.initiation = None

    # ---------------------------------------------------------------- outbound data

    def send_packet(self, packet: bytes, now: float) -> Peer | None:
        """An IP packet from the TUN: route it by destination to a peer and encrypt it.
        Returns the peer it was routed to (None when dropped)."""
        n = len(packet)
        if n >= 20 and packet[0] >> 4 == 4:
            peer = self.allowed.v4.lookup(int.from_bytes(packet[16:20], "big"))
        elif n >= 40 and packet[0] >> 4 == 6:
            peer = self.allowed.v6.lookup(int.from_bytes(packet[24:40], "big"))
        else:
            self.drops["tun_not_ip"] += 1
            return None
        if peer is None:
            self.drops["tun_no_peer"] += 1
            return None
        kp = peer.current
        if kp is None or peer.endpoint is None or not can_send(kp, now):
            peer.staged.append(packet)
            self._initiate(peer, now)
            return peer
        self._encrypt(peer, kp, packet, now)
        timers.data_sent(peer, now, self.jitter)
        if wants_rekey_on_send(kp, now):
            self._initiate(peer, now)
        return peer

    def _encrypt(self, peer: Peer, kp: Keypair, packet: bytes, now: float) -> None:
        data = seal(kp, packet, self.mtu)
        self.udp_out.append((data, peer.endpoint))
        peer.tx_bytes += len(data)
        timers.authenticated_sent(peer, now)

    def _send_keepalive(self, peer: Peer, now: float) -> None:
        kp = peer.current
        if kp is None or peer.endpoint is None or expired(kp, now):
            self._initiate(peer, now)
            return
        self._encrypt(peer, kp, b"", now)

    def _flush_staged(self, peer: Peer, now: float) -> None:
        staged = list(peer.staged)
        peer.staged.clear()
        for pkt in staged:
            self.send_packet(pkt, now)

    # ---------------------------------------------------------------- inbound

    def receive_datagram(self, data: bytes, addr: Endpoint, now: float) -> None:
        """A UDP payload from `addr`; never raises on any input."""
        if is_transport(data):
            self._receive_transport(data, addr, now)
            return
        mtype = message_type(data)
        if not expected_length_ok(mtype, len(data)):
            self.drops["udp_malformed"] += 1
            return
        if self.identity is None:
            self.drops["udp_no_identity"] += 1
            return
        try:
            if mtype == MSG_COOKIE_REPLY:
                handshake.receive_cookie_reply(self, data, now)
            else:
                handshake.receive(self, mtype, data, addr, now)
        except (noise.HandshakeError, ValueError) as e:
            self.drops["handshake_invalid"] += 1
            del e

    def _receive_transport(self, data: bytes, addr: Endpoint, now: float) -> Keypair | None:
        """A transport message; the keypair that took it, or None when it was dropped."""
        _, receiver, counter = unpack_header(data)
        kp = self.index.get(receiver)
        if not isinstance(kp, Keypair):
            self.drops["transport_unknown_index"] += 1
            return None
        if not kp.replay.check(counter) or expired(kp, now):
            self.drops["transport_replay_or_expired"] += 1
            return None
        try:
            plain = kp.recv.decrypt(NONCE_PAD + data[8:16], data[16:], None)
        except InvalidTag:
            self.drops["transport_bad_tag"] += 1
            return None
        if not kp.replay.accept(counter):
            self.drops["transport_replay_or_expired"] += 1
            return None
        peer = kp.peer
        if kp is peer.next:
            self._confirm_next(peer, now)
        peer.endpoint = addr
        self.authenticated_rx += 1
        peer.rx_bytes += len(data)
        timers.authenticated_received(peer, now)
        cur = peer.current  # judged on the current session, whichever one this packet used
        if (cur is not None and not peer.sent_lastminute_handshake
                and wants_rekey_on_receive(cur, now)):
            peer.sent_lastminute_handshake = True
            self._initiate(peer, now)
        if not plain:
            return kp  # keepalive
        timers.data_received(peer, now)
        self._deliver(peer, plain)
        return kp

    def _confirm_next(self, peer: Peer, now: float) -> None:
        """First packet under the responder's new session: it becomes current."""
        if peer.previous:
            self.index.pop(peer.previous.local_index, None)
        peer.previous, peer.current, peer.next = peer.current, peer.next, None
        timers.handshake_complete(peer, now, self.wall_offset)
        if peer.staged:
            self._flush_staged(peer, now)

    def _deliver(self, peer: Peer, plain: bytes) -> None:
        n = len(plain)
        v = plain[0] >> 4
        if v == 4 and n >= 20:
            total = (plain[2] << 8) | plain[3]
            src_peer = self.allowed.v4.lookup(int.from_bytes(plain[12:16], "big"))
        elif v == 6 and n >= 40:
            total = 40 + ((plain[4] << 8) | plain[5])
            src_peer = self.allowed.v6.lookup(int.from_bytes(plain[8:24], "big"))
        else:
            self.drops["transport_not_ip"] += 1
            return
        if total > n or total < 20:
            self.drops["transport_bad_length"] += 1
            return
        if src_peer is not peer:
            self.drops["transport_source_not_allowed"] += 1
            return
        self.tun_out.append(plain if total == n else plain[:total])

    # ---------------------------------------------------------------- output and timers

    def next_deadline(self) -> float | None:
        """When handle_timers next has something to do (None: nothing pending)."""
        return timers.next_deadline(self.peers.values())

    def take_udp(self) -> list[tuple[bytes, Endpoint]]:
        out, self.udp_out = self.udp_out, []
        return out

    def take_tun(self) -> list[bytes]:
        out, self.tun_out = self.tun_out, []
        return out
