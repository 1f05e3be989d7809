"""The engine as a daemon: wg-quick drop-in, the socket in another namespace, exit rules, UAPI errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nsroute.engine.uapi import request as uapi_request
from tests.support.netns import run, wait_for
from tests.support.wggo import BUILDS
from tests.support.wgpair import BIN, Pair

pytestmark = pytest.mark.root


def uapi(ifname: str, raw: bytes) -> str:
    return uapi_request(ifname, raw, timeout=5)


def engine_pid(ifname: str) -> int:
    """The PID behind a UAPI socket, from the kernel's view of the socket's peer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(f"/var/run/wireguard/{ifname}.sock")
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[:4], "little")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("wggo", BUILDS)
def test_wg_quick_up_down_with_nsroute_wg(lab, tmp_path, wggo):
    pair = Pair(lab, "nsroute", wggo, tmp=tmp_path, start_left=False)
    left, right = pair.left, pair.right
    conf = tmp_path / f"{left.ifname}.conf"
    conf.write_text(f"""[Interface]
PrivateKey = {left.private}
Address = {left.inner4}/24, {left.inner6}/64
ListenPort = {left.port}

[Peer]
PublicKey = {right.public}
AllowedIPs = {right.inner4}/32, {right.inner6}/128
Endpoint = {pair.endpoint(right)}
""")
    conf.chmod(0o600)
    right.wg("set", right.ifname, "peer", left.public, "allowed-ips", f"{left.inner4}/32,{left.inner6}/128")
    env = dict(os.environ, WG_QUICK_USERSPACE_IMPLEMENTATION=str(BIN / "nsroute-wg"))
    env.pop("WG_PROCESS_FOREGROUND", None)
    env["PATH"] = f"{BIN}:{env['PATH']}"
    with open(tmp_path / "wg-quick.log", "w") as log:
        rc = subprocess.run(["ip", "netns", "exec", left.ns.name, "wg-quick", "up", str(conf)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, timeout=60).returncode
    out = (tmp_path / "wg-quick.log").read_text()
    assert rc == 0, out
    assert "nsroute-wg" in out  # wg-quick fell back to our userspace implementation
    pid = engine_pid(left.ifname)
    assert "nsroute" in Path(f"/proc/{pid}/cmdline").read_text()
    for dst in (right.inner4, right.inner6):
        r = pair.ping(left, dst)
        assert r.returncode == 0, r.stdout
    assert left.ifname in left.ns.links()
    rc = subprocess.run(["ip", "netns", "exec", left.ns.name, "wg-quick", "down", str(conf)],
                        env=env, capture_output=True, text=True, timeout=60)
    assert rc.returncode == 0, rc.stderr
    wait_for(lambda: not alive(pid), 5, what="engine exit after wg-quick down")
    assert left.ifname not in left.ns.links()
    assert not Path(f"/var/run/wireguard/{left.ifname}.sock").exists()


def start_engine(ns, ifname: str, *extra: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "WG_PROCESS_FOREGROUND"}
    r = subprocess.run(["ip", "netns", "exec", ns.name, str(BIN / "nsroute-wg"), ifname, *extra],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return engine_pid(ifname)


@pytest.mark.parametrize("how", ["sigterm", "sigint", "tun-deleted", "socket-deleted"])
def test_engine_exits_and_cleans_up(lab, how):
    ns = lab.netns("E")
    ifname = f"wg{lab.tag}e"
    pid = start_engine(ns, ifname)
    sock = Path(f"/var/run/wireguard/{ifname}.sock")
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    if how == "sigterm":
        os.kill(pid, signal.SIGTERM)
    elif how == "sigint":
        os.kill(pid, signal.SIGINT)
    elif how == "tun-deleted":
        ns.ip("link", "del", ifname)
    else:
        sock.unlink()
    wait_for(lambda: not alive(pid), 5, what=f"engine exit on {how}")
    assert ifname not in ns.links()
    assert not sock.exists()


def test_bad_uapi_request_changes_nothing(lab):
    ns = lab.netns("U")
    ifname = f"wg{lab.tag}u"
    start_engine(ns, ifname)
    key = run(["wg", "genkey"]).stdout.strip()
    peer = run(["wg", "pubkey"], input=run(["wg", "genkey"]).stdout).stdout.strip()
    ns.exec("wg", "set", ifname, "listen-port", "41000", "private-key", "/dev/stdin", input=key)
    ns.exec("wg", "set", ifname, "peer", peer, "allowed-ips", "10.1.0.0/16", "endpoint", "192.0.2.1:9")
    before = uapi(ifname, b"get=1\n\n")
    assert before.endswith("errno=0\n\n")
    bad_requests = [
        b"set=1\nlisten_port=70000\n\n",
        b"set=1\nlisten_port=1234\nbogus_key=1\n\n",
        b"set=1\nreplace_peers=true\npublic_key=zz\n\n",
        b"set=1\nreplace_peers=true\npublic_key=" + bytes(32).hex().encode() + b"\n\n",  # low order
        b"set=1\npublic_key=" + bytes.fromhex(run(["wg", "pubkey"], input=key).stdout and "00" * 32).hex().encode()
        + b"\nallowed_ip=300.1.1.1/8\n\n",
        b"set=1\nprivate_key=1234\n\n",
        b"set=1\n\xff\xfe\n\n",
        b"nonsense\n\n",
    ]
    for req in bad_requests:
        reply = uapi(ifname, req)
        assert reply.startswith("errno=") and reply != "errno=0\n\n", (req, reply)
        assert uapi(ifname, b"get=1\n\n") == before, req
    # After all that, the engine still answers and still applies good requests.
    assert uapi(ifname, b"set=1\nlisten_port=41001\n\n") == "errno=0\n\n"
    assert "listen_port=41001" in uapi(ifname, b"get=1\n\n")


@dataclass
class SplitTunnel:
    prot: object
    phys: object
    cif: str
    conf: Path
    env: dict


def split_tunnel(lab, tmp_path: Path, outer: str, inner: str, allowed: str,
                 extra_interface: str = "") -> SplitTunnel:
    """Protected and physical namespaces for an nsroute engine, and a wireguard-go server
    at {outer}.2 (inner {inner}.1) behind the physical one; returns the client config."""
    prot, phys, server = lab.netns("P"), lab.netns("Y"), lab.netns("S")
    lab.veth(phys, "eth0", server, "eth0")
    phys.ip("addr", "add", f"{outer}.1/24", "dev", "eth0")
    server.ip("addr", "add", f"{outer}.2/24", "dev", "eth0")
    sif, cif = f"wg{lab.tag}s", f"wg{lab.tag}c"
    skey, ckey = run(["wg", "genkey"]).stdout.strip(), run(["wg", "genkey"]).stdout.strip()
    spub = run(["wg", "pubkey"], input=skey).stdout.strip()
    cpub = run(["wg", "pubkey"], input=ckey).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "WG_PROCESS_FOREGROUND"}
    subprocess.run(["ip", "netns", "exec", server.name, "wireguard-go", sif], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    lab.defer(lambda: server.ip("link", "del", sif, check=False))
    server.exec("wg", "set", sif, "listen-port", "51820", "private-key", "/dev/stdin",
                "peer", cpub, "allowed-ips", f"{inner}.2/32", input=skey)
    server.ip("addr", "add", f"{inner}.1/24", "dev", sif)
    server.ip("link", "set", sif, "up")
    conf = tmp_path / "c.conf"
    conf.write_text(f"[Interface]\nPrivateKey = {ckey}\n{extra_interface}\n[Peer]\nPublicKey = {spub}\n"
                    f"{allowed}\nEndpoint = {outer}.2:51820\n")
    return SplitTunnel(prot, phys, cif, conf, env)


def test_engine_socket_in_other_namespace(lab, tmp_path):
    """The whole-host shape: TUN in the protected namespace, UDP socket in the physical one."""
    t = split_tunnel(lab, tmp_path, "172.20.0", "10.66.0", "AllowedIPs = 0.0.0.0/0")
    prot, phys, cif, conf, env = t.prot, t.phys, t.cif, t.conf, t.env
    pidfile = tmp_path / "engine.pid"
    r = subprocess.run(["ip", "netns", "exec", prot.name, str(BIN / "nsroute"), "engine", cif,
                        "--config", str(conf), "--socket-netns", phys.name, "--pidfile", str(pidfile)],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    prot.ip("addr", "add", "10.66.0.2/24", "dev", cif)
    prot.ip("route", "add", "default", "dev", cif)
    assert sorted(prot.links()) == sorted(["lo", cif])
    r = prot.exec("ping", "-c", "3", "-i", "0.2", "-w", "10", "10.66.0.1", check=False)
    assert r.returncode == 0, r.stdout
    # The UDP socket lives in the physical namespace, not in the protected one.
    assert ":51820" not in prot.exec("ss", "-uan").stdout
    phys_ss = phys.exec("ss", "-uanp").stdout
    assert "nsroute" in phys_ss, phys_ss
    # Engine gone: the protected namespace has no way out at all.
    wait_for(lambda: pidfile.exists(), 5, what="pidfile")
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    wait_for(lambda: cif not in prot.links(), 5, what="TUN gone with the engine")
    r = prot.exec("ping", "-c", "1", "-W", "1", "172.20.0.2", check=False)
    assert r.returncode != 0
    time.sleep(0.1)
