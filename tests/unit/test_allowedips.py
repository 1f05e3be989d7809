"""Cryptokey routing: longest-prefix match on send, source-address check on receive."""

from __future__ import annotations

import ipaddress
import random

import pytest

from nsroute.wireguard.allowedips import AllowedIPs
from tests.unit.test_handshake import (
    A_EP,
    A_IP4,
    A_IP6,
    B_IP4,
    B_IP6,
    Link,
    drops,
    ipv4_packet,
    ipv6_packet,
)

net = ipaddress.ip_network
addr = ipaddress.ip_address


def brute_force(entries: dict, a) -> object | None:
    """Longest matching prefix by scanning every entry (the definition, not an algorithm)."""
    best, best_len = None, -1
    for n, v in entries.items():
        if n.version == a.version and a in n and n.prefixlen > best_len:
            best, best_len = v, n.prefixlen
    return best


def test_ipv4_lookup():
    t: AllowedIPs[str] = AllowedIPs()
    t.insert(net("10.0.0.0/8"), "p1")
    t.insert(net("192.168.1.7/32"), "p2")
    assert t.lookup(addr("10.1.2.3")) == "p1"
    assert t.lookup(addr("10.255.255.255")) == "p1"
    assert t.lookup(addr("11.0.0.0")) is None
    assert t.lookup(addr("192.168.1.7")) == "p2"
    assert t.lookup(addr("192.168.1.8")) is None
    assert t.lookup_v4(addr("10.9.9.9").packed) == "p1"


def test_ipv6_lookup():
    t: AllowedIPs[str] = AllowedIPs()
    t.insert(net("fd00::/8"), "p1")
    t.insert(net("2001:db8:1::/48"), "p2")
    t.insert(net("2001:db8:1:2::1/128"), "p3")
    assert t.lookup(addr("fdff::1")) == "p1"
    assert t.lookup(addr("2001:db8:1:ffff::1")) == "p2"
    assert t.lookup(addr("2001:db8:1:2::1")) == "p3"
    assert t.lookup(addr("2001:db8:1:2::2")) == "p2"
    assert t.lookup(addr("2001:db8:2::1")) is None
    assert t.lookup_v6(addr("fd12::").packed) == "p1"


def test_families_are_separate():
    t: AllowedIPs[str] = AllowedIPs()
    t.insert(net("0.0.0.0/0"), "v4")
    assert t.lookup(addr("::")) is None
    assert t.lookup(addr("::ffff:10.0.0.1")) is None   # a v4-mapped v6 address is still v6
    t.insert(net("::/0"), "v6")
    assert t.lookup(addr("1.2.3.4")) == "v4"
    assert t.lookup(addr("::1")) == "v6"


def test_overlapping_prefixes_longest_wins():
    t: AllowedIPs[str] = AllowedIPs()
    for n, v in [("0.0.0.0/0", "default"), ("10.0.0.0/8", "8"), ("10.1.0.0/16", "16"),
                 ("10.1.2.0/24", "24"), ("10.1.2.128/25", "25"), ("10.1.2.130/32", "32")]:
        t.insert(net(n), v)
    assert t.lookup(addr("10.1.2.130")) == "32"
    assert t.lookup(addr("10.1.2.131")) == "25"
    assert t.lookup(addr("10.1.2.127")) == "24"
    assert t.lookup(addr("10.1.3.1")) == "16"
    assert t.lookup(addr("10.2.0.0")) == "8"
    assert t.lookup(addr("8.8.8.8")) == "default"
    # Inserted in the other order, the answers are the same.
    t2: AllowedIPs[str] = AllowedIPs()
    for n, v in reversed(list(t)):
        t2.insert(n, v)
    for a in ("10.1.2.130", "10.1.2.131", "10.1.2.127", "10.1.3.1", "10.2.0.0", "8.8.8.8"):
        assert t2.lookup(addr(a)) == t.lookup(addr(a))


def test_host_bits_are_ignored():
    t: AllowedIPs[str] = AllowedIPs()
    t.insert(net("10.1.2.3/16", strict=False), "p")
    assert t.lookup(addr("10.1.200.1")) == "p"
    assert list(t) == [(net("10.1.0.0/16"), "p")]


