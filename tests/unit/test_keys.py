"""Keys as users see them (nsroute/wireguard/keys.py): formats, clamping, low-order points."""

from __future__ import annotations

import base64

import pytest

from nsroute.wireguard import keys
from nsroute.wireguard.device import ConfigurationError, Device

# RFC 7748 section 6.1.
ALICE_PRIV = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")

# The points of small order on Curve25519 and its twist, as libsodium and the WireGuard
# implementations list them: 0, 1, the two points of order 8, p-1, p, p+1 ...
LOW_ORDER = [bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
)]
# ... and the same u-coordinates with the (ignored) top bit set: X25519 masks bit 255.
LOW_ORDER_HIGH_BIT = [k[:31] + bytes([k[31] | 0x80]) for k in LOW_ORDER]


def test_public_key_rfc7748():
    assert keys.public_key(ALICE_PRIV) == ALICE_PUB


def test_clamp():
    c = keys.clamp(b"\xff" * 32)
    assert c[0] == 0xF8 and c[31] == 0x7F and c[1:31] == b"\xff" * 30
    c = keys.clamp(bytes(32))
    assert c[0] == 0 and c[31] == 0x40
    assert keys.clamp(keys.clamp(ALICE_PRIV)) == keys.clamp(ALICE_PRIV)


def test_generated_keys_are_clamped_and_distinct():
    a, b = keys.generate_private(), keys.generate_private()
    assert len(a) == 32 and a != b
    assert a == keys.clamp(a)
    psk = keys.generate_psk()
    assert len(psk) == 32


def test_base64_round_trip_and_wg_format():
    text = keys.to_base64(ALICE_PUB)
    assert text == base64.b64encode(ALICE_PUB).decode()
    assert len(text) == 44 and text.endswith("=")
    assert keys.from_base64(text) == ALICE_PUB
    assert keys.from_base64(f"  {text}\n") == ALICE_PUB


@pytest.mark.parametrize("bad", [
    "",
    "abc",
    keys.to_base64(ALICE_PUB)[:-1],             # 43 characters
    keys.to_base64(ALICE_PUB)[:-1] + "A",       # 44 characters, no padding
    "!" + keys.to_base64(ALICE_PUB)[1:],        # not base64
    base64.b64encode(bytes(31)).decode(),       # decodes to 31 bytes
    base64.b64encode(bytes(33)).decode(),       # decodes to 33 bytes
])
def test_bad_base64_keys(bad):
    with pytest.raises(keys.KeyError_):
        keys.from_base64(bad)


def test_hex_keys():
    assert keys.from_hex(ALICE_PUB.hex()) == ALICE_PUB
    assert keys.from_hex(ALICE_PUB.hex().upper()) == ALICE_PUB
    for bad in ("", "00" * 31, "00" * 33, "zz" * 32):
        with pytest.raises(keys.KeyError_):
            keys.from_hex(bad)


@pytest.mark.parametrize("point", LOW_ORDER + LOW_ORDER_HIGH_BIT, ids=lambda p: p.hex()[:8] + p.hex()[-2:])
def test_low_order_points_detected(point):
    assert keys.is_low_order(point)


def test_ordinary_public_keys_are_not_low_order():
    assert not keys.is_low_order(ALICE_PUB)
    for _ in range(20):
        assert not keys.is_low_order(keys.public_key(keys.generate_private()))


@pytest.mark.parametrize("point", LOW_ORDER + LOW_ORDER_HIGH_BIT, ids=lambda p: p.hex()[:8] + p.hex()[-2:])
def test_device_refuses_low_order_peer(point):
    dev = Device()
    dev.set_private_key(keys.generate_private())
    with pytest.raises(ConfigurationError):
        dev.add_peer(point)
    assert point not in dev.peers


def test_device_refuses_low_order_peer_without_private_key():
    # Low order is a property of the public key alone; the check must not depend on
    # whether the device has a private key yet.
    dev = Device()
    with pytest.raises(ConfigurationError):
        dev.add_peer(LOW_ORDER[2])
    assert dev.peers == {}


def test_device_refuses_bad_length_and_own_key():
    dev = Device()
    dev.set_private_key(ALICE_PRIV)
    with pytest.raises(ConfigurationError):
        dev.add_peer(bytes(31))
    with pytest.raises(ConfigurationError):
        dev.add_peer(ALICE_PUB)
    assert dev.peers == {}
