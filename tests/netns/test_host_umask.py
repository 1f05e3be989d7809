"""`nsroute up` with root's umask at 077 on a freshly booted machine (issue 14, item 5).

The laptop runs in a mount namespace of its own where /run is a fresh tmpfs (with the
machine's /run/netns bound back, so namespaces stay visible): /var/run/wireguard is truly
absent before `up`, as after a boot, without touching the machine-wide directory that
other tests use. Every nsroute command of this test runs in that mount namespace, under
umask 077, as `sudo` from a hardened shell would run it.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.hosts import BEHIND4, VPN_NAME, Site
from tests.support.netns import ok

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
XFER = [sys.executable, "-m", "tests.support.xfer"]


class FreshBoot:
    """A long-lived process holding the laptop's mount namespace (fresh /run, its sysfs)."""

    def __init__(self, site: Site, tmp: Path) -> None:
        self.site = site
        keep = tmp / "netns-keep"
        keep.mkdir()
        laptop = site.laptop.name
        inner = "mount -t sysfs sysfs /sys && echo ready && exec sleep 900"
        outer = (
            "set -e; mount --make-private /; "
            f"mount --rbind /run/netns {shlex.quote(str(keep))}; "  # peers of the machine's /run/netns
            "mount -t tmpfs -o mode=0755 nsr-fresh-run /run; "
            f"mkdir /run/netns; mount --move {shlex.quote(str(keep))} /run/netns; "
            f"mount --bind /etc/netns/{laptop}/resolv.conf /etc/resolv.conf; "
            f"exec nsenter --net=/run/netns/{laptop} sh -c {shlex.quote(inner)}")
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", outer],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        site.lab.defer(self.stop)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"mount namespace not ready: {line!r} {self.proc.stderr.read()}"

    def run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """CMD on the laptop, in the fresh-boot mount namespace, under umask 077."""
        script = f"umask 077; exec {shlex.join(cmd)}"
        argv = ["nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", f"--net=/run/netns/{self.site.laptop.name}",
                "sh", "-c", script]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.site.env()})

    def nsroute(self, *args: str) -> subprocess.CompletedProcess:
        from nsroute.host.selfcmd import nsroute_argv
        return self.run(*nsroute_argv(), *args)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def _mode(text: str) -> int:
    return int(text.strip(), 8)


def _transfer(site: Site, port: str, nbytes: int) -> None:
    S, L = site.server, site.laptop
    server = S.popen(*XFER, "serve", BEHIND4, port, cwd=REPO, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        sent = L.exec(*XFER, "send", BEHIND4, port, str(nbytes), "5", cwd=REPO, timeout=60).stdout.split()
        got = server.communicate(timeout=60)[0].split()
        assert sent == got and sent[0] == str(nbytes), (sent, got)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=5)


def test_up_under_umask_077_on_a_fresh_run_keeps_the_tunnel_and_exec_resolves(lab, tmp_path):
    site = Site(lab, tmp_path, endpoint=f"{VPN_NAME}:51820")
    boot = FreshBoot(site, tmp_path)
    # absent beforehand, as on a freshly booted machine; and root's umask really is 077 there
    assert boot.run("sh", "-c", "test ! -e /var/run/wireguard && umask").stdout.strip() == "0077"

    up = boot.nsroute("up", str(site.config), "--physical", site.physical,
                      "--interface", "eth0", "--interface", "eth1")
    ok(up)
    started = time.monotonic()
    try:
        # the modes nsroute meant, not what the umask left
        assert _mode(boot.run("stat", "-c", "%a", "/var/run/wireguard").stdout) == 0o755
        assert _mode(boot.run("stat", "-c", "%a", f"/var/run/wireguard/{site.tun}.sock").stdout) == 0o600
        etc = Path(f"/etc/netns/{site.physical}")
        assert stat.S_IMODE(etc.stat().st_mode) == 0o755
        assert stat.S_IMODE((etc / "resolv.conf").stat().st_mode) == 0o644

        # an unprivileged user, on purpose outside the tunnel, resolves a name through the
        # physical side: the router's dnsmasq answers vpn.nsr.test
        cat = ok(boot.nsroute("exec", "--physical", site.physical, "--user", "nobody", "--",
                               "cat", "/etc/resolv.conf")).stdout
        assert "nameserver 192.168.60.1" in cat
        got = ok(boot.nsroute("exec", "--physical", site.physical, "--user", "nobody", "--",
                               "getent", "hosts", VPN_NAME)).stdout.split()
        assert got[0] == "172.16.70.2", got

        site.laptop.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)
        # the engine, unprivileged by now, must not lose sight of its own socket: a minute on,
        # the tunnel still carries traffic
        time.sleep(max(0.0, 60 - (time.monotonic() - started)))
        site.laptop.exec("ping", "-c", "3", "-W", "3", BEHIND4, timeout=30)
        _transfer(site, "5011", 300_000)
        check = boot.nsroute("status", "--physical", site.physical, "--check")
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        down = boot.nsroute("down", "--physical", site.physical)
    ok(down)
    assert not boot.run("test", "-e", f"/var/run/wireguard/{site.tun}.sock").returncode == 0
