"""wg-quick and `wg setconf` configuration files.

One parser for both formats: wg-quick adds Address, DNS, MTU, Table, SaveConfig and the
hook keys to the [Interface] section. Errors carry the file and line so the user can fix
the exact spot; nothing half-parsed is ever returned.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .wireguard.keys import KeyError_, from_base64, is_low_order

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

QUICK_ONLY = {"address", "dns", "mtu", "table", "preup", "postup", "predown", "postdown", "saveconfig"}
HOOKS = ("preup", "postup", "predown", "postdown")
SEARCH_DIRS = ("/etc/nsroute", "/etc/wireguard")


class ConfigError(ValueError):
    """A problem in a configuration file; str() is `file:line: message`."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass
class PeerConfig:
    public_key: bytes
    preshared_key: bytes | None = None
    allowed_ips: list[IPNetwork] = field(default_factory=list)
    endpoint: tuple[str, int] | None = None
    persistent_keepalive: int = 0
    line: int = 0


@dataclass
class InterfaceConfig:
    private_key: bytes | None = None
    listen_port: int | None = None
    fwmark: int = 0
    addresses: list[IPInterface] = field(default_factory=list)
    dns_servers: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    mtu: int | None = None
    table: str | None = None
    save_config: bool = False
    hooks: dict[str, list[str]] = field(default_factory=lambda: {h: [] for h in HOOKS})


@dataclass
class Config:
    path: str
    interface: InterfaceConfig
    peers: list[PeerConfig]

    @property
    def name(self) -> str:
        """Interface name, from the file's basename as wg-quick does (wg0.conf -> wg0)."""
        return interface_name_for(self.path)


def interface_name_for(path: str) -> str:
    base = os.path.basename(path)
    name = base[:-5] if base.endswith(".conf") else base
    check_ifname(name)
    return name


def check_ifname(name: str) -> None:
    if not name or len(name) > 15 or any(c in name for c in "/: \t\n") or name in (".", ".."):
        raise ValueError(f"'{name}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)")


