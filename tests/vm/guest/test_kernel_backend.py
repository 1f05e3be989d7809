"""`nsroute up --backend kernel` on a simulated laptop, in the VM guest (real wireguard.ko).

WireGuard's netns recipe, automated: the interface is created in the physical namespace
(its UDP socket stays there), configured over netlink, moved into the protected one. The
VPN server is wireguard-go, so this is also kernel <-> wireguard-go interop. One test, few
Python starts: each costs seconds under TCG.
"""

from __future__ import annotations

import json
import os

from tests.netns.test_host_killswitch import BURST
from tests.netns.test_host_ready import returns_at_handshake, unknown_key_exits_3
from tests.support.hosts import BEHIND4, BEHIND6, VPN_NAME, Site, beyond_wireguard_nft
from tests.support.netns import Netns


def _install_counter(site: Site) -> None:
    path = site.tmp / "kwg-counter.nft"
    path.write_text(beyond_wireguard_nft("nsrkwg", "leak", -350))
    site.router.exec("nft", "-f", str(path))


def _counted(site: Site) -> int:
    out = site.router.exec("nft", "-j", "list", "counter", "inet", "nsrkwg", "leak").stdout
    return next(c["counter"]["packets"] for c in json.loads(out)["nftables"] if "counter" in c)


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def test_kernel_backend_up_killswitch_resume_down(kernel_modules, lab, tmp_path):
    site = Site(lab, tmp_path, endpoint=f"{VPN_NAME}:51820")
    L, phys = site.laptop, Netns(site.physical)
    before = site.picture()

    _ok(site.up("--backend", "kernel", timeout=300))  # minutes under TCG on a busy host
    # the protected namespace has only lo and the kernel's WireGuard link
    assert sorted(L.links()) == sorted(["lo", site.tun])
    assert "wireguard" in L.ip("-d", "link", "show", "dev", site.tun).stdout
    assert sorted(phys.links()) == ["eth0", "eth1", "lo"]
    L.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=30)
    L.exec("ping", "-6", "-c", "2", "-W", "3", BEHIND6, timeout=30)

    info = json.loads(_ok(site.nsroute("status", "--physical", site.physical, "--json")).stdout)
    assert info["backend"] == "kernel" and info["state"] == "up", info
    (peer,) = info["peers"]
    assert peer["latest_handshake"] and peer["rx_bytes"] > 0, peer
    assert peer["endpoint"] == "172.16.70.2:51820"  # resolved on the physical side (dnsmasq)
    # the UDP socket lives in the physical namespace, not in the protected one
    port = info["tunnel"]["listen_port"]
    assert port and f":{port}" in phys.exec("ss", "-Huan").stdout
    assert f":{port}" not in L.exec("ss", "-Huan").stdout

    # kill switch: the link deleted, nothing from the protected side reaches the router
    _install_counter(site)
    base = _counted(site)
    L.ip("link", "del", "dev", site.tun)
    assert L.links() == ["lo"]
    assert L.exec("python3", "-c", BURST, timeout=60).stdout.strip() == "0"
    for args in (("ping", "-c", "2", "-i", "0.2", "-W", "1", BEHIND4), ("ping", "-c", "1", "-W", "1", "192.168.50.1"),
                 ("ping", "-6", "-c", "1", "-W", "1", "fd50::1")):
        assert L.exec(*args, check=False).returncode != 0
    assert _counted(site) == base, "packets other than the WireGuard flow reached the router"

    # up again (auto keeps the recorded backend): recreated, nothing moved twice
    _ok(site.up(timeout=300))
    assert sorted(L.links()) == sorted(["lo", site.tun])
    assert "wireguard" in L.ip("-d", "link", "show", "dev", site.tun).stdout
    assert sorted(phys.links()) == ["eth0", "eth1", "lo"]
    L.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=30)

    _ok(site.down())
    assert site.picture() == before
    assert not os.path.exists(f"/run/netns/{site.physical}")
    assert not os.listdir(site.run_dir)


def test_kernel_backend_into_container_and_crash_before_move(kernel_modules, lab, tmp_path):
    """--into: created where nsroute runs (the socket stays on the laptop), moved into the box.
    An `up` killed between create and move leaves the link on the laptop; `down` removes it."""
    site = Site(lab, tmp_path, dhcp=False)
    box = lab.netns("box")
    before = site.picture()
    args = ("up", str(site.config), "--into", box.name, "--backend", "kernel")

    crashed = site.nsroute(*args, env={"NSROUTE_FAULT_AFTER_STEP": "kernel-created"})
    assert crashed.returncode != 0
    assert "wireguard" in site.laptop.ip("-d", "link", "show", "dev", site.tun).stdout
    _ok(site.nsroute("down", str(site.config), "--into", box.name))
    assert site.picture() == before and box.links() == ["lo"]

    _ok(site.nsroute(*args))
    assert sorted(box.links()) == sorted(["lo", site.tun])
    assert "wireguard" in box.ip("-d", "link", "show", "dev", site.tun).stdout
    box.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=30)
    port = box.exec("wg", "show", site.tun, "listen-port").stdout.strip()
    assert port != "0" and f":{port}" in site.laptop.exec("ss", "-Huan").stdout
    assert f":{port}" not in box.exec("ss", "-Huan").stdout
    _ok(site.nsroute("down", str(site.config), "--into", box.name))
    assert box.links() == ["lo"]
    assert site.picture() == before
    assert not os.listdir(site.run_dir)


def test_kernel_backend_up_waits_for_the_handshake_and_kicks_a_silent_peer(kernel_modules, lab, tmp_path):
    """Issue 17 item 3 with the kernel's link: no keepalive, IPv4 only, and the link sends
    nothing on its own (no MLD): `up` starts the handshake and returns when it is done."""
    returns_at_handshake(Site(lab, tmp_path, dhcp=False), "kernel", slack=30, wait=600)


def test_kernel_backend_up_exits_3_when_the_server_does_not_know_us(kernel_modules, lab, tmp_path):
    unknown_key_exits_3(Site(lab, tmp_path, dhcp=False), "kernel")
