"""`nsroute exec` on a simulated laptop that is really `nsroute up`: the escape hatch, as a user.

The laptop's own resolver (router dnsmasq, 192.168.60.1) says vpn.nsr.test is 172.16.70.2;
a resolver behind the tunnel (10.99.0.1, in the VPN server) says 10.200.0.1. So one name
proves which side a program resolves on.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from nsroute.host import simhost
from nsroute.host.selfcmd import nsroute_argv
from tests.support import hosts
from tests.support.hosts import VPN_NAME, Site
from tests.support.netns import run, wait_for

pytestmark = pytest.mark.root

ROUTER_LAN = "192.168.50.1"


def _ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


@dataclass
class User:
    name: str
    uid: int
    gid: int
    extra_gid: int
    home: str


@pytest.fixture
def user():
    """An unprivileged user with its own group and one supplementary group; removed afterwards."""
    tag = secrets.token_hex(3)
    name, group, home = f"nsru{tag}", f"nsrg{tag}", f"/tmp/nsr-{tag}-home"
    run(["groupadd", group])
    try:
        run(["useradd", "-m", "-d", home, "-U", "-G", group, "-s", "/bin/sh", name])
        pw = pwd.getpwnam(name)
        yield User(name, pw.pw_uid, pw.pw_gid, grp.getgrnam(group).gr_gid, home)
    finally:
        run(["userdel", "-f", name], check=False)
        run(["groupdel", name], check=False)  # the user's own group, if userdel left it
        run(["groupdel", group], check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def shared(user):
    """A directory the test user may write to (marker files)."""
    d = tempfile.mkdtemp(prefix="nsr-exec-", dir="/tmp")
    os.chown(d, user.uid, user.gid)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def site(lab, tmp_path):
    s = Site(lab, tmp_path)
    _ok(s.up())
    # a resolver on the tunnel side that gives the same name another answer
    s.server.popen("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                   "--bind-interfaces", "--listen-address=10.99.0.1", "--user=root", "--group=root",
                   f"--address=/{VPN_NAME}/10.200.0.1", "--pid-file=", stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return s


def _exec(site: Site, *cmd: str, user_args: tuple[str, ...] = (), env: dict | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess:
    return site.nsroute("exec", "--physical", site.physical, *user_args, "--", *cmd, env=env, timeout=timeout)


def _protected(site: Site, *cmd: str) -> subprocess.CompletedProcess:
    """A program on the laptop that did not ask for the escape hatch."""
    return hosts.run(site.laptop.name, list(cmd), env=site.env(), timeout=60)


IDENTITY = 'id -u; id -g; id -G; echo "$HOME"; echo "$USER"; echo "$NSROUTE_NETNS"; echo "$DISPLAY"'


@pytest.mark.parametrize("how", ["sudo", "--user"])
def test_exec_runs_as_the_user_on_the_physical_side(site, user, how):
    if how == "sudo":
        kw = {"env": {"SUDO_UID": str(user.uid), "SUDO_GID": str(user.gid), "SUDO_USER": user.name,
                      "DISPLAY": ":42"}}
    else:
        kw = {"user_args": ("--user", user.name), "env": {"DISPLAY": ":42"}}
    out = _ok(_exec(site, "sh", "-c", IDENTITY, **kw)).stdout.splitlines()
    uid, gid, groups, home, name, netns, display = out
    assert (int(uid), int(gid)) == (user.uid, user.gid)
    assert {int(g) for g in groups.split()} == {user.gid, user.extra_gid}
    assert (home, name, netns, display) == (user.home, user.name, site.physical, ":42")

    # the physical side's resolver, and the interfaces that were moved there
    resolv = _ok(_exec(site, "cat", "/etc/resolv.conf", **kw)).stdout
    assert "nameserver 192.168.60.1" in resolv and "10.99.0.1" not in resolv
    links = _ok(_exec(site, "ls", "/sys/class/net", **kw)).stdout.split()
    assert {"eth0", "eth1"} <= set(links) and site.tun not in links

    # one name, two answers: physical side through the router, protected side through the tunnel
    assert _ok(_exec(site, "getent", "hosts", VPN_NAME, **kw)).stdout.split()[0] == "172.16.70.2"
    found = wait_for(lambda: _protected(site, "getent", "hosts", VPN_NAME).stdout.split(), timeout=20,
                     what="the tunnel-side resolver")
    assert found[0] == "10.200.0.1"

    # the LAN directly from exec; never from the protected namespace
    _ok(_exec(site, "ping", "-n", "-c", "1", "-W", "3", ROUTER_LAN, **kw))
    p = _protected(site, "ping", "-n", "-c", "2", "-W", "2", ROUTER_LAN)
    assert p.returncode != 0, p.stdout


def test_exit_status_signals_and_refusal(site, user, shared):
    as_user = ("--user", user.name)
    assert _exec(site, "sh", "-c", "exit 7", user_args=as_user).returncode == 7
    assert _exec(site, "sh", "-c", "kill -KILL $$", user_args=as_user).returncode == 128 + signal.SIGKILL

    ready, got = shared / "ready", shared / "got-term"
    script = (f"trap 'echo term > {got}; exit 9' TERM; echo ready > {ready}; "
              "while :; do sleep 0.1; done")
    p = simhost.popen(site.laptop.name, [*nsroute_argv(), "exec", "--physical", site.physical,
                                         "--user", user.name, "--", "sh", "-c", script],
                      env=site.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
    try:
        wait_for(ready.exists, timeout=30, what="the command to start")
        # the runner execs its way down to nsroute itself: the signal goes to `nsroute exec`
        assert b"exec" in Path(f"/proc/{p.pid}/cmdline").read_bytes()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 9
        assert got.read_text() == "term\n"
        assert got.stat().st_uid == user.uid
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)

    _ok(site.down())
    r = _exec(site, "true", user_args=as_user)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not up" in lines[0], r.stderr


def test_refuses_when_never_up(lab, tmp_path):
    laptop = lab.netns("laptop")
    r = hosts.nsroute(laptop.name, "exec", "--physical", lab.name("phys"), "--", "true",
                      env={"NSROUTE_RUN_DIR": str(tmp_path / "run")})
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not up" in lines[0], r.stderr
