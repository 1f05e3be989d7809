"""Per-peer protocol state: keys, handshake in flight, timers and counters.

Timers are plain deadlines (monotonic seconds, or None when off), set and cleared only by
the events of timers.py, which also fires the ones that are due. Setting a float is all the
per-packet path does for timers.
"""

from __future__ import annotations

from collections import deque

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from . import crypto
from .constants import MAX_STAGED_PACKETS
from .cookie import CookieJar
from .noise import Identity, InitiatorState
from .replay import ReplayWindow

TIMER_NAMES = ("t_retransmit", "t_send_keepalive", "t_new_handshake", "t_zero_keys", "t_persistent")


class Keypair:
    """Transport keys of one session, in one direction each, with their counters."""

    __slots__ = ("send", "recv", "local_index", "remote_index", "created", "is_initiator",
                 "send_counter", "replay", "peer")

    def __init__(self, peer: Peer, send_key: bytes, recv_key: bytes, local_index: int,
                 remote_index: int, created: float, is_initiator: bool) -> None:
        self.send = ChaCha20Poly1305(send_key)
        self.recv = ChaCha20Poly1305(recv_key)
        self.local_index = local_index
        self.remote_index = remote_index
        self.created = created
        self.is_initiator = is_initiator
        self.send_counter = 0
        self.replay = ReplayWindow()
        self.peer = peer


class Peer:
    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.jar = CookieJar(public_key)
        self.preshared_key: bytes | None = None
        self.static_static: bytes | None = None  # DH(our static, their static)
        self.endpoint: tuple[str, int] | None = None
        self.persistent_keepalive = 0

        self.initiation: InitiatorState | None = None
        self.latest_timestamp = b""
        self.last_initiation_consumed = float("-inf")
        self.last_initiation_sent = float("-inf")
        self.handshake_attempts = 0

        self.current: Keypair | None = None
        self.previous: Keypair | None = None
        self.next: Keypair | None = None
        self.sent_lastminute_handshake = False
        self.need_another_keepalive = False

        self.staged: deque[bytes] = deque(maxlen=MAX_STAGED_PACKETS)
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.last_handshake_wall = 0.0

        self.t_retransmit: float | None = None
        self.t_send_keepalive: float | None = None
        self.t_new_handshake: float | None = None
        self.t_zero_keys: float | None = None
        self.t_persistent: float | None = None

    def update_static_static(self, me: Identity | None) -> bool:
        """Precompute DH(us, them); False when their key is of low order (unusable)."""
        if me is None:
            self.static_static = None
            return True
        try:
            self.static_static = crypto.dh(me.private, self.public_key)
        except crypto.LowOrderPoint:
            self.static_static = None
            return False
        return True

    def keypairs(self) -> list[Keypair]:
        return [k for k in (self.current, self.previous, self.next) if k is not None]
