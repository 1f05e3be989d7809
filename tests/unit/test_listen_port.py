"""host/listenport.py: a restarted tunnel asks for the UDP port it had, unless the config
names one (that one always wins) or the old one is taken now (a random one, one warning)."""

from __future__ import annotations

import errno
import json
import socket

import pytest

from nsroute import config as wgconfig
from nsroute.host import listenport, tunnelsteps
from nsroute.host.state import Proc, State, Store, state_key
from nsroute.host.steps import Ctx
from nsroute.wireguard import keys

PRIV = keys.generate_private()
PEER = keys.public_key(keys.generate_private())


def _cfg(listen_port: str = "") -> wgconfig.Config:
    text = (f"[Interface]\nPrivateKey = {keys.to_base64(PRIV)}\nAddress = 10.99.0.2/32\n{listen_port}"
            f"\n[Peer]\nPublicKey = {keys.to_base64(PEER)}\nAllowedIPs = 0.0.0.0/0\n"
            "Endpoint = 172.16.70.2:51820\n")
    return wgconfig.parse(text, "wg0.conf")


def _state(**kw) -> State:
    return State(mode="host", physical="phys", config_path="/x/wg0.conf", ifname="wg0", **kw)


def _never(port: int) -> bool:
    raise AssertionError("probed a port it had no need to")


# --------------------------------------------------------------- the rule


def test_the_config_port_wins_even_when_busy():
    assert listenport.choose(51000, 40000, lambda p: False) == listenport.Choice(51000)
    assert listenport.choose(51000, 0, _never) == listenport.Choice(51000)


def test_the_recorded_port_is_asked_for_again():
    asked = []
    choice = listenport.choose(None, 40000, lambda p: asked.append(p) or True)
    assert choice == listenport.Choice(40000) and asked == [40000]


def test_a_busy_recorded_port_falls_back_to_any_with_a_warning():
    choice = listenport.choose(None, 40000, lambda p: False)
    assert choice.port is None
    assert "40000" in choice.warning and "random" in choice.warning and "\n" not in choice.warning


def test_nothing_recorded_is_any_port():
    assert listenport.choose(None, 0, _never) == listenport.Choice(None)


def test_an_old_state_file_has_no_port_and_asks_for_none():
    raw = json.loads(_state(listen_port=40000).to_json())
    del raw["listen_port"]
    back = State.from_json(json.dumps(raw))
    assert back.listen_port == 0
    assert listenport.to_ask(_cfg(), back, None) is None


def test_the_recorded_port_survives_the_state_file(tmp_path):
    store = Store(state_key("phys"), tmp_path)
    store.save(_state(listen_port=40000))
    assert store.load().listen_port == 40000


# --------------------------------------------------- the probe (our own namespace)


def _taken(family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    return s


def test_probe_sees_a_port_in_use_and_a_free_one():
    with _taken() as s:
        port = s.getsockname()[1]
        assert not listenport.is_free(None, port)
    assert listenport.is_free(None, port)


def test_probe_sees_a_port_taken_on_ipv6_only():
    try:
        s = _taken(socket.AF_INET6)
    except OSError as e:
        if e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            pytest.skip("no IPv6 here")
        raise
    with s:
        assert not listenport.is_free(None, s.getsockname()[1])


def test_a_busy_recorded_port_is_one_warning_line(capsys):
    with _taken() as s:
        port = s.getsockname()[1]
        assert listenport.to_ask(_cfg(), _state(listen_port=port), None) is None
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("[#] warning: ") and str(port) in err[0]
        # the config's port is never given up, busy or not, and nothing is said
        assert listenport.to_ask(_cfg(f"ListenPort = {port}\n"), _state(listen_port=1), None) == port
        assert capsys.readouterr().err == ""


# ----------------------------------------------------- what the steps hand on


def _ctx(tmp_path, st: State, cfg: wgconfig.Config) -> Ctx:
    return Ctx(st, Store(state_key("phys"), tmp_path), cfg)


def test_the_restarted_engine_gets_the_recorded_port_in_its_setconf(tmp_path, monkeypatch):
    monkeypatch.setattr(tunnelsteps.tunnel, "start_engine", lambda *a, **k: Proc(pid=99, start_time=1))
    monkeypatch.setattr(listenport, "is_free", lambda ns, port: ns == "phys")
    ctx = _ctx(tmp_path, _state(listen_port=40000), _cfg())
    tunnelsteps._start_engine(ctx)
    setconf = wgconfig.load(ctx.st.engine_config, quick=False)
    assert setconf.interface.listen_port == 40000
    assert setconf.peers[0].endpoint == ("172.16.70.2", 51820)


def test_the_recreated_kernel_link_gets_the_recorded_port(tmp_path, monkeypatch):
    specs = []
    monkeypatch.setattr(tunnelsteps.kernel, "link", lambda ns, name: None)
    monkeypatch.setattr(tunnelsteps.kernelwg, "create", lambda *a: None)
    monkeypatch.setattr(tunnelsteps.kernelwg, "configure", lambda name, ns, spec: specs.append(spec))
    monkeypatch.setattr(listenport, "is_free", lambda ns, port: ns == "phys")
    tunnelsteps._create_kernel(_ctx(tmp_path, _state(backend="kernel", listen_port=40000), _cfg()))
    assert specs[0]["listen_port"] == 40000


def test_the_port_read_back_once_up_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(tunnelsteps.tunnel, "configure", lambda *a: None)
    monkeypatch.setattr(tunnelsteps.hotplug, "nudge", lambda guard: None)
    monkeypatch.setattr(listenport.kernelwg, "device", lambda name, ns: {"listen_port": 41000, "peers": []})
    ctx = _ctx(tmp_path, _state(backend="kernel", listen_port=40000), _cfg())
    tunnelsteps._configure(ctx)
    assert ctx.st.listen_port == 41000
    # a tunnel that does not answer keeps what was recorded
    monkeypatch.setattr(listenport.kernelwg, "device", lambda name, ns: None)
    tunnelsteps._configure(ctx)
    assert ctx.st.listen_port == 41000
