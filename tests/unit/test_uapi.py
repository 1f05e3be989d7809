"""The wg(8) cross-platform configuration protocol (nsroute/engine/uapi.py), without sockets."""

from __future__ import annotations

import errno

import pytest

from nsroute import config
from nsroute.engine.uapi import (
    UAPIError,
    apply,
    parse_set,
    plan_from_config,
    serialize_get,
    socket_path,
)
from nsroute.wireguard import keys
from nsroute.wireguard.device import Device
from tests.unit.test_handshake import WALL, Link, seeded
from tests.unit.test_keys import LOW_ORDER

PRIV = keys.clamp(bytes(range(1, 33)))
PUB = keys.public_key(PRIV)
P1, P2, P3, P4 = (keys.public_key(keys.clamp(bytes([i]) * 32)) for i in (11, 12, 13, 14))
PSK = bytes(range(200, 232))


def device() -> Device:
    return Device(rng=seeded(3), wall_offset=WALL)


def setup(dev: Device, lines: list[str], now: float = 0.0, rebind=None) -> None:
    """What the engine does with a set=1 request: validate it all, then apply it."""
    apply(dev, parse_set(lines), now, rebind=rebind)


FULL = [
    f"private_key={PRIV.hex()}",
    "listen_port=51820",
    "fwmark=4660",
    "replace_peers=true",
    f"public_key={P1.hex()}",
    f"preshared_key={PSK.hex()}",
    "protocol_version=1",
    "endpoint=192.0.2.10:51820",
    "persistent_keepalive_interval=25",
    "replace_allowed_ips=true",
    "allowed_ip=10.0.0.0/24",
    "allowed_ip=fd00::/64",
    f"public_key={P2.hex()}",
    "endpoint=[2001:db8::5]:443",
    "allowed_ip=0.0.0.0/0",
    f"public_key={P3.hex()}",
    "update_only=true",
    "allowed_ip=10.3.0.0/16",
    f"public_key={P4.hex()}",
    "remove=true",
]


def configured() -> Device:
    dev = device()
    setup(dev, FULL)
    return dev


def test_parse_set_all_keys():
    plan = parse_set(FULL)
    assert plan.private_key == PRIV
    assert plan.listen_port == 51820
    assert plan.fwmark == 4660
    assert plan.replace_peers is True
    assert [p.public_key for p in plan.peers] == [P1, P2, P3, P4]
    p1, p2, p3, p4 = plan.peers
    assert p1.preshared_key == PSK
    assert p1.endpoint == ("192.0.2.10", 51820)
    assert p1.persistent_keepalive == 25
    assert p1.replace_allowed_ips is True
    assert list(map(str, p1.allowed_ips)) == ["10.0.0.0/24", "fd00::/64"]
    assert p2.endpoint == ("2001:db8::5", 443)
    assert p2.replace_allowed_ips is False
    assert p3.update_only is True and not p3.remove
    assert p4.remove is True
    assert p1.line == 5 and p4.line == 19


def test_parse_set_zero_and_empty_keys_mean_none():
    plan = parse_set(["private_key=" + "00" * 32, f"public_key={P1.hex()}", "preshared_key=" + "00" * 32])
    assert plan.private_key is None and plan.peers[0].preshared_key is None
    plan = parse_set(["private_key=", "fwmark=", f"public_key={P1.hex()}", "preshared_key="])
    assert plan.private_key is None and plan.fwmark == 0 and plan.peers[0].preshared_key is None


def test_serialize_get_format_and_order():
    dev = configured()
    # P1 got persistent keepalive on a device that is up: it sent an initiation at once.
    assert serialize_get(dev) == "\n".join([
        f"private_key={PRIV.hex()}",
        "listen_port=51820",
        "fwmark=4660",
        f"public_key={P1.hex()}",
        f"preshared_key={PSK.hex()}",
        "protocol_version=1",
        "endpoint=192.0.2.10:51820",
        "last_handshake_time_sec=0",
        "last_handshake_time_nsec=0",
        "tx_bytes=148",
        "rx_bytes=0",
        "persistent_keepalive_interval=25",
        "allowed_ip=10.0.0.0/24",
        "allowed_ip=fd00::/64",
        f"public_key={P2.hex()}",
        "preshared_key=" + "00" * 32,
        "protocol_version=1",
        "endpoint=[2001:db8::5]:443",
        "last_handshake_time_sec=0",
        "last_handshake_time_nsec=0",
        "tx_bytes=0",
        "rx_bytes=0",
        "persistent_keepalive_interval=0",
        "allowed_ip=0.0.0.0/0",
    ]) + "\n"


