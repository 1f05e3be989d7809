"""Cryptokey routing table: longest-prefix match from an IP address to a peer.

One hash table per prefix length, probed from the longest length present down. With the
few distinct lengths real configs use this is a handful of dict lookups per packet, which
is what a Python hot path can afford; a bit trie would cost a Python step per bit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Family(Generic[T]):
    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.tables: dict[int, dict[int, T]] = {}
        self.lengths: list[int] = []  # descending

    def insert(self, net_int: int, plen: int, value: T) -> None:
        table = self.tables.get(plen)
        if table is None:
            table = self.tables[plen] = {}
            self.lengths = sorted(self.tables, reverse=True)
        table[net_int] = value

    def remove(self, net_int: int, plen: int) -> T | None:
        table = self.tables.get(plen)
        if table is None:
            return None
        value = table.pop(net_int, None)
        if not table:
            del self.tables[plen]
            self.lengths = sorted(self.tables, reverse=True)
        return value

    def lookup(self, addr: int) -> T | None:
        bits = self.bits
        for plen in self.lengths:
            v = self.tables[plen].get((addr >> (bits - plen)) << (bits - plen) if plen else 0)
            if v is not None:
                return v
        return None


class AllowedIPs(Generic[T]):
    def __init__(self) -> None:
        self.v4: _Family[T] = _Family(32)
        self.v6: _Family[T] = _Family(128)

    def _fam(self, net: Network) -> _Family[T]:
        return self.v4 if net.version == 4 else self.v6

    def insert(self, net: Network, value: T) -> None:
        """Add or take over a prefix (a prefix belongs to one peer at a time)."""
        self._fam(net).insert(int(net.network_address), net.prefixlen, value)

    def remove(self, net: Network, value: T | None = None) -> bool:
        fam = self._fam(net)
        key = int(net.network_address)
        current = fam.tables.get(net.prefixlen, {}).get(key)
        if current is None or (value is not None and current is not value):
            return False
        fam.remove(key, net.prefixlen)
        return True

    def remove_value(self, value: T) -> None:
        for fam in (self.v4, self.v6):
            for plen in list(fam.tables):
                for key in [k for k, v in fam.tables[plen].items() if v is value]:
                    fam.remove(key, plen)

    def prefixes_of(self, value: T) -> list[Network]:
        out: list[Network] = []
        for fam, cls in ((self.v4, ipaddress.IPv4Network), (self.v6, ipaddress.IPv6Network)):
            for plen in sorted(fam.tables, reverse=True):
                for key, v in fam.tables[plen].items():
                    if v is value:
                        out.append(cls((key, plen)))
        return out

    def lookup_v4(self, addr: bytes) -> T | None:
        return self.v4.lookup(int.from_bytes(addr, "big"))

    def lookup_v6(self, addr: bytes) -> T | None:
        return self.v6.lookup(int.from_bytes(addr, "big"))

    def lookup(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> T | None:
        fam = self.v4 if addr.version == 4 else self.v6
        return fam.lookup(int(addr))

    def __iter__(self) -> Iterator[tuple[Network, T]]:
        for fam, cls in ((self.v4, ipaddress.IPv4Network), (self.v6, ipaddress.IPv6Network)):
            for plen in fam.lengths:
                for key, v in fam.tables[plen].items():
                    yield cls((key, plen)), v
