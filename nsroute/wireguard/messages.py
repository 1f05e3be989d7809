"""Wire formats of the four WireGuard messages (all little-endian, 4-byte type word)."""

from __future__ import annotations

import struct

from .constants import (
    COOKIE_REPLY_LEN,
    INITIATION_LEN,
    MSG_COOKIE_REPLY,
    MSG_INITIATION,
    MSG_RESPONSE,
    RESPONSE_LEN,
)

# type(1) reserved(3) sender(4) ephemeral(32) static(48) timestamp(28) mac1(16) mac2(16)
INITIATION = struct.Struct("<II32s48s28s16s16s")
# type reserved sender(4) receiver(4) ephemeral(32) empty(16) mac1 mac2
RESPONSE = struct.Struct("<III32s16s16s16s")
# type reserved receiver(4) nonce(24) cookie(32)
COOKIE_REPLY = struct.Struct("<II24s32s")
TRANSPORT_HEADER = struct.Struct("<IIQ")

assert INITIATION.size == INITIATION_LEN
assert RESPONSE.size == RESPONSE_LEN
assert COOKIE_REPLY.size == COOKIE_REPLY_LEN

# Offsets of the MACs: mac1 covers everything before it, mac2 everything before mac2.
INITIATION_MAC1_OFF = INITIATION_LEN - 32
RESPONSE_MAC1_OFF = RESPONSE_LEN - 32


def pack_cookie_reply(receiver: int, nonce24: bytes, enc_cookie: bytes) -> bytes:
    return COOKIE_REPLY.pack(MSG_COOKIE_REPLY, receiver, nonce24, enc_cookie)


def message_type(data: bytes) -> int:
    """The message type, or 0 when the reserved bytes are not zero or the packet is too short."""
    if len(data) < 4 or data[1] or data[2] or data[3]:
        return 0
    return data[0]


def expected_length_ok(mtype: int, length: int) -> bool:
    if mtype == MSG_INITIATION:
        return length == INITIATION_LEN
    if mtype == MSG_RESPONSE:
        return length == RESPONSE_LEN
    if mtype == MSG_COOKIE_REPLY:
        return length == COOKIE_REPLY_LEN
    return False
