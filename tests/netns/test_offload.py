"""TUN offload for real: the kernel's TSO super-packets are read whole and cut by the engine.

Checksummed TCP transfers run through nsroute-wg pairs while the engines' counters
(SIGUSR1) show what the fast path did: super-packets split, partial checksums completed,
segments coalesced on the way back into the kernel, or, where the offload is refused or
turned off, the plain TUN.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import pytest

from nsroute.engine import tun
from tests.netns.test_flood import engine_pid, engine_stats
from tests.support.wggo import BUILDS
from tests.support.wgpair import REPO, Pair

pytestmark = pytest.mark.root


def transfer(pair: Pair, dst: str, nbytes: int, port: int) -> None:
    server = pair.right.ns.popen(sys.executable, "-m", "tests.support.xfer", "serve", dst,
                                 str(port), cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    sent = pair.left.ns.exec(sys.executable, "-m", "tests.support.xfer", "send", dst, str(port),
                             str(nbytes), cwd=REPO, timeout=180).stdout.strip()
    received = server.communicate(timeout=60)[0].strip()
    assert sent == received, (sent, received)
    assert sent.startswith(f"{nbytes} ")


def udp_bursts(pair: Pair, dst: str, port: int, count: int = 640, size: int = 1200) -> None:
    """Numbered datagrams left -> right in bursts of 32: all arrive, intact, in order (once
    the session is up: wireguard-go may reorder what it staged during the handshake)."""
    assert pair.ping(pair.left, dst).returncode == 0
    server = pair.right.ns.popen(sys.executable, "-m", "tests.support.xfer", "udp-serve", dst,
                                 str(port), str(count), cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    pair.left.ns.exec(sys.executable, "-m", "tests.support.xfer", "udp-send", dst, str(port),
                      str(count), str(size), cwd=REPO, timeout=120)
    received, err = server.communicate(timeout=60)
    received = received.strip()
    assert received == f"{count} {count} in-order", f"{received} {err}\n{path_report(pair)}"


def path_report(pair: Pair) -> str:
    """Where datagrams died: each side's link and UDP drop counters and its engine's."""
    lines = []
    for side in (pair.left, pair.right):
        lines.append(f"--- {side.ns.name} ({side.impl})")
        for cmd in (("ip", "-s", "link", "show"), ("grep", "-h", "^Udp", "/proc/net/snmp", "/proc/net/snmp6")):
            lines.append(side.ns.exec(*cmd, check=False).stdout.strip())
        run_dir = os.environ.get("NSROUTE_RUN_DIR")
        if side.impl == "nsroute" and run_dir:
            try:
                stats = engine_stats(engine_pid(side.ifname), Path(run_dir), side.ifname)
            except (OSError, AssertionError) as e:
                stats = {"unreadable": repr(e)}
            lines.append(json.dumps({k: v for k, v in stats.items() if k != "peers"}, sort_keys=True))
    return "\n".join(lines)


def kernel_takes_uso_writes() -> bool:
    """A TUN takes GSO_UDP_L4 writes from Linux 6.2 on."""
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    return (major, minor) >= (6, 2)


def offload(pair_side, run_dir) -> dict:
    stats = engine_stats(engine_pid(pair_side.ifname), run_dir, pair_side.ifname)
    assert not {k: v for k, v in stats["errors"].items() if k.startswith(("tun_", "internal"))}, stats
    return stats["offload"]


def start(monkeypatch, lab, tmp_path, left_env: dict[str, str]) -> Pair:
    """nsroute on both sides; the left one (the sender) with `left_env` on top."""
    run_dir = tmp_path / "run"
    monkeypatch.setenv("NSROUTE_RUN_DIR", str(run_dir))
    monkeypatch.delenv("NSROUTE_OFFLOAD", raising=False)
    monkeypatch.delenv("NSROUTE_TUN_OFFLOAD_FLAGS", raising=False)
    monkeypatch.delenv("NSROUTE_TUN_TSO", raising=False)
    if "NSROUTE_TUN_GRO" not in left_env and os.environ.get("NSROUTE_TUN_GRO") != "0":
        monkeypatch.delenv("NSROUTE_TUN_GRO", raising=False)
    pair = Pair(lab, "nsroute", "nsroute", tmp=tmp_path, start_left=False)
    with monkeypatch.context() as m:
        for k, v in left_env.items():
            m.setenv(k, v)
        pair.left.start(tmp_path)
    pair.connect()
    return pair


def test_default_offload_coalesces_writes_and_reads_finished_packets(lab, tmp_path, monkeypatch):
    pair = start(monkeypatch, lab, tmp_path, {})
    transfer(pair, pair.right.inner4, 10 * 1024 * 1024, 5300)
    run_dir = tmp_path / "run"
    left = offload(pair.left, run_dir)
    assert left["tun_vnet"] is True and left["tun_flags"] == 0, left
    assert "tun_gso_split" not in left and "tun_csum_completed" not in left, left
    right = offload(pair.right, run_dir)
    assert right.get("tun_gro_writes", 0) > 50, right
    assert right["tun_gro_segments"] > 2 * right["tun_gro_writes"], right


@pytest.mark.parametrize("sender", ["nsroute", *BUILDS])
def test_udp_datagrams_are_coalesced_into_uso_writes(lab, tmp_path, monkeypatch, sender):
    """The receiving engine writes a burst of one UDP flow as one GSO_UDP_L4 super-packet
    (or, on a kernel that refuses that, one datagram per write); the kernel cuts it back
    into the datagrams the application gets, v4 and v6 inside."""
    run_dir = tmp_path / "run"
    monkeypatch.setenv("NSROUTE_RUN_DIR", str(run_dir))
    for k in ("NSROUTE_OFFLOAD", "NSROUTE_TUN_GRO", "NSROUTE_TUN_USO", "NSROUTE_TUN_OFFLOAD_FLAGS"):
        monkeypatch.delenv(k, raising=False)
    pair = Pair(lab, sender, "nsroute", tmp=tmp_path)
    pair.connect()
    udp_bursts(pair, pair.right.inner4, 5310)
    udp_bursts(pair, pair.right.inner6, 5311, count=320, size=1000)
    right = offload(pair.right, run_dir)
    if kernel_takes_uso_writes():
        assert right.get("tun_uso_writes", 0) > 10, right
        assert right["tun_uso_segments"] > 4 * right["tun_uso_writes"], right
        assert "tun_uso_refused" not in right, right
    else:
        assert right["tun_uso_refused"] == 1 and "tun_uso_writes" not in right, right


def test_tun_uso_0_writes_datagrams_one_at_a_time(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("NSROUTE_TUN_USO", "0")  # both sides; only the right one receives
    pair = start(monkeypatch, lab, tmp_path, {})
    udp_bursts(pair, pair.right.inner4, 5312)
    transfer(pair, pair.right.inner4, 2 * 1024 * 1024, 5313)
    right = offload(pair.right, tmp_path / "run")
    assert "tun_uso_writes" not in right and "tun_uso_refused" not in right, right
    assert right.get("tun_gro_writes", 0) > 0, right  # TCP still coalesced


def test_tso_super_packets_are_split_v4_and_v6(lab, tmp_path, monkeypatch):
    pair = start(monkeypatch, lab, tmp_path, {"NSROUTE_TUN_TSO": "1"})
    transfer(pair, pair.right.inner4, 20 * 1024 * 1024, 5301)
    transfer(pair, pair.right.inner6, 5 * 1024 * 1024, 5302)
    run_dir = tmp_path / "run"
    left = offload(pair.left, run_dir)
    assert left["tun_vnet"] is True
    want = tun.TUN_F_CSUM | tun.TUN_F_TSO4 | tun.TUN_F_TSO6
    assert left["tun_flags"] & want == want, left
    # TCP sends from the left: most of 25 MB arrive as super-packets of several segments.
    assert left.get("tun_gso_split", 0) > 100, left
    assert left["tun_gso_segments"] > 2 * left["tun_gso_split"], left
    # The receiving engine coalesces the segments it decrypts into super-packets for the
    # kernel; the transfers' checksums above say the kernel took them right.
    right = offload(pair.right, run_dir)
    assert right["tun_vnet"] is True
    assert right.get("tun_gro_writes", 0) > 100, right
    assert right["tun_gro_segments"] > 2 * right["tun_gro_writes"], right
    assert "tun_gro_refused" not in right, right


def test_tun_gro_0_writes_one_packet_at_a_time(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("NSROUTE_TUN_GRO", "0")  # both sides; only the right one receives
    pair = start(monkeypatch, lab, tmp_path, {})
    transfer(pair, pair.right.inner4, 5 * 1024 * 1024, 5306)
    right = offload(pair.right, tmp_path / "run")
    assert right["tun_vnet"] is True and "tun_gro_writes" not in right, right


def test_checksum_offload_alone_completes_partial_checksums(lab, tmp_path, monkeypatch):
    pair = start(monkeypatch, lab, tmp_path, {"NSROUTE_TUN_OFFLOAD_FLAGS": str(tun.TUN_F_CSUM)})
    transfer(pair, pair.right.inner4, 5 * 1024 * 1024, 5303)
    left = offload(pair.left, tmp_path / "run")
    assert left["tun_vnet"] is True and left["tun_flags"] == tun.TUN_F_CSUM, left
    assert left.get("tun_gso_split", 0) == 0, left
    assert left.get("tun_csum_completed", 0) > 1000, left


def test_refused_offload_falls_back_to_the_plain_tun(lab, tmp_path, monkeypatch):
    # 0x8000 is no TUN_F_* flag: the kernel answers TUNSETOFFLOAD with EINVAL.
    pair = start(monkeypatch, lab, tmp_path, {"NSROUTE_TUN_OFFLOAD_FLAGS": "0x8000"})
    transfer(pair, pair.right.inner4, 20 * 1024 * 1024, 5304)
    left = offload(pair.left, tmp_path / "run")
    assert left["tun_vnet"] is False and left["tun_flags"] == 0, left
    assert left["tun_refused"] == ["0x8000: EINVAL"], left
    assert "tun_gso_split" not in left and "tun_csum_completed" not in left, left
    # The device was opened again without IFF_VNET_HDR and carries plain packets.
    assert pair.ping(pair.left, pair.right.inner6).returncode == 0


def test_nsroute_offload_0_turns_the_tun_offload_off(lab, tmp_path, monkeypatch):
    pair = start(monkeypatch, lab, tmp_path, {"NSROUTE_OFFLOAD": "0"})
    transfer(pair, pair.right.inner4, 5 * 1024 * 1024, 5305)
    left = offload(pair.left, tmp_path / "run")
    assert left["tun_vnet"] is False and left["tun_refused"] == [], left
    assert "tun_gso_split" not in left, left


@pytest.mark.parametrize("lan", ["offloads", "no-offloads"])
def test_super_packets_forwarded_beyond_the_tunnel_arrive_intact(lab, tmp_path, monkeypatch, lan):
    """A host behind the receiving engine (a container, a LAN): the kernel forwards the
    engine's TCP and UDP super-packets instead of delivering them. Over a link without
    offloads it must cut them and compute every checksum itself from the pseudo-header sums
    the engine wrote; the host behind checks them."""
    pair = start(monkeypatch, lab, tmp_path, {})
    r, c = pair.right.ns, lab.netns("C")
    lab.veth(r, "lan0", c, "eth0")
    r.ip("addr", "add", "10.88.0.1/24", "dev", "lan0")
    c.ip("addr", "add", "10.88.0.2/24", "dev", "eth0")
    c.ip("route", "add", "default", "via", "10.88.0.1")
    r.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
    if lan == "no-offloads":
        r.exec("ethtool", "-K", "lan0", "tx", "off", "tso", "off", "gso", "off")
        c.exec("ethtool", "-K", "eth0", "rx", "off")  # the LAN host verifies checksums itself
    left = pair.left
    left.wg("set", left.ifname, "peer", pair.right.public, "allowed-ips",
            f"{pair.right.inner4}/32,{pair.right.inner6}/128,10.88.0.0/24")
    left.ns.ip("route", "add", "10.88.0.0/24", "dev", left.ifname)
    assert pair.ping(left, "10.88.0.2").returncode == 0
    server = c.popen(sys.executable, "-m", "tests.support.xfer", "serve", "10.88.0.2", "5320",
                     cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    sent = left.ns.exec(sys.executable, "-m", "tests.support.xfer", "send", "10.88.0.2", "5320",
                        str(8 * 1024 * 1024), cwd=REPO, timeout=180).stdout.strip()
    assert server.communicate(timeout=60)[0].strip() == sent
    server = c.popen(sys.executable, "-m", "tests.support.xfer", "udp-serve", "10.88.0.2", "5321",
                     "640", cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    left.ns.exec(sys.executable, "-m", "tests.support.xfer", "udp-send", "10.88.0.2", "5321", "640",
                 "1200", cwd=REPO, timeout=120)
    assert server.communicate(timeout=60)[0].strip() == "640 640 in-order"
    right = offload(pair.right, tmp_path / "run")
    assert right.get("tun_gro_writes", 0) > 20 and right["tun_gro_segments"] > 2 * right["tun_gro_writes"], right
    if kernel_takes_uso_writes():
        assert right.get("tun_uso_writes", 0) > 5, right
    # nothing was dropped on the way for a bad checksum
    snmp = c.exec("cat", "/proc/net/snmp").stdout
    rows = [line.split() for line in snmp.splitlines() if line.startswith(("Tcp:", "Udp:"))]
    counters = {f"{h[0]}{k}": int(v) for h, vals in zip(rows[::2], rows[1::2], strict=True)
                for k, v in zip(h[1:], vals[1:], strict=True)}
    assert counters["Tcp:InCsumErrors"] == 0 and counters["Udp:InCsumErrors"] == 0, counters


def test_a_packet_longer_than_the_read_buffer_is_dropped_once_then_read_whole(lab, tmp_path, monkeypatch):
    """Without TSO the engine reads its TUN with a 32 KB buffer. Someone raises the MTU past
    that: the first such packet is cut short by the kernel, so it is dropped and counted, and
    the engine reads 64 KB from then on; the next ones go through intact."""
    pair = start(monkeypatch, lab, tmp_path, {})
    left = pair.left
    left.ns.ip("link", "set", left.ifname, "mtu", "40000")
    r = left.ns.exec("ping", "-c", "4", "-i", "0.3", "-W", "2", "-s", "33000", pair.right.inner4,
                     check=False, timeout=30)
    received = int(r.stdout.split(" received")[0].rsplit(" ", 1)[1])
    assert received == 3, r.stdout
    errors = engine_stats(engine_pid(left.ifname), tmp_path / "run", left.ifname)["errors"]
    assert errors == {"tun_read_truncated": 1}, errors
    for size in (20000, 39000):  # under and over 32 KB, within the 40000 MTU
        r = left.ns.exec("ping", "-c", "2", "-i", "0.3", "-s", str(size), pair.right.inner4, check=False)
        assert r.returncode == 0, (size, r.stdout)
