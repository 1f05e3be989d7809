"""The hot-plug guard's decisions and records, without root (moves are the VM tier's)."""

from __future__ import annotations

import socket
import struct

from nsroute.host import block, guard, guardrecord


def test_only_new_hardware_moves():
    base = [1, 2, 3]
    assert guard.should_move("usb0", 7, base, hardware=True, wireless=False)
    assert guard.should_move("wlan1", 8, base, hardware=False, wireless=True)
    assert not guard.should_move("eth0", 2, base, hardware=True, wireless=False)  # there before up
    assert not guard.should_move("veth9", 9, base, hardware=False, wireless=False)  # made on purpose
    assert not guard.should_move("lo", 10, base, hardware=True, wireless=False)


def _link_msg(kind: int, index: int, name: str) -> bytes:
    """One rtnetlink link message as the kernel sends it: nlmsghdr, ifinfomsg, IFLA_IFNAME."""
    ifname = name.encode() + b"\0"
    attr = struct.pack("HH", 4 + len(ifname), 3) + ifname
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("BxHiII", socket.AF_UNSPEC, 1, index, 0, 0) + attr
    return struct.pack("IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_link_events_from_a_netlink_datagram():
    data = _link_msg(16, 5, "usb1") + _link_msg(17, 4, "wg0") + _link_msg(16, 6, "enx0a")
    assert guard.link_events(data) == [(16, 5, "usb1"), (17, 4, "wg0"), (16, 6, "enx0a")]
    assert guard.new_links(data) == [(5, "usb1"), (6, "enx0a")]


def test_record_round_trip_and_a_missing_one(tmp_path):
    path = tmp_path / "g.json"
    assert guardrecord.Record.load(path).moved == []
    rec = guardrecord.Record(pid=42, started=1.0)
    rec.moved.append(guardrecord.Moved("wiphy", "phy3", 3, 2.5, ["wlan3"]))
    rec.errors.append("x")
    rec.save(path)
    back = guardrecord.Record.load(path)
    assert back == rec and (path.stat().st_mode & 0o777) == 0o600


def test_block_ruleset_accepts_lo_and_kinded_devices_only():
    text = block.ruleset()
    for chain in ("input", "output", "forward"):
        assert f"chain {chain} {{ type filter hook {chain} priority -400; policy drop;" in text
    assert 'iifname "lo" accept' in text and 'oifname "lo" accept' in text
    assert text.count('kind != "nsroute-none"') == 4  # in, out, and both ends of forwarding
