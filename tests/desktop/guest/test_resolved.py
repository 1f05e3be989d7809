"""systemd-resolved under `nsroute up`: the tunnel's DNS in resolved, `exec` asks the LAN.

The desktop (the VM's own namespace, with resolved's stub in /etc/resolv.conf and
nss-resolve in nsswitch.conf) has an Ethernet-like uplink, a veth into a router namespace
whose dnsmasq answers NAME with the LAN's address; resolved has the router as the uplink's
DNS server, as a DHCP client would have set it. Behind the router, a WireGuard server
(kernel WireGuard) whose own dnsmasq, reachable only through the tunnel, answers NAME
differently. The router counts every port-53 packet from the uplink and everything else
that is not the WireGuard flow.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import sh
from .site import (
    assert_nothing_beyond,
    build_wan,
    client_config,
    counter,
    install_counters,
    make_router_and_server,
    remove_namespaces,
    reset_counters,
    static_lan_uplink,
)

NAME = "probe.nsroute.test"
LAN_ANSWER = "192.168.77.77"
TUNNEL_ANSWER = "10.99.0.77"
UPLINK = "up0"

def getent(*prefix: str) -> str:
    p = subprocess.run([*prefix, "getent", "hosts", NAME], capture_output=True, text=True, timeout=60)
    return p.stdout.split()[0] if p.returncode == 0 and p.stdout.split() else f"(exit {p.returncode})"


def wait_answer(expected: str, *prefix: str, timeout: float = 40.0) -> str:
    """The first answer that is `expected`, else the last one (a tunnel's first handshake takes a while)."""
    end = time.monotonic() + timeout
    got = getent(*prefix)
    while got != expected and time.monotonic() < end:
        time.sleep(1)
        got = getent(*prefix)
    return got


@pytest.fixture
def site(tmp_path):
    router, server = make_router_and_server()
    procs: list[subprocess.Popen] = []

    def dnsmasq(n: str, listen: str, answer: str) -> None:
        pidfile = tmp_path / f"dnsmasq-{n}.pid"
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", n, "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv",
             "--no-hosts", "--bind-interfaces", f"--listen-address={listen}",
             f"--address=/{NAME}/{answer}", f"--pid-file={pidfile}", "--log-queries",
             f"--log-facility={tmp_path / f'dnsmasq-{n}.log'}"]))  # fmt: skip

    try:
        static_lan_uplink(router, UPLINK)
        spub, ckey = build_wan(router, server, tmp_path)
        dnsmasq(router, "192.168.77.1", LAN_ANSWER)
        dnsmasq(server, "10.99.0.1", TUNNEL_ANSWER)
        install_counters(router, ["r-lan"])
        # what a DHCP client (or NetworkManager) tells resolved for this uplink
        sh("resolvectl", "dns", UPLINK, "192.168.77.1")
        sh("resolvectl", "default-route", UPLINK, "yes")
        conf = client_config(tmp_path / "wg0.conf", ckey, spub, dns="10.99.0.1")
        yield {"router": router, "server": server, "conf": conf, "tmp": tmp_path}
    finally:
        subprocess.run(["nsroute", "down", "--physical", "physical"], capture_output=True, timeout=120)
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        subprocess.run(["ip", "link", "del", UPLINK], capture_output=True)
        remove_namespaces(router, server)


@pytest.mark.parametrize("backend", ["userspace", "kernel"])
def test_resolved_gets_tunnel_dns_and_exec_asks_the_lan(site, backend):
    router = site["router"]
    stub_before = Path("/etc/resolv.conf").read_text()
    # before up: names come from the LAN through resolved, and the router sees the query
    assert wait_answer(LAN_ANSWER, timeout=20) == LAN_ANSWER
    assert counter(router, "dns") > 0, "the router's port-53 counter missed a LAN query"

    p = subprocess.run(["nsroute", "up", str(site["conf"]), "--interface", UPLINK,
                        "--backend", backend], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    reset_counters(router)

    # the protected side: resolved asks the tunnel's server, for every name
    assert wait_answer(TUNNEL_ANSWER) == TUNNEL_ANSWER
    links = sh("resolvectl", "status", "wg0").stdout
    assert "10.99.0.1" in links and "~." in links, links
    assert os.path.realpath("/etc/resolv.conf") == "/run/systemd/resolve/stub-resolv.conf"
    assert Path("/etc/resolv.conf").read_text() == stub_before, "up rewrote resolved's stub file"
    for _ in range(3):  # uncached lookups too
        sh("resolvectl", "flush-caches")
        assert getent() == TUNNEL_ANSWER
    assert counter(router, "dns") == 0, "a DNS query of the protected side reached the LAN"
    assert_nothing_beyond(router)
    status = sh("nsroute", "status").stdout
    assert "systemd-resolved" in status and "wg0" in status, status

    # the way around the tunnel: the physical network's DNS, not resolved
    assert getent("nsroute", "exec", "--") == LAN_ANSWER
    assert counter(router, "dns") > 0, "exec's lookup did not reach the LAN's DNS server"
    assert getent("ip", "netns", "exec", "physical") == LAN_ANSWER

    # the tunnel link is lost (engine gone, link deleted): `up` again makes a new one, and
    # resolved must hear of it, or the protected side has no DNS at all
    sh("ip", "link", "del", "wg0")
    p = subprocess.run(["nsroute", "up", str(site["conf"]), "--backend", backend],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    sh("resolvectl", "flush-caches")
    assert wait_answer(TUNNEL_ANSWER) == TUNNEL_ANSWER
    assert "10.99.0.1" in sh("resolvectl", "dns", "wg0").stdout

    p = subprocess.run(["nsroute", "down"], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    out = sh("resolvectl", "dns").stdout
    assert "10.99.0.1" not in out, f"the tunnel's DNS stayed in resolved after down:\n{out}"
    assert Path("/etc/resolv.conf").read_text() == stub_before
    assert not Path("/etc/netns/physical").exists()
