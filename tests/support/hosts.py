"""Simulated hosts for tests: nsroute runs in them as on a real machine.

The runner itself lives in nsroute.host.simhost (the demo uses it too); this adds what
only tests need: the nsroute command line, topologies, and a wireguard-go VPN server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from nsroute.host import dhcp as _dhcp
from nsroute.host import simhost
from nsroute.host.selfcmd import nsroute_argv
from nsroute.wireguard import keys as _keys
from tests.support.netns import Lab, Netns, wait_for

prepare = simhost.prepare
argv = simhost.argv


def nsroute(host: str, *args: str, env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """`nsroute ARGS` on simulated host `host`."""
    return simhost.run(host, [*nsroute_argv(), *args], env=env, timeout=timeout)


def run(host: str, command: Sequence[str], env: Mapping[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    return simhost.run(host, command, env=env, timeout=timeout)




# ---------------------------------------------------------------- a small site

VPN_NAME = "vpn.nsr.test"
BEHIND4, BEHIND6 = "10.200.0.1", "fd20::1"


class Site:
    """laptop (eth0 static, eth1 DHCP) - router (dnsmasq) - VPN server (wireguard-go or nsroute-wg).

    Addresses are the same in every test (they live in the test's own namespaces); names
    that are machine-wide (namespaces, tunnel names, UAPI sockets) carry the lab's tag.
    """

    def __init__(self, lab: Lab, tmp: Path, server: str = "wireguard-go", dhcp: bool = True,
                 endpoint: str | None = None, lease: str = "2m", t1: int | None = None,
                 laptop: Netns | None = None) -> None:
        self.lab, self.tmp = lab, tmp
        self.physical = lab.name("phys")
        self.tun = f"nw{lab.tag}"
        self.stun = f"ns{lab.tag}"
        self.run_dir = str(tmp / "run")
        # `laptop` given: an existing namespace (the VM guest's initial one, where the kernel
        # puts hot-plugged devices); the lab then neither owns nor removes it.
        self.laptop = laptop or lab.netns("laptop")
        self.router, self.server = lab.netns("router"), lab.netns("server")
        lab.defer(self.force_cleanup)
        self._wire()
        self.dnsmasq = self._dnsmasq(lease, t1) if dhcp else None
        if dhcp:
            self.lease_eth1()
        else:
            self.laptop.ip("addr", "add", "192.168.60.2/24", "dev", "eth1")
            self.laptop.ip("route", "add", "default", "via", "192.168.60.1", "dev", "eth1", "metric", "200")
        Path(f"/etc/netns/{self.laptop.name}/resolv.conf").write_text(
            "# laptop's own resolver\nnameserver 192.168.60.1\nsearch lan.test\n")
        self._server(server)
        self.config = self._client_config(endpoint or "172.16.70.2:51820")

    # -- topology
    def _wire(self) -> None:
        L, R, S = self.laptop, self.router, self.server
        self.lab.veth(L, "eth0", R, "lan0")
        self.lab.veth(L, "eth1", R, "lan1")
        self.lab.veth(R, "wan0", S, "wan0")
        for ns, dev, a4, a6 in ((R, "lan0", "192.168.50.1/24", "fd50::1/64"),
                                (R, "lan1", "192.168.60.1/24", "fd60::1/64"),
                                (R, "wan0", "172.16.70.1/24", "fd70::1/64"),
                                (S, "wan0", "172.16.70.2/24", "fd70::2/64")):
            ns.ip("addr", "add", a4, "dev", dev)
            ns.ip("addr", "add", a6, "dev", dev, "nodad")
        R.exec("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        S.ip("route", "add", "default", "via", "172.16.70.1")
        S.ip("-6", "route", "add", "default", "via", "fd70::1")
        S.ip("addr", "add", f"{BEHIND4}/32", "dev", "lo")  # "behind the server"
        S.ip("addr", "add", f"{BEHIND6}/128", "dev", "lo", "nodad")
        L.ip("addr", "add", "192.168.50.2/24", "dev", "eth0")
        L.ip("addr", "add", "fd50::2/64", "dev", "eth0", "nodad")
        L.ip("addr", "add", "fd60::2/64", "dev", "eth1", "nodad")
        L.ip("route", "add", "default", "via", "192.168.50.1", "dev", "eth0", "metric", "100")
        L.ip("-6", "route", "add", "default", "via", "fd50::1", "dev", "eth0", "metric", "100")

    def _dnsmasq(self, lease: str, t1: int | None):
        leases = self.tmp / "dnsmasq.leases"
        timers = [f"--dhcp-option=option:T1,{t1}", f"--dhcp-option=option:T2,{t1 * 2}"] if t1 else []
        self.dnsmasq_log = self.tmp / "dnsmasq.log"
        p = self.router.popen(
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--interface=lan1", "--except-interface=lo", "--user=root", "--group=root",
            "--dhcp-range=192.168.60.100,192.168.60.150,255.255.255.0," + lease,
            "--dhcp-option=option:router,192.168.60.1", "--dhcp-option=option:dns-server,192.168.60.1",
            f"--dhcp-leasefile={leases}", f"--address=/{VPN_NAME}/172.16.70.2", "--log-dhcp",
            f"--log-facility={self.dnsmasq_log}", "--pid-file=", *timers, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        wait_for(lambda: self.dnsmasq_log.exists() and "started" in self.dnsmasq_log.read_text(),
                 what="dnsmasq to start")
        return p

    def lease_eth1(self) -> None:
        """The laptop's own DHCP client takes a lease (then exits, as a boot-time client would)."""
        env = _dhcp.hook_env(dict(os.environ, NSROUTE_DHCP_RESOLV=str(self.tmp / "laptop-dhcp-resolv"),
                                  NSROUTE_DHCP_METRIC="200"))
        self.laptop.exec("busybox", "udhcpc", "-q", "-f", "-n", "-i", "eth1", "-s", str(_dhcp.HOOK), "-t", "5", "-T", "1",
                         env=env, timeout=120)  # the hook starts Python: slow under TCG on a loaded host

    def _server(self, impl: str) -> None:
        S = self.server
        self.server_priv = _keys.generate_private()
        self.client_priv = _keys.generate_private()
        keyfile = self.tmp / "server.key"
        keyfile.write_text(_keys.to_base64(self.server_priv) + "\n")
        keyfile.chmod(0o600)
        if impl == "wireguard-go":
            self.server_proc = S.popen("wireguard-go", "-f", self.stun, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        else:
            exe = str(Path(nsroute_argv()[0]).with_name("nsroute-wg"))
            self.server_proc = S.popen(exe, "-f", self.stun, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(f"/var/run/wireguard/{self.stun}.sock"), what="VPN server")
        self.lab.defer(lambda: Path(f"/var/run/wireguard/{self.stun}.sock").unlink(missing_ok=True))
        S.exec("wg", "set", self.stun, "private-key", str(keyfile), "listen-port", "51820", "peer",
               _keys.to_base64(_keys.public_key(self.client_priv)), "allowed-ips", "10.99.0.2/32,fd99::2/128")
        S.ip("addr", "add", "10.99.0.1/24", "dev", self.stun)
        S.ip("addr", "add", "fd99::1/64", "dev", self.stun, "nodad")
        S.ip("link", "set", self.stun, "up")

    def _client_config(self, endpoint: str, extra: str = "") -> Path:
        path = self.tmp / f"{self.tun}.conf"
        path.write_text(
            "[Interface]\n"
            f"PrivateKey = {_keys.to_base64(self.client_priv)}\n"
            "Address = 10.99.0.2/32, fd99::2/128\n"
            "DNS = 10.99.0.1, vpn.internal\n"
            f"{extra}"
            "\n[Peer]\n"
            f"PublicKey = {_keys.to_base64(_keys.public_key(self.server_priv))}\n"
            "AllowedIPs = 0.0.0.0/0, ::/0\n"
            f"Endpoint = {endpoint}\n"
            "PersistentKeepalive = 1\n")
        path.chmod(0o600)
        return path

    # -- running nsroute on the laptop
    def env(self, **extra: str) -> dict[str, str]:
        return {"NSROUTE_RUN_DIR": self.run_dir, **extra}

    def nsroute(self, *args: str, env: Mapping[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        return nsroute(self.laptop.name, *args, env={**self.env(), **(env or {})}, timeout=timeout)

    def up(self, *extra: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.nsroute("up", str(self.config), "--physical", self.physical,
                            "--interface", "eth0", "--interface", "eth1", *extra, env=env, timeout=timeout)

    def down(self, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.nsroute("down", "--physical", self.physical, timeout=timeout)

    def picture(self) -> dict[str, str]:
        """What must come back byte for byte after `down` (lifetimes aside)."""
        L = self.laptop
        wait_for(lambda: "tentative" not in L.ip("addr").stdout, what="IPv6 DAD to settle")
        addrs = L.ip("-o", "addr", "show").stdout
        addrs = "\n".join(ln.split("\\")[0].rstrip() for ln in addrs.splitlines())
        return {
            "links": L.ip("-o", "link", "show").stdout.replace("state UNKNOWN", "").strip(),
            "addrs": addrs,
            # every route byte for byte; as a sorted list, since the kernel lists routes to the
            # same prefix on two devices (fe80::/64 on eth0 and eth1) in insertion order
            "routes4": sorted(L.ip("-4", "route", "show", "table", "all").stdout.splitlines()),
            "routes6": sorted(L.ip("-6", "route", "show", "table", "all").stdout.splitlines()),
            "resolv": Path(f"/etc/netns/{L.name}/resolv.conf").read_bytes().decode(),
            "nft": L.exec("nft", "list", "ruleset").stdout,  # the hot-plug block goes with `down`
        }

    def force_cleanup(self) -> None:
        """Whatever a failed test left: physical namespace, its processes, engine socket."""
        phys = Netns(self.physical)
        if os.path.exists(f"/run/netns/{self.physical}"):
            for pid in phys.pids():
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", self.physical], check=False)
        shutil.rmtree(f"/etc/netns/{self.physical}", ignore_errors=True)
        Path(f"/var/run/wireguard/{self.tun}.sock").unlink(missing_ok=True)

    def acks(self) -> int:
        """DHCPACKs dnsmasq has sent so far."""
        return self.dnsmasq_log.read_text().count("DHCPACK(lan1)")

    def router_counter(self) -> dict[str, int]:
        """Packets the router saw arrive from the laptop on each uplink, link noise aside."""
        out = self.router.exec("nft", "-j", "list", "counters", "table", "inet", "nsrleak").stdout
        data = json.loads(out)["nftables"]
        return {c["counter"]["name"]: c["counter"]["packets"] for c in data if "counter" in c}

    def install_counters(self) -> None:
        """Count everything but link noise, the WireGuard flow included: read it once the engine is gone."""
        rules = (
            "table inet nsrleak {\n"
            "  counter lan0 {}\n  counter lan1 {}\n"
            "  chain pre {\n    type filter hook prerouting priority -300; policy accept;\n"
            f"{LINK_NOISE_NFT}"
            "    iifname \"lan0\" counter name lan0\n    iifname \"lan1\" counter name lan1\n  }\n}\n")
        path = self.tmp / "counters.nft"
        path.write_text(rules)
        self.router.exec("nft", "-f", str(path))


def wait_handshake(ns: Netns, ifname: str, timeout: float = 15.0) -> None:
    def ok() -> bool:
        out = ns.exec("wg", "show", ifname, "latest-handshakes", check=False).stdout.split()
        return len(out) >= 2 and out[1] != "0"
    wait_for(ok, timeout=timeout, what=f"a handshake on {ifname}")



# ---------------------------------------------------------------- leak proof

SERVER_WAN4, WG_PORT = "172.16.70.2", 51820


# What the physical side sends on its own that no program on the protected side can make:
# DHCP and DHCPv6, neighbour discovery and MLD, and the ICMP port-unreachable its kernel
# answers with when a WireGuard datagram from the server (inner source port 51820) finds no
# socket because the engine was just killed, or a DHCP reply (67) meets a raw-socket client.
LINK_NOISE_NFT = (
    "    udp dport { 67, 68, 546, 547 } return\n"
    "    icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report,"
    " mld-listener-report } return\n"
    f"    ip daddr {SERVER_WAN4} icmp type destination-unreachable icmp code port-unreachable"
    f" @th,224,16 {WG_PORT} return\n"
    "    icmp type destination-unreachable icmp code port-unreachable @th,224,16 67 return\n")


def beyond_wireguard_nft(table: str, counter: str, priority: int) -> str:
    """An nft table on the router counting what arrives on lan0/lan1 that is neither the
    WireGuard flow to the server nor link noise: where a leak of the laptop would show."""
    return (
        f"table inet {table} {{\n"
        f"  counter {counter} {{}}\n"
        f"  chain pre {{\n    type filter hook prerouting priority {priority}; policy accept;\n"
        "    iifname != { \"lan0\", \"lan1\" } return\n"
        f"    ip daddr {SERVER_WAN4} udp dport {WG_PORT} return\n"
        f"{LINK_NOISE_NFT}"
        f"    counter name {counter}\n  }}\n}}\n")


class LeakGuard:
    """Proof, on the router, that nothing but the WireGuard flow leaves the laptop's uplinks.

    Two independent witnesses of packets arriving on lan0/lan1 that are NOT UDP to the VPN
    server's WireGuard port, and not link noise (DHCP, DHCPv6, ARP, neighbour discovery, MLD):
      - an nft counter `plain` in table inet nsrguard (prerouting, before anything else);
      - tcpdump -Q in on each of lan0 and lan1 with the same filter, bounded by -c and by
        `timeout`, its lines kept in a file: it must capture 0 packets.
    Packets of the physical side's own making that are allowed: the ICMP port-unreachable its
    kernel sends when a WireGuard datagram from the server finds no socket (the engine was
    just killed), or when a DHCP reply arrives while udhcpc listens on a raw socket only. They
    quote the router's or server's datagram (inner source port 51820 or 67), so a packet from
    the protected namespace can never look like them.
    """

    UPLINKS = ("lan0", "lan1")
    BPF = (f"not (udp and dst host {SERVER_WAN4} and dst port {WG_PORT})"
           " and not arp"
           " and not (udp and (port 67 or port 68 or port 546 or port 547))"
           " and not (icmp6 and (ip6[40] == 133 or ip6[40] == 135 or ip6[40] == 136))"
           " and not (ip6 multicast and ip6[6] == 0)"  # MLD reports, behind a hop-by-hop header
           " and not (icmp and icmp[0] == 3 and icmp[1] == 3 and"
           f" ((dst host {SERVER_WAN4} and icmp[28:2] == {WG_PORT}) or icmp[28:2] == 67))")
    def __init__(self, site: Site, limit: int = 50, max_seconds: int = 600) -> None:
        self.site = site
        R = site.router
        path = site.tmp / "guard.nft"
        path.write_text(beyond_wireguard_nft("nsrguard", "plain", -400))
        R.exec("nft", "-f", str(path))
        self.dumps: list[tuple[subprocess.Popen, Path, Path]] = []
        for dev in self.UPLINKS:
            out, err = site.tmp / f"guard-{dev}.txt", site.tmp / f"guard-{dev}.err"
            with open(out, "w") as o, open(err, "w") as e:
                p = R.popen("timeout", str(max_seconds), "tcpdump", "-i", dev, "-Q", "in", "-n", "-l", "-e",
                            "--immediate-mode", "-c", str(limit), self.BPF, stdout=o, stderr=e)
            self.dumps.append((p, out, err))
        for _p, _out, err in self.dumps:
            wait_for(lambda err=err: "listening on" in err.read_text(), what="tcpdump to listen")

    def counted(self) -> int:
        out = self.site.router.exec("nft", "-j", "list", "counter", "inet", "nsrguard", "plain").stdout
        return next(c["counter"]["packets"] for c in json.loads(out)["nftables"] if "counter" in c)

    def captured(self) -> list[str]:
        return [ln for _p, out, _err in self.dumps for ln in out.read_text().splitlines() if ln.strip()]

    def assert_clean(self, when: str = "") -> None:
        n, lines = self.counted(), self.captured()
        for p, _out, err in self.dumps:  # a witness that died would see nothing
            assert p.poll() is None or lines, f"tcpdump stopped: {err.read_text()}"
        assert n == 0 and not lines, (f"unencrypted packets left the laptop{' ' + when if when else ''}: "
                                      f"nft counted {n}, tcpdump captured:\n" + "\n".join(lines[:20]))

    def stop(self) -> None:
        for p, _out, _err in self.dumps:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
