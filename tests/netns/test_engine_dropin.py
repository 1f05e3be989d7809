"""nsroute-wg as a wireguard-go drop-in: TUNs moved into other namespaces (the container
recipe), LOG_LEVEL and WG_PROCESS_FOREGROUND, and replies from the address a peer used
(sticky sockets). wireguard-go (both builds) runs the same steps as the control."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netns.test_engine_daemon import alive, engine_pid
from tests.support.netns import Netns, wait_for
from tests.support.wggo import BUILDS, NEW, OLD
from tests.support.wgpair import BIN, REPO, Pair, Side

pytestmark = pytest.mark.root
IMPLS = ["nsroute", *BUILDS]
XFER = [sys.executable, "-m", "tests.support.xfer"]


def endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def daemon_pid(ns: Netns, ifname: str) -> int:
    """The serving process of IFNAME in `ns`: wireguard-go's UAPI socket names its parent,
    which re-executes itself as the daemon and exits (SO_PEERCRED alone will not do)."""
    for pid in ns.pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if ifname.encode() in argv and alive(pid):
            return pid
    raise AssertionError(f"no process serves {ifname} in {ns.name}")


def inner_up(ns: Netns, side: Side) -> None:
    """What a moved TUN needs in its new namespace: its addresses, up (a move drops both)."""
    ns.ip("addr", "add", f"{side.inner4}/24", "dev", side.ifname)
    ns.ip("addr", "add", f"{side.inner6}/64", "dev", side.ifname, "nodad")
    ns.ip("link", "set", side.ifname, "up")


def ping(ns: Netns, addr: str) -> subprocess.CompletedProcess:
    return ns.exec("ping", "-c", "3", "-i", "0.2", "-w", "10", addr, check=False)


def transfer(src: Netns, dst: Netns, addr: str, port: int, nbytes: int) -> None:
    server = dst.popen(*XFER, "serve", addr, str(port), cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    sent = src.exec(*XFER, "send", addr, str(port), str(nbytes), cwd=REPO, timeout=180).stdout.strip()
    got = server.communicate(timeout=60)[0].strip()
    assert sent == got, (sent, got)
    assert sent.startswith(f"{nbytes} ")


@pytest.mark.parametrize("outer", [4, 6], ids=["v4-outer", "v6-outer"])
@pytest.mark.parametrize("impl", IMPLS)
def test_tuns_moved_out_of_the_engines_namespace(lab, tmp_path, impl, outer):
    """The container recipe: engines and their sockets stay in H, their TUNs serve in A and
    B, endpoints on H's loopback; a TUN moved back to H and out again mid-transfer."""
    h, a_ns, b_ns = lab.netns("H"), lab.netns("A"), lab.netns("B")
    lo = "127.0.0.1" if outer == 4 else "::1"
    a = Side(h, impl, f"wg{lab.tag}a", "lo", lo, "10.78.0.1", "fd78::1", 51830)
    b = Side(h, impl, f"wg{lab.tag}b", "lo", lo, "10.78.0.2", "fd78::2", 51831)
    where = {a.ifname: h, b.ifname: h}
    for side in (a, b):
        lab.defer(lambda s=side: where[s.ifname].ip("link", "del", s.ifname, check=False))
        side._start_daemon(tmp_path)
        key = tmp_path / f"{side.ifname}.key"
        key.write_text(side.private + "\n")
        side.wg("set", side.ifname, "private-key", str(key), "listen-port", str(side.port))
    pids = {s.ifname: daemon_pid(h, s.ifname) for s in (a, b)}
    for me, other in ((a, b), (b, a)):
        me.wg("set", me.ifname, "peer", other.public, "allowed-ips", f"{other.inner4}/32,{other.inner6}/128",
              "endpoint", endpoint(lo, other.port))

    def move(side: Side, dst: Netns) -> None:
        where[side.ifname].ip("link", "set", side.ifname, "netns", dst.name)
        where[side.ifname] = dst

    move(a, a_ns)
    move(b, b_ns)
    inner_up(a_ns, a)
    inner_up(b_ns, b)
    time.sleep(3)  # the engines used to give up within 3 s of the move
    for s in (a, b):
        assert alive(pids[s.ifname]), f"{impl} engine for {s.ifname} exited after its TUN moved"
        assert Path(f"/var/run/wireguard/{s.ifname}.sock").exists()
    for src, dst in ((a_ns, b), (b_ns, a)):
        for addr in (dst.inner4, dst.inner6):
            r = ping(src, addr)
            assert r.returncode == 0, r.stdout
    transfer(a_ns, b_ns, b.inner4, 5301, 8 << 20)
    transfer(b_ns, a_ns, a.inner6, 5302, 8 << 20)

    # Back and forth while a paced transfer runs: TCP rides out the gaps.
    server = b_ns.popen(*XFER, "serve", b.inner4, "5303", cwd=REPO, text=True)
    assert server.stdout.readline().strip() == "listening"
    sender = a_ns.popen(*XFER, "send", b.inner4, "5303", str(6 << 20), "3", "0.02", cwd=REPO, text=True)
    for _ in range(2):
        time.sleep(0.7)
        move(a, h)
        time.sleep(0.5)
        move(a, a_ns)
        inner_up(a_ns, a)
    sent = sender.communicate(timeout=180)[0].strip()
    got = server.communicate(timeout=60)[0].strip()
    assert sent == got and sent.startswith(f"{6 << 20} "), (sent, got)
    assert all(alive(p) for p in pids.values())
    assert daemon_pid(h, a.ifname) == pids[a.ifname]  # the same engine, never restarted

    # Destroyed where it now lives: the engine exits and removes its socket.
    a_ns.ip("link", "del", a.ifname)
    wait_for(lambda: not alive(pids[a.ifname]), 5, what=f"{impl} exit after its moved TUN was deleted")
    assert not Path(f"/var/run/wireguard/{a.ifname}.sock").exists()
    assert alive(pids[b.ifname])
    # The namespace holding a TUN deleted (a container stopped): the TUN goes, so does its engine.
    subprocess.run(["ip", "netns", "del", b_ns.name], check=True, timeout=30)
    wait_for(lambda: not alive(pids[b.ifname]), 10, what=f"{impl} exit after its TUN's namespace was deleted")
    assert not Path(f"/var/run/wireguard/{b.ifname}.sock").exists()


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("WG_PROCESS_FOREGROUND", "LOG_LEVEL")}
    env.update(extra)
    return env


