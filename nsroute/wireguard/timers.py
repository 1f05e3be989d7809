"""The protocol timers in one place: what each event does to a peer's deadlines, and what
happens when a deadline falls due (the kernel's drivers/net/wireguard/timers.c and
wireguard-go's device/timers.go keep the same list).

A deadline is a plain float on the Peer (`Peer.t_*`, monotonic seconds, None when off), so an
event on the per-packet path costs a comparison and an assignment; `expire(device, now)`
fires the ones that are due. Nothing here reads a clock: every event takes `now`.

The five timers:
  t_retransmit      resend the initiation when no response came within REKEY_TIMEOUT + jitter
  t_send_keepalive  a keepalive KEEPALIVE_TIMEOUT after data arrived, unless something was
                    sent meanwhile (the passive keepalive)
  t_new_handshake   a new handshake when data was sent and nothing at all came back within
                    KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter
  t_zero_keys       drop all key material REJECT_AFTER_TIME * 3 after the last new session
  t_persistent      the persistent keepalive, its interval after the last authenticated
                    packet either way

The events, reported by device.py, handshake.py and batch.py:
  authenticated_sent      any authenticated packet (handshake message, data, keepalive) sent
                          (kernel: any_authenticated_packet_sent + _traversal)
  authenticated_received  any authenticated packet received (any_..._received + _traversal)
  data_sent               a data packet, not a keepalive, sent
  data_received           data packets, not keepalives, received (with their count)
  handshake_initiated     an initiation sent
  handshake_complete      a response taken, or the first data under the responder's session
  session_derived         new session keys: a response sent or taken (older kernels call it
                          ephemeral_key_created)
  persistent_keepalive_set  the user changed the interval
  stopped                 the peer's sessions were reset (new private key, peer removed)

The batch paths take runs of data packets of one peer at one `now`. The events a data
packet reports (authenticated_sent and data_sent going out, authenticated_received coming
in) leave the same deadlines when repeated at one `now`, so a run reports them once, for its
first packet; data_received is reported once for the rest of the run, with their count.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .constants import (
    KEEPALIVE_TIMEOUT,
    MAX_HANDSHAKE_ATTEMPTS,
    REJECT_AFTER_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER,
)
from .peer import TIMER_NAMES, Peer

if TYPE_CHECKING:
    from .device import Device

NEW_HANDSHAKE_AFTER = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
ZERO_KEYS_AFTER = REJECT_AFTER_TIME * 3


def _jitter(rng: random.Random) -> float:
    """Spread retries so that two peers starting together do not stay in lockstep."""
    return rng.uniform(0, REKEY_TIMEOUT_JITTER)


# ---------------------------------------------------------------- events


def authenticated_sent(peer: Peer, now: float) -> None:
    """Any authenticated packet sent: the peer heard from us, so a pending passive keepalive
    is no longer needed, and the persistent keepalive interval starts again."""
    peer.t_send_keepalive = None
    if peer.persistent_keepalive:
        peer.t_persistent = now + peer.persistent_keepalive


def authenticated_received(peer: Peer, now: float) -> None:
    """Any authenticated packet received: the peer is alive, no new handshake needed for
    want of an answer; the persistent keepalive interval starts again."""
    peer.t_new_handshake = None
    if peer.persistent_keepalive:
        peer.t_persistent = now + peer.persistent_keepalive


def data_sent(peer: Peer, now: float, rng: random.Random) -> None:
    """Data sent: expect something back. Later data does not push the deadline back."""
    if peer.t_new_handshake is None:
        peer.t_new_handshake = now + NEW_HANDSHAKE_AFTER + _jitter(rng)


def data_received(peer: Peer, now: float, count: int = 1) -> None:
    """`count` (>= 1) data packets received: owe the peer a keepalive unless we send first;
    data arriving while one is owed asks for another after it (so the same as `count`
    calls with one)."""
    if peer.t_send_keepalive is None:
        peer.t_send_keepalive = now + KEEPALIVE_TIMEOUT
        if count > 1:
            peer.need_another_keepalive = True
    else:
        peer.need_another_keepalive = True


def handshake_initiated(peer: Peer, now: float, rng: random.Random) -> None:
    """An initiation sent: retransmit it unless a response comes in time."""
    peer.t_retransmit = now + REKEY_TIMEOUT + _jitter(rng)


def handshake_complete(peer: Peer, now: float, wall_offset: float) -> None:
    """Keys confirmed: stop retransmitting, count attempts afresh."""
    peer.t_retransmit = None
    peer.handshake_attempts = 0
    peer.sent_lastminute_handshake = False
    peer.last_handshake_wall = now + wall_offset


def session_derived(peer: Peer, now: float) -> None:
    """New session keys: all keys go REJECT_AFTER_TIME * 3 from now unless renewed."""
    peer.t_zero_keys = now + ZERO_KEYS_AFTER


def persistent_keepalive_set(peer: Peer, interval: int) -> bool:
    """The user set the interval (0: off). True when it was just turned on: the caller
    sends a keepalive at once, which brings the session up (and arms the timer)."""
    was = peer.persistent_keepalive
    peer.persistent_keepalive = interval
    if interval == 0:
        peer.t_persistent = None
    return was == 0 and interval != 0


def stopped(peer: Peer) -> None:
    """The peer's sessions were reset: every timer off."""
    for name in TIMER_NAMES:
        setattr(peer, name, None)


