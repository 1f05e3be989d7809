"""Container mode: `nsroute up --into NETNS` makes the tunnel the container's only interface."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.hosts import BEHIND4, Site
from tests.support.netns import wait_for

pytestmark = pytest.mark.root


def _ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def test_into_named_netns_and_proc_path(lab, tmp_path):
    site = Site(lab, tmp_path, dhcp=False)
    before = site.picture()
    box = lab.netns("box")
    resolv = f"/etc/netns/{box.name}/resolv.conf"
    box_resolv = open(resolv).read()
    _ok(site.nsroute("up", str(site.config), "--into", box.name))
    assert sorted(box.links()) == sorted(["lo", site.tun])
    box.exec("ping", "-c", "2", "-W", "3", BEHIND4, timeout=20)
    assert "nameserver 10.99.0.1" in open(resolv).read()
    again = site.nsroute("up", str(site.config), "--into", box.name)
    assert again.returncode != 0 and "already up" in again.stderr
    _ok(site.nsroute("down", str(site.config), "--into", box.name))
    assert box.links() == ["lo"]
    assert open(resolv).read() == box_resolv

    # a running "container": a process in a namespace of its own, named only by /proc/PID/ns/net
    sleeper = subprocess.Popen(["ip", "netns", "exec", site.laptop.name, "unshare", "--net", "sleep", "120"])
    lab.defer(lambda: (sleeper.kill(), sleeper.wait()))
    pid = wait_for(lambda: _child_pid(sleeper.pid), what="the container process")
    path = f"/proc/{pid}/ns/net"
    conf = tmp_path / f"nx{lab.tag}.conf"
    shutil.copy(site.config, conf)
    conf.chmod(0o600)
    _ok(site.nsroute("up", str(conf), "--into", path))
    ping = subprocess.run(["nsenter", f"--net={path}", "ping", "-c", "2", "-W", "3", BEHIND4],
                          capture_output=True, text=True, timeout=20)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    _ok(site.nsroute("down", str(conf), "--into", path))
    links = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link"], capture_output=True, text=True).stdout
    assert len(links.splitlines()) == 1 and "lo" in links
    assert site.picture() == before


def _child_pid(pid: int) -> int | None:
    """The sleep at the end of `ip netns exec … unshare --net sleep` (exec chain keeps the PID)."""
    try:
        exe = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
    except OSError:
        return None
    return pid if exe.endswith(b"sleep") else None
