"""`nsroute exec` on a simulated laptop that is really `nsroute up`: the escape hatch, as a user.

The laptop's own resolver (router dnsmasq, 192.168.60.1) says vpn.nsr.test is 172.16.70.2;
a resolver behind the tunnel (10.99.0.1, in the VPN server) says 10.200.0.1. So one name
proves which side a program resolves on.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from nsroute.host import simhost
from nsroute.host.selfcmd import nsroute_argv
from tests.support import hosts
from tests.support.hosts import VPN_NAME, Site
from tests.support.netns import run, wait_for
from tests.support.terminal import Terminal, proc_stat

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


def _status_in_shell(site: Site, *cmd: str, user_args: tuple[str, ...] = ()) -> int:
    """`$?` as the user's shell reports it after `nsroute exec ... -- CMD`."""
    line = shlex.join([*nsroute_argv(), "exec", "--physical", site.physical, *user_args, "--", *cmd])
    out = _ok(hosts.run(site.laptop.name, ["sh", "-c", f'{line}; echo "status $?"'], env=site.env())).stdout
    return int(out.split()[-1])


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
    # the caller's wait sees CMD itself killed (nothing in between turned it into a number) ...
    assert _exec(site, "sh", "-c", "kill -KILL $$", user_args=as_user).returncode == -signal.SIGKILL
    # ... and the user's shell reports it as shells do: 128+N
    assert _status_in_shell(site, "sh", "-c", "exit 7", user_args=as_user) == 7
    assert _status_in_shell(site, "sh", "-c", "kill -KILL $$", user_args=as_user) == 128 + signal.SIGKILL
    assert _status_in_shell(site, "sh", "-c", "kill -TERM $$", user_args=as_user) == 128 + signal.SIGTERM

    ready, got = shared / "ready", shared / "got-term"
    script = (f"trap 'echo term > {got}; exit 9' TERM; echo ready > {ready}; "
              "while :; do sleep 0.1; done")
    p = simhost.popen(site.laptop.name, [*nsroute_argv(), "exec", "--physical", site.physical,
                                         "--user", user.name, "--", "sh", "-c", script],
                      env=site.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
    try:
        wait_for(ready.exists, timeout=30, what="the command to start")
        # the runner execs its way down to nsroute, which execs CMD: the PID we hold is CMD's
        assert Path(f"/proc/{p.pid}/comm").read_text() == "sh\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 9
        assert got.read_text() == "term\n"
        assert got.stat().st_uid == user.uid
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)

    # a command that is not there: one line, exit status 1, as before the exec in place; also
    # when a PATH directory is closed to the user (execvp says EACCES then)
    closed = shared / "closed"
    closed.mkdir(mode=0o700)
    r = _exec(site, "nsr-no-such-command", user_args=as_user, env={"PATH": f"{closed}:{os.environ['PATH']}"})
    assert r.returncode == 1 and r.stderr == "nsroute: nsr-no-such-command: command not found\n", r.stderr

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


def _on_user_terminal(site: Site) -> Terminal:
    """The user's interactive bash (job control on) on the laptop, on a fresh pty."""
    env = {**os.environ, **site.env(), "TERM": "dumb", "PS1": "$ "}
    return Terminal(simhost.argv(site.laptop.name, ["bash", "--norc", "--noprofile", "-i"]), env)