def parse_endpoint(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port`; the host may be a name, resolved later where it can be."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"endpoint '{text}' is not [address]:port")
        port_s = rest[1:]
        ipaddress.IPv6Address(host.split("%")[0])
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError(f"endpoint '{text}' is not host:port")
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"endpoint '{text}' has no valid port")
    return host, int(port_s)


def format_endpoint(ep: tuple[str, int]) -> str:
    host, port = ep
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_allowed_ip(text: str) -> IPNetwork:
    text = text.strip()
    if "/" not in text:
        addr = ipaddress.ip_address(text)
        text = f"{text}/{addr.max_prefixlen}"
    return ipaddress.ip_network(text, strict=False)


def _key(value: str) -> bytes:
    try:
        return from_base64(value)
    except KeyError_ as e:
        raise ValueError(str(e)) from None


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) < 65536:
        raise ValueError(f"'{value}' is not a port number (0-65535)")
    return int(value)


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(text: str, path: str = "<config>", quick: bool = True) -> Config:
    """Parse a wg-quick file (quick=True) or a `wg setconf` file (quick=False)."""
    p = _Parser(path, quick)
    # Lines end at "\n" only, as for wg(8) and an editor: str.splitlines would also cut at
    # \x1c-\x1e, \x85 and \u2028 and number every later line wrong. A "\r" before the "\n"
    # (a file saved on Windows) goes with the surrounding whitespace.
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            p.header(line, lineno)
        else:
            p.assignment(line, lineno)
    return p.finish()


class _Parser:
    """One pass over the lines: the section in force decides where a key goes."""

    def __init__(self, path: str, quick: bool) -> None:
        self.path, self.quick = path, quick
        self.iface = InterfaceConfig()
        self.peers: list[PeerConfig] = []
        self.section: str | None = None
        self.seen_interface = False
        self.peer_fields: dict | None = None
        self.peer_line = 0

    def close_peer(self) -> None:
        if self.peer_fields is None:
            return
        if "public_key" not in self.peer_fields:
            raise ConfigError(self.path, self.peer_line, "[Peer] section has no PublicKey")
        self.peers.append(PeerConfig(line=self.peer_line, **self.peer_fields))
        self.peer_fields = None

    def header(self, line: str, lineno: int) -> None:
        name = line.strip("[]").strip().lower()
        if not line.endswith("]") or name not in ("interface", "peer"):
            raise ConfigError(self.path, lineno, f"unknown section '{line}'")
        self.close_peer()
        if name == "interface":
            if self.seen_interface:
                raise ConfigError(self.path, lineno, "more than one [Interface] section")
            self.seen_interface = True
        else:
            self.peer_fields, self.peer_line = {}, lineno
        self.section = name

    def assignment(self, line: str, lineno: int) -> None:
        key, sep, value = line.partition("=")
        if not sep:
            # The line is not quoted back: it may be a key pasted without "PrivateKey =".
            raise ConfigError(self.path, lineno, "expected 'Key = Value'")
        key, value = key.strip(), value.strip()
        lk = key.lower()
        if self.section is None:
            raise ConfigError(self.path, lineno, f"'{key}' outside of any section")
        try:
            if self.section == "interface":
                if lk in QUICK_ONLY and not self.quick:
                    raise ValueError(f"'{key}' is a wg-quick key, not valid in a wg setconf file")
                _interface_key(self.iface, lk, key, value)
            else:
                assert self.peer_fields is not None
                _peer_key(self.peer_fields, lk, key, value)
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(self.path, lineno, f"{key}: {e}") from None

    def finish(self) -> Config:
        self.close_peer()
        if self.quick and not self.seen_interface:
            raise ConfigError(self.path, None, "no [Interface] section")
        keys = [p.public_key for p in self.peers]
        for p in self.peers:
            if keys.count(p.public_key) > 1:
                raise ConfigError(self.path, p.line, "the same PublicKey appears in two [Peer] sections")
        return Config(path=self.path, interface=self.iface, peers=self.peers)


def _fwmark(iface: InterfaceConfig, value: str) -> None:
    mark = 0 if value == "off" else int(value, 0)
    if not 0 <= mark <= 0xFFFFFFFF:  # as wg(8): a 32-bit mark
        raise ValueError(f"'{value}' is neither 'off' nor 0-0xffffffff")
    iface.fwmark = mark


def _dns(iface: InterfaceConfig, value: str) -> None:
    for v in _list(value):
        try:
            iface.dns_servers.append(ipaddress.ip_address(v))
        except ValueError:
            iface.dns_search.append(v)


def _mtu(iface: InterfaceConfig, value: str) -> None:
    if not value.isdigit() or not 576 <= int(value) <= 65535:
        raise ValueError(f"'{value}' is not an MTU (576-65535)")
    iface.mtu = int(value)


def _save_config(iface: InterfaceConfig, value: str) -> None:
    if value.lower() not in ("true", "false"):
        raise ValueError("must be true or false")
    iface.save_config = value.lower() == "true"


def _private_key(iface: InterfaceConfig, value: str) -> None:
    iface.private_key = _key(value)


def _listen_port(iface: InterfaceConfig, value: str) -> None:
    iface.listen_port = _port(value)


def _address(iface: InterfaceConfig, value: str) -> None:
    iface.addresses += [ipaddress.ip_interface(v) for v in _list(value)]


def _table(iface: InterfaceConfig, value: str) -> None:
    iface.table = value


_INTERFACE_KEYS = {"privatekey": _private_key, "listenport": _listen_port, "fwmark": _fwmark,
                   "address": _address, "dns": _dns, "mtu": _mtu, "table": _table,
                   "saveconfig": _save_config}


def _interface_key(iface: InterfaceConfig, lk: str, key: str, value: str) -> None:
    if lk in _INTERFACE_KEYS:
        _INTERFACE_KEYS[lk](iface, value)
    elif lk in HOOKS:
        iface.hooks[lk].append(value)
    else:
        raise ValueError(f"unknown key '{key}' in [Interface]")


def _peer_key(fields: dict, lk: str, key: str, value: str) -> None:
    if lk == "publickey":
        key = _key(value)
        if is_low_order(key):
            raise ValueError("public key is of low order and can never complete a handshake")
        fields["public_key"] = key
    elif lk == "presharedkey":
        fields["preshared_key"] = _key(value)
    elif lk == "allowedips":
        fields.setdefault("allowed_ips", []).extend(parse_allowed_ip(v) for v in _list(value))
    elif lk == "endpoint":
        fields["endpoint"] = parse_endpoint(value)
    elif lk == "persistentkeepalive":
        if value == "off":
            fields["persistent_keepalive"] = 0
        elif not value.isdigit() or int(value) > 65535:
            raise ValueError(f"'{value}' is not a number of seconds (0-65535) or 'off'")
        else:
            fields["persistent_keepalive"] = int(value)
    else:
        raise ValueError(f"unknown key '{key}' in [Peer]")


def resolve_path(name: str) -> str:
    """A path as given, or a bare name looked up in /etc/nsroute/ then /etc/wireguard/."""
    if "/" in name or name.endswith(".conf") and os.path.exists(name):
        return name
    for d in SEARCH_DIRS:
        candidate = os.path.join(d, f"{name}.conf")
        if os.path.exists(candidate):
            return candidate
    raise ConfigError(name, None, f"no such config: not a path, and no {name}.conf in {' or '.join(SEARCH_DIRS)}")


def world_accessible_warning(path: str) -> str | None:
    """The warning wg-quick gives for a config others can read."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXO):
        return f"Warning: `{path}' is world accessible"
    return None


def load(name_or_path: str, quick: bool = True) -> Config:
    path = resolve_path(name_or_path) if quick else name_or_path
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, None, f"cannot read: {e}") from None
    return parse(text, path, quick=quick)
