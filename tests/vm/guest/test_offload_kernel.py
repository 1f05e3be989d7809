"""The TUN offload on the distribution kernel (Debian's 6.1 in the VM tier), where the host
tier runs a newer one: UDP super-packet writes (GSO_UDP_L4) came to the TUN only in 6.2,
so here the receiving engine must meet the kernel's refusal, fall back to one datagram
per write for UDP alone, lose nothing, and keep coalescing TCP."""

from __future__ import annotations

from tests.netns.test_offload import kernel_takes_uso_writes, offload, transfer, udp_bursts
from tests.support.wgpair import Pair


def test_uso_writes_or_their_fallback(kernel_modules, lab, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("NSROUTE_RUN_DIR", str(run_dir))
    for k in ("NSROUTE_OFFLOAD", "NSROUTE_TUN_GRO", "NSROUTE_TUN_USO", "NSROUTE_TUN_OFFLOAD_FLAGS"):
        monkeypatch.delenv(k, raising=False)
    pair = Pair(lab, "nsroute", "nsroute", tmp=tmp_path)
    pair.connect()
    udp_bursts(pair, pair.right.inner4, 5330, count=320)
    udp_bursts(pair, pair.right.inner6, 5331, count=160, size=1000)
    transfer(pair, pair.right.inner4, 1024 * 1024, 5332)
    right = offload(pair.right, run_dir)
    if kernel_takes_uso_writes():
        assert right.get("tun_uso_writes", 0) > 0 and "tun_uso_refused" not in right, right
    else:
        assert right["tun_uso_refused"] == 1 and "tun_uso_writes" not in right, right
    assert right.get("tun_gro_writes", 0) > 0 and "tun_gro_refused" not in right, right
