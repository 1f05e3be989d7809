"""WireGuard keys as users see them: 32 bytes, base64 in configs, hex in UAPI."""

from __future__ import annotations

import base64
import binascii
import os

from .crypto import LowOrderPoint, dh, private_from_bytes, public_of

KEY_LEN = 32


class KeyError_(ValueError):
    """A key that is not 32 bytes of base64 (or hex)."""


def clamp(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


def generate_private() -> bytes:
    return clamp(os.urandom(KEY_LEN))


def generate_psk() -> bytes:
    return os.urandom(KEY_LEN)


def public_key(private: bytes) -> bytes:
    return public_of(private_from_bytes(private))


def to_base64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def from_base64(text: str) -> bytes:
    text = text.strip()
    if len(text) != 44 or not text.endswith("="):
        raise KeyError_("Key is not the correct length or format")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyError_("Key is not the correct length or format") from None
    if len(raw) != KEY_LEN:
        raise KeyError_("Key is not the correct length or format")
    return raw


def from_hex(text: str) -> bytes:
    if len(text) != 64:
        raise KeyError_("hex key must be 64 characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise KeyError_("hex key is not valid hex") from None


def is_low_order(public: bytes) -> bool:
    """True when DH with this public key yields the all-zero secret (a point of small order)."""
    probe = private_from_bytes(clamp(b"\x01" * 32))
    try:
        dh(probe, public)
    except LowOrderPoint:
        return True
    return False