@pytest.mark.parametrize("value,shows_info,shows_debug", [
    ("verbose", True, True), ("VERBOSE", True, True), ("debug", True, True), ("Info", True, False),
    ("error", False, False), ("silent", False, False)])
def test_log_level_values(lab, tmp_path, value, shows_info, shows_debug):
    """A daemon with LOG_LEVEL set logs to the stderr it was started with (wireguard-go's
    rule), at that level."""
    ns = lab.netns("L")
    ifname = f"wg{lab.tag}l"
    log = tmp_path / "engine.log"
    with open(log, "w") as out:
        r = subprocess.run(["ip", "netns", "exec", ns.name, str(BIN / "nsroute-wg"), ifname],
                           env=_env(LOG_LEVEL=value), stdout=out, stderr=out, timeout=30)
    assert r.returncode == 0, log.read_text()
    pid = engine_pid(ifname)
    ns.ip("link", "del", ifname)
    wait_for(lambda: not alive(pid), 5, what="engine exit")
    text = log.read_text()
    assert "Traceback" not in text
    assert ("engine exiting: TUN device removed" in text) == shows_info, text
    assert (" DEBUG " in text) == shows_debug, text


@pytest.mark.parametrize("var,value,words", [("LOG_LEVEL", "loud", ("LOG_LEVEL", "verbose")),
                                             ("WG_TUN_FD", "3", ("WG_TUN_FD", "README")),
                                             ("WG_UAPI_FD", "4", ("WG_UAPI_FD", "README"))])