def test_remove_by_prefix():
    t: AllowedIPs[str] = AllowedIPs()
    t.insert(net("10.0.0.0/8"), "a")
    t.insert(net("10.1.0.0/16"), "b")
    assert t.remove(net("10.1.0.0/16"))
    assert t.lookup(addr("10.1.0.1")) == "a"        # falls back to the shorter prefix
    assert not t.remove(net("10.1.0.0/16"))         # already gone
    assert not t.remove(net("10.0.0.0/9"))          # never there
    assert not t.remove(net("10.0.0.0/8"), "b")     # there, but not b's
    assert t.lookup(addr("10.1.0.1")) == "a"
    assert t.remove(net("10.0.0.0/8"), "a")
    assert t.lookup(addr("10.1.0.1")) is None
    assert list(t) == [] and t.v4.lengths == []


def test_remove_by_peer():
    t: AllowedIPs[str] = AllowedIPs()
    for n in ("10.0.0.0/8", "192.168.0.0/16", "fd00::/8", "2001:db8::1/128"):
        t.insert(net(n), "a")
    t.insert(net("10.5.0.0/16"), "b")
    t.insert(net("fd00:5::/32"), "b")
    t.remove_value("a")
    assert sorted(map(str, t.prefixes_of("b"))) == ["10.5.0.0/16", "fd00:5::/32"]
    assert t.prefixes_of("a") == []
    assert t.lookup(addr("10.1.1.1")) is None
    assert t.lookup(addr("10.5.1.1")) == "b"
    assert t.lookup(addr("fd00::1")) is None


def test_prefix_moves_to_the_last_peer_that_claims_it():
    t: AllowedIPs[str] = AllowedIPs()
    t.insert(net("10.0.0.0/24"), "a")
    t.insert(net("10.0.0.0/24"), "b")
    assert t.lookup(addr("10.0.0.9")) == "b"
    assert t.prefixes_of("a") == []
    assert t.prefixes_of("b") == [net("10.0.0.0/24")]
    t.remove_value("a")                              # removing a does not take it from b
    assert t.lookup(addr("10.0.0.9")) == "b"


def test_prefixes_of_lists_longest_first_per_family():
    t: AllowedIPs[str] = AllowedIPs()
    for n in ("10.0.0.0/8", "10.1.1.1/32", "fd00::/8", "0.0.0.0/0", "fd00::1/128"):
        t.insert(net(n), "p")
    assert list(map(str, t.prefixes_of("p"))) == [
        "10.1.1.1/32", "10.0.0.0/8", "0.0.0.0/0", "fd00::1/128", "fd00::/8"]


@pytest.mark.parametrize("seed", range(6))
def test_random_tables_match_brute_force(seed):
    rnd = random.Random(seed)
    t: AllowedIPs[int] = AllowedIPs()
    entries: dict = {}
    lens4 = [0, 1, 7, 8, 15, 16, 23, 24, 31, 32]
    lens6 = [0, 1, 32, 48, 63, 64, 65, 127, 128]
    # Addresses from a small pool, so prefixes overlap a lot.
    pool4 = [rnd.getrandbits(32) & 0xFFFF00FF | 0x0A000000 for _ in range(6)]
    pool6 = [(0xFD << 120) | rnd.getrandbits(16) << 64 | rnd.getrandbits(8) for _ in range(6)]
    for i in range(300):
        if rnd.random() < 0.5:
            n = ipaddress.IPv4Network((rnd.choice(pool4) ^ rnd.getrandbits(3), rnd.choice(lens4)), strict=False)
        else:
            n = ipaddress.IPv6Network((rnd.choice(pool6) ^ rnd.getrandbits(3), rnd.choice(lens6)), strict=False)
        if rnd.random() < 0.2 and entries:
            victim = rnd.choice(list(entries))
            assert t.remove(victim)
            del entries[victim]
        else:
            peer = rnd.randrange(5)
            t.insert(n, peer)
            entries[n] = peer
        probes = [ipaddress.IPv4Address(rnd.choice(pool4) ^ rnd.getrandbits(4)) for _ in range(3)]
        probes += [ipaddress.IPv6Address(rnd.choice(pool6) ^ rnd.getrandbits(4)) for _ in range(3)]
        for a in probes:
            assert t.lookup(a) == brute_force(entries, a), (i, a)
    assert dict(t) == entries
    for peer in range(5):
        assert set(t.prefixes_of(peer)) == {n for n, v in entries.items() if v == peer}


# ---------------------------------------------------------------- in the device


