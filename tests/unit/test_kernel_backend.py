"""The kernel backend's pure parts: the choice in `auto`, the netlink device from a Config,
reading the kernel's answer back, and how `status` shows a kernel tunnel."""

from __future__ import annotations

import base64
import json

import pytest

from nsroute import config as wgconfig
from nsroute.host import kernelwg, status
from nsroute.host.errors import HostError
from nsroute.host.state import State
from nsroute.wireguard import keys


def _b64(k: bytes) -> str:
    return base64.b64encode(k).decode()


PRIV, PEER1, PEER2, PSK = (keys.generate_private() for _ in range(4))
PUB1, PUB2 = keys.public_key(PEER1), keys.public_key(PEER2)

CONF = f"""
[Interface]
PrivateKey = {_b64(PRIV)}
ListenPort = 51000
FwMark = 0x1234
Address = 10.99.0.2/32, fd99::2/128
MTU = 1380

[Peer]
PublicKey = {_b64(PUB1)}
PresharedKey = {_b64(PSK)}
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = vpn.example.test:51820
PersistentKeepalive = 25

[Peer]
PublicKey = {_b64(PUB2)}
AllowedIPs = 10.50.0.0/16
"""


@pytest.fixture
def cfg():
    return wgconfig.parse(CONF, path="/etc/wireguard/wg0.conf")


# ------------------------------------------------------------------ the choice


def test_auto_picks_kernel_when_the_module_is_there():
    assert kernelwg.choose("auto", available=lambda: True) == "kernel"


def test_auto_falls_back_to_userspace_without_the_module():
    assert kernelwg.choose("auto", available=lambda: False) == "userspace"


def test_userspace_never_probes_the_kernel():
    def boom():
        raise AssertionError("probed")
    assert kernelwg.choose("userspace", available=boom) == "userspace"


def test_kernel_requested_without_module_is_one_clear_line():
    with pytest.raises(HostError) as e:
        kernelwg.choose("kernel", available=lambda: False)
    msg = str(e.value)
    assert "\n" not in msg and "wireguard module" in msg and "nothing changed" in msg


def test_kernel_requested_with_module():
    assert kernelwg.choose("kernel", available=lambda: True) == "kernel"


def test_unknown_backend():
    with pytest.raises(HostError, match="unknown backend"):
        kernelwg.choose("ebpf", available=lambda: True)


def test_module_available_reads_sys_module(tmp_path, monkeypatch):
    (tmp_path / "wireguard").mkdir()
    monkeypatch.setattr(kernelwg.subprocess, "run", lambda *a, **k: pytest.fail("modprobe ran"))
    assert kernelwg.module_available(tmp_path)


def test_module_absent_and_modprobe_cannot_load_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(kernelwg.shutil, "which", lambda name: "/sbin/modprobe")
    monkeypatch.setattr(kernelwg.subprocess, "run", lambda argv, **k: calls.append(argv))
    assert not kernelwg.module_available(tmp_path)
    assert calls == [["modprobe", "-q", "wireguard"]]


def test_module_loaded_by_modprobe(tmp_path, monkeypatch):
    monkeypatch.setattr(kernelwg.shutil, "which", lambda name: "/sbin/modprobe")
    monkeypatch.setattr(kernelwg.subprocess, "run", lambda argv, **k: (tmp_path / "wireguard").mkdir())
    assert kernelwg.module_available(tmp_path)


def test_no_modprobe_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(kernelwg.shutil, "which", lambda name: None)
    assert not kernelwg.module_available(tmp_path)


# --------------------------------------------------------- the netlink config


def test_device_spec_from_config(cfg):
    spec = kernelwg.device_spec(cfg, {PUB1: ("172.16.70.2", 51820)})
    assert spec["private_key"] == _b64(PRIV)
    assert spec["listen_port"] == 51000 and spec["fwmark"] == 0x1234
    p1, p2 = spec["peers"]
    assert p1 == {"public_key": _b64(PUB1), "preshared_key": _b64(PSK), "replace_allowed_ips": True,
                  "allowed_ips": ["0.0.0.0/0", "::/0"], "persistent_keepalive": 25,
                  "endpoint_addr": "172.16.70.2", "endpoint_port": 51820}
    # no endpoint, no PSK: nothing sent for them; keepalive 0 switches it off
    assert p2 == {"public_key": _b64(PUB2), "replace_allowed_ips": True, "allowed_ips": ["10.50.0.0/16"],
                  "persistent_keepalive": 0}


