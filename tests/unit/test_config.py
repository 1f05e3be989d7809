"""wg-quick and `wg setconf` files (nsroute/config.py): what is parsed, and errors as file:line."""

from __future__ import annotations

import ipaddress
import os

import pytest

from nsroute import config
from nsroute.config import ConfigError
from nsroute.wireguard import keys

PRIV = keys.clamp(bytes(range(1, 33)))
PUB1 = keys.public_key(keys.clamp(bytes([21]) * 32))
PUB2 = keys.public_key(keys.clamp(bytes([22]) * 32))
PSK = bytes(range(64, 96))
B = keys.to_base64

QUICK = f"""\
# a comment line
[Interface]
PrivateKey = {B(PRIV)}
Address = 10.0.0.2/24, fd00::2/64
Address = 10.0.1.2
DNS = 10.0.0.1, fd00::1, corp.example
ListenPort = 51820
MTU = 1380
Table = off
FwMark = 0x1234
PreUp = echo pre-up
PostUp = echo one
PostUp = echo two   # trailing comment
PreDown = echo pre-down
PostDown = echo post-down
SaveConfig = false

[Peer]
PublicKey = {B(PUB1)}
PresharedKey = {B(PSK)}
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = vpn.example.com:51820
PersistentKeepalive = 25

[peer]
publickey = {B(PUB2)}
allowedips = 192.168.7.1, fd07::/48
allowedips = 10.7.0.0/16
endpoint = [2001:db8::7]:443
persistentkeepalive = off
"""


def test_wg_quick_file():
    cfg = config.parse(QUICK, "/etc/wireguard/wg0.conf")
    i = cfg.interface
    assert cfg.name == "wg0"
    assert i.private_key == PRIV
    assert i.addresses == [ipaddress.ip_interface("10.0.0.2/24"), ipaddress.ip_interface("fd00::2/64"),
                           ipaddress.ip_interface("10.0.1.2/32")]
    assert i.dns_servers == [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("fd00::1")]
    assert i.dns_search == ["corp.example"]
    assert i.listen_port == 51820
    assert i.mtu == 1380
    assert i.table == "off"
    assert i.fwmark == 0x1234
    assert i.hooks == {"preup": ["echo pre-up"], "postup": ["echo one", "echo two"],
                       "predown": ["echo pre-down"], "postdown": ["echo post-down"]}
    assert i.save_config is False
    p1, p2 = cfg.peers
    assert (p1.public_key, p1.preshared_key) == (PUB1, PSK)
    assert list(map(str, p1.allowed_ips)) == ["0.0.0.0/0", "::/0"]
    assert p1.endpoint == ("vpn.example.com", 51820)
    assert p1.persistent_keepalive == 25
    assert p1.line == 18
    assert (p2.public_key, p2.preshared_key) == (PUB2, None)
    assert list(map(str, p2.allowed_ips)) == ["192.168.7.1/32", "fd07::/48", "10.7.0.0/16"]
    assert p2.endpoint == ("2001:db8::7", 443)
    assert p2.persistent_keepalive == 0
    assert p2.line == 25


SETCONF = f"""\
[Interface]
PrivateKey = {B(PRIV)}
ListenPort = 41000
FwMark = off

[Peer]
PublicKey = {B(PUB1)}
AllowedIPs = 10.0.0.0/8
"""


def test_setconf_file():
    cfg = config.parse(SETCONF, "wg1.conf", quick=False)
    assert cfg.interface.private_key == PRIV
    assert cfg.interface.listen_port == 41000
    assert cfg.interface.fwmark == 0
    assert [p.public_key for p in cfg.peers] == [PUB1]


def test_setconf_needs_no_interface_section_but_wg_quick_does():
    peers_only = f"[Peer]\nPublicKey = {B(PUB1)}\n"
    assert config.parse(peers_only, "x.conf", quick=False).peers[0].public_key == PUB1
    with pytest.raises(ConfigError) as ei:
        config.parse(peers_only, "x.conf", quick=True)
    assert ei.value.line is None and str(ei.value) == "x.conf: no [Interface] section"


def test_empty_and_comment_only_lines():
    text = "\n\n   # nothing\n[Interface]\n\t\nPrivateKey = " + B(PRIV) + "  # key\n"
    assert config.parse(text, "c.conf").interface.private_key == PRIV


def where(text: str, quick: bool = True, path: str = "/etc/wireguard/wg0.conf") -> tuple:
    with pytest.raises(ConfigError) as ei:
        config.parse(text, path, quick=quick)
    e = ei.value
    assert e.path == path
    assert str(e).startswith(f"{path}:{e.line}: " if e.line else f"{path}: ")
    return e.line, e.message


