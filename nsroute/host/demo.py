"""`nsroute demo`: a throwaway laptop, router and VPN server in namespaces, nsroute at work.

Everything lives in network namespaces named nsrdemo-TAG-*, made here and removed at the
end (also on failure or Ctrl-C); the machine's own namespace is never touched. nsroute
runs on the simulated laptop exactly as on a real one (see simhost).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import fsmode
from ..nsutil import entered
from ..wireguard import keys
from . import kernel, netns, records, simhost, sysctl
from .selfcmd import nsroute_argv

BEHIND = "10.200.0.1"
SERVER_WAN = "172.16.70.2"


class Demo:
    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        self.laptop, self.router, self.server = (f"nsrdemo-{tag}-{n}" for n in ("laptop", "router", "server"))
        self.physical = f"nsrdemo-{tag}-phys"
        self.tun, self.stun = f"wgdemo{tag}", f"wgsrv{tag}"
        self.tmp = Path(tempfile.mkdtemp(prefix="nsroute-demo-"))
        self.run_dir = self.tmp / "run"
        self.procs: list[subprocess.Popen] = []
        self.ok = True

    # ------------------------------------------------------------------ helpers
    def say(self, text: str) -> None:
        print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)

    def show(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            print(f"   {line}")
        sys.stdout.flush()

    def check(self, cond: bool, good: str, bad: str) -> None:
        print(f"   {'OK' if cond else 'FAILED'}: {good if cond else bad}", flush=True)
        self.ok = self.ok and cond

    def nsexec(self, ns: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        # `ip netns exec`: a program there reads the host's /etc/netns/NAME files, as on a host
        return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=timeout)

    def nsroute(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {"NSROUTE_RUN_DIR": str(self.run_dir)}
        return simhost.run(self.laptop, [*nsroute_argv(), *args], env=env, timeout=timeout)

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        for ns in (self.laptop, self.router, self.server):
            netns.create(ns)
            simhost.prepare(ns, "# simulated host of nsroute demo\nnameserver 192.168.50.1\n")
        self.veth(self.laptop, "eth0", self.router, "lan0")
        self.veth(self.router, "wan0", self.server, "wan0")
        for ns, dev in ((self.laptop, "eth0"), (self.router, "lan0"), (self.router, "wan0"), (self.server, "wan0")):
            sysctl.write_device(dev, {"ipv6/disable_ipv6": "1"}, ns)
        kernel.add_address(self.laptop, "eth0", {"cidr": "192.168.50.2/24"})
        kernel.add_route(self.laptop, "eth0", {"dst": "0.0.0.0/0", "gateway": "192.168.50.1", "metric": 100})
        kernel.add_address(self.router, "lan0", {"cidr": "192.168.50.1/24"})
        kernel.add_address(self.router, "wan0", {"cidr": "172.16.70.1/24"})
        with entered(self.router):
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        kernel.add_address(self.server, "wan0", {"cidr": f"{SERVER_WAN}/24"})
        kernel.add_route(self.server, "wan0", {"dst": "0.0.0.0/0", "gateway": "172.16.70.1"})
        kernel.add_address(self.server, "lo", {"cidr": f"{BEHIND}/32"})
        self.start_server()
        self.write_config()

    def veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        tmp = f"nsrd{secrets.token_hex(4)}"
        kernel.add_veth(a, a_if, tmp)
        kernel.move(tmp, a, b)
        kernel.set_link(b, tmp, rename=b_if)
        kernel.set_link(a, a_if, up=True)
        kernel.set_link(b, b_if, up=True)

    def start_server(self) -> None:
        self.server_priv, self.client_priv = keys.generate_private(), keys.generate_private()
        impl = shutil.which("wireguard-go")
        argv = [impl, "-f", self.stun] if impl else [*nsroute_argv(), "engine", self.stun, "--foreground"]
        self.server_impl = "wireguard-go" if impl else "nsroute engine"
        p = subprocess.Popen(["ip", "netns", "exec", self.server, *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "WG_PROCESS_FOREGROUND": "1"})
        self.procs.append(p)
        sock = f"/var/run/wireguard/{self.stun}.sock"
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        self.uapi_set(sock, [f"private_key={self.server_priv.hex()}", "listen_port=51820",
                             f"public_key={keys.public_key(self.client_priv).hex()}",
                             "allowed_ip=10.99.0.2/32"])
        kernel.add_address(self.server, self.stun, {"cidr": "10.99.0.1/24"})
        kernel.set_link(self.server, self.stun, up=True)

    def uapi_set(self, path: str, lines: list[str]) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(("set=1\n" + "\n".join(lines) + "\n\n").encode())
            answer = s.recv(4096).decode()
        if "errno=0" not in answer:
            raise RuntimeError(f"VPN server refused its configuration: {answer.strip()}")

    def write_config(self) -> None:
        self.config = self.tmp / f"{self.tun}.conf"
        fsmode.write_file(
            self.config,
            "[Interface]\n"
            f"PrivateKey = {keys.to_base64(self.client_priv)}\n"
            "Address = 10.99.0.2/32\nDNS = 10.99.0.1\n\n"
            "[Peer]\n"
            f"PublicKey = {keys.to_base64(keys.public_key(self.server_priv))}\n"
            f"AllowedIPs = 0.0.0.0/0\nEndpoint = {SERVER_WAN}:51820\nPersistentKeepalive = 5\n", 0o600)

    # ------------------------------------------------------------------ picture
    def picture(self) -> str:
        """The laptop as a user would look at it: links, IPv4 addresses, main routes, DNS."""
        links = " ".join(ln["ifname"] for ln in kernel.links(self.laptop))
        addrs = "\n".join(f"{a['ifname']} {a['cidr']}" for a in kernel.addresses(self.laptop) if a["family"] == 4)
        routes = "\n".join(
            " ".join(["default" if records.is_default(r) else r["dst"],
                      *(["via", r["gateway"]] if r["gateway"] else []), "dev", ",".join(r["devs"]),
                      *(["metric", str(r["metric"])] if r["metric"] else [])])
            for r in kernel.routes(self.laptop) if r["table"] == records.TABLE_MAIN and r["family"] == 4)
        resolv = Path(f"/etc/netns/{self.laptop}/resolv.conf").read_text().strip()
        return f"interfaces: {links}\n{addrs}\nroutes:\n{routes}\nresolv.conf: {resolv!r}"

    def lan_packets(self) -> int:
        return kernel.rx_packets(self.router, "lan0")

    # ------------------------------------------------------------------ the show
    def run(self) -> None:
        self.say("Building a laptop, a router and a VPN server in network namespaces")
        self.build()
        print(f"   laptop {self.laptop} --eth0-- router {self.router} --wan0-- VPN server {self.server} "
              f"({self.server_impl}, {SERVER_WAN}:51820, with {BEHIND} behind it)")
        before = self.picture()
        self.say("The laptop before `nsroute up`")
        self.show(before)

        self.say(f"nsroute up {self.config.name} --interface eth0   (on the laptop)")
        p = self.nsroute("up", str(self.config), "--physical", self.physical, "--interface", "eth0")
        self.show(p.stderr)
        self.check(p.returncode == 0, "up", f"up failed: {p.stderr.strip()}")
        if p.returncode != 0:
            return
        links = sorted(ln["ifname"] for ln in kernel.links(self.laptop))
        self.check(links == sorted(["lo", self.tun]),
                   f"the laptop now has only lo and {self.tun}", f"the laptop still has: {' '.join(links)}")

        self.say(f"Traffic from the laptop to {BEHIND} (behind the VPN server) goes through the tunnel")
        ping = self.nsexec(self.laptop, "ping", "-c", "3", "-i", "0.3", "-W", "3", BEHIND)
        self.show("\n".join(ping.stdout.splitlines()[-2:]))
        self.check(ping.returncode == 0, "ping through the tunnel", "no answer through the tunnel")

        self.say("nsroute status")
        st = self.nsroute("status", "--physical", self.physical)
        self.show(st.stdout or st.stderr)
        info = json.loads(self.nsroute("status", "--physical", self.physical, "--json").stdout or "{}")

        self.say("Killing the engine (SIGKILL): nothing may leave the laptop now")
        before_pkts = self.lan_packets()
        pid = (info.get("engine") or {}).get("pid")
        if pid:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        for target in (BEHIND, "192.168.50.1", SERVER_WAN):
            r = self.nsexec(self.laptop, "ping", "-c", "2", "-i", "0.2", "-W", "1", target)
            self.show(f"ping {target}: {(r.stderr or r.stdout).strip().splitlines()[-1] if (r.stderr or r.stdout).strip() else r.returncode}")
        leaked = self.lan_packets() - before_pkts
        self.check(leaked == 0, "the router saw 0 packets from the laptop",
                   f"the router saw {leaked} packets from the laptop")
        self.show(self.nsroute("status", "--physical", self.physical).stdout.splitlines()[0])

        self.say("nsroute up again: the engine comes back, nothing is moved twice")
        p = self.nsroute("up", str(self.config), "--physical", self.physical, "--interface", "eth0")
        self.show(p.stderr)
        ping = self.nsexec(self.laptop, "ping", "-c", "2", "-W", "3", BEHIND)
        self.check(p.returncode == 0 and ping.returncode == 0, "tunnel back", f"resume failed: {p.stderr.strip()}")

        self.say("The escape hatch: nsroute exec reaches the LAN directly")
        if self.exec_available():
            r = self.nsroute("exec", "--physical", self.physical, "--user", "root", "--",
                             "ping", "-c", "1", "-W", "2", "192.168.50.1")
            self.show("\n".join(r.stdout.splitlines()[-2:]) or r.stderr)
            self.check(r.returncode == 0, "nsroute exec reached the router directly", "nsroute exec failed")
        else:
            print("   (nsroute exec is not available in this build yet; `ip netns exec "
                  f"{self.physical} CMD` does the same)")

        self.say("nsroute down")
        p = self.nsroute("down", "--physical", self.physical)
        self.show(p.stderr)
        after = self.picture()
        self.show(after)
        self.check(p.returncode == 0 and after == before, "the laptop is exactly as before",
                   "the laptop differs from before")

    def exec_available(self) -> bool:
        try:
            from .. import exec as exec_mod  # noqa: F401
        except ImportError:
            return False
        return hasattr(exec_mod, "run")

    # ------------------------------------------------------------------ clean-up
    def cleanup(self) -> None:
        for name in (self.physical, self.laptop, self.router, self.server):
            if os.path.exists(f"/run/netns/{name}"):
                # `ip netns pids`: every process in it, whatever it runs (procs.find wants a name)
                pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=5)
        for name in (self.physical, self.laptop, self.router, self.server):
            netns.delete(name)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
        for ifname in (self.tun, self.stun):
            Path(f"/var/run/wireguard/{ifname}.sock").unlink(missing_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def run() -> int:
    """Run the demo; 0 when every check held."""
    if os.geteuid() != 0:
        print("nsroute: the demo needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    for tool in ("ip", "unshare", "nsenter"):
        if not shutil.which(tool):
            print(f"nsroute: the demo needs {tool}", file=sys.stderr)
            return 1
    demo = Demo()
    try:
        demo.run()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"nsroute: demo failed: {e}", file=sys.stderr)
        demo.ok = False
    finally:
        demo.cleanup()
    print("\n== " + ("Demo finished: everything it made is gone." if demo.ok else "Demo FAILED (see above); everything it made is gone."))
    return 0 if demo.ok else 1
