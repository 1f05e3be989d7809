"""nsroute's engine against wireguard-go (both builds: tests/support/wggo.py), over veth
between namespaces the test makes."""

from __future__ import annotations

import re
import sys
import time

import pytest

from tests.support.netns import wait_for
from tests.support.wggo import BUILDS, NEW
from tests.support.wgpair import REPO, Pair

pytestmark = pytest.mark.root


def handshake_seen(side) -> bool:
    rows = side.show_dump()
    return len(rows) > 1 and int(rows[1][4]) > 0


@pytest.mark.parametrize("outer", [4, 6], ids=["outer-v4", "outer-v6"])
@pytest.mark.parametrize("psk", [False, True], ids=["no-psk", "psk"])
@pytest.mark.parametrize("initiates", ["nsroute", "wggo"], ids=["nsroute-initiates", "wggo-initiates"])
@pytest.mark.parametrize("wggo", BUILDS)
def test_handshake_and_ping(lab, tmp_path, wggo, initiates, psk, outer):
    initiator, responder = ("nsroute", wggo) if initiates == "nsroute" else (wggo, "nsroute")
    pair = Pair(lab, initiator, responder, outer_family=outer, tmp=tmp_path)
    pair.connect(psk=psk)
    # Left (the initiator) is the only side that knows an endpoint, so it must start.
    for dst in (pair.right.inner4, pair.right.inner6):
        r = pair.ping(pair.left, dst)
        assert r.returncode == 0, r.stdout + r.stderr
        assert " 0% packet loss" in r.stdout
    r = pair.ping(pair.right, pair.left.inner6)
    assert r.returncode == 0, r.stdout + r.stderr
    for side in (pair.left, pair.right):
        wait_for(lambda s=side: handshake_seen(s), 5, what=f"handshake in wg show on {side.impl}")
        peer = side.show_dump()[1]
        # public key, psk, endpoint, allowed ips, handshake, rx, tx, keepalive
        assert int(peer[5]) > 0 and int(peer[6]) > 0, peer
        assert (peer[1] != "(none)") == psk
    # The responder learnt the initiator's endpoint from authenticated packets.
    ep = pair.right.show_dump()[1][2]
    assert pair.left.outer in ep and ep.endswith(f":{pair.left.port}")
    human = pair.left.wg("show", pair.left.ifname).stdout
    assert re.search(r"latest handshake: .*(second|Now)", human), human
    assert "transfer:" in human


def transfer(pair: Pair, nbytes: int, port: int = 5201) -> tuple[str, str]:
    server = pair.right.ns.popen(sys.executable, "-m", "tests.support.xfer", "serve",
                                 pair.right.inner4, str(port), cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    sent = pair.left.ns.exec(sys.executable, "-m", "tests.support.xfer", "send",
                             pair.right.inner4, str(port), str(nbytes), cwd=REPO, timeout=180)
    out, err = server.communicate(timeout=60)
    return sent.stdout.strip(), out.strip()


@pytest.mark.parametrize("left,right", [*(p for b in BUILDS for p in (("nsroute", b), (b, "nsroute"))),
                                        ("nsroute", "nsroute")])
def test_20mb_transfer_checksum(lab, tmp_path, left, right):
    pair = Pair(lab, left, right, tmp=tmp_path)
    pair.connect()
    sent, received = transfer(pair, 20 * 1024 * 1024)
    assert sent == received, (sent, received)
    assert sent.startswith(str(20 * 1024 * 1024))


@pytest.mark.parametrize("wggo", BUILDS)
def test_roaming_follows_wireguard_go(lab, tmp_path, wggo):
    """wireguard-go changes address and port mid-transfer; nsroute follows it."""
    pair = Pair(lab, wggo, "nsroute", tmp=tmp_path)
    pair.connect(keepalive=1)
    assert pair.ping(pair.left, pair.right.inner4).returncode == 0
    server = pair.right.ns.popen(sys.executable, "-m", "tests.support.xfer", "serve",
                                 pair.right.inner4, "5202", cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    sender = pair.left.ns.popen(sys.executable, "-m", "tests.support.xfer", "send",
                                pair.right.inner4, "5202", str(6 * 1024 * 1024), "7", "0.02",
                                cwd=REPO, text=True)
    time.sleep(1.0)
    # The roaming side: new address, old one gone, new listen port. (Keep the new address
    # when the old primary one goes: without promote_secondaries the kernel drops both.)
    pair.left.ns.exec("sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1")
    pair.left.ns.ip("addr", "add", "192.168.50.9/24", "dev", "eth0")
    pair.left.ns.ip("addr", "del", "192.168.50.1/24", "dev", "eth0")
    pair.left.wg("set", pair.left.ifname, "listen-port", "40404")
    sent, _ = sender.communicate(timeout=120)
    received, _ = server.communicate(timeout=60)
    assert sent.strip() == received.strip()
    ep = pair.right.show_dump()[1][2]
    assert ep == "192.168.50.9:40404", ep
    assert pair.ping(pair.right, pair.left.inner4).returncode == 0


@pytest.mark.parametrize("wggo", BUILDS)
def test_coalesced_udp_from_wireguard_go_arrives_intact(lab, tmp_path, wggo):
    """What sets the two builds apart on the wire: the backports build sends UDP GSO
    super-packets (several datagrams in one frame on the veth, which nsroute must take apart)
    and runs its TUN with TSO; the 2022 build does neither. Bytes arrive intact either way."""
    pair = Pair(lab, wggo, "nsroute", tmp=tmp_path)
    pair.connect()
    left = pair.left
    tso = left.ns.exec("ethtool", "-k", left.ifname).stdout
    assert ("tcp-segmentation-offload: on" in tso) == (wggo == NEW), tso
    dump = pair.right.ns.popen("tcpdump", "-i", "eth0", "-n", "-l", "--immediate-mode",
                               f"udp and src host {left.outer}", text=True)
    wait_for(lambda: "listening" in (dump.stderr.readline() or ""), 10, what="tcpdump running")
    sent, received = transfer(pair, 4 * 1024 * 1024, 5203)
    assert sent == received, (sent, received)
    time.sleep(0.3)
    dump.terminate()
    out = dump.communicate(timeout=10)[0]
    lengths = [int(line.rsplit("length", 1)[1]) for line in out.splitlines() if "length" in line]
    assert lengths, out
    coalesced = sum(1 for n in lengths if n > 1500)
    if wggo == NEW:
        assert coalesced > len(lengths) // 4, (coalesced, len(lengths))
    else:
        assert coalesced == 0, (coalesced, len(lengths))
