"""Least privilege: after set-up the engine serves as an unprivileged user with no capabilities."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.netns.test_engine_daemon import alive, engine_pid, split_tunnel, uapi
from tests.support.netns import run, wait_for
from tests.support.stats import request_stats
from tests.support.wgpair import BIN

pytestmark = pytest.mark.root


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in /proc/{pid}/status")


def test_engine_drops_to_user_without_capabilities(lab, tmp_path):
    t = split_tunnel(lab, tmp_path, "172.21.0", "10.67.0", "AllowedIPs = 10.67.0.0/24",
                     extra_interface="ListenPort = 41234\n")
    prot, phys, cif, conf, env = t.prot, t.phys, t.cif, t.conf, t.env
    ckey = conf.read_text().split("PrivateKey = ")[1].split()[0]
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    pidfile = run_dir / "engine.pid"
    log = run_dir / "engine.log"
    r = subprocess.run(["ip", "netns", "exec", prot.name, str(BIN / "nsroute"), "engine", cif,
                        "--config", str(conf), "--socket-netns", phys.name, "--pidfile", str(pidfile),
                        "--user", "nobody"],
                       env=dict(env, NSROUTE_LOG=str(log), LOG_LEVEL="debug", NSROUTE_RUN_DIR=str(run_dir)),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    pid = engine_pid(cif)
    assert int(pidfile.read_text()) == pid
    # The process that serves the tunnel: nobody, no capabilities, no way to regain them.
    nobody = int(run(["id", "-u", "nobody"]).stdout)
    assert status_field(pid, "Uid").split() == [str(nobody)] * 4
    assert int(status_field(pid, "CapEff"), 16) == 0
    assert int(status_field(pid, "CapPrm"), 16) == 0
    assert status_field(pid, "NoNewPrivs") == "1"
    assert status_field(pid, "Groups") == ""
    # It still does its job, with the socket in the physical namespace.
    prot.ip("addr", "add", "10.67.0.2/24", "dev", cif)
    ping = prot.exec("ping", "-c", "3", "-i", "0.2", "-w", "10", "10.67.0.1", check=False)
    assert ping.returncode == 0, ping.stdout
    sock = Path(f"/var/run/wireguard/{cif}.sock")
    st = sock.stat()
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (0, "0o600")
    # What needs privilege is refused cleanly and changes nothing.
    before = uapi(cif, b"get=1\n\n")
    assert uapi(cif, b"set=1\nlisten_port=41235\n\n") == "errno=1\n\n"
    assert uapi(cif, b"get=1\n\n") == before
    assert "listen_port=41234" in before
    # Its counters (SIGUSR1) still reach the root-owned run directory.
    assert request_stats(pid, run_dir / f"engine-{cif}.stats.json")["pid"] == pid
    # Keys never reach the log, even when a request carries one in a malformed line.
    assert uapi(cif, f"set=1\n{bytes(31).hex()}ab\n\n".encode()).startswith("errno=")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), 5, what="engine exit")
    wait_for(lambda: not sock.exists() and not pidfile.exists(), 5,
             what="the root helper to remove socket and pidfile")
    assert cif not in prot.links()
    text = log.read_text()
    private_hex = run(["sh", "-c", f"echo {ckey} | base64 -d | od -An -tx1 | tr -d ' \\n'"]).stdout
    for secret in (ckey, private_hex, bytes(31).hex() + "ab"):
        assert secret not in text


def test_engine_killed_helper_still_cleans_up(lab, tmp_path):
    ns = lab.netns("K")
    ifname = f"wg{lab.tag}k"
    env = {k: v for k, v in os.environ.items() if k != "WG_PROCESS_FOREGROUND"}
    r = subprocess.run(["ip", "netns", "exec", ns.name, str(BIN / "nsroute"), "engine", ifname,
                        "--user", "nobody"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    pid = engine_pid(ifname)
    os.kill(pid, signal.SIGKILL)
    sock = Path(f"/var/run/wireguard/{ifname}.sock")
    wait_for(lambda: not sock.exists(), 5, what="socket removed after SIGKILL of the engine")
    assert ifname not in ns.links()


def test_unknown_engine_user_is_one_clear_error(lab):
    ns = lab.netns("N")
    r = subprocess.run(["ip", "netns", "exec", ns.name, str(BIN / "nsroute"), "engine", f"wg{lab.tag}n",
                        "--user", "no-such-user-nsr"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == ["nsroute: no such user 'no-such-user-nsr' to run the engine as"]
    assert f"wg{lab.tag}n" not in ns.links()