# ---------------------------------------------------------------- deadlines


def peer_deadline(peer: Peer) -> float | None:
    """The earliest of the peer's deadlines."""
    best = None
    for d in (peer.t_retransmit, peer.t_send_keepalive, peer.t_new_handshake,
              peer.t_zero_keys, peer.t_persistent):
        if d is not None and (best is None or d < best):
            best = d
    return best


def next_deadline(peers: Iterable[Peer]) -> float | None:
    """When `expire` next has something to do (None: nothing pending)."""
    best = None
    for peer in peers:
        d = peer_deadline(peer)
        if d is not None and (best is None or d < best):
            best = d
    return best


def expire(device: Device, now: float) -> None:
    """Fire every deadline that is due at `now`, each peer's in the kernel's order."""
    for peer in list(device.peers.values()):
        if peer.t_retransmit is not None and now >= peer.t_retransmit:
            peer.t_retransmit = None
            _retransmit(device, peer, now)
        if peer.t_send_keepalive is not None and now >= peer.t_send_keepalive:
            peer.t_send_keepalive = None
            device._send_keepalive(peer, now)
            if peer.need_another_keepalive:
                peer.need_another_keepalive = False
                peer.t_send_keepalive = now + KEEPALIVE_TIMEOUT
        if peer.t_new_handshake is not None and now >= peer.t_new_handshake:
            # We sent data and heard nothing back: the session may be dead.
            peer.t_new_handshake = None
            device._initiate(peer, now)
        if peer.t_zero_keys is not None and now >= peer.t_zero_keys:
            # Only the key material goes (kernel: zero_key_material). Staged packets, a
            # handshake being retransmitted and the persistent keepalive carry on.
            peer.t_zero_keys = None
            device._zero_key_material(peer)
        if peer.t_persistent is not None and now >= peer.t_persistent:
            peer.t_persistent = None
            device._send_keepalive(peer, now)


def _retransmit(device: Device, peer: Peer, now: float) -> None:
    """No response in time: try again, or give up after REKEY_ATTEMPT_TIME (the first
    initiation plus MAX_HANDSHAKE_ATTEMPTS + 1 retries, 20 in all, as the kernel)."""
    if peer.handshake_attempts > MAX_HANDSHAKE_ATTEMPTS:
        peer.t_send_keepalive = None
        if peer.t_zero_keys is None:  # clear what is left of the partial exchange later
            peer.t_zero_keys = now + ZERO_KEYS_AFTER
        device._abandon_handshake(peer)
        return
    peer.handshake_attempts += 1
    device._initiate(peer, now, retry=True)
