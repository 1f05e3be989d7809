"""TUN offload for real: the kernel's TSO super-packets are read whole and cut by the engine.

Checksummed TCP transfers run through nsroute-wg pairs while the engines' counters
(SIGUSR1) show what the fast path did: super-packets split, partial checksums completed,
segments coalesced on the way back into the kernel, or, where the offload is refused or
turned off, the plain TUN.
"""

from __future__ import annotations

import os
import sys

import pytest

from nsroute.engine import tun
from tests.netns.test_flood import engine_pid, engine_stats
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