def test_serialize_get_field_order_is_wireguard_go_order():
    order = [line.split("=", 1)[0] for line in serialize_get(configured()).splitlines()]
    peer_fields = ["public_key", "preshared_key", "protocol_version", "endpoint",
                   "last_handshake_time_sec", "last_handshake_time_nsec", "tx_bytes",
                   "rx_bytes", "persistent_keepalive_interval"]
    assert order[:3] == ["private_key", "listen_port", "fwmark"]
    assert order[3:12] == peer_fields and order[12:14] == ["allowed_ip"] * 2
    assert order[14:23] == peer_fields and order[23:] == ["allowed_ip"]


def test_serialize_get_omits_unset_private_key_and_fwmark_and_endpoint():
    dev = device()
    setup(dev, ["listen_port=1234", f"public_key={P1.hex()}"])
    assert serialize_get(dev) == "\n".join([
        "listen_port=1234",
        f"public_key={P1.hex()}",
        "preshared_key=" + "00" * 32,
        "protocol_version=1",
        "last_handshake_time_sec=0",
        "last_handshake_time_nsec=0",
        "tx_bytes=0",
        "rx_bytes=0",
        "persistent_keepalive_interval=0",
    ]) + "\n"


def test_get_after_a_handshake_shows_time_and_counters():
    link = Link()
    link.handshake(12.25)
    text = serialize_get(link.a)
    assert "last_handshake_time_sec=1700000012\n" in text
    assert "last_handshake_time_nsec=250000000\n" in text
    assert "tx_bytes=180\n" in text and "rx_bytes=92\n" in text
    assert "endpoint=198.51.100.7:41414\n" in text
    assert "allowed_ip=10.77.0.2/32\nallowed_ip=fd77::2/128\n" in text


def test_scoped_ipv6_endpoint_round_trips():
    dev = device()
    setup(dev, [f"public_key={P1.hex()}", "endpoint=[fe80::1%eth0]:51820"])
    assert dev.peers[P1].endpoint == ("fe80::1%eth0", 51820)
    assert "endpoint=[fe80::1%eth0]:51820\n" in serialize_get(dev)


def test_update_only_remove_replace_semantics():
    dev = configured()
    assert P3 not in dev.peers                               # update_only: not created
    setup(dev, [f"public_key={P2.hex()}", "update_only=true", "allowed_ip=10.9.0.0/16"])
    assert sorted(map(str, dev.allowed.prefixes_of(dev.peers[P2]))) == ["0.0.0.0/0", "10.9.0.0/16"]
    setup(dev, [f"public_key={P2.hex()}", "replace_allowed_ips=true", "allowed_ip=10.8.0.0/16"])
    assert list(map(str, dev.allowed.prefixes_of(dev.peers[P2]))) == ["10.8.0.0/16"]
    setup(dev, [f"public_key={P1.hex()}", "remove=true"])
    assert P1 not in dev.peers
    assert all(v is not None and v.public_key != P1 for _, v in dev.allowed)
    setup(dev, ["replace_peers=true"])
    assert dev.peers == {} and list(dev.allowed) == []
    assert dev.private_key == PRIV and dev.listen_port == 51820   # device settings stay


def test_removing_the_private_key_and_fwmark():
    dev = configured()
    setup(dev, ["private_key=", "fwmark=0"])
    text = serialize_get(dev)
    assert not text.startswith("private_key=") and "fwmark=" not in text
    assert dev.public_key is None


def test_new_private_key_equal_to_a_peer_key_removes_that_peer():
    dev = configured()
    p1_priv = keys.clamp(bytes([11]) * 32)
    setup(dev, [f"private_key={p1_priv.hex()}"])
    assert P1 not in dev.peers and P2 in dev.peers


def test_peer_with_the_devices_own_key_is_never_added():
    # The kernel and wireguard-go silently ignore such a peer; either way it must not appear.
    dev = configured()
    before = serialize_get(dev)
    try:
        setup(dev, ["listen_port=1111", f"public_key={PUB.hex()}", "allowed_ip=10.1.0.0/16"])
    except UAPIError as e:
        assert e.code == errno.EINVAL
        assert serialize_get(dev) == before
    assert PUB not in dev.peers


GOOD_PREFIX = ["listen_port=4242", "replace_peers=true", f"public_key={P4.hex()}",
               "allowed_ip=10.44.0.0/16"]

