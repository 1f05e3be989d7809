"""A WireGuard device without I/O: datagrams and IP packets in, datagrams and IP packets out.

The I/O layer feeds `receive_datagram(data, addr, now)` and `send_packet(packet, now)` (or
a whole drain at once: `receive_datagrams`, `send_packets`, which do exactly the same),
then drains `udp_out` (datagram, endpoint) and `tun_out` (IP packets) in batches, and calls
`handle_timers(now)` at `next_deadline()`. `now` is monotonic seconds; wall-clock values
(TAI64N, latest handshake) are `now + wall_offset`.
"""

from __future__ import annotations

import ipaddress
import os
import random
import struct
from collections import Counter

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import noise, tai64n
from .allowedips import AllowedIPs
from .constants import (
    INITIATIONS_PER_SECOND,
    KEEPALIVE_TIMEOUT,
    MAX_HANDSHAKE_ATTEMPTS,
    MIN_TRANSPORT_LEN,
    MSG_COOKIE_REPLY,
    MSG_INITIATION,
    MSG_TRANSPORT,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER,
)
from .cookie import CookieChecker, source_bytes
from .keys import is_low_order
from .messages import COOKIE_REPLY, RESPONSE, expected_length_ok, message_type
from .peer import TIMER_NAMES, Keypair, Peer
from .ratelimiter import RateLimiter

Endpoint = tuple[str, int]
_HDR = struct.Struct("<IIQ")
_pack_hdr = _HDR.pack
_unpack_hdr = _HDR.unpack_from
_NONCE_PAD = b"\x00\x00\x00\x00"
_REKEY_ON_RECEIVE_AGE = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT

# More handshake messages than this in one second puts the device "under load" (cookies
# required) for the following second.
UNDER_LOAD_PER_SECOND = 128
UNDER_LOAD_HOLD = 1.0


def _seal(kp: Keypair, packet: bytes, mtu: int) -> bytes:
    """A transport message for `packet` under `kp`'s next counter: padded to a multiple of
    16 bytes, but not past the MTU (an empty keepalive stays empty)."""
    n = len(packet)
    if n:
        padded = (n + 15) & ~15
        if padded > mtu:
            padded = mtu if mtu > n else n
        if padded != n:
            packet = packet + bytes(padded - n)
    counter = kp.send_counter
    kp.send_counter = counter + 1
    return _pack_hdr(MSG_TRANSPORT, kp.remote_index, counter) + kp.send.encrypt(
        _NONCE_PAD + counter.to_bytes(8, "little"), packet, None)


class ConfigurationError(ValueError):
    """A setting the device refuses; nothing was changed."""