def test_send_routes_by_longest_prefix_to_the_right_peer():
    link = Link()
    dev = link.a
    other = dev.add_peer(Link(seed=7).b.public_key)
    other.endpoint = ("203.0.113.50", 51820)
    dev.set_allowed_ips(link.pa, ["10.77.0.0/16", "fd77::/64"], replace=True)
    dev.set_allowed_ips(other, ["10.77.5.0/24", "0.0.0.0/0", "fd77::5/128"], replace=True)
    for dst, peer in [("10.77.0.2", link.pa), ("10.77.5.9", other), ("8.8.8.8", other)]:
        dev.send_packet(ipv4_packet(A_IP4, dst, b"x"), 0.0)
        assert list(peer.staged)[-1][16:20] == addr(dst).packed
    for dst, peer in [("fd77::2", link.pa), ("fd77::5", other)]:
        dev.send_packet(ipv6_packet(A_IP6, dst, b"x"), 0.0)
        assert list(peer.staged)[-1][24:40] == addr(dst).packed
    dev.send_packet(ipv6_packet(A_IP6, "2001:db8::1", b"x"), 0.0)
    assert dev.drops["tun_no_peer"] == 1


def test_set_allowed_ips_replace_and_add():
    link = Link()
    dev, p = link.a, link.pa
    dev.set_allowed_ips(p, ["10.0.0.0/24"], replace=True)
    assert list(map(str, dev.allowed.prefixes_of(p))) == ["10.0.0.0/24"]
    dev.set_allowed_ips(p, ["10.0.1.0/24"], replace=False)
    assert sorted(map(str, dev.allowed.prefixes_of(p))) == ["10.0.0.0/24", "10.0.1.0/24"]
    dev.set_allowed_ips(p, [], replace=True)
    assert dev.allowed.prefixes_of(p) == []


def test_removing_a_peer_removes_its_prefixes():
    link = Link()
    link.a.remove_peer(link.pa.public_key)
    assert list(link.a.allowed) == []
    link.a.send_packet(ipv4_packet(A_IP4, B_IP4, b"x"), 0.0)
    assert link.a.drops["tun_no_peer"] == 1


def test_prefix_moved_to_another_peer_in_the_device():
    link = Link()
    link.handshake(0.0)
    b = link.b
    c_pub = Link(seed=8).a.public_key
    c = b.add_peer(c_pub)
    c.endpoint = ("203.0.113.60", 51820)
    b.set_allowed_ips(c, [f"{A_IP4}/32"], replace=False)   # c now owns a's address
    assert b.allowed.prefixes_of(link.pb) == [net(f"{A_IP6}/128")]
    # Traffic to that address now goes to c ...
    b.send_packet(ipv4_packet(B_IP4, A_IP4, b"to c"), 1.0)
    assert list(c.staged) == [ipv4_packet(B_IP4, A_IP4, b"to c")]
    # ... and a may no longer use it as a source.
    link.a.send_packet(ipv4_packet(A_IP4, B_IP4, b"from a"), 1.0)
    link.a_to_b(1.0)
    assert b.take_tun() == []
    assert b.drops["transport_source_not_allowed"] == 1


@pytest.mark.parametrize("src", ["10.77.0.99", "10.99.0.1", B_IP4], ids=["neighbour", "unrouted", "own"])
def test_source_address_check_on_receive(src):
    link = Link()
    link.handshake(0.0)
    link.a.allowed.insert(net("0.0.0.0/0"), link.pa)   # a will send anything to b
    link.a.send_packet(ipv4_packet(src, B_IP4, b"spoofed"), 1.0)
    link.a.send_packet(ipv4_packet(A_IP4, B_IP4, b"genuine"), 1.0)
    link.a_to_b(1.0)
    assert link.b.take_tun() == [ipv4_packet(A_IP4, B_IP4, b"genuine")]
    assert link.b.drops["transport_source_not_allowed"] == 1
    assert drops(link.b) == 1


def test_source_address_check_ipv6():
    link = Link()
    link.handshake(0.0)
    link.a.allowed.insert(net("::/0"), link.pa)
    link.a.send_packet(ipv6_packet("fd77::99", B_IP6, b"spoofed"), 1.0)
    link.a.send_packet(ipv6_packet(A_IP6, B_IP6, b"genuine"), 1.0)
    link.a_to_b(1.0)
    assert link.b.take_tun() == [ipv6_packet(A_IP6, B_IP6, b"genuine")]
    assert link.b.drops["transport_source_not_allowed"] == 1


def test_source_allowed_for_another_peer_is_dropped():
    link = Link()
    link.handshake(0.0)
    c = link.b.add_peer(Link(seed=9).a.public_key)
    link.b.set_allowed_ips(c, ["10.50.0.0/16"], replace=True)
    link.a.allowed.insert(net("0.0.0.0/0"), link.pa)
    link.a.send_packet(ipv4_packet("10.50.0.1", B_IP4, b"as c"), 1.0)
    link.a_to_b(1.0, src=A_EP)
    assert link.b.take_tun() == []
    assert link.b.drops["transport_source_not_allowed"] == 1