def peer_text(*lines: str) -> str:
    return "\n".join(["[Interface]", f"PrivateKey = {B(PRIV)}", "", "[Peer]", *lines]) + "\n"


def test_unknown_key_names_file_and_line():
    line, msg = where(f"[Interface]\nPrivateKey = {B(PRIV)}\nPrivatKey = x\n")
    assert line == 3 and "PrivatKey" in msg
    line, msg = where(peer_text(f"PublicKey = {B(PUB1)}", "AllowedIP = 10.0.0.0/8"))
    assert line == 6 and "AllowedIP" in msg


@pytest.mark.parametrize("value", ["abc", B(PRIV)[:-1], B(PRIV)[:-2] + "==", B(bytes(31)), B(bytes(33)), ""])
def test_bad_key_names_the_line(value):
    line, msg = where(f"[Interface]\n\nPrivateKey = {value}\n")
    assert line == 3 and msg.startswith("PrivateKey:")
    line, _ = where(peer_text(f"PublicKey = {value}"))
    assert line == 5
    line, _ = where(peer_text(f"PublicKey = {B(PUB1)}", f"PresharedKey = {value}"))
    assert line == 6


@pytest.mark.parametrize("value", [
    "192.0.2.1", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:port", ":51820",
    "2001:db8::1:51820", "[2001:db8::1]", "[2001:db8::1]51820", "[2001:db8::1:51820", "[nothex]:1",
    "",
])
def test_bad_endpoint_names_the_line(value):
    line, msg = where(peer_text(f"PublicKey = {B(PUB1)}", f"Endpoint = {value}"))
    assert line == 6 and msg.startswith("Endpoint:")


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.0.0.256/32", "fd00::/129", "not-an-ip", "10.0.0.0/8/8",
                                   "10.0.0.0/8, bogus"])
def test_bad_allowed_ips_names_the_line(value):
    line, msg = where(peer_text(f"PublicKey = {B(PUB1)}", f"AllowedIPs = {value}"))
    assert line == 6 and msg.startswith("AllowedIPs:")


def test_missing_public_key_names_the_peer_section():
    text = peer_text("AllowedIPs = 10.0.0.0/8", "Endpoint = 192.0.2.1:1") + f"[Peer]\nPublicKey = {B(PUB2)}\n"
    line, msg = where(text)
    assert line == 4 and "PublicKey" in msg
    line, _ = where(f"[Interface]\nPrivateKey = {B(PRIV)}\n[Peer]\n")
    assert line == 3                                    # an empty [Peer] at the end too


def test_duplicate_peer_names_a_peer_section():
    text = peer_text(f"PublicKey = {B(PUB1)}", "", "[Peer]", f"PublicKey = {B(PUB2)}",
                     "", "[Peer]", f"PublicKey = {B(PUB1)}")
    line, msg = where(text)
    assert line in (4, 10)                              # the first or the repeated one
    assert "PublicKey" in msg


@pytest.mark.parametrize("key, value", [
    ("Address", "10.0.0.2/24"), ("DNS", "10.0.0.1"), ("MTU", "1420"), ("Table", "off"),
    ("PreUp", "true"), ("PostUp", "true"), ("PreDown", "true"), ("PostDown", "true"),
    ("SaveConfig", "false"),
])
def test_wg_quick_key_in_setconf_file(key, value):
    line, msg = where(f"[Interface]\nPrivateKey = {B(PRIV)}\n{key} = {value}\n", quick=False)
    assert line == 3 and key in msg and "wg-quick" in msg


@pytest.mark.parametrize("text, line", [
    ("PrivateKey = x\n", 1),                                  # outside any section
    ("[Interface]\n[Interface]\n", 2),                        # twice
    ("[Interface]\n[Peers]\n", 2),                            # unknown section
    ("[Interface\n", 1),
    ("[Interface]\nPrivateKey\n", 2),                         # no '='
    ("[Interface]\nListenPort = 65536\n", 2),
    ("[Interface]\nListenPort = -1\n", 2),
    ("[Interface]\nListenPort = \u00b2\n", 2),
    ("[Interface]\nMTU = 100\n", 2),
    ("[Interface]\nMTU = big\n", 2),
    ("[Interface]\nSaveConfig = yes\n", 2),
    ("[Interface]\nAddress = 10.0.0.300/24\n", 2),
    ("[Interface]\nFwMark = mark\n", 2),
    ("[Interface]\nFwMark = -1\n", 2),
    ("[Interface]\nFwMark = 0x100000000\n", 2),
    (f"[Peer]\nPublicKey = {B(PUB1)}\nPersistentKeepalive = 65536\n", 3),
    (f"[Peer]\nPublicKey = {B(PUB1)}\nPersistentKeepalive = -1\n", 3),
    (f"[Peer]\nPublicKey = {B(PUB1)}\nPersistentKeepalive = soon\n", 3),
])
def test_other_errors_name_the_line(text, line):
    assert where(text, quick=False)[0] == line