def test_refused_environment_is_one_clear_line(lab, var, value, words):
    ns = lab.netns("L")
    ifname = f"wg{lab.tag}l"
    r = subprocess.run(["ip", "netns", "exec", ns.name, str(BIN / "nsroute-wg"), ifname],
                       env=_env(**{var: value}), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and all(w in r.stderr for w in words), r.stderr
    assert ifname not in ns.links()
    assert not Path(f"/var/run/wireguard/{ifname}.sock").exists()


def test_wg_process_foreground(lab):
    """WG_PROCESS_FOREGROUND=1 keeps the engine in the process that was started, as -f does."""
    ns = lab.netns("F")
    ifname = f"wg{lab.tag}f"
    p = ns.popen(str(BIN / "nsroute-wg"), ifname, env=_env(WG_PROCESS_FOREGROUND="1"),
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: Path(f"/var/run/wireguard/{ifname}.sock").exists() or p.poll() is not None, 20,
             what="UAPI socket")
    assert p.poll() is None, "the engine daemonized or died"
    assert engine_pid(ifname) == p.pid
    ns.ip("link", "del", ifname)
    assert p.wait(timeout=10) == 0


# wireguard-go 0.0.20231211 (Debian's backports build) answers a handshake initiation sent
# to M's second address from the kernel's default source (seen with tcpdump: initiation to
# .2, response from .1), so O roams to that one at the first step. Its bug, not ours: with
# UDP GRO on, conn/bind_std.go's splitCoalescedMessages copies each datagram's bytes and
# address into the output message but not its control data, so the IP_PKTINFO that
# getSrcFromControl looks for is gone (unchanged upstream as of 0.0.20250522). The same
# steps pass with it as O against nsroute. strict: a build that fixes it fails here.
NEW_NOT_STICKY = pytest.mark.xfail(strict=True, raises=AssertionError,
                                   reason="wireguard-go 0.0.20231211 does not reply from the address used")


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
@pytest.mark.parametrize("impl,peer", [("nsroute", OLD), ("nsroute", NEW), (OLD, OLD),
                                       pytest.param(NEW, NEW, marks=NEW_NOT_STICKY)])
def test_replies_leave_from_the_address_the_peer_used(lab, tmp_path, impl, peer, family):
    """M has two addresses on one link; O (wireguard-go) picks one as M's endpoint. Every
    reply must come from that one, or O roams to the other (`wg show endpoints` on O)."""
    m_ns, o_ns = lab.netns("M"), lab.netns("O")
    lab.veth(m_ns, "eth0", o_ns, "eth0")
    if family == 4:
        addrs, o_addr, plen, opts = ["192.168.61.1", "192.168.61.2"], "192.168.61.9", 24, []
        m_ns.exec("sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1")
    else:
        addrs, o_addr, plen, opts = ["fd61::1", "fd61::2"], "fd61::9", 64, ["nodad"]
    for addr in addrs:
        m_ns.ip("addr", "add", f"{addr}/{plen}", "dev", "eth0", *opts)
    o_ns.ip("addr", "add", f"{o_addr}/{plen}", "dev", "eth0", *opts)
    m = Side(m_ns, impl, f"wg{lab.tag}m", "eth0", addrs[0], "10.79.0.1", "fd79::1", 51840)
    o = Side(o_ns, peer, f"wg{lab.tag}o", "eth0", o_addr, "10.79.0.2", "fd79::2", 51841)
    lab.defer(m.stop)
    lab.defer(o.stop)
    m.start(tmp_path)
    o.start(tmp_path)
    # Which source the kernel picks on its own, and so which address only sticky sockets keep.
    route = m_ns.ip("route", "get", o_addr).stdout.split()
    default = route[route.index("src") + 1]
    other = next(a for a in addrs if a != default)
    allowed_m, allowed_o = f"{m.inner4}/32,{m.inner6}/128", f"{o.inner4}/32,{o.inner6}/128"
    m.wg("set", m.ifname, "peer", o.public, "allowed-ips", allowed_o)

    def o_sets_endpoint(addr: str) -> None:
        o.wg("set", o.ifname, "peer", m.public, "allowed-ips", allowed_m, "endpoint", endpoint(addr, m.port))

    def seen_by_o() -> str:
        return o.wg("show", o.ifname, "endpoints").stdout.split()[1]

    def step(src: Side, dst: Side, expect: str, what: str) -> None:
        r = ping(src.ns, dst.inner4)
        assert r.returncode == 0, f"{what}: {r.stdout}"
        assert seen_by_o() == endpoint(expect, m.port), what

    o_sets_endpoint(other)
    assert seen_by_o() == endpoint(other, m.port)
    step(o, m, other, "O pings M at the address the kernel would not answer from")
    step(m, o, other, "M pings O back")
    o_sets_endpoint(default)
    step(o, m, default, "O switches to the kernel's own choice")
    o_sets_endpoint(other)
    step(o, m, other, "and back")
    # The user sets O's endpoint on M: whatever M remembered as its source is forgotten.
    m.wg("set", m.ifname, "peer", o.public, "endpoint", endpoint(o_addr, o.port))
    step(m, o, default, "M pings after `wg set endpoint`")
    o_sets_endpoint(other)
    step(o, m, other, "O back on the other address")
    if impl == OLD and family == 4:
        # wireguard-go 0.0.20220316 drops a sticky source only on EINVAL; for an IPv4 source
        # no longer local the kernel answers ENETUNREACH, so it never falls over (seen here).
        return
    # That address leaves M: M falls over to one it still has.
    m_ns.ip("addr", "del", f"{other}/{plen}", "dev", "eth0")
    step(m, o, default, "M pings after its address was removed")


@pytest.mark.parametrize("impl", IMPLS)
def test_mtu_set_with_ip_is_followed(lab, tmp_path, impl):
    """wg-quick sets the MTU with ip(8) after the daemon started: padding must stop at the
    new MTU (a 1410-byte packet under MTU 1412 is padded to 1412, not to 1424 or 1420)."""
    pair = Pair(lab, impl, "wireguard-go", tmp=tmp_path)
    pair.connect()
    left, right = pair.left, pair.right
    assert pair.ping(left, right.inner4).returncode == 0
    left.ns.ip("link", "set", left.ifname, "mtu", "1412")
    time.sleep(2)  # nsroute looks once a second
    dump = right.ns.popen("tcpdump", "-i", "eth0", "-n", "-l", "--immediate-mode", "-c", "2",
                          f"udp and src host {left.outer} and greater 1000", text=True)
    wait_for(lambda: "listening" in (dump.stderr.readline() or ""), 10, what="tcpdump running")
    r = left.ns.exec("ping", "-c", "2", "-i", "0.3", "-M", "do", "-s", str(1410 - 28), right.inner4,
                     check=False)
    assert r.returncode == 0, r.stdout
    out = dump.communicate(timeout=10)[0]
    lengths = {int(line.rsplit("length", 1)[1]) for line in out.splitlines() if "length" in line}
    assert lengths == {16 + 1412 + 16}, out
