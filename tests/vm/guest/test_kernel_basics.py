"""What the later VM tests stand on: the distro kernel, its modules, and the guest's tools.

Run inside the guest only (see conftest.py); tests/vm/test_vm_smoke.py requires every
test here to have passed, not skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.vm.guest.conftest import modprobe, module_loaded, sh


def test_running_distribution_kernel():
    """The guest booted Debian's plain -amd64 kernel and sees its matching modules."""
    release = os.uname().release
    assert release.endswith("-amd64") and "-rt-" not in release and "-cloud-" not in release
    assert Path(f"/lib/modules/{release}/modules.dep").exists()
    assert "virtme" in Path("/proc/cmdline").read_text()


def test_guest_has_no_real_network_device():
    """vm-run gives qemu no NIC: nothing in the guest can reach outside the VM."""
    for dev in Path("/sys/class/net").iterdir():
        target = os.path.realpath(dev / "device") if (dev / "device").exists() else ""
        assert "/pci" not in target, f"{dev.name} is a real NIC ({target})"


def test_project_venv_and_repo():
    """Commands run from the venv vm-run was given, in the repository."""
    assert os.path.realpath(sys.prefix) == os.path.realpath(os.environ["NSROUTE_VENV"])
    import nsroute

    assert Path(nsroute.__file__).resolve().is_relative_to(Path.cwd())


@pytest.mark.parametrize(
    "cmd",
    [
        ["wg", "--version"],
        ["ip", "-V"],
        ["iw", "--version"],
        ["hostapd", "-v"],
        ["wpa_supplicant", "-v"],
        ["dnsmasq", "--version"],
    ],
)
def test_apt_tools_present(cmd):
    p = sh(*cmd, check=False)
    # hostapd -v exits 1 by design; what matters is that it ran and named itself.
    assert p.returncode in (0, 1) and (p.stdout + p.stderr).strip(), p


def test_modprobe_wireguard(kernel_modules):
    modprobe("wireguard")
    assert module_loaded("wireguard")


def test_wireguard_link_in_fresh_netns(kernel_modules, lab, tmp_path):
    """A kernel wireguard interface inside a namespace the test made, configured with wg(8)."""
    ns = lab.netns("wg")
    ns.ip("link", "add", "wgk0", "type", "wireguard")
    key = tmp_path / "key"
    key.write_text(sh("wg", "genkey").stdout)
    ns.exec("wg", "set", "wgk0", "private-key", str(key), "listen-port", "51820")
    out = ns.exec("wg", "show").stdout
    assert "interface: wgk0" in out and "listening port: 51820" in out
    assert "public key:" in out


def test_kernel_wireguard_pair_pings(kernel_modules, lab, tmp_path):
    """Two kernel WireGuard peers in two namespaces over veth: a real handshake and ping."""
    a, b = lab.netns("a"), lab.netns("b")
    lab.veth(a, "eth0", b, "eth0")
    a.ip("addr", "add", "10.99.0.1/24", "dev", "eth0")
    b.ip("addr", "add", "10.99.0.2/24", "dev", "eth0")
    keys = {}
    for n in ("a", "b"):
        priv = sh("wg", "genkey").stdout.strip()
        (tmp_path / n).write_text(priv + "\n")
        keys[n] = subprocess.run(
            ["wg", "pubkey"], input=priv, capture_output=True, text=True, check=True
        ).stdout.strip()
    for ns, me, peer, addr, peer_ep in (
        (a, "a", "b", "10.100.0.1/24", "10.99.0.2"),
        (b, "b", "a", "10.100.0.2/24", "10.99.0.1"),
    ):
        ns.ip("link", "add", "wg0", "type", "wireguard")
        ns.exec(
            "wg",
            "set",
            "wg0",
            "private-key",
            str(tmp_path / me),
            "listen-port",
            "51820",
            "peer",
            keys[peer],
            "endpoint",
            f"{peer_ep}:51820",
            "allowed-ips",
            addr.rsplit(".", 1)[0] + ".0/24",
        )
        ns.ip("addr", "add", addr, "dev", "wg0")
        ns.ip("link", "set", "wg0", "up")
    a.exec("ping", "-c", "3", "-i", "0.2", "-W", "5", "10.100.0.2", timeout=30)
    hs = a.exec("wg", "show", "wg0", "latest-handshakes").stdout.split()
    assert len(hs) == 2 and int(hs[1]) > 0


def test_tun_in_fresh_netns(kernel_modules, lab):
    """/dev/net/tun works: a TUN made by ioctl inside a namespace receives the ping sent to it."""
    ns = lab.netns("tun")
    prog = r"""
import fcntl, os, struct, subprocess, sys, select
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"nsrtun0", 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN|IFF_NO_PI
subprocess.run(["ip", "addr", "add", "10.98.0.1/24", "dev", "nsrtun0"], check=True)
subprocess.run(["ip", "link", "set", "nsrtun0", "up"], check=True)
subprocess.Popen(["ping", "-c", "1", "-W", "1", "10.98.0.2"], stdout=subprocess.DEVNULL)
while True:
    r, _, _ = select.select([fd], [], [], 10)
    if not r:
        sys.exit("no packet on TUN")
    pkt = os.read(fd, 2048)
    if pkt[0] >> 4 == 4 and pkt[9] == 1 and pkt[16:20] == bytes([10, 98, 0, 2]):
        print("icmp", len(pkt))
        break
"""
    out = ns.exec(sys.executable, "-c", prog, timeout=30).stdout
    assert out.startswith("icmp")


def test_hwsim_two_radios(hwsim, lab):
    """mac80211_hwsim radios=2 gives two phys; one moves into a namespace and is seen there."""
    assert len(hwsim) == 2
    phys_out = sh("iw", "phy").stdout
    assert len(re.findall(r"^Wiphy ", phys_out, re.M)) == 2
    ns = lab.netns("wifi")
    sh("iw", "phy", hwsim[1], "set", "netns", "name", ns.name)
    assert f"Wiphy {hwsim[1]}" in ns.exec("iw", "phy").stdout
    assert f"Wiphy {hwsim[1]}" not in sh("iw", "phy").stdout
