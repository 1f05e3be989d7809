"""GSO and GRO against this machine's kernel, on the loopback of a namespace the test makes."""

from __future__ import annotations

import json
import sys

import pytest

from tests.support.wgpair import REPO

pytestmark = pytest.mark.root

CHILD = r"""
import json, socket, time
from collections import Counter
from nsroute.engine import gso
def pair(gro):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rx.bind(("127.0.0.1", 0))
    had = gso.enable_gro(rx) if gro else False
    rx.settimeout(2)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return rx, tx, had
res = {}
for gro in (True, False):
    rx, tx, had = pair(gro)
    snd = gso.Sender(tx)
    group = [bytes([i]) * 1000 for i in range(9)] + [b"z" * 300]
    errors = Counter()
    snd.send(rx.getsockname(), group, errors)
    got, calls = [], 0
    while len(got) < len(group) and calls < 50:
        data, anc, _f, _a = rx.recvmsg(65536, gso.GRO_CMSG_SPACE)
        calls += 1
        got += gso.split(data, gso.gro_size(anc))
    res["gro" if gro else "plain"] = {"ok": got == group, "calls": calls, "gro": had,
                                     "gso": snd.gso, "errors": dict(errors)}
print(json.dumps(res))
"""


def test_gso_send_and_gro_receive_on_this_kernel(lab):
    ns = lab.netns("k")
    out = json.loads(ns.exec(sys.executable, "-c", CHILD, cwd=REPO, timeout=30).stdout)
    for kind in ("gro", "plain"):
        assert out[kind]["ok"], out
        assert not out[kind]["errors"], out
    # Where the kernel has both, ten datagrams cross in one send and one receive; where it
    # lacks them, the fallback still delivered every datagram intact (asserted above).
    if out["gro"]["gso"] and out["gro"]["gro"]:
        assert out["gro"]["calls"] == 1, out
    assert out["plain"]["calls"] == 10, out
