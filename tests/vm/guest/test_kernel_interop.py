"""nsroute's engine (nsroute-wg) against the kernel's own WireGuard module, in the VM guest.

The kernel module is the reference implementation of the protocol: both sides are set up
with the stock `wg` and `ip` tools (tests/support/wgpair.py, impl "kernel"), over veth
between two namespaces the test makes. Sizes are small: the guest runs under TCG.
"""

from __future__ import annotations

import sys

import pytest

from tests.support.netns import wait_for
from tests.support.wgpair import REPO, Pair

XFER_BYTES = 3 * 1024 * 1024


def handshake_seen(side) -> bool:
    rows = side.show_dump()
    return len(rows) > 1 and int(rows[1][4]) > 0


def transfer(src, dst, nbytes: int, port: int) -> tuple[str, str]:
    """A checksummed TCP transfer from `src` to `dst`'s inner address: (sent, received) lines."""
    server = dst.ns.popen(sys.executable, "-m", "tests.support.xfer", "serve", dst.inner4, str(port),
                          cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    sent = src.ns.exec(sys.executable, "-m", "tests.support.xfer", "send", dst.inner4, str(port),
                       str(nbytes), cwd=REPO, timeout=240)
    out, _ = server.communicate(timeout=60)
    return sent.stdout.strip(), out.strip()


@pytest.mark.parametrize("initiator", ["nsroute", "kernel"])
def test_kernel_interop(kernel_modules, lab, tmp_path, initiator):
    """Handshake, ping both ways (v4 and v6 inside), a checksummed transfer each way."""
    responder = "kernel" if initiator == "nsroute" else "nsroute"
    pair = Pair(lab, initiator, responder, tmp=tmp_path)
    pair.connect()
    # Only left (the initiator) knows an endpoint: it must make the first handshake.
    for dst in (pair.right.inner4, pair.right.inner6):
        r = pair.ping(pair.left, dst)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
    r = pair.ping(pair.right, pair.left.inner4)
    assert r.returncode == 0, r.stdout + r.stderr
    for side in (pair.left, pair.right):
        wait_for(lambda s=side: handshake_seen(s), 5, what=f"handshake in wg show on {side.impl}")
    # The responder learnt the initiator's endpoint from authenticated packets.
    ep = pair.right.show_dump()[1][2]
    assert ep == f"{pair.left.outer}:{pair.left.port}", ep

    sent, received = transfer(pair.left, pair.right, XFER_BYTES, 5201)
    assert sent == received and sent.startswith(str(XFER_BYTES)), (sent, received)
    sent, received = transfer(pair.right, pair.left, XFER_BYTES // 2, 5202)
    assert sent == received and sent.startswith(str(XFER_BYTES // 2)), (sent, received)
    for side in (pair.left, pair.right):
        peer = side.show_dump()[1]
        assert int(peer[5]) > XFER_BYTES // 2 and int(peer[6]) > XFER_BYTES // 2, (side.impl, peer)


def test_nsroute_follows_roaming_kernel_peer(kernel_modules, lab, tmp_path):
    """The kernel side changes address and port; nsroute's `wg show` shows the new endpoint."""
    pair = Pair(lab, "nsroute", "kernel", tmp=tmp_path)
    pair.connect()
    assert pair.ping(pair.left, pair.right.inner4).returncode == 0
    k = pair.right
    # New address, old one gone (promote_secondaries keeps the new one), new listen port.
    k.ns.exec("sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1")
    k.ns.ip("addr", "add", "192.168.50.9/24", "dev", "eth0")
    k.ns.ip("addr", "del", f"{k.outer}/24", "dev", "eth0")
    k.wg("set", k.ifname, "listen-port", "40404")
    # The kernel peer speaks first from its new place; nsroute learns it from that packet.
    r = pair.ping(k, pair.left.inner4)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: pair.left.show_dump()[1][2] == "192.168.50.9:40404", 5,
             what="nsroute's endpoint to follow the kernel peer")
    shown = pair.left.wg("show", pair.left.ifname, "endpoints").stdout
    assert "192.168.50.9:40404" in shown, shown
    # And nsroute's own traffic now goes there.
    r = pair.ping(pair.left, pair.right.inner4)
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
