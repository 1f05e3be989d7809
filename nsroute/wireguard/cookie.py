"""MAC1/MAC2 and cookie replies: the DoS defence of the handshake.

`CookieChecker` is the receiving side (check MACs, issue cookies when under load);
`CookieJar` is a peer's sending side (stamp MACs, keep the cookie the peer gave us).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import struct

from cryptography.exceptions import InvalidTag

from . import crypto
from .constants import COOKIE_SECRET_LATENCY, COOKIE_SECRET_MAX_AGE, LABEL_COOKIE, LABEL_MAC1
from .messages import COOKIE_REPLY, pack_cookie_reply


def source_bytes(addr: tuple[str, int]) -> bytes:
    """The bytes a cookie is bound to: the source IP and port of the datagram."""
    return ipaddress.ip_address(addr[0].split("%")[0]).packed + struct.pack(">H", addr[1])


class CookieChecker:
    """Our side: is a handshake message for us (MAC1), and does it carry our cookie (MAC2)?"""

    def __init__(self, public: bytes, rng=os.urandom) -> None:
        self.mac1_key = crypto.hash_(LABEL_MAC1, public)
        self.cookie_key = crypto.hash_(LABEL_COOKIE, public)
        self.rng = rng
        self.secret = b""
        self.secret_birth = float("-inf")

    def mac1_ok(self, msg: bytes) -> bool:
        return hmac.compare_digest(crypto.mac(self.mac1_key, msg[:-32]), msg[-32:-16])

    def _cookie(self, src: bytes, now: float) -> bytes:
        if now - self.secret_birth >= COOKIE_SECRET_MAX_AGE:
            self.secret = self.rng(32)
            self.secret_birth = now
        return crypto.mac(self.secret, src)

    def mac2_ok(self, msg: bytes, src: bytes, now: float) -> bool:
        if now - self.secret_birth >= COOKIE_SECRET_MAX_AGE:
            return False
        cookie = crypto.mac(self.secret, src)
        return hmac.compare_digest(crypto.mac(cookie, msg[:-16]), msg[-16:])

    def make_reply(self, msg: bytes, sender_index: int, src: bytes, now: float) -> bytes:
        """A cookie reply to `msg`, bound to its MAC1 so only its sender can open it."""
        nonce = self.rng(24)
        enc = crypto.xaead_encrypt(self.cookie_key, nonce, self._cookie(src, now), msg[-32:-16])
        return pack_cookie_reply(sender_index, nonce, enc)


class CookieJar:
    """A peer's side: MACs for messages we send to that peer, and the cookie it gave us."""

    def __init__(self, peer_public: bytes) -> None:
        self.mac1_key = crypto.hash_(LABEL_MAC1, peer_public)
        self.cookie_key = crypto.hash_(LABEL_COOKIE, peer_public)
        self.cookie = b""
        self.cookie_birth = float("-inf")
        self.last_mac1 = b""

    def stamp(self, body: bytes, now: float) -> bytes:
        """Append MAC1 and MAC2 (zeros unless we hold a fresh cookie)."""
        mac1 = crypto.mac(self.mac1_key, body)
        self.last_mac1 = mac1
        if self.cookie and now - self.cookie_birth < COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY:
            mac2 = crypto.mac(self.cookie, body + mac1)
        else:
            mac2 = bytes(16)
        return body + mac1 + mac2

    def consume_reply(self, msg: bytes, now: float) -> bool:
        if not self.last_mac1:
            return False
        _, _, nonce, enc = COOKIE_REPLY.unpack(msg)
        try:
            cookie = crypto.xaead_decrypt(self.cookie_key, nonce, enc, self.last_mac1)
        except InvalidTag:
            return False
        self.cookie, self.cookie_birth = cookie, now
        self.last_mac1 = b""  # a reply answers one message
        return True