def test_device_spec_without_listen_port_lets_the_kernel_pick(cfg):
    cfg.interface.listen_port = None
    cfg.interface.fwmark = 0
    spec = kernelwg.device_spec(cfg, {})
    assert spec["listen_port"] is None and spec["fwmark"] == 0
    assert "endpoint_addr" not in spec["peers"][0]


def test_device_spec_needs_a_private_key(cfg):
    cfg.interface.private_key = None
    with pytest.raises(HostError, match="PrivateKey"):
        kernelwg.device_spec(cfg, {})


def test_endpoints_resolved_where_the_socket_lives(cfg, monkeypatch):
    seen = []

    def resolve(host, port, ns):
        seen.append((host, port, ns))
        return "fd70::2"
    monkeypatch.setattr(kernelwg.tunnel, "resolve", resolve)
    assert kernelwg.resolve_endpoints(cfg, "physical") == {PUB1: ("fd70::2", 51820)}
    assert seen == [("vpn.example.test", 51820, "physical")]
    monkeypatch.setattr(kernelwg.tunnel, "resolve_local", lambda host, port: "fe80::1%eth0")
    assert kernelwg.resolve_endpoints(cfg, None, local=True) == {PUB1: ("fe80::1", 51820)}


def _encode(spec: dict) -> list:
    """The netlink message pyroute2 builds for each set() call, decoded back to attributes."""
    from pyroute2.netlink.generic.wireguard import AsyncWireGuard, wgmsg

    out = []
    fake = AsyncWireGuard.__new__(AsyncWireGuard)
    for peer in spec["peers"]:
        msg = wgmsg()
        msg["attrs"].append(["WGDEVICE_A_IFNAME", "wg0"])
        AsyncWireGuard._wg_set_peer(fake, msg, peer)
        msg["cmd"], msg["version"] = 1, 1
        msg.encode()
        back = wgmsg(msg.data)
        back.decode()
        out.append(back)
    return out


def test_spec_encodes_as_pyroute2_netlink(cfg):
    spec = kernelwg.device_spec(cfg, {PUB1: ("fd70::2", 51820)})
    first, second = _encode(spec)
    (p1,) = first.get_attr("WGDEVICE_A_PEERS")
    assert base64.b64decode(p1.get_attr("WGPEER_A_PUBLIC_KEY")) == PUB1
    assert base64.b64decode(p1.get_attr("WGPEER_A_PRESHARED_KEY")) == PSK
    ep = p1.get_attr("WGPEER_A_ENDPOINT")
    assert (ep["addr"], ep["port"]) == ("fd70::2", 51820)
    assert p1.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") == 25
    assert p1.get_attr("WGPEER_A_FLAGS") == 0x2  # WGPEER_F_REPLACE_ALLOWEDIPS
    assert [a["addr"] for a in p1.get_attr("WGPEER_A_ALLOWEDIPS")] == ["0.0.0.0/0", "::/0"]
    (p2,) = second.get_attr("WGDEVICE_A_PEERS")
    assert p2.get_attr("WGPEER_A_ENDPOINT") is None and p2.get_attr("WGPEER_A_PRESHARED_KEY") is None


# ---------------------------------------------------------------- reading back


