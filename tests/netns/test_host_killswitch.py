"""The kill switch, engine resume, `up` twice, DHCP renewal in the physical namespace."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.support.hosts import BEHIND4, VPN_NAME, Site
from tests.support.netns import Netns, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

BURST = r"""
import socket, sys
sent = 0
for host in ("10.200.0.1", "192.168.50.1", "192.168.60.1", "172.16.70.2", "8.8.8.8"):
    for port in (53, 80, 443, 51820):
        for _ in range(5):
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.sendto(b"leak?", (host, port))
                sent += 1
            except OSError:
                pass
            finally:
                s.close()
        try:
            c = socket.create_connection((host, port), timeout=0.2)
            c.close()
            sent += 1
        except OSError:
            pass
print(sent)
"""


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def _udp_ports(ns: Netns, pid: int) -> set[int]:
    """The UDP ports process `pid` listens on in `ns`, as `ss -unlp` shows them."""
    out = ns.exec("ss", "-Hunlp").stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={pid}," in line}


def test_engine_killed_nothing_leaks_then_up_resumes(lab, tmp_path):
    site = Site(lab, tmp_path, endpoint=f"{VPN_NAME}:51820")
    before = site.picture()
    _ok(site.up())
    L = site.laptop
    phys = Netns(site.physical)
    L.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)
    info = json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)
    # no ListenPort in the config: the engine picked a port, which a restart must keep
    ports = _udp_ports(phys, info["engine"]["pid"])
    assert ports == {info["tunnel"]["listen_port"]}
    # the hostname was resolved through the physical side (dnsmasq on the router)
    assert info["peers"][0]["endpoint"] == "172.16.70.2:51820"
    assert "nameserver 192.168.60.1" in open(f"/etc/netns/{site.physical}/resolv.conf").read()

    # up twice: a clear error, nothing changed
    links, routes = L.links(), phys.ip("route").stdout
    again = site.up()
    assert again.returncode != 0 and "already up" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert L.links() == links and phys.ip("route").stdout == routes

    # the DHCP lease renews inside the physical namespace
    acks = site.acks()
    wait_for(lambda: site.acks() > acks, timeout=60, interval=0.5, what="a DHCP renewal")
    eth1 = phys.ip("-4", "addr", "show", "dev", "eth1").stdout
    assert "192.168.60." in eth1 and "dynamic" in eth1

    # SIGKILL the engine: no packet from the protected side reaches the router. The counters
    # take the WireGuard flow too, so they start once the engine's sockets are closed (its TUN
    # gone): a keepalive sent just before the kill is the engine's, not a leak.
    site.install_counters()
    os.kill(info["engine"]["pid"], signal.SIGKILL)
    wait_for(lambda: site.tun not in L.links(), what="the TUN to vanish")
    assert L.links() == ["lo"]
    base = site.router_counter()
    burst = L.exec("python3", "-c", BURST, timeout=60)
    assert burst.stdout.strip() == "0"
    for args in (("ping", "-c", "3", "-i", "0.2", "-W", "1", BEHIND4), ("ping", "-c", "2", "-W", "1", "192.168.50.1"),
                 ("ping", "-6", "-c", "2", "-W", "1", "fd50::1")):
        assert L.exec(*args, check=False).returncode != 0
    assert site.router_counter() == base, "packets from the protected namespace reached the router"
    broken = site.nsroute("status", "--physical", site.physical)
    assert "BROKEN" in broken.stdout

    # up again resumes the engine without moving anything
    _ok(site.up())
    assert sorted(L.links()) == sorted(["lo", site.tun])
    # the systemd unit (PIDFile=) follows the resumed engine through this file
    resumed = json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)
    pidfile = os.path.join(site.run_dir, f"host-{site.physical}.engine.pid")
    assert int(open(pidfile).read()) == resumed["engine"]["pid"] != info["engine"]["pid"]
    # ... listening on the port it had, so a peer or middlebox that pinned it still reaches us
    assert _udp_ports(phys, resumed["engine"]["pid"]) == ports
    assert sorted(phys.links()) == ["eth0", "eth1", "lo"]
    L.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)

    _ok(site.down())
    assert site.picture() == before
    assert not os.path.exists(f"/run/netns/{site.physical}")


HOLD_PORT = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("bound", flush=True)
time.sleep(300)
"""


def test_restart_whose_old_port_is_taken_listens_elsewhere_with_one_warning(lab, tmp_path):
    site = Site(lab, tmp_path, dhcp=False)
    before = site.picture()
    _ok(site.up())
    L, phys = site.laptop, Netns(site.physical)
    info = json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)
    old = info["tunnel"]["listen_port"]
    os.kill(info["engine"]["pid"], signal.SIGKILL)
    wait_for(lambda: site.tun not in L.links(), what="the TUN to vanish")

    # someone else takes the port on the physical side while the engine is down
    holder = phys.popen("python3", "-c", HOLD_PORT, str(old), text=True)
    try:
        assert holder.stdout.readline().strip() == "bound"
        p = _ok(site.up())
        warnings = [line for line in p.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1 and f"UDP port {old}" in warnings[0], p.stderr
        resumed = json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)
        new = _udp_ports(phys, resumed["engine"]["pid"])
        assert new == {resumed["tunnel"]["listen_port"]} and old not in new
        L.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)  # the server roamed to us
    finally:
        holder.kill()
        holder.wait()
    _ok(site.down())
    assert site.picture() == before
