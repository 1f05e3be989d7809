"""Transport messages and the limits of the keys that seal them, shared by the single-packet
paths (device.py) and the batch paths (batch.py), so each rule is written once."""

from __future__ import annotations

from .constants import (
    KEEPALIVE_TIMEOUT,
    MIN_TRANSPORT_LEN,
    MSG_TRANSPORT,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_TIMEOUT,
)
from .messages import TRANSPORT_HEADER
from .peer import Keypair

pack_header = TRANSPORT_HEADER.pack
unpack_header = TRANSPORT_HEADER.unpack_from  # (type, receiver index, counter)
NONCE_PAD = b"\x00\x00\x00\x00"  # the 96-bit nonce is 32 zero bits, then the counter
# The initiator renews a session it receives on this old, so that the new one is ready
# before the old one expires (kernel receive.c keep_key_fresh).
REKEY_ON_RECEIVE_AGE = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT


def is_transport(data: bytes) -> bool:
    """A transport message by its header (type 4, reserved bytes zero) and minimum length."""
    return (len(data) >= MIN_TRANSPORT_LEN and data[0] == MSG_TRANSPORT
            and not data[1] | data[2] | data[3])


def seal(kp: Keypair, packet: bytes, mtu: int) -> bytes:
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
    return pack_header(MSG_TRANSPORT, kp.remote_index, counter) + kp.send.encrypt(
        NONCE_PAD + counter.to_bytes(8, "little"), packet, None)


def expired(kp: Keypair, now: float) -> bool:
    """Too old to send or receive under (REJECT_AFTER_TIME)."""
    return now - kp.created >= REJECT_AFTER_TIME


def can_send(kp: Keypair, now: float) -> bool:
    """Whether the next packet may go out under `kp` (else it waits for a new session)."""
    return kp.send_counter < REJECT_AFTER_MESSAGES and now - kp.created < REJECT_AFTER_TIME


def wants_rekey_on_send(kp: Keypair, now: float, more: int = 0) -> bool:
    """After sending (and `more` packets after that): time for a new session. The message
    limit holds for both sides, the age limit for the initiator only (kernel send.c
    keep_key_fresh, wireguard-go keepKeyFreshSending)."""
    return kp.send_counter + more >= REKEY_AFTER_MESSAGES or (
        kp.is_initiator and now - kp.created >= REKEY_AFTER_TIME)


def wants_rekey_on_receive(kp: Keypair, now: float) -> bool:
    """The initiator's session is near its end: renew it once from the receiving side."""
    return kp.is_initiator and now - kp.created >= REKEY_ON_RECEIVE_AGE