def _kernel_answer(now: int) -> list:
    """A WG_CMD_GET_DEVICE reply as pyroute2 decodes it from the wire."""
    from pyroute2.netlink.generic.wireguard import wgmsg

    msg = wgmsg()
    msg["cmd"], msg["version"] = 0, 1
    msg["attrs"] = [
        ["WGDEVICE_A_LISTEN_PORT", 51000],
        ["WGDEVICE_A_FWMARK", 0],
        ["WGDEVICE_A_IFNAME", "wg0"],
        ["WGDEVICE_A_PEERS", [{"attrs": [
            ["WGPEER_A_PUBLIC_KEY", _b64(PUB1)],
            ["WGPEER_A_ENDPOINT", {"addr": "172.16.70.2", "port": 51820}],
            ["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", 25],
            ["WGPEER_A_LAST_HANDSHAKE_TIME", {"tv_sec": now - 3, "tv_nsec": 500_000_000}],
            ["WGPEER_A_RX_BYTES", 1234],
            ["WGPEER_A_TX_BYTES", 5678],
            ["WGPEER_A_ALLOWEDIPS", [
                {"attrs": [["WGALLOWEDIP_A_FAMILY", 2], ["WGALLOWEDIP_A_IPADDR", bytes(4)],
                           ["WGALLOWEDIP_A_CIDR_MASK", 0]]},
                {"attrs": [["WGALLOWEDIP_A_FAMILY", 10], ["WGALLOWEDIP_A_IPADDR", bytes(16)],
                           ["WGALLOWEDIP_A_CIDR_MASK", 0]]}]],
        ]}, {"attrs": [["WGPEER_A_PUBLIC_KEY", _b64(PUB2)]]}]],
    ]
    msg.encode()
    back = wgmsg(msg.data)
    back.decode()
    return [back]


def test_parse_device_has_the_uapi_shape():
    dev = kernelwg.parse_device(_kernel_answer(now=10_000))
    assert dev["listen_port"] == 51000
    p1, p2 = dev["peers"]
    assert p1["public_key"] == PUB1
    assert p1["endpoint"] == "172.16.70.2:51820"
    assert p1["allowed_ips"] == ["0.0.0.0/0", "::/0"]
    assert p1["last_handshake_time"] == pytest.approx(9_997.5)
    assert (p1["rx_bytes"], p1["tx_bytes"], p1["persistent_keepalive_interval"]) == (1234, 5678, 25)
    assert p2["public_key"] == PUB2 and p2["endpoint"] is None and p2["last_handshake_time"] == 0


def test_status_of_a_kernel_tunnel(monkeypatch):
    st = State(mode="host", physical="physical", config_path="/etc/wireguard/wg0.conf", ifname="wg0",
               backend="kernel", kernel_link="moved", complete=True)
    monkeypatch.setattr(status, "_addrs", lambda ns, dev: ("UNKNOWN", ["10.99.0.2/32"]))
    monkeypatch.setattr(status.netns, "exists", lambda ns: True)
    monkeypatch.setattr(status, "_uapi", lambda name: pytest.fail("asked a UAPI socket"))
    monkeypatch.setattr(status.kernelwg, "device", lambda name, ns: kernelwg.parse_device(_kernel_answer(10_000)))
    monkeypatch.setattr(status, "_default_routes", lambda ns: ["default dev eth0"])
    monkeypatch.setattr(status, "_protected_links", lambda ns, tunnel: [])
    info = status.gather(st, now=10_000)
    assert info["state"] == "up" and info["backend"] == "kernel"
    assert info["engine"] == {"pid": None, "running": True, "answering": True}
    assert info["tunnel"]["listen_port"] == 51000
    assert info["peers"][0]["latest_handshake_ago"] == pytest.approx(2.5, abs=0.1)
    text = status.render(info)
    assert "engine:    kernel WireGuard\n" in text and "latest handshake:    2 seconds ago" in text
    json.loads(status.to_json(info))

    monkeypatch.setattr(status, "_addrs", lambda ns, dev: ("missing", []))
    info = status.gather(st, now=10_000)
    assert info["state"] == "broken" and not info["engine"]["running"]
    assert "BROKEN: the WireGuard link is gone" in status.render(info)


def test_old_state_files_mean_userspace():
    st = State(mode="host", physical="p", config_path="/x/wg0.conf", ifname="wg0")
    raw = json.loads(st.to_json())
    del raw["backend"], raw["kernel_link"], raw["listen_port"]
    back = State.from_json(json.dumps(raw))
    assert back.backend == "userspace" and back.kernel_link == "" and back.listen_port == 0