class Device:
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
        self.force_under_load = False
        self._load_window_start = float("-inf")
        self._load_count = 0
        self._under_load_until = float("-inf")
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

    def set_persistent_keepalive(self, peer: Peer, interval: int, now: float) -> None:
        """Turning it on sends a keepalive at once, which brings the session up."""
        was = peer.persistent_keepalive
        peer.persistent_keepalive = interval
        if interval == 0:
            peer.t_persistent = None
        elif was == 0 and self.up and self.identity:
            self._send_keepalive(peer, now)

    def _reset_sessions(self, peer: Peer) -> None:
        for kp in peer.keypairs():
            self.index.pop(kp.local_index, None)
        if peer.initiation:
            self.index.pop(peer.initiation.local_index, None)
        peer.current = peer.previous = peer.next = None
        peer.initiation = None
        peer.staged.clear()
        for t in TIMER_NAMES:
            setattr(peer, t, None)

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
        if (kp is None or peer.endpoint is None or kp.send_counter >= REJECT_AFTER_MESSAGES
                or now - kp.created >= REJECT_AFTER_TIME):
            peer.staged.append(packet)
            self._initiate(peer, now)
            return peer
        self._encrypt(peer, kp, packet, now)
        if peer.t_new_handshake is None:
            peer.t_new_handshake = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + self._jitter()
        # The message limit holds for both sides, the age limit for the initiator only
        # (kernel send.c keep_key_fresh, wireguard-go keepKeyFreshSending).
        if kp.send_counter >= REKEY_AFTER_MESSAGES or (
                kp.is_initiator and now - kp.created >= REKEY_AFTER_TIME):
            self._initiate(peer, now)
        return peer

    def send_packets(self, packets: list[bytes], now: float) -> None:
        """IP packets from one drain of the TUN, exactly as send_packet on each in turn.

        Most of a batch goes to one peer over one live session, so after a packet has gone
        out the usual way, the packets after it with the same destination address are only
        sealed (_seal) while nothing else send_packet does could come out differently for
        them: same peer, session, endpoint and `now`, and no counter limit within the
        batch's reach. Anything else takes the usual way."""
        if len(packets) == 1:  # a lone packet (a ping after quiet): nothing to share
            self.send_packet(packets[0], now)
            return
        fast_dst = None
        peer = kp = ep = None
        mtu = self.mtu
        append = self.udp_out.append
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
                data = _seal(kp, packet, mtu)
                append((data, ep))
                tx += len(data)
                continue
            if tx:
                peer.tx_bytes += tx
                tx = 0
            fast_dst = None
            peer = self.send_packet(packet, now)
            if peer is None:
                continue
            kp, ep = peer.current, peer.endpoint
            # What send_packet would check for each later packet, for the whole batch:
            if not (kp is None or ep is None or peer.staged
                    or kp.send_counter + len(packets) >= REKEY_AFTER_MESSAGES
                    or now - kp.created >= REJECT_AFTER_TIME
                    or (kp.is_initiator and now - kp.created >= REKEY_AFTER_TIME)):
                fast_dst = dst
        if tx:
            peer.tx_bytes += tx

    def _encrypt(self, peer: Peer, kp: Keypair, packet: bytes, now: float) -> None:
        data = _seal(kp, packet, self.mtu)
        self.udp_out.append((data, peer.endpoint))
        peer.tx_bytes += len(data)
        # Any authenticated packet sent: the pending keepalive is no longer needed.
        peer.t_send_keepalive = None
        if peer.persistent_keepalive:
            peer.t_persistent = now + peer.persistent_keepalive

    def _send_keepalive(self, peer: Peer, now: float) -> None:
        kp = peer.current
        if kp is None or peer.endpoint is None or now - kp.created >= REJECT_AFTER_TIME:
            self._initiate(peer, now)
            return
        self._encrypt(peer, kp, b"", now)

    def _flush_staged(self, peer: Peer, now: float) -> None:
        staged = list(peer.staged)
        peer.staged.clear()
        for pkt in staged:
            self.send_packet(pkt, now)

    # ---------------------------------------------------------------- handshake out

    def _jitter(self) -> float:
        return self.jitter.uniform(0, REKEY_TIMEOUT_JITTER)

    def _new_index(self) -> int:
        while True:
            i = int.from_bytes(self.rng(4), "little")
            if i not in self.index:
                return i

    def _initiate(self, peer: Peer, now: float, retry: bool = False) -> None:
        if self.identity is None or peer.endpoint is None or peer.static_static is None:
            return
        if not retry:
            if now - peer.last_initiation_sent < REKEY_TIMEOUT:
                return
            peer.handshake_attempts = 0
        if peer.initiation:
            self.index.pop(peer.initiation.local_index, None)
        idx = self._new_index()
        eph = X25519PrivateKey.from_private_bytes(self.rng(32))
        body, state = noise.create_initiation(
            self.identity, peer.public_key, peer.static_static, idx, eph,
            tai64n.encode(now + self.wall_offset))
        peer.initiation = state
        self.index[idx] = peer
        msg = peer.jar.stamp(body, now)
        self.udp_out.append((msg, peer.endpoint))
        peer.tx_bytes += len(msg)
        peer.last_initiation_sent = now
        peer.t_retransmit = now + REKEY_TIMEOUT + self._jitter()
        peer.t_send_keepalive = None
        if peer.persistent_keepalive:
            peer.t_persistent = now + peer.persistent_keepalive

    # ---------------------------------------------------------------- inbound

    def receive_datagram(self, data: bytes, addr: Endpoint, now: float) -> None:
        """A UDP payload from `addr`; never raises on any input."""
        if len(data) >= MIN_TRANSPORT_LEN and data[0] == MSG_TRANSPORT and not data[1] | data[2] | data[3]:
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
                self._receive_cookie_reply(data, now)
            else:
                self._receive_handshake(mtype, data, addr, now)
        except (noise.HandshakeError, ValueError) as e:
            self.drops["handshake_invalid"] += 1
            del e

    def _under_load(self, now: float) -> bool:
        if now - self._load_window_start >= 1.0:
            self._load_window_start, self._load_count = now, 0
        self._load_count += 1
        if self._load_count > UNDER_LOAD_PER_SECOND:
            self._under_load_until = now + UNDER_LOAD_HOLD
        return self.force_under_load or now < self._under_load_until

    def _receive_handshake(self, mtype: int, data: bytes, addr: Endpoint, now: float) -> None:
        checker = self.checker
        assert checker is not None
        if not checker.mac1_ok(data):
            self.drops["handshake_bad_mac1"] += 1
            return
        if self._under_load(now):
            src = source_bytes(addr)
            if not checker.mac2_ok(data, src, now):
                sender = struct.unpack_from("<I", data, 4)[0]
                self.udp_out.append((checker.make_reply(data, sender, src, now), addr))
                self.drops["handshake_cookie_sent"] += 1
                return
            if not self.limiter.allow(addr[0], now):
                self.drops["handshake_rate_limited"] += 1
                return
        if mtype == MSG_INITIATION:
            self._receive_initiation(data, addr, now)
        else:
            self._receive_response(data, addr, now)

    def _receive_initiation(self, data: bytes, addr: Endpoint, now: float) -> None:
        me = self.identity
        assert me is not None

        def ss_for(pub: bytes) -> bytes | None:
            p = self.peers.get(pub)
            return p.static_static if p else None

        init = noise.consume_initiation(me, data, ss_for)
        peer = self.peers[init.peer_public]
        if init.timestamp <= peer.latest_timestamp:
            self.drops["handshake_replayed"] += 1
            return
        if now - peer.last_initiation_consumed < 1 / INITIATIONS_PER_SECOND:
            self.drops["handshake_flood"] += 1
            return
        eph = X25519PrivateKey.from_private_bytes(self.rng(32))
        idx = self._new_index()
        body, keys = noise.create_response(init, peer.public_key, peer.preshared_key, idx, eph)
        peer.latest_timestamp = init.timestamp
        peer.last_initiation_consumed = now
        peer.endpoint = addr
        kp = Keypair(peer, keys.send, keys.recv, idx, keys.remote_index, now, False)
        if peer.next:
            self.index.pop(peer.next.local_index, None)
        if peer.previous:
            self.index.pop(peer.previous.local_index, None)
        peer.next, peer.previous = kp, None
        self.index[idx] = kp
        msg = peer.jar.stamp(body, now)
        self.udp_out.append((msg, addr))
        peer.rx_bytes += len(data)
        peer.tx_bytes += len(msg)
        self._authenticated_traffic(peer, now)
        peer.t_zero_keys = now + REJECT_AFTER_TIME * 3

    def _receive_response(self, data: bytes, addr: Endpoint, now: float) -> None:
        receiver = RESPONSE.unpack_from(data)[2]
        peer = self.index.get(receiver)
        if not isinstance(peer, Peer) or peer.initiation is None:
            self.drops["handshake_unknown_index"] += 1
            return
        assert self.identity is not None
        keys = noise.consume_response(self.identity, peer.initiation, data, peer.preshared_key)
        self.index.pop(receiver, None)
        peer.initiation = None
        kp = Keypair(peer, keys.send, keys.recv, keys.local_index, keys.remote_index, now, True)
        self.index[kp.local_index] = kp
        old_prev = peer.previous
        if peer.next:
            peer.previous = peer.next
            peer.next = None
            if peer.current:
                self.index.pop(peer.current.local_index, None)
        else:
            peer.previous = peer.current
        if old_prev and old_prev is not peer.previous:
            self.index.pop(old_prev.local_index, None)
        peer.current = kp
        peer.endpoint = addr
        peer.rx_bytes += len(data)
        self._handshake_complete(peer, now)
        peer.t_zero_keys = now + REJECT_AFTER_TIME * 3
        self._authenticated_traffic(peer, now)
        if peer.staged:
            self._flush_staged(peer, now)
        else:
            self._encrypt(peer, kp, b"", now)  # confirm the session to the responder

    def _receive_cookie_reply(self, data: bytes, now: float) -> None:
        receiver = COOKIE_REPLY.unpack_from(data)[1]
        owner = self.index.get(receiver)
        peer = owner.peer if isinstance(owner, Keypair) else owner
        if peer is None or not peer.jar.consume_reply(data, now):
            self.drops["cookie_invalid"] += 1

    def _handshake_complete(self, peer: Peer, now: float) -> None:
        peer.t_retransmit = None
        peer.handshake_attempts = 0
        peer.sent_lastminute_handshake = False
        peer.last_handshake_wall = now + self.wall_offset

    def _authenticated_traffic(self, peer: Peer, now: float) -> None:
        """Any authenticated packet received: the peer is alive."""
        peer.t_new_handshake = None
        if peer.persistent_keepalive:
            peer.t_persistent = now + peer.persistent_keepalive

    def receive_datagrams(self, datagrams: list[bytes], addr: Endpoint, now: float) -> None:
        """Datagrams from one sender (one drain of a socket), exactly as receive_datagram on
        each in turn; never raises on any input.

        A bulk transfer brings runs of transport messages under one session. After one has
        been taken the usual way, the ones after it under the same receiver index are only
        checked against the replay window, decrypted and delivered: everything else
        _receive_transport does would come out the same for them (same peer, session,
        endpoint and `now`), so it is done once for the run (_end_run)."""
        i, n = 0, len(datagrams)
        drops = self.drops
        while i < n:
            data = datagrams[i]
            i += 1
            if not (len(data) >= MIN_TRANSPORT_LEN and data[0] == MSG_TRANSPORT
                    and not data[1] | data[2] | data[3]):
                self.receive_datagram(data, addr, now)
                continue
            kp = self._receive_transport(data, addr, now)
            if kp is None or i == n:
                continue
            check, record = kp.replay.check, kp.replay.record
            decrypt, receiver = kp.recv.decrypt, kp.local_index
            rx = data_packets = 0
            while i < n:
                data = datagrams[i]
                if len(data) < MIN_TRANSPORT_LEN:
                    break
                mtype, rcv, counter = _unpack_hdr(data)
                if mtype != MSG_TRANSPORT or rcv != receiver:
                    break
                i += 1
                if not check(counter):
                    drops["transport_replay_or_expired"] += 1
                    continue
                try:
                    plain = decrypt(_NONCE_PAD + data[8:16], data[16:], None)
                except InvalidTag:
                    drops["transport_bad_tag"] += 1
                    continue
                record(counter)  # check() said it is fresh, and nothing came between
                rx += len(data)
                if plain:
                    data_packets += 1
                    self._deliver(kp.peer, plain)
            self._end_run(kp.peer, rx, data_packets, now)

    def _end_run(self, peer: Peer, rx: int, data_packets: int, now: float) -> None:
        """What the packets of a run after its first would each have done to the peer."""
        peer.rx_bytes += rx
        if data_packets:
            if peer.t_send_keepalive is None:
                peer.t_send_keepalive = now + KEEPALIVE_TIMEOUT
                if data_packets > 1:
                    peer.need_another_keepalive = True
            else:
                peer.need_another_keepalive = True

    def _receive_transport(self, data: bytes, addr: Endpoint, now: float) -> Keypair | None:
        """A transport message; the keypair that took it, or None when it was dropped."""
        _, receiver, counter = _unpack_hdr(data)
        kp = self.index.get(receiver)
        if not isinstance(kp, Keypair):
            self.drops["transport_unknown_index"] += 1
            return None
        if not kp.replay.check(counter) or now - kp.created >= REJECT_AFTER_TIME:
            self.drops["transport_replay_or_expired"] += 1
            return None
        try:
            plain = kp.recv.decrypt(_NONCE_PAD + data[8:16], data[16:], None)
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
        peer.rx_bytes += len(data)
        self._authenticated_traffic(peer, now)
        cur = peer.current  # judged on the current session, whichever one this packet used
        if (cur is not None and cur.is_initiator and not peer.sent_lastminute_handshake
                and now - cur.created >= _REKEY_ON_RECEIVE_AGE):
            peer.sent_lastminute_handshake = True
            self._initiate(peer, now)
        if not plain:
            return kp  # keepalive
        if peer.t_send_keepalive is None:
            peer.t_send_keepalive = now + KEEPALIVE_TIMEOUT
        else:
            peer.need_another_keepalive = True
        self._deliver(peer, plain)
        return kp

    def _confirm_next(self, peer: Peer, now: float) -> None:
        """First packet under the responder's new session: it becomes current."""
        if peer.previous:
            self.index.pop(peer.previous.local_index, None)
        peer.previous, peer.current, peer.next = peer.current, peer.next, None
        self._handshake_complete(peer, now)
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

    # ---------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        best = None
        for peer in self.peers.values():
            d = peer.next_deadline()
            if d is not None and (best is None or d < best):
                best = d
        return best

    def handle_timers(self, now: float) -> None:
        for peer in list(self.peers.values()):
            if peer.t_retransmit is not None and now >= peer.t_retransmit:
                peer.t_retransmit = None
                self._retransmit(peer, now)
            if peer.t_send_keepalive is not None and now >= peer.t_send_keepalive:
                peer.t_send_keepalive = None
                self._send_keepalive(peer, now)
                if peer.need_another_keepalive:
                    peer.need_another_keepalive = False
                    peer.t_send_keepalive = now + KEEPALIVE_TIMEOUT
            if peer.t_new_handshake is not None and now >= peer.t_new_handshake:
                # We sent data and heard nothing back for 15 s: the session may be dead.
                peer.t_new_handshake = None
                self._initiate(peer, now)
            if peer.t_zero_keys is not None and now >= peer.t_zero_keys:
                # Only the key material goes (kernel: zero_key_material). Staged packets,
                # a handshake being retransmitted and persistent keepalive carry on.
                peer.t_zero_keys = None
                staged = list(peer.staged)
                timers = {t: getattr(peer, t) for t in TIMER_NAMES}
                self._reset_sessions(peer)
                peer.staged.extend(staged)
                for t, deadline in timers.items():
                    setattr(peer, t, deadline)
            if peer.t_persistent is not None and now >= peer.t_persistent:
                peer.t_persistent = None
                self._send_keepalive(peer, now)

    def _retransmit(self, peer: Peer, now: float) -> None:
        # As the kernel and wireguard-go: the first initiation plus MAX+1 retries (20 in all).
        if peer.handshake_attempts > MAX_HANDSHAKE_ATTEMPTS:
            # Gave up after REKEY_ATTEMPT_TIME: drop what waited for this session.
            peer.t_send_keepalive = None
            peer.staged.clear()
            if peer.initiation:
                self.index.pop(peer.initiation.local_index, None)
                peer.initiation = None
            if peer.t_zero_keys is None:
                peer.t_zero_keys = now + REJECT_AFTER_TIME * 3
            return
        peer.handshake_attempts += 1
        self._initiate(peer, now, retry=True)

    # ---------------------------------------------------------------- helpers

    def take_udp(self) -> list[tuple[bytes, Endpoint]]:
        out, self.udp_out = self.udp_out, []
        return out

    def take_tun(self) -> list[bytes]:
        out, self.tun_out = self.tun_out, []
        return out

    def set_allowed_ips(self, peer: Peer, nets: list, replace: bool) -> None:
        if replace:
            self.allowed.remove_value(peer)
        for net in nets:
            self.allowed.insert(ipaddress.ip_network(net, strict=False), peer)