BAD = [
    (["listen_port"], errno.EPROTO),
    (["=1"], errno.EINVAL),
    (["listen_port=65536"], errno.EINVAL),
    (["listen_port=-1"], errno.EINVAL),
    (["listen_port="], errno.EINVAL),
    (["listen_port= 1"], errno.EINVAL),
    (["listen_port=0x10"], errno.EINVAL),
    (["listen_port=\u00b2"], errno.EINVAL),                    # superscript two: isdigit() but not a number
    (["listen_port=\u0661\u0662\u0663"], errno.EINVAL),        # Arabic-Indic digits
    (["fwmark=4294967296"], errno.EINVAL),
    (["fwmark=off"], errno.EINVAL),
    (["private_key=" + "0" * 63], errno.EINVAL),
    (["private_key=" + "zz" * 32], errno.EINVAL),
    (["replace_peers=false"], errno.EINVAL),
    (["bogus=1"], errno.EINVAL),
    (["public_key="], errno.EINVAL),
    (["public_key=" + "ab" * 31], errno.EINVAL),
    (["public_key=" + "gg" * 32], errno.EINVAL),
    (["public_key=" + LOW_ORDER[2].hex()], errno.EINVAL),
    (["public_key=" + LOW_ORDER[0].hex()], errno.EINVAL),
    ([f"public_key={P1.hex()}", "remove=1"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "update_only=yes"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "preshared_key=abc"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "endpoint=192.0.2.1"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "endpoint=192.0.2.1:0"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "endpoint=192.0.2.1:65536"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "endpoint=vpn.example.com:51820"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "endpoint=[2001:db8::1]"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "endpoint=2001:db8::1:51820"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "endpoint=[2001:db8::1:51820"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "persistent_keepalive_interval=65536"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "persistent_keepalive_interval=-5"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "persistent_keepalive_interval=\u00b2"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "replace_allowed_ips=false"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "allowed_ip=10.0.0.0/33"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "allowed_ip=10.0.0.300/32"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "allowed_ip="], errno.EINVAL),
    ([f"public_key={P1.hex()}", "allowed_ip=fd00::/129"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "protocol_version=2"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "listen_port=1"], errno.EINVAL),   # a device key after a peer
    ([f"public_key={P1.hex()}", "bogus=1"], errno.EINVAL),
    ([f"public_key={P1.hex()}", "no equals sign"], errno.EPROTO),
]


@pytest.mark.parametrize("bad, code", BAD, ids=[repr(b[-1])[:40] for b, _ in BAD])
@pytest.mark.parametrize("with_prefix", [False, True], ids=["alone", "after-valid-lines"])
def test_malformed_request_gives_errno_and_changes_nothing(bad, code, with_prefix):
    dev = configured()
    before = serialize_get(dev)
    lines = (GOOD_PREFIX if with_prefix else []) + bad
    with pytest.raises(UAPIError) as ei:
        setup(dev, lines, now=1.0)
    assert ei.value.code == code
    assert serialize_get(dev) == before


def test_failed_rebind_changes_nothing():
    dev = configured()
    before = serialize_get(dev)

    def rebind(port, fwmark):
        raise OSError(errno.EADDRINUSE, "Address already in use")

    with pytest.raises(UAPIError) as ei:
        setup(dev, ["listen_port=9999", "replace_peers=true"], rebind=rebind)
    assert ei.value.code == errno.EADDRINUSE
    assert serialize_get(dev) == before


def test_rebind_is_asked_only_for_a_new_port_or_fwmark_and_its_port_is_used():
    dev = configured()
    calls = []

    def rebind(port, fwmark):
        calls.append((port, fwmark))
        return 40000 if port == 0 else port

    setup(dev, ["listen_port=51820", "fwmark=4660"], rebind=rebind)
    assert calls == []
    setup(dev, ["listen_port=0"], rebind=rebind)
    assert calls == [(0, 4660)]
    assert dev.listen_port == 40000


def test_plan_from_setconf_file():
    text = f"""
[Interface]
PrivateKey = {keys.to_base64(PRIV)}
ListenPort = 51999
FwMark = 0x10

[Peer]
PublicKey = {keys.to_base64(P1)}
PresharedKey = {keys.to_base64(PSK)}
AllowedIPs = 10.1.0.0/16, fd01::/64
Endpoint = 192.0.2.55:51820

[Peer]
PublicKey = {keys.to_base64(P2)}
AllowedIPs = 10.2.0.0/16
"""
    cfg = config.parse(text, "wg9.conf", quick=False)
    dev = configured()
    apply(dev, plan_from_config(cfg), 5.0)
    assert dev.private_key == PRIV and dev.listen_port == 51999 and dev.fwmark == 16
    assert list(dev.peers) == [P1, P2]                       # replace_peers: the old set is gone
    assert dev.peers[P1].preshared_key == PSK
    assert dev.peers[P1].endpoint == ("192.0.2.55", 51820)
    assert dev.peers[P1].persistent_keepalive == 0
    assert list(map(str, dev.allowed.prefixes_of(dev.peers[P1]))) == ["10.1.0.0/16", "fd01::/64"]
    assert list(map(str, dev.allowed.prefixes_of(dev.peers[P2]))) == ["10.2.0.0/16"]
    resolved = plan_from_config(cfg, resolve=lambda ep: ("198.51.100.1", ep[1]))
    assert resolved.peers[0].endpoint == ("198.51.100.1", 51820)


def test_socket_path():
    assert socket_path("wg0") == "/var/run/wireguard/wg0.sock"
