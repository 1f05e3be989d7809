"""Fuzzing the UAPI `set=1` path: `parse_set` + `apply` on arbitrary line lists.

Whatever the lines, the outcome is either success or `UAPIError`, never another
exception; and after a `UAPIError` the device serializes (`get=1`) exactly as before, so a
refused request changed nothing. Lines are drawn from a mix of pure noise and
`key=value` pairs over every key the protocol knows, with values that are valid, almost
valid (wrong length, low-order keys, our own public key, ports out of range, non-ASCII
digits) or arbitrary text. `rebind` fails for one port, as a busy port does for real.
"""

from __future__ import annotations

import errno
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsroute.engine.uapi import UAPIError, apply, parse_set, serialize_get
from nsroute.wireguard import keys
from nsroute.wireguard.device import Device

FUZZ = settings(max_examples=10_000, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

PRIV = keys.clamp(bytes(range(1, 33)))
PUB = keys.public_key(PRIV)
OTHER_PRIV = keys.clamp(bytes(range(40, 72)))
PEERS = [keys.public_key(keys.clamp(bytes([i]) * 32)) for i in (11, 12, 13)]
LOW_ORDER = [bytes(32), bytes([1]) + bytes(31),
             bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")]
BUSY_PORT = 666

BASE = [
    f"private_key={PRIV.hex()}",
    "listen_port=51820",
    "fwmark=4660",
    f"public_key={PEERS[0].hex()}",
    f"preshared_key={bytes(range(200, 232)).hex()}",
    "endpoint=192.0.2.10:51820",
    "persistent_keepalive_interval=25",
    "allowed_ip=10.0.0.0/24",
    "allowed_ip=fd00::/64",
    f"public_key={PEERS[1].hex()}",
    "endpoint=[2001:db8::5]:443",
    "allowed_ip=0.0.0.0/0",
]

DEVICE_KEYS = ["private_key", "listen_port", "fwmark", "replace_peers"]
PEER_KEYS = ["public_key", "remove", "update_only", "preshared_key", "endpoint",
             "persistent_keepalive_interval", "replace_allowed_ips", "allowed_ip",
             "protocol_version"]

HEX_KEYS = [k.hex() for k in (PRIV, PUB, OTHER_PRIV, *PEERS, *LOW_ORDER)] + [
    PUB.hex().upper(), "", "00" * 31, "zz" * 32, PUB.hex()[:63] + " ", " " + PUB.hex()[1:],
    "0x" + PUB.hex()[2:]]
NUMBERS = ["", "0", "1", "25", "51820", "65535", "65536", "-1", str(BUSY_PORT), "²", "١٢", "+1",
           " 1", "1 ", "0x10", "4294967295", "4294967296", "99999999999999999999", "off"]
ENDPOINTS = [
    "192.0.2.1:1", "[2001:db8::1]:51820", "[fe80::1%eth0]:9", "192.0.2.1:0", "192.0.2.1:65536",
    "host.example:51820", "[::1]", "[::1]:", ":51820", "192.0.2.1:²", "[zz]:1", "1.2.3.4:5:6",
    "[1.2.3.4]:5", "", "[]:1"]
PREFIXES = [
    "10.0.0.0/8", "10.0.0.1", "0.0.0.0/0", "::/0", "fd00::1/128", "10.0.0.0/33", "fd00::/129",
    "300.1.1.1/8", "10.0.0.0/-1", "10.0.0.0/", "/8", "1.2.3.4/8/8", "fe80::1%eth0/64", "",
    " 10.0.0.0/8", "10.0.0.0/8 "]
FLAGS = ["true", "false", "", "TRUE", "1", "true "]


def _values(key: str) -> list[str]:
    if key in ("private_key", "public_key", "preshared_key"):
        return HEX_KEYS
    if key in ("listen_port", "fwmark", "persistent_keepalive_interval", "protocol_version"):
        return NUMBERS
    if key == "endpoint":
        return ENDPOINTS
    if key == "allowed_ip":
        return PREFIXES
    return FLAGS


def _accepted(lines: list[str]) -> bool:
    try:
        parse_set(lines)
    except UAPIError:
        return False
    return True


# Every key with every value of its kind (and a few of other kinds), as one flat list:
# one cheap draw per line, so the 10,000 examples go to the code, not to generation.
CANDIDATES = sorted({f"{k}={v}" for k in DEVICE_KEYS + PEER_KEYS
                     for v in _values(k) + ["", "=", "true", "1", PUB.hex(), "10.0.0.0/8"]})
# What the engine hands to parse_set: lines of a UTF-8 request split on newlines.
noise = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "replace").replace("\n", ""))
line = st.one_of(st.sampled_from(CANDIDATES), st.sampled_from(CANDIDATES),
                 st.sampled_from(CANDIDATES), st.sampled_from(BASE), noise)
# Requests a device accepts (peer keys after a public_key line): they reach apply's effects.
GOOD = [c for c in CANDIDATES if _accepted([f"public_key={PEERS[2].hex()}", c])]
request = st.one_of(st.lists(line, max_size=6),
                    st.lists(st.sampled_from(GOOD), max_size=6).map(
                        lambda ls: [f"public_key={PEERS[2].hex()}", *ls]))


def rebind(port: int, fwmark: int) -> int:
    if port == BUSY_PORT:
        raise OSError(errno.EADDRINUSE, "Address already in use")
    return port or 40000


def configured() -> Device:
    dev = Device(rng=random.Random(3).randbytes, wall_offset=1_700_000_000.0)
    apply(dev, parse_set(BASE), 0.0, rebind=rebind)
    return dev


def test_parse_set_and_apply_either_succeed_or_change_nothing():
    outcomes = {"ok": 0, "refused": 0}
    # A refused request leaves the device as it was (that is asserted), so the same device
    # serves the next example; one that took a request is replaced by a fresh copy.
    cache: dict[bool, Device] = {}

    @FUZZ
    @given(lines=request, fresh=st.booleans())
    def one(lines, fresh):
        dev = cache.pop(fresh, None) or (Device(rng=random.Random(4).randbytes) if fresh
                                         else configured())
        before = serialize_get(dev)
        try:
            plan = parse_set(lines)
            apply(dev, plan, 1.0, rebind=rebind)
        except UAPIError as e:
            assert isinstance(e.code, int) and e.code > 0
            assert serialize_get(dev) == before, lines
            outcomes["refused"] += 1
            cache[fresh] = dev
            return
        serialize_get(dev)  # a device that took the request can still be read
        outcomes["ok"] += 1

    one()
    assert sum(outcomes.values()) >= 10_000
    # The mix exercises both outcomes substantially, not just the parser's first line.
    assert min(outcomes.values()) >= 500, outcomes
