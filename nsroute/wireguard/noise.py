"""Noise_IKpsk2 handshake of WireGuard: building and consuming initiations and responses.

Pure functions over explicit state: the caller supplies keys, indices, ephemeral keys and
timestamps, so every step is testable and nothing here reads a clock or a socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import crypto
from .constants import CONSTRUCTION, IDENTIFIER, MSG_INITIATION, MSG_RESPONSE
from .messages import INITIATION, RESPONSE

_CK0 = crypto.hash_(CONSTRUCTION)
_H0 = crypto.hash_(_CK0, IDENTIFIER)
_ZERO_KEY = bytes(32)
_MAC_PAD = bytes(32)


class HandshakeError(Exception):
    """A handshake message that does not authenticate; the message is dropped."""


@dataclass
class Identity:
    """The local static key pair, with the values every handshake derives from it."""

    private: X25519PrivateKey
    public: bytes

    @classmethod
    def from_private(cls, raw: bytes) -> Identity:
        priv = crypto.private_from_bytes(raw)
        return cls(priv, crypto.public_of(priv))

    def initial_hash_for(self, responder_public: bytes) -> bytes:
        return crypto.hash_(_H0, responder_public)


@dataclass
class InitiatorState:
    """What an initiator keeps between sending an initiation and receiving the response."""

    local_index: int
    ephemeral: X25519PrivateKey
    chaining_key: bytes
    hash: bytes


@dataclass
class ConsumedInitiation:
    """A verified initiation, ready for a response."""

    peer_public: bytes
    remote_index: int
    remote_ephemeral: bytes
    timestamp: bytes
    chaining_key: bytes
    hash: bytes


@dataclass
class SessionKeys:
    send: bytes
    recv: bytes
    local_index: int
    remote_index: int


def _mix(ck: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    ck, key = crypto.kdf(ck, dh_out, 2)
    return ck, key


def create_initiation(
    me: Identity,
    peer_public: bytes,
    static_static: bytes,
    local_index: int,
    ephemeral: X25519PrivateKey,
    timestamp: bytes,
) -> tuple[bytes, InitiatorState]:
    """Build an initiation without MACs (the caller appends mac1 and mac2)."""
    ck = _CK0
    h = me.initial_hash_for(peer_public)
    e_pub = crypto.public_of(ephemeral)
    (ck,) = crypto.kdf(ck, e_pub, 1)
    h = crypto.hash_(h, e_pub)
    ck, key = _mix(ck, crypto.dh(ephemeral, peer_public))
    enc_static = crypto.aead_encrypt(key, 0, me.public, h)
    h = crypto.hash_(h, enc_static)
    ck, key = _mix(ck, static_static)
    enc_ts = crypto.aead_encrypt(key, 0, timestamp, h)
    h = crypto.hash_(h, enc_ts)
    body = INITIATION.pack(MSG_INITIATION, local_index, e_pub, enc_static, enc_ts, _MAC_PAD[:16], _MAC_PAD[:16])
    return body[:-32], InitiatorState(local_index, ephemeral, ck, h)


def consume_initiation(me: Identity, msg: bytes, static_static_for) -> ConsumedInitiation:
    """Decrypt an initiation (MACs already checked). `static_static_for(pub)` returns the
    precomputed DH(our static, their static) for a known peer, or None for a stranger."""
    _, sender, e_pub, enc_static, enc_ts, _, _ = INITIATION.unpack(msg)
    ck = _CK0
    h = me.initial_hash_for(me.public)
    (ck,) = crypto.kdf(ck, e_pub, 1)
    h = crypto.hash_(h, e_pub)
    try:
        ck, key = _mix(ck, crypto.dh(me.private, e_pub))
        peer_public = crypto.aead_decrypt(key, 0, enc_static, h)
    except (InvalidTag, crypto.LowOrderPoint):
        raise HandshakeError("initiation does not decrypt") from None
    h = crypto.hash_(h, enc_static)
    ss = static_static_for(peer_public)
    if ss is None:
        raise HandshakeError("initiation from an unknown public key")
    ck, key = _mix(ck, ss)
    try:
        timestamp = crypto.aead_decrypt(key, 0, enc_ts, h)
    except InvalidTag:
        raise HandshakeError("initiation timestamp does not decrypt") from None
    h = crypto.hash_(h, enc_ts)
    return ConsumedInitiation(peer_public, sender, e_pub, timestamp, ck, h)


def create_response(
    init: ConsumedInitiation,
    peer_public: bytes,
    psk: bytes | None,
    local_index: int,
    ephemeral: X25519PrivateKey,
) -> tuple[bytes, SessionKeys]:
    """Build a response without MACs and derive the responder's transport keys."""
    ck, h = init.chaining_key, init.hash
    e_pub = crypto.public_of(ephemeral)
    (ck,) = crypto.kdf(ck, e_pub, 1)
    h = crypto.hash_(h, e_pub)
    try:
        (ck,) = crypto.kdf(ck, crypto.dh(ephemeral, init.remote_ephemeral), 1)
        (ck,) = crypto.kdf(ck, crypto.dh(ephemeral, peer_public), 1)
    except crypto.LowOrderPoint:
        raise HandshakeError("low-order key in initiation") from None
    ck, tau, key = crypto.kdf(ck, psk or _ZERO_KEY, 3)
    h = crypto.hash_(h, tau)
    enc_empty = crypto.aead_encrypt(key, 0, b"", h)
    body = RESPONSE.pack(MSG_RESPONSE, local_index, init.remote_index, e_pub, enc_empty, _MAC_PAD[:16], _MAC_PAD[:16])
    recv, send = crypto.kdf(ck, b"", 2)
    return body[:-32], SessionKeys(send, recv, local_index, init.remote_index)


def consume_response(
    me: Identity, state: InitiatorState, msg: bytes, psk: bytes | None
) -> SessionKeys:
    """Verify a response to our initiation and derive the initiator's transport keys."""
    _, sender, receiver, e_pub, enc_empty, _, _ = RESPONSE.unpack(msg)
    if receiver != state.local_index:
        raise HandshakeError("response for another handshake")
    ck, h = state.chaining_key, state.hash
    (ck,) = crypto.kdf(ck, e_pub, 1)
    h = crypto.hash_(h, e_pub)
    try:
        (ck,) = crypto.kdf(ck, crypto.dh(state.ephemeral, e_pub), 1)
        (ck,) = crypto.kdf(ck, crypto.dh(me.private, e_pub), 1)
    except crypto.LowOrderPoint:
        raise HandshakeError("low-order ephemeral in response") from None
    ck, tau, key = crypto.kdf(ck, psk or _ZERO_KEY, 3)
    h = crypto.hash_(h, tau)
    try:
        crypto.aead_decrypt(key, 0, enc_empty, h)
    except InvalidTag:
        raise HandshakeError("response does not authenticate") from None
    send, recv = crypto.kdf(ck, b"", 2)
    return SessionKeys(send, recv, state.local_index, sender)
