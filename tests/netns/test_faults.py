"""Faults (issue 6, item 4): each one leaves the tunnel recovering by itself or the host sealed,
`nsroute down` restores the host, and no packet leaves the laptop unencrypted meanwhile.

The leak proof is tests.support.hosts.LeakGuard, on the router from before `up` until after
`down`: an nft counter and a tcpdump capture of everything arriving from the laptop's uplinks
that is not UDP to the server's WireGuard port (nor DHCP/ARP/ND/MLD noise): both stay at 0.

`nsroute up` killed at each of its steps is test_host_recovery.py's.
The two long faults (carrier lost 30 s, endpoint unreachable 60 s) run at the same time on
two sites, so this file takes about two minutes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.netns.test_host_killswitch import BURST
from tests.support import netns as _netns
from tests.support.hosts import BEHIND4, LeakGuard, Site
from tests.support.netns import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
XFER = [sys.executable, "-m", "tests.support.xfer"]


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def _engine_pid(site: Site) -> int:
    import json
    info = json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)
    return info["engine"]["pid"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _pings(site: Site, timeout: float = 1.0) -> bool:
    return site.laptop.exec("ping", "-c", "1", "-W", str(timeout), BEHIND4, check=False, timeout=10).returncode == 0


def _latest_handshake(site: Site) -> int:
    out = site.laptop.exec("wg", "show", site.tun, "latest-handshakes").stdout.split()
    return int(out[1]) if len(out) >= 2 else 0


def _assert_sealed(site: Site) -> None:
    L = site.laptop
    assert L.links() == ["lo"], L.links()
    assert L.exec("python3", "-c", BURST, timeout=60).stdout.strip() == "0"
    assert not _pings(site)
    assert "BROKEN" in site.nsroute("status", "--physical", site.physical).stdout


def _rx_bytes(site: Site) -> int:
    out = site.server.exec("wg", "show", site.stun, "transfer").stdout.split()
    return int(out[1]) if len(out) >= 3 else 0


def test_engine_killed_mid_transfer_then_tun_deleted(lab, tmp_path):
    site = Site(lab, tmp_path)
    before = site.picture()
    guard = LeakGuard(site)
    lab.defer(guard.stop)
    _ok(site.up())
    L, S = site.laptop, site.server
    assert _pings(site, 3)

    # (1) SIGKILL of the engine while a TCP transfer runs from the protected side to behind
    # the server: the host is sealed at once; `up` resumes and the very same TCP connection
    # finishes, every byte intact.
    nbytes = 24 << 20
    server = S.popen(*XFER, "serve", BEHIND4, "5001", cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    sender = L.popen(*XFER, "send", BEHIND4, "5001", str(nbytes), "7", "0.02", cwd=REPO, text=True)
    wait_for(lambda: _rx_bytes(site) > 2 << 20, timeout=30, what="the transfer to be under way")
    pid = _engine_pid(site)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: site.tun not in L.links(), what="the TUN to vanish with the engine")
    assert sender.poll() is None, "the transfer ended before the engine was killed"
    _assert_sealed(site)
    guard.assert_clean("after the engine was killed")
    _ok(site.up())
    assert _engine_pid(site) != pid
    sent, _ = sender.communicate(timeout=120)
    got, _ = server.communicate(timeout=30)
    assert sender.returncode == 0 and sent.split() == got.split() and int(got.split()[0]) == nbytes, (sent, got)

    # (3) the TUN deleted under the engine: the engine exits, the host stays sealed, `up`
    # resumes and traffic flows again.
    pid = _engine_pid(site)
    L.ip("link", "del", site.tun)
    wait_for(lambda: _gone(pid), timeout=10, what="the engine to exit once its TUN is gone")
    _assert_sealed(site)
    guard.assert_clean("after the TUN was deleted")
    _ok(site.up())
    wait_for(lambda: _pings(site), timeout=15, interval=0.2, what="traffic through the resumed engine")

    _ok(site.down())
    assert site.picture() == before
    assert not os.path.exists(f"/run/netns/{site.physical}")
    guard.assert_clean("at the end")
    # the witnesses see a plain packet when there is one: the laptop, unprotected again
    L.exec("ping", "-c", "1", "-W", "2", "192.168.50.1")
    wait_for(lambda: guard.counted() >= 1 and guard.captured(), what="the guard to see a plain ping")


def _router_links(site: Site, state: str) -> None:
    for dev in LeakGuard.UPLINKS:
        site.router.ip("link", "set", dev, state)


def test_carrier_lost_30s_and_endpoint_unreachable_60s_recover_by_themselves(lab, tmp_path):
    with _netns.lab() as lab2:
        (tmp_path / "carrier").mkdir()
        (tmp_path / "endpoint").mkdir()
        carrier, endpoint = Site(lab, tmp_path / "carrier"), Site(lab2, tmp_path / "endpoint")
        sites = (carrier, endpoint)
        # the router keeps its IPv6 addresses while its links are down (the laptop's own
        # picture is what must come back; the router must simply still be there)
        for dev in LeakGuard.UPLINKS:
            carrier.router.exec("sysctl", "-qw", f"net.ipv6.conf.{dev}.keep_addr_on_down=1")
        befores = [s.picture() for s in sites]
        guards = [LeakGuard(s) for s in sites]
        for g, lb in zip(guards, (lab, lab2), strict=True):
            lb.defer(g.stop)
        for s in sites:
            _ok(s.up())
            assert _pings(s, 3)
        # traffic all along (a ping every 0.2 s, bounded), besides the config's keepalive
        pingers = [s.laptop.popen("ping", "-n", "-i", "0.2", "-w", "150", BEHIND4, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for s in sites]

        t0 = time.monotonic()
        _router_links(carrier, "down")
        drop = endpoint.tmp / "drop.nft"
        drop.write_text("table inet nsrdrop {\n  chain cut {\n"
                        "    type filter hook forward priority -10; policy accept;\n"
                        "    udp dport 51820 drop\n    udp sport 51820 drop\n  }\n}\n")
        endpoint.router.exec("nft", "-f", str(drop))
        hs0 = [_latest_handshake(s) for s in sites]
        time.sleep(3)
        for s in sites:  # both faults bite
            assert not _pings(s)
            assert s.laptop.links() == ["lo", s.tun] or sorted(s.laptop.links()) == sorted(["lo", s.tun])

        # (4) carrier back after 30 s: traffic resumes by itself
        time.sleep(max(0.0, t0 + 30 - time.monotonic()))
        _router_links(carrier, "up")
        back, wall = time.monotonic(), time.time()
        wait_for(lambda: _pings(carrier), timeout=45, interval=0.5, what="traffic after the carrier came back")
        carrier_recovery = time.monotonic() - back
        # the keys were still young: what proves the retries is a fresh handshake
        wait_for(lambda: _latest_handshake(carrier) >= int(wall), timeout=15, interval=0.5,
                 what="a new handshake after the carrier came back")
        assert not _pings(endpoint)  # still cut off

        # (5) endpoint reachable again after 60 s: the handshake retries get through
        time.sleep(max(0.0, t0 + 60 - time.monotonic()))
        endpoint.router.exec("nft", "delete", "table", "inet", "nsrdrop")
        back, wall = time.monotonic(), time.time()
        wait_for(lambda: _pings(endpoint), timeout=30, interval=0.5, what="traffic after the endpoint came back")
        endpoint_recovery = time.monotonic() - back
        wait_for(lambda: _latest_handshake(endpoint) >= int(wall), timeout=15, interval=0.5,
                 what="a new handshake after the endpoint came back (the initiation retries)")
        print(f"traffic back {carrier_recovery:.1f}s after the carrier, {endpoint_recovery:.1f}s after the "
              f"endpoint; handshakes at {[_latest_handshake(s) - h for s, h in zip(sites, hs0, strict=True)]}s after the last "
              "one before the faults")

        for p in pingers:
            p.terminate()
            p.wait(timeout=5)
        for s, g, before in zip(sites, guards, befores, strict=True):
            g.assert_clean(f"on {s.laptop.name}")
            _ok(s.down())
            assert s.picture() == before
            g.assert_clean(f"on {s.laptop.name} after down")