def test_terminal_job_control_and_signals_are_the_kernels(site, user, shared):
    """Under a terminal, the process the shell started is CMD: the foreground job, stopped by
    Ctrl-Z and resumed by `fg`, reading the terminal, its exit status the shell's `$?`."""
    pidfile = shared / "pid"
    exec_argv = [*nsroute_argv(), "exec", "--physical", site.physical, "--user", user.name, "--"]
    cmd = shlex.join([*exec_argv, "sh", "-c", f'echo $$ > {pidfile}; read line; echo "got:$line"; exit 3'])
    term = _on_user_terminal(site)
    pid = 0
    try:
        term.expect("$ ")
        term.send(f'{cmd}; echo "rc=$?"\n')
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=60,
                           what="CMD to start"))
        # the job the shell started is CMD itself: sh, as the user, in the physical namespace
        assert Path(f"/proc/{pid}/comm").read_text() == "sh\n"
        uids = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Uid:"))
        assert set(uids.split()[1:]) == {str(user.uid)}
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{site.physical}").st_ino
        # it leads its own process group, and that group owns the terminal
        st = proc_stat(pid)
        assert st["pgrp"] == pid and st["tpgid"] == pid, st

        term.send("\x1a")  # Ctrl-Z: the terminal stops its foreground group
        wait_for(lambda: proc_stat(pid)["state"] == "T", timeout=15, what="CMD to stop on Ctrl-Z")
        wait_for(lambda: proc_stat(pid)["tpgid"] != pid, timeout=15, what="the shell to take the terminal")
        term.expect(f"rc={128 + signal.SIGTSTP}")  # the shell's view of a stopped job
        term.send('jobs -p; echo "J$((40+2))"\n')
        shown = term.expect("J42").rsplit("jobs -p", 1)[1]
        assert str(pid) in shown.split(), shown  # the stopped job's process group is CMD's

        term.send('fg; echo "rc=$?"\n')
        wait_for(lambda: proc_stat(pid)["tpgid"] == pid, timeout=15, what="`fg` to hand CMD the terminal")
        assert proc_stat(pid)["state"] != "T"
        term.send("hello from the terminal\n")  # stdin: the terminal, read by CMD itself
        term.expect("got:hello from the terminal")
        term.expect("rc=3")

        # Ctrl-C reaches the foreground CMD from the terminal; the shell reports 128+SIGINT
        pidfile.unlink()
        term.send(shlex.join([*exec_argv, "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"]) + "\n")
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=60,
                           what="the second CMD to start"))
        wait_for(lambda: Path(f"/proc/{pid}/comm").read_text() == "sleep\n", timeout=15, what="sleep")
        term.send("\x03")
        term.send('echo "rc=$?"\n')  # bash drops the rest of a line whose job died of SIGINT
        term.expect(f"rc={128 + signal.SIGINT}")
    finally:
        term.close()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


ECHO_SERVER = """
import hashlib, socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
for _ in range(2):
    c, (peer, _port) = s.accept()
    data = b""
    while chunk := c.recv(65536):
        data += chunk
    c.sendall(f"{peer} {len(data)} {hashlib.sha256(data).hexdigest()}".encode())
    c.close()
"""

CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
c.sendall(sys.stdin.buffer.read())
c.shutdown(socket.SHUT_WR)
reply = b""
while chunk := c.recv(4096):
    reply += chunk
print(reply.decode())
"""


def test_stdin_stdout_and_traffic_go_the_physical_way(site, user):
    """Bytes piped into exec reach a server beyond the router intact, from the laptop's own LAN
    address (the physical uplink); the same client on the protected side arrives from the tunnel."""
    server = site.server.popen(sys.executable, "-c", ECHO_SERVER, "5599", text=True)
    assert server.stdout.readline().strip() == "listening"
    payload = secrets.token_hex(300_000) + "\n"
    want = f"{len(payload)} {hashlib.sha256(payload.encode()).hexdigest()}"
    client = ["/usr/bin/python3", "-c", CLIENT, "172.16.70.2", "5599"]
    argv = [*nsroute_argv(), "exec", "--physical", site.physical, "--user", user.name, "--", *client]
    p = _ok(simhost.run(site.laptop.name, argv, env=site.env(), input=payload, timeout=60))
    assert p.stdout == f"192.168.50.2 {want}\n"

    p = _ok(simhost.run(site.laptop.name, client, env=site.env(), input=payload, timeout=60))
    assert p.stdout == f"10.99.0.2 {want}\n"
    assert server.wait(timeout=15) == 0
