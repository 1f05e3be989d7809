"""The tunnel: the engine's `wg setconf` file, endpoint resolution, engine start, addressing.

The engine puts its TUN where it runs and its UDP socket in --socket-netns; everything
layer 3 on the TUN (addresses, routes, DNS) is set here, as wg-quick would.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .. import config as wgconfig
from .. import fsmode
from ..wireguard import keys
from . import kernel, netns, procs, selfcmd
from .errors import HostError
from .state import Proc

UAPI_DIR = "/var/run/wireguard"
DEFAULT_MTU = 1420
_RESOLVE = (
    "import socket, sys\n"
    "try:\n"
    "    infos = socket.getaddrinfo(sys.argv[1], int(sys.argv[2]), type=socket.SOCK_DGRAM)\n"
    "except socket.gaierror as e:\n"
    "    print(e.strerror, file=sys.stderr); sys.exit(2)\n"
    "print(infos[0][4][0])\n"
)


def is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        return False


def resolve(host: str, port: int, ns: str | None) -> str:
    """Resolve an Endpoint host where the socket lives: through the physical side's DNS.

    In a named namespace this runs under `ip netns exec`, which puts that namespace's
    /etc/netns/NAME/resolv.conf in place of /etc/resolv.conf, as the socket will see it.
    """
    if is_literal(host):
        return host.split("%")[0]
    if ns is None or "/" in ns:
        argv = [sys.executable, "-c", _RESOLVE, host, str(port)]
        if ns is not None:
            argv = ["nsenter", f"--net={ns}", *argv]
    else:
        # `ip netns exec`, not netlink: the resolver must read /etc/netns/NS/resolv.conf
        argv = ["ip", "netns", "exec", ns, sys.executable, "-c", _RESOLVE, host, str(port)]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise HostError(f"cannot resolve endpoint {host}: no answer within 30s") from None
    if p.returncode != 0 or not p.stdout.strip():
        why = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "no address"
        raise HostError(f"cannot resolve endpoint {host}: {why}")
    return p.stdout.strip()


def resolve_local(host: str, port: int) -> str:
    """Resolution in our own namespace (container mode: the socket stays here)."""
    if is_literal(host):
        return host
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0]
    except socket.gaierror as e:
        raise HostError(f"cannot resolve endpoint {host}: {e.strerror}") from None


def setconf_text(cfg: wgconfig.Config, endpoints: dict[bytes, str], listen_port: int | None) -> str:
    """The engine's `wg setconf` file: keys, `listen_port` (None: any), fwmark, peers with
    literal endpoints."""
    i = cfg.interface
    lines = ["[Interface]"]
    if i.private_key is not None:
        lines.append(f"PrivateKey = {keys.to_base64(i.private_key)}")
    if listen_port is not None:
        lines.append(f"ListenPort = {listen_port}")
    if i.fwmark:
        lines.append(f"FwMark = {i.fwmark}")
    for p in cfg.peers:
        lines += ["", "[Peer]", f"PublicKey = {keys.to_base64(p.public_key)}"]
        if p.preshared_key is not None:
            lines.append(f"PresharedKey = {keys.to_base64(p.preshared_key)}")
        if p.allowed_ips:
            lines.append("AllowedIPs = " + ", ".join(str(n) for n in p.allowed_ips))
        if p.public_key in endpoints:
            lines.append(f"Endpoint = {endpoints[p.public_key]}")
        if p.persistent_keepalive:
            lines.append(f"PersistentKeepalive = {p.persistent_keepalive}")
    return "\n".join(lines) + "\n"


def resolve_endpoints(cfg: wgconfig.Config, ns: str | None, local: bool = False) -> dict[bytes, str]:
    out = {}
    for p in cfg.peers:
        if p.endpoint is None:
            continue
        host, port = p.endpoint
        addr = resolve_local(host, port) if local else resolve(host, port, ns)
        out[p.public_key] = wgconfig.format_endpoint((addr, port))
    return out


def write_private(path: Path, text: str) -> None:
    """The setconf file holds the private key: 0600 from the first byte."""
    fsmode.make_dirs(path.parent, 0o700)
    fsmode.write_file(path, text, 0o600)


def uapi_path(ifname: str) -> str:
    return os.path.join(UAPI_DIR, f"{ifname}.sock")


def engine_user() -> str:
    """Who the engine serves as once set up: $NSROUTE_ENGINE_USER, else the system user
    `nsroute` when it exists, else `nobody` ("root" keeps every privilege)."""
    import pwd

    chosen = os.environ.get("NSROUTE_ENGINE_USER")
    if chosen:
        return chosen
    try:
        pwd.getpwnam("nsroute")
        return "nsroute"
    except KeyError:
        return "nobody"


def start_engine(ifname: str, setconf: Path, tun_ns: str | None, socket_ns: str,
                 mtu: int, log: Path, timeout: float = 60.0) -> Proc:
    """Start the engine in the foreground of a session of its own; return once it serves.

    Ready means: the TUN exists in `tun_ns` and the UAPI socket answers to connect.
    """
    argv = [*selfcmd.engine_argv(), ifname, "--config", str(setconf), "--socket-netns", socket_ns,
            "--foreground", "--mtu", str(mtu), "--user", engine_user()]
    fsmode.make_dirs(log.parent, 0o700)
    with os.fdopen(fsmode.open_file(log, os.O_WRONLY | os.O_APPEND, 0o600), "ab") as out:
        p = netns.popen(tun_ns, argv, stdout=out, stderr=out)
    rec = procs.record(p.pid, "engine", argv)
    end = time.monotonic() + timeout
    while True:
        code = p.poll()
        if code is not None:
            raise HostError(f"the engine exited with status {code}: {procs.last_line(log)}")
        if kernel.link(tun_ns, ifname) is not None and _uapi_ready(ifname):
            return rec
        if time.monotonic() > end:
            procs.stop(rec)
            raise HostError(f"the engine did not come up within {timeout:g}s: {procs.last_line(log)}")
        time.sleep(0.05)


def _uapi_ready(ifname: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(uapi_path(ifname))
        return True
    except OSError:
        return False
    finally:
        s.close()


def tunnel_routes(cfg: wgconfig.Config) -> list[dict[str, str | None]]:
    """Routes for every AllowedIPs network ({"dst": CIDR, "table": ...}); /0 is the
    default route of its family; none with `Table = off`."""
    table = cfg.interface.table
    if table is not None and table.lower() == "off":
        return []
    seen = set()
    out: list[dict[str, str | None]] = []
    nets = sorted({n for p in cfg.peers for n in p.allowed_ips},
                  key=lambda n: (n.version, n.prefixlen, int(n.network_address)))
    for n in nets:
        if n in seen:
            continue
        seen.add(n)
        out.append({"dst": str(n), "table": table if table is not None and table.lower() != "auto" else None})
    return out


def configure(cfg: wgconfig.Config, ifname: str, ns: str | None) -> None:
    """Addresses (IPv6 without DAD, as wg-quick), link up, routes on the TUN in `ns`;
    what is already there is fine."""
    for a in cfg.interface.addresses:
        kernel.add_address(ns, ifname, {"cidr": str(a), "flags": ["nodad"] if a.version == 6 else []})
    kernel.set_link(ns, ifname, up=True)
    for r in tunnel_routes(cfg):
        kernel.add_route(ns, ifname, r)


def remove_tun(ifname: str, ns: str | None) -> None:
    kernel.delete_link(ns, ifname)
