"""Two namespaces joined by veth, each with a WireGuard interface from a chosen implementation.

`impl` is "nsroute" (our nsroute-wg), "wireguard-go" (Debian bookworm's 2022 build) or
"wireguard-go-new" (bookworm-backports' 0.0.20231211 with TUN and UDP offloads; see wggo.py):
all start as `CMD IFNAME` and are configured with the stock `wg` and `ip` tools, exactly as a
user would.
"kernel" is the kernel's own module (`ip link add IF type wireguard`; VM tier only), configured
with the same commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import wggo
from .netns import Lab, Netns, run, wait_for

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def impl_cmd(impl: str) -> list[str]:
    if impl == "nsroute":
        return [str(BIN / "nsroute-wg")]
    return wggo.command(impl)


def genkey() -> str:
    return run(["wg", "genkey"]).stdout.strip()


def pubkey(private: str) -> str:
    return run(["wg", "pubkey"], input=private).stdout.strip()


@dataclass
class Side:
    ns: Netns
    impl: str
    ifname: str
    veth: str
    outer: str  # outer (underlay) address
    inner4: str
    inner6: str
    port: int
    private: str = field(default_factory=genkey)

    @property
    def public(self) -> str:
        return pubkey(self.private)

    def wg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.ns.exec("wg", *args, check=check)

    def show_dump(self) -> list[list[str]]:
        return [line.split("\t") for line in self.wg("show", self.ifname, "dump").stdout.splitlines()]

    def start(self, tmp: Path) -> None:
        if self.impl == "kernel":
            self.ns.ip("link", "add", self.ifname, "type", "wireguard")
        else:
            self._start_daemon(tmp)
        key = tmp / f"{self.ifname}.key"
        key.write_text(self.private + "\n")
        key.chmod(0o600)
        self.wg("set", self.ifname, "private-key", str(key), "listen-port", str(self.port))
        self.ns.ip("addr", "add", f"{self.inner4}/24", "dev", self.ifname)
        self.ns.ip("addr", "add", f"{self.inner6}/64", "dev", self.ifname, "nodad")
        self.ns.ip("link", "set", self.ifname, "up")

    def _start_daemon(self, tmp: Path) -> None:
        # wireguard-go marks its re-executed daemon child with WG_PROCESS_FOREGROUND=1; an
        # inherited (even empty) value makes that child fork again without end.
        env = {k: v for k, v in os.environ.items() if k != "WG_PROCESS_FOREGROUND"}
        env["LOG_LEVEL"] = "error"
        log = tmp / f"{self.ifname}.log"
        # A daemon keeps its inherited stdout open: give it a file, not our pipe.
        with open(log, "w") as out:
            rc = subprocess.run(["ip", "netns", "exec", self.ns.name, *impl_cmd(self.impl), self.ifname],
                                stdout=out, stderr=out, env=env, timeout=30).returncode
        assert rc == 0, f"{self.impl} failed to start: {log.read_text()}"
        wait_for(lambda: Path(f"/var/run/wireguard/{self.ifname}.sock").exists(), 10,
                 what=f"{self.impl} UAPI socket")

    def stop(self) -> None:
        self.ns.ip("link", "del", self.ifname, check=False)


class Pair:
    """left (L) and right (R) sides; `connect` makes them peers of each other."""

    def __init__(self, lab: Lab, left_impl: str, right_impl: str, outer_family: int = 4,
                 tmp: Path | None = None, start_left: bool = True) -> None:
        self.lab = lab
        self.tmp = tmp or Path("/tmp")
        a, b = lab.netns("L"), lab.netns("R")
        lab.veth(a, "eth0", b, "eth0")
        tag = lab.tag
        if outer_family == 4:
            oa, ob, plen = "192.168.50.1", "192.168.50.2", 24
        else:
            oa, ob, plen = "fd50::1", "fd50::2", 64
        a.ip("addr", "add", f"{oa}/{plen}", "dev", "eth0", *(["nodad"] if outer_family == 6 else []))
        b.ip("addr", "add", f"{ob}/{plen}", "dev", "eth0", *(["nodad"] if outer_family == 6 else []))
        self.left = Side(a, left_impl, f"wg{tag}l", "eth0", oa, "10.77.0.1", "fd77::1", 51820)
        self.right = Side(b, right_impl, f"wg{tag}r", "eth0", ob, "10.77.0.2", "fd77::2", 51821)
        lab.defer(self.left.stop)
        lab.defer(self.right.stop)
        if start_left:
            self.left.start(self.tmp)
        self.right.start(self.tmp)

    @staticmethod
    def endpoint(side: Side) -> str:
        return f"[{side.outer}]:{side.port}" if ":" in side.outer else f"{side.outer}:{side.port}"

    def connect(self, psk: bool = False, left_knows_endpoint: bool = True,
                right_knows_endpoint: bool = False, keepalive: int = 0) -> None:
        extra: list[str] = []
        if psk:
            p = self.tmp / f"{self.lab.tag}.psk"
            p.write_text(run(["wg", "genpsk"]).stdout)
            p.chmod(0o600)
            extra = ["preshared-key", str(p)]
        # The side that waits (knows no endpoint) learns of its peer first, so the other
        # side's first initiation is not thrown away as coming from a stranger.
        order = [(self.right, self.left, right_knows_endpoint), (self.left, self.right, left_knows_endpoint)]
        for me, other, knows in order:
            args = ["set", me.ifname, "peer", other.public, "allowed-ips",
                    f"{other.inner4}/32,{other.inner6}/128", *extra]
            if knows:
                args += ["endpoint", self.endpoint(other)]
            if keepalive:
                args += ["persistent-keepalive", str(keepalive)]
            me.wg(*args)

    def ping(self, src: Side, dst_addr: str, count: int = 3) -> subprocess.CompletedProcess:
        return src.ns.exec("ping", "-c", str(count), "-i", "0.2", "-w", "10", dst_addr, check=False)
