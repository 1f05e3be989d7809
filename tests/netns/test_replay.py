"""Replay: real handshake and transport packets, captured on the wire, sent again at nsroute.

A wireguard-go client (R) handshakes with an nsroute-wg responder (L) and pings it while
`tcpdump -w` records, in L's namespace, every datagram R sent to the engine's port. Those
datagrams (the initiation, the transport packets carrying the echo requests, keepalives)
are then replayed at the engine three times over, from another source port of R's address
and also from a third namespace. Nothing may reach the TUN a second time: the TUN's RX
packet counter (what the engine wrote into the kernel) does not move, and the engine's
counters (SIGUSR1) show every replay as a drop. The tunnel still works afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.netns.test_flood import engine_pid
from tests.support.attacker import read_pcap_udp
from tests.support.netns import wait_for
from tests.support.stats import request_stats
from tests.support.wggo import BUILDS
from tests.support.wgpair import REPO, Pair

pytestmark = pytest.mark.root

TIMES = 3


def engine_drops(pid: int, run_dir: Path, ifname: str) -> dict:
    return request_stats(pid, run_dir / f"engine-{ifname}.stats.json")["drops"]


def tun_rx_packets(pair_side) -> int:
    out = pair_side.ns.ip("-j", "-s", "link", "show", pair_side.ifname).stdout
    return json.loads(out)[0]["stats64"]["rx"]["packets"]


def delta(after: dict, before: dict, key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


@pytest.mark.parametrize("wggo", BUILDS)
def test_replayed_packets_are_dropped_and_counted(lab, tmp_path, monkeypatch, wggo):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("NSROUTE_RUN_DIR", str(run_dir))
    pair = Pair(lab, "nsroute", wggo, tmp=tmp_path)
    eng, client = pair.left, pair.right
    L = eng.ns
    # wireguard-go 0.0.20231211 sends with UDP GSO (so does nsroute; the 2022 build does
    # not): one capture frame would hold several datagrams.
    # gso_max_segs 1 makes the kernel cut them apart before the veth, as on a real wire.
    client.ns.ip("link", "set", "eth0", "gso_max_segs", "1")
    pcap = tmp_path / "wire.pcap"
    dump = L.popen("tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-n", "-w", str(pcap),
                   f"udp dst port {eng.port} and src host {client.outer}", text=True)
    wait_for(lambda: pcap.exists() and pcap.stat().st_size >= 24, 10, what="tcpdump running")
    time.sleep(0.3)
    pair.connect(left_knows_endpoint=False, right_knows_endpoint=True)
    r = pair.ping(client, eng.inner4, count=5)
    assert r.returncode == 0, r.stdout
    time.sleep(0.5)
    dump.send_signal(signal.SIGINT)
    dump.communicate(timeout=10)

    captured = [p for src, sport, dst, dport, p in read_pcap_udp(str(pcap))
                if src == client.outer and dport == eng.port]
    kinds = [p[0] for p in captured]
    assert kinds.count(1) >= 1, kinds                   # the initiation
    assert kinds.count(4) >= 5, (kinds, r.stdout)       # at least the 5 echo requests
    n_init, n_transport = kinds.count(1), kinds.count(4)

    pid = engine_pid(eng.ifname)
    rx_before = tun_rx_packets(eng)
    drops_before = engine_drops(pid, run_dir, eng.ifname)
    payloads = tmp_path / "payloads.json"
    payloads.write_text(json.dumps([p.hex() for p in captured]))
    env = {k: v for k, v in os.environ.items() if k != "WG_PROCESS_FOREGROUND"}
    env["PYTHONPATH"] = str(REPO)
    # Replays from R's own address (another port: wireguard-go holds its own) ...
    rep = client.ns.exec(sys.executable, "-m", "tests.support.attacker", "replay", "--target",
                         eng.outer, "--port", str(eng.port), "--payloads", str(payloads),
                         "--times", str(TIMES), env=env, timeout=60)
    # ... and from a stranger's namespace wired into L.
    stranger = lab.netns("X")
    lab.veth(L, "eth1", stranger, "eth0")
    L.ip("addr", "add", "192.168.53.1/24", "dev", "eth1")
    stranger.ip("addr", "add", "192.168.53.2/24", "dev", "eth0")
    rep2 = stranger.exec(sys.executable, "-m", "tests.support.attacker", "replay", "--target",
                         "192.168.53.1", "--port", str(eng.port), "--payloads", str(payloads),
                         "--times", str(TIMES), env=env, timeout=60)
    sent = json.loads(rep.stdout)["sent"] + json.loads(rep2.stdout)["sent"]
    assert sent == 2 * TIMES * len(captured)
    time.sleep(1.0)

    rx_after = tun_rx_packets(eng)
    drops_after = engine_drops(pid, run_dir, eng.ifname)
    print(json.dumps({"captured": {"initiations": n_init, "transport": n_transport},
                      "replayed": sent, "tun_rx": [rx_before, rx_after],
                      "drops_before": drops_before, "drops_after": drops_after}))
    assert rx_after == rx_before, f"{rx_after - rx_before} replayed packets reached the TUN"
    replays_dropped = delta(drops_after, drops_before, "transport_replay_or_expired")
    inits_dropped = delta(drops_after, drops_before, "handshake_replayed")
    assert replays_dropped == 2 * TIMES * n_transport, (drops_before, drops_after)
    assert inits_dropped == 2 * TIMES * n_init, (drops_before, drops_after)
    assert sum(drops_after.values()) - sum(drops_before.values()) == sent

    # The genuine session is untouched: new pings get through, each exactly once.
    r = pair.ping(client, eng.inner4, count=3)
    assert r.returncode == 0, r.stdout
    assert tun_rx_packets(eng) - rx_after >= 3
