"""The cross-platform WireGuard configuration protocol (what `wg` speaks to userspace engines).

A `set=1` request is parsed and validated in full before anything is applied, so a bad
request answers `errno=N` and leaves the device exactly as it was.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, format_endpoint, parse_allowed_ip, parse_endpoint
from ..wireguard.device import ConfigurationError, Device
from ..wireguard.keys import is_low_order

SOCKET_DIR = "/var/run/wireguard"
UNSET: Any = object()


class UAPIError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class PeerPlan:
    public_key: bytes
    line: int = 0
    remove: bool = False
    update_only: bool = False
    preshared_key: Any = UNSET
    endpoint: Any = UNSET
    persistent_keepalive: Any = UNSET
    replace_allowed_ips: bool = False
    allowed_ips: list = field(default_factory=list)


@dataclass
class Plan:
    private_key: Any = UNSET
    listen_port: Any = UNSET
    fwmark: Any = UNSET
    replace_peers: bool = False
    peers: list[PeerPlan] = field(default_factory=list)


def _hexkey(value: str, what: str, allow_empty: bool = False) -> bytes | None:
    if allow_empty and value == "":
        return None
    if len(value) != 64:
        raise UAPIError(errno.EINVAL, f"{what}: expected 64 hex characters")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise UAPIError(errno.EINVAL, f"{what}: not hex") from None
    return key


def _uint(value: str, what: str, maximum: int) -> int:
    # isdigit() alone accepts "²" (int() then raises) and other scripts' digits.
    if not (value.isascii() and value.isdigit()) or int(value) > maximum:
        raise UAPIError(errno.EINVAL, f"{what}: '{value}' is not a number up to {maximum}")
    return int(value)


def parse_set(lines: list[str]) -> Plan:
    """Lines after `set=1`, without the terminating blank line."""
    plan = Plan()
    peer: PeerPlan | None = None
    for n, line in enumerate(lines, 1):
        key, sep, value = line.partition("=")
        if not sep:
            # Never echo the line: it may be key material that lost its "key=" prefix.
            raise UAPIError(errno.EPROTO, f"line {n}: not of the form key=value")
        if key == "public_key":
            peer = _new_peer(value, n)
            plan.peers.append(peer)
        elif peer is None:
            device_key = _DEVICE_KEYS.get(key)
            if device_key is None:
                raise UAPIError(errno.EINVAL, f"line {n}: unknown device key '{key[:32]}'")
            device_key(plan, value, n)
        else:
            peer_key = _PEER_KEYS.get(key)
            if peer_key is None:
                raise UAPIError(errno.EINVAL, f"line {n}: unknown peer key '{key[:32]}'")
            peer_key(peer, value, n)
    return plan


def _new_peer(value: str, n: int) -> PeerPlan:
    pub = _hexkey(value, "public_key")
    assert pub is not None
    if is_low_order(pub):
        raise UAPIError(errno.EINVAL, f"line {n}: public key of low order")
    return PeerPlan(pub, line=n)


def _true(key: str, value: str) -> bool:
    """A flag key: its only value is 'true'."""
    if value != "true":
        raise UAPIError(errno.EINVAL, f"{key} must be 'true'")
    return True


def _optional_key(value: str, what: str) -> bytes | None:
    """A key that may be cleared: empty or all zeros mean none."""
    k = _hexkey(value, what, allow_empty=True)
    return None if k is None or k == bytes(32) else k


def _endpoint(value: str, n: int) -> tuple[str, int]:
    try:
        host, port = parse_endpoint(value)
        ipaddress.ip_address(host.split("%")[0])
    except ValueError as e:
        raise UAPIError(errno.EINVAL, f"line {n}: endpoint: {e}") from None
    return host, port


def _allowed_ip(value: str, n: int):
    try:
        return parse_allowed_ip(value)
    except ValueError:
        raise UAPIError(errno.EINVAL, f"line {n}: allowed_ip '{value[:64]}' is not a prefix") from None


def _protocol_version(value: str) -> None:
    if value != "1":
        raise UAPIError(errno.EINVAL, f"protocol_version {value[:8]} not supported")


# What each key does to the plan (device keys, before the first public_key) or to the peer
# being described (after it): key -> f(target, value, line number).
_DEVICE_KEYS: dict[str, Callable[[Plan, str, int], None]] = {
    "private_key": lambda p, v, n: setattr(p, "private_key", _optional_key(v, "private_key")),
    "listen_port": lambda p, v, n: setattr(p, "listen_port", _uint(v, "listen_port", 65535)),
    "fwmark": lambda p, v, n: setattr(p, "fwmark", _uint(v, "fwmark", 2**32 - 1) if v else 0),
    "replace_peers": lambda p, v, n: setattr(p, "replace_peers", _true("replace_peers", v)),
}
_PEER_KEYS: dict[str, Callable[[PeerPlan, str, int], None]] = {
    "remove": lambda p, v, n: setattr(p, "remove", _true("remove", v)),
    "update_only": lambda p, v, n: setattr(p, "update_only", _true("update_only", v)),
    "preshared_key": lambda p, v, n: setattr(p, "preshared_key",
                                             _optional_key(v, "preshared_key")),
    "endpoint": lambda p, v, n: setattr(p, "endpoint", _endpoint(v, n)),
    "persistent_keepalive_interval": lambda p, v, n: setattr(
        p, "persistent_keepalive", _uint(v, "persistent_keepalive_interval", 65535)),
    "replace_allowed_ips": lambda p, v, n: setattr(p, "replace_allowed_ips",
                                                   _true("replace_allowed_ips", v)),
    "allowed_ip": lambda p, v, n: p.allowed_ips.append(_allowed_ip(v, n)),
    "protocol_version": lambda p, v, n: _protocol_version(v),
}


def plan_from_config(cfg: Config, resolve=None) -> Plan:
    """What `wg setconf FILE` would send, from a parsed setconf file."""
    plan = Plan(private_key=cfg.interface.private_key, replace_peers=True,
                fwmark=cfg.interface.fwmark)
    if cfg.interface.listen_port is not None:
        plan.listen_port = cfg.interface.listen_port
    for p in cfg.peers:
        ep: Any = UNSET
        if p.endpoint:
            ep = resolve(p.endpoint) if resolve else p.endpoint
        plan.peers.append(PeerPlan(
            p.public_key, line=p.line, preshared_key=p.preshared_key, endpoint=ep,
            persistent_keepalive=p.persistent_keepalive, replace_allowed_ips=True,
            allowed_ips=list(p.allowed_ips)))
    return plan


def apply(device: Device, plan: Plan, now: float, rebind=None) -> None:
    """Apply a validated plan. `rebind(port, fwmark) -> bound port` moves the sockets and
    may raise OSError, in which case nothing has been changed yet."""
    port = device.listen_port if plan.listen_port is UNSET else plan.listen_port
    fwmark = device.fwmark if plan.fwmark is UNSET else plan.fwmark
    # A peer with the interface's own key is skipped below (add_peer refuses it), silently,
    # as wireguard-go and the kernel do, so a setconf file that works with them works here.
    if rebind is not None and (port != device.listen_port or fwmark != device.fwmark):
        try:
            port = rebind(port, fwmark)
        except OSError as e:
            raise UAPIError(e.errno or errno.EADDRINUSE, str(e)) from None
    device.listen_port, device.fwmark = port, fwmark
    if plan.private_key is not UNSET:
        device.set_private_key(plan.private_key)
    if plan.replace_peers:
        for pub in list(device.peers):
            device.remove_peer(pub)
    for pp in plan.peers:
        if pp.remove:
            device.remove_peer(pp.public_key)
            continue
        if pp.update_only and pp.public_key not in device.peers:
            continue
        _apply_peer(device, pp, now)


def _apply_peer(device: Device, pp: PeerPlan, now: float) -> None:
    """Add or update one peer as `pp` describes."""
    try:
        peer = device.add_peer(pp.public_key)
    except ConfigurationError:
        return  # our own key after a key change: wireguard-go skips it too
    if pp.preshared_key is not UNSET:
        peer.preshared_key = pp.preshared_key
    if pp.endpoint is not UNSET:
        peer.endpoint = pp.endpoint
    if pp.replace_allowed_ips or pp.allowed_ips:
        device.set_allowed_ips(peer, pp.allowed_ips, pp.replace_allowed_ips)
    if pp.persistent_keepalive is not UNSET:
        device.set_persistent_keepalive(peer, pp.persistent_keepalive, now)


def serialize_get(device: Device) -> str:
    out = []
    if device.private_key:
        out.append(f"private_key={device.private_key.hex()}")
    if device.listen_port:
        out.append(f"listen_port={device.listen_port}")
    if device.fwmark:
        out.append(f"fwmark={device.fwmark}")
    for peer in device.peers.values():
        out.append(f"public_key={peer.public_key.hex()}")
        out.append(f"preshared_key={(peer.preshared_key or bytes(32)).hex()}")
        out.append("protocol_version=1")
        if peer.endpoint:
            out.append(f"endpoint={format_endpoint(peer.endpoint)}")
        wall = peer.last_handshake_wall
        sec = int(wall)
        out.append(f"last_handshake_time_sec={sec}")
        out.append(f"last_handshake_time_nsec={int((wall - sec) * 1e9) if sec else 0}")
        out.append(f"tx_bytes={peer.tx_bytes}")
        out.append(f"rx_bytes={peer.rx_bytes}")
        out.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        for net in device.allowed.prefixes_of(peer):
            out.append(f"allowed_ip={net}")
    return "\n".join(out) + "\n"


def socket_path(ifname: str) -> str:
    return f"{SOCKET_DIR}/{ifname}.sock"


def request(ifname: str, raw: bytes, timeout: float = 2.0) -> str:
    """Send one raw request to an engine's UAPI socket and return its whole reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(socket_path(ifname))
        s.sendall(raw)
        buf = b""
        while not buf.endswith(b"\n\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf.decode()


def get(ifname: str, timeout: float = 2.0) -> dict:
    """Ask a running engine (ours or wireguard-go) for its state, parsed; for `status`."""
    dev: dict = {"peers": []}
    peer: dict | None = None
    for line in request(ifname, b"get=1\n\n", timeout).splitlines():
        key, _, value = line.partition("=")
        if key == "public_key":
            peer = {"public_key": bytes.fromhex(value), "allowed_ips": [], "endpoint": None}
            dev["peers"].append(peer)
        elif key == "errno":
            dev["errno"] = int(value)
        elif peer is None:
            dev[key] = bytes.fromhex(value) if key == "private_key" else int(value)
        elif key == "allowed_ip":
            peer["allowed_ips"].append(value)
        elif key == "endpoint":
            peer["endpoint"] = value
        elif key == "preshared_key":
            peer["preshared_key"] = bytes.fromhex(value)
        elif key in ("last_handshake_time_sec", "last_handshake_time_nsec", "tx_bytes", "rx_bytes",
                     "persistent_keepalive_interval", "protocol_version"):
            peer[key] = int(value)
    for p in dev["peers"]:
        p["last_handshake_time"] = p.pop("last_handshake_time_sec", 0) + p.pop("last_handshake_time_nsec", 0) / 1e9
    return dev