@pytest.mark.parametrize("sep", ["\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x0b", "\x0c"])
def test_only_newline_ends_a_line(sep):
    """An editor and wg(8) count lines by "\n" alone; so does the error's line number."""
    text = f"[Interface]\n# a comment{sep}with a separator\nListenPort = 1\nMTU = big\n"
    assert where(text, quick=False)[0] == 4


def test_windows_line_endings():
    text = f"[Interface]\r\nListenPort = 51820\r\n\r\n[Peer]\r\nPublicKey = {B(PUB1)}\r\nMTU = 1\r\n"
    assert where(text, quick=True)[0] == 6
    cfg = config.parse(f"[Interface]\r\nListenPort = 51820\r\n[Peer]\r\nPublicKey = {B(PUB1)}\r\n")
    assert cfg.interface.listen_port == 51820 and len(cfg.peers) == 1


def test_load_from_file_and_missing_file(tmp_path):
    p = tmp_path / "wg7.conf"
    p.write_text(QUICK)
    cfg = config.load(str(p))
    assert cfg.path == str(p) and cfg.name == "wg7"
    with pytest.raises(ConfigError) as ei:
        config.load(str(tmp_path / "nope.conf"))
    assert ei.value.line is None and "no such file" in str(ei.value)
    bad = tmp_path / "bad.conf"
    bad.write_text("[Interface]\nPrivateKey = " + B(PRIV) + "\nListenPort = x\n")
    with pytest.raises(ConfigError) as ei:
        config.load(str(bad), quick=False)
    assert str(ei.value).startswith(f"{bad}:3: ")
    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"\xff\xfe\x00[Interface]")
    with pytest.raises(ConfigError) as ei:
        config.load(str(binary))
    assert ei.value.path == str(binary)


def test_bare_name_is_looked_up_in_the_search_dirs(tmp_path, monkeypatch):
    first, second = tmp_path / "nsroute", tmp_path / "wireguard"
    first.mkdir()
    second.mkdir()
    (second / "home.conf").write_text(QUICK)
    monkeypatch.setattr(config, "SEARCH_DIRS", (str(first), str(second)))
    assert config.resolve_path("home") == str(second / "home.conf")
    (first / "home.conf").write_text(QUICK)
    assert config.resolve_path("home") == str(first / "home.conf")
    assert config.load("home").name == "home"
    with pytest.raises(ConfigError):
        config.resolve_path("absent")
    assert config.resolve_path("./relative/x.conf") == "./relative/x.conf"


def test_interface_names():
    assert config.interface_name_for("/etc/wireguard/wg0.conf") == "wg0"
    assert config.interface_name_for("home-vpn.conf") == "home-vpn"
    assert config.interface_name_for("a" * 15 + ".conf") == "a" * 15
    for bad in ("a" * 16 + ".conf", ".conf", "/x/wg:0.conf", "we ird.conf"):
        with pytest.raises(ValueError):
            config.interface_name_for(bad)


def test_endpoint_helpers():
    assert config.parse_endpoint("192.0.2.1:51820") == ("192.0.2.1", 51820)
    assert config.parse_endpoint(" host.example:1 ") == ("host.example", 1)
    assert config.parse_endpoint("[fe80::1%eth0]:65535") == ("fe80::1%eth0", 65535)
    assert config.format_endpoint(("192.0.2.1", 51820)) == "192.0.2.1:51820"
    assert config.format_endpoint(("2001:db8::1", 443)) == "[2001:db8::1]:443"
    assert config.parse_allowed_ip("10.1.2.3") == ipaddress.ip_network("10.1.2.3/32")
    assert config.parse_allowed_ip("fd00::1") == ipaddress.ip_network("fd00::1/128")
    assert config.parse_allowed_ip("10.1.2.3/8") == ipaddress.ip_network("10.0.0.0/8")


def test_world_accessible_warning(tmp_path):
    p = tmp_path / "wg0.conf"
    p.write_text(QUICK)
    os.chmod(p, 0o600)
    assert config.world_accessible_warning(str(p)) is None
    os.chmod(p, 0o644)
    assert config.world_accessible_warning(str(p)) == f"Warning: `{p}' is world accessible"
    assert config.world_accessible_warning(str(tmp_path / "missing")) is None
