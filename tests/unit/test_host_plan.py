"""Pure parts of host mode: state files, snapshot replay plans, resolv.conf, DHCP hook, tunnel."""

from __future__ import annotations

import ipaddress

import pytest

from nsroute import config as wgconfig
from nsroute.host import dhcp, dns, interfaces, records, simhost, status, tunnel, wifi
from nsroute.host.state import Proc, State, Store, state_key
from nsroute.wireguard import keys

FOREVER = interfaces.FOREVER

# a snapshot as the previous version stored it (`ip -j` JSON); read as records (upgrade_snapshot)
OLD_SNAP = {
    "name": "eth1", "mtu": 1500, "up": True, "time": 1000.0,
    "addresses": [
        {"family": "inet", "local": "192.168.60.120", "prefixlen": 24, "broadcast": "192.168.60.255",
         "scope": "global", "dynamic": True, "label": "eth1", "valid_life_time": 100, "preferred_life_time": 100},
        {"family": "inet6", "local": "fd60::2", "prefixlen": 64, "scope": "global", "nodad": True,
         "valid_life_time": FOREVER, "preferred_life_time": FOREVER},
        {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link",
         "valid_life_time": FOREVER, "preferred_life_time": FOREVER},
        {"family": "inet6", "local": "2001:db8::99", "prefixlen": 64, "scope": "global", "temporary": True,
         "valid_life_time": 500, "preferred_life_time": 400},
    ],
    "routes": {
        "4": [
            {"dst": "default", "gateway": "192.168.60.1", "protocol": "dhcp", "metric": 200, "flags": [],
             "metrics": [{"mtu": 1400}]},
            {"dst": "192.168.60.0/24", "protocol": "kernel", "scope": "link", "prefsrc": "192.168.60.120", "flags": []},
            {"type": "local", "dst": "192.168.60.120", "table": "local", "protocol": "kernel", "flags": []},
            {"dst": "10.1.0.0/16", "gateway": "192.168.60.254", "table": "100", "flags": ["onlink"]},
        ],
        "6": [
            {"dst": "default", "gateway": "fe80::1", "protocol": "ra", "metric": 1024, "flags": []},
            {"dst": "fd61::/64", "gateway": "fd60::1", "metric": 100, "flags": [], "pref": "high"},
        ],
    },
    "sysctls": {"ipv6/accept_ra": "2"},
}
SNAP = records.upgrade_snapshot(OLD_SNAP)


def test_state_round_trip(tmp_path):
    st = State(mode="host", physical="physical", config_path="/etc/wireguard/wg0.conf", ifname="wg0",
               interfaces=[SNAP], engine=Proc(pid=42, start_time=7, what="engine"),
               dhcp=[Proc(pid=43, start_time=8, what="dhcp eth1")], resolv_saved="nameserver 1.1.1.1\n")
    store = Store(state_key("physical"), tmp_path)
    store.mark(st, "prepare")
    back = store.load()
    assert back == st and back.done("prepare") and isinstance(back.engine, Proc)
    assert (tmp_path / "host-physical.json").stat().st_mode & 0o777 == 0o600
    store.remove_all()
    assert not store.exists()


def test_state_rejects_other_versions(tmp_path):
    (tmp_path / "x.json").write_text('{"version": 99}')
    with pytest.raises(ValueError):
        Store("x", tmp_path).load()


def test_state_keys_are_file_names():
    assert state_key("physical") == "host-physical"
    assert state_key("", "/proc/42/ns/net", "wg0") == "into-proc_42_ns_net-wg0"


def test_addresses_replayed_with_reduced_lease_lifetimes_skipping_kernel_made():
    a4, a6, ll, tmp = SNAP["addresses"]
    assert interfaces.replayed_address(a4, elapsed=30) == {
        "family": 4, "cidr": "192.168.60.120/24", "peer": None, "broadcast": "192.168.60.255", "scope": 0,
        "label": "eth1", "valid": 70, "preferred": 70, "flags": []}
    assert interfaces.replayed_address(a4, elapsed=100) is None  # the lease ran out
    assert interfaces.replayed_address(a6) == {
        "family": 6, "cidr": "fd60::2/64", "peer": None, "broadcast": None, "scope": 0, "label": None,
        "valid": FOREVER, "preferred": FOREVER, "flags": ["nodad"]}
    assert interfaces.replayed_address(ll) is None
    assert interfaces.replayed_address(tmp) is None


def test_routes_replayed_keep_gateway_metric_table_and_metrics():
    r4 = [r for r in SNAP["routes"] if r["family"] == 4]
    r6 = [r for r in SNAP["routes"] if r["family"] == 6]
    default = interfaces.replayed_route(r4[0])
    assert (default["dst"], default["gateway"], default["proto"], default["metric"], default["metrics"]) == (
        "0.0.0.0/0", "192.168.60.1", records.PROTO_DHCP, 200, {"mtu": 1400})
    assert interfaces.replayed_route(r4[1]) is None  # the kernel's subnet route
    assert interfaces.replayed_route(r4[2]) is None  # table local
    onlink = interfaces.replayed_route(r4[3])
    assert (onlink["dst"], onlink["gateway"], onlink["table"], onlink["onlink"]) == (
        "10.1.0.0/16", "192.168.60.254", 100, True)
    assert interfaces.replayed_route(r6[0]) is None  # comes back with the next RA
    pref = interfaces.replayed_route(r6[1])
    assert (pref["dst"], pref["gateway"], pref["metric"], pref["pref"]) == ("fd61::/64", "fd60::1", 100, 1)


def test_restore_plan_orders_link_addresses_routes():
    plan = interfaces.restore_plan(SNAP, now=1010.0)
    assert plan[0] == ("link", {"mtu": 1500})
    assert plan[1] == ("link", {"up": True})
    assert [kind for kind, _ in plan[2:]] == ["address", "address", "route", "route", "route"]
    assert plan[2][1]["valid"] == 90  # 100 s lease, 10 s later


def test_static_part_of_a_dhcp_uplink_is_what_a_renewal_does_not_bring_back():
    """A link down and up: the lease's address stays and its routes come from the renewal;
    the IPv6 address and the static routes must be added again by hand."""
    plan = interfaces.restore_plan(interfaces.static_part(SNAP), now=1010.0)
    addrs = [item["cidr"] for kind, item in plan if kind == "address"]
    routes = [(item["family"], item["dst"]) for kind, item in plan if kind == "route"]
    assert addrs == ["fd60::2/64"]
    assert routes == [(4, "10.1.0.0/16"), (6, "fd61::/64")]
    assert interfaces.static_part(SNAP)["name"] == "eth1" and SNAP["addresses"][0]["family"] == 4
    slaac = {**SNAP["addresses"][1], "cidr": "2001:db8::5/64", "valid": 86400, "preferred": 14400}
    assert interfaces.static_part({**SNAP, "addresses": [slaac]})["addresses"] == []  # the next RA's


def test_merge_leases_prefers_renewed_lifetime():
    fresh = [{"family": 4, "cidr": "192.168.60.120/24", "valid": 118, "preferred": 118}]
    merged = interfaces.merge_leases(SNAP, fresh, now=1050.0)
    assert merged[0]["valid"] == 118
    merged = interfaces.merge_leases(SNAP, None, now=1050.0)
    assert merged[0]["valid"] == 50
    assert merged[1]["valid"] == FOREVER


def test_is_dynamic():
    assert interfaces.is_dynamic(SNAP["addresses"], SNAP["routes"])
    assert not interfaces.is_dynamic(SNAP["addresses"][1:], [])
    assert interfaces.is_dynamic([], [records.route_from_ip({"dst": "default", "protocol": "dhcp"}, 4)])


def test_resolv_rendering_and_stub_detection(tmp_path):
    text = dns.render(["10.99.0.1", "fd99::1"], ["vpn.internal"])
    assert text.splitlines()[1:] == ["search vpn.internal", "nameserver 10.99.0.1", "nameserver fd99::1"]
    assert dns.uses_stub("nameserver 127.0.0.53\noptions edns0\n")
    assert not dns.uses_stub("nameserver 192.168.1.1\n")
    assert dns.physical_side("nameserver 192.168.1.1\n") == "nameserver 192.168.1.1\n"


def test_write_in_place_keeps_the_inode(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text("nameserver 1.1.1.1\n" * 10)
    ino = f.stat().st_ino
    dns.write_in_place(str(f), "nameserver 10.0.0.1\n")
    assert f.stat().st_ino == ino and f.read_text() == "nameserver 10.0.0.1\n"


def test_dhcp_hook_commands():
    env = {"interface": "eth1", "ip": "192.168.60.120", "mask": "24", "broadcast": "192.168.60.255",
           "router": "192.168.60.1 192.168.60.2", "lease": "120", "dns": "192.168.60.1", "domain": "lan.test",
           dhcp.ENV_METRIC: "200"}
    assert dhcp.lease_commands("deconfig", env) == []
    assert dhcp.lease_commands("bound", env) == [
        ["addr", "replace", "192.168.60.120/24", "broadcast", "192.168.60.255", "dev", "eth1",
         "valid_lft", "120", "preferred_lft", "120"],
        ["-4", "route", "replace", "default", "via", "192.168.60.1", "dev", "eth1", "proto", "dhcp",
         "metric", "200"]]
    assert dhcp.lease_commands("renew", {**env, dhcp.ENV_DEFAULT: "0"})[1:] == []
    resolv = dhcp.lease_resolv(env)
    assert "nameserver 192.168.60.1" in resolv and "search lan.test" in resolv
    assert dhcp.lease_commands("bound", {"interface": "eth1", "ip": "10.0.0.5", "subnet": "255.255.0.0"})[0][2] == "10.0.0.5/16"


def _cfg() -> wgconfig.Config:
    priv, peer = keys.generate_private(), keys.public_key(keys.generate_private())
    text = (f"[Interface]\nPrivateKey = {keys.to_base64(priv)}\nAddress = 10.99.0.2/32, fd99::2/128\n"
            "ListenPort = 51000\nDNS = 10.99.0.1\nPostUp = echo %i\n\n"
            f"[Peer]\nPublicKey = {keys.to_base64(peer)}\nAllowedIPs = 0.0.0.0/0, ::/0, 10.5.0.0/16\n"
            "Endpoint = vpn.example.test:51820\nPersistentKeepalive = 25\n")
    return wgconfig.parse(text, "wg0.conf")


def test_setconf_is_valid_setconf_with_literal_endpoint():
    cfg = _cfg()
    text = tunnel.setconf_text(cfg, {cfg.peers[0].public_key: "172.16.70.2:51820"}, 51000)
    back = wgconfig.parse(text, "engine.conf", quick=False)
    assert back.interface.private_key == cfg.interface.private_key
    assert back.interface.listen_port == 51000
    # no port to ask for: none in the file, the engine picks one
    assert wgconfig.parse(tunnel.setconf_text(cfg, {}, None), "e.conf", quick=False).interface.listen_port is None
    assert back.peers[0].endpoint == ("172.16.70.2", 51820)
    assert back.peers[0].allowed_ips == cfg.peers[0].allowed_ips
    assert "Address" not in text and "DNS" not in text


def test_tunnel_routes_and_addresses():
    cfg = _cfg()
    assert tunnel.tunnel_routes(cfg) == [
        {"dst": "0.0.0.0/0", "table": None},
        {"dst": "10.5.0.0/16", "table": None},
        {"dst": "::/0", "table": None}]
    cfg.interface.table = "1234"
    assert {r["table"] for r in tunnel.tunnel_routes(cfg)} == {"1234"}
    cfg.interface.table = "off"
    assert tunnel.tunnel_routes(cfg) == []
    assert tunnel.is_literal("fe80::1%eth0") and not tunnel.is_literal("vpn.example.test")
    assert ipaddress.ip_address(tunnel.resolve("10.1.2.3", 1, None))


def test_simhost_argv_keeps_run_netns_shared_and_binds_resolv():
    argv = simhost.argv("nsr-x-laptop", ["nsroute", "up", "wg0"])
    assert argv[:4] == ["unshare", "--mount", "--propagation", "unchanged"]
    script = argv[-1]
    assert script.index("--make-private /") < script.index("/etc/netns/nsr-x-laptop/resolv.conf /etc/resolv.conf")
    assert "nsenter --net=/run/netns/nsr-x-laptop" in script and "mount -t sysfs" in script


def test_wpa_supplicant_argv():
    argv = ["/sbin/wpa_supplicant", "-iwlan0", "-c", "/etc/wpa.conf", "-P", "/run/old.pid"]
    assert wifi._iface_args(argv) == ["wlan0"]
    assert wifi.daemon_argv(argv, "/run/new.pid") == [
        "/sbin/wpa_supplicant", "-iwlan0", "-c", "/etc/wpa.conf", "-B", "-P", "/run/new.pid"]


def test_status_render_says_broken_first():
    info = {"state": "broken", "mode": "host", "config": "/etc/wireguard/wg0.conf", "physical_namespace": "physical",
            "into": None, "interfaces": [{"name": "eth0", "state": "UP", "addresses": ["192.168.1.2/24"],
                                          "dhcp_pid": 12, "wireless": False}],
            "tunnel": {"name": "wg0", "state": "missing", "addresses": []},
            "engine": {"pid": 4, "running": False, "answering": False}, "dns": {"managed": False, "file": None},
            "peers": [{"public_key": "k", "endpoint": "1.2.3.4:51820", "allowed_ips": ["0.0.0.0/0"],
                       "latest_handshake_ago": 75.0, "rx_bytes": 2048, "tx_bytes": 10, "persistent_keepalive": 25}]}
    text = status.render(info)
    assert text.splitlines()[0].startswith("nsroute BROKEN")
    assert "dhcp pid 12" in text and "1 min 15 s ago" in text and "2.00 KiB received" in text


def test_not_root_is_one_clear_error(monkeypatch):
    from nsroute.host import commands

    monkeypatch.setattr(commands.os, "geteuid", lambda: 1000)
    for call in (lambda: commands.up("wg0"), lambda: commands.down()):
        with pytest.raises(commands.HostError, match="must be run as root"):
            call()


# NetworkManager's addressing: `noprefixroute` addresses with the subnet route as `proto kernel`
OLD_NM_SNAP = {
    "name": "wlan1", "mtu": 1500, "up": True, "time": 1000.0,
    "addresses": [
        {"family": "inet", "local": "192.168.70.106", "prefixlen": 24, "broadcast": "192.168.70.255",
         "scope": "global", "dynamic": True, "noprefixroute": True, "label": "wlan1",
         "valid_life_time": 3600, "preferred_life_time": 3600},
        {"family": "inet", "local": "10.5.0.2", "prefixlen": 24, "scope": "global",
         "valid_life_time": FOREVER, "preferred_life_time": FOREVER},
    ],
    "routes": {
        "4": [
            {"dst": "default", "gateway": "192.168.70.1", "protocol": "dhcp", "prefsrc": "192.168.70.106",
             "metric": 600, "flags": []},
            {"dst": "192.168.70.0/24", "protocol": "kernel", "scope": "link", "prefsrc": "192.168.70.106",
             "metric": 600, "flags": []},
            {"dst": "10.5.0.0/24", "protocol": "kernel", "scope": "link", "prefsrc": "10.5.0.2", "flags": []},
        ],
        "6": [],
    },
}
NM_SNAP = records.upgrade_snapshot(OLD_NM_SNAP)


def test_restore_plan_replays_the_subnet_route_of_a_noprefixroute_address():
    plan = interfaces.restore_plan(NM_SNAP, now=1010.0)
    routes = [r for kind, r in plan if kind == "route"]
    # a default route via GW fails ("Nexthop has invalid gateway") unless the subnet
    # route is there already: it comes first, whatever order the snapshot had
    dsts = [r["dst"] for r in routes]
    assert "192.168.70.0/24" in dsts, plan
    assert dsts.index("192.168.70.0/24") < dsts.index("0.0.0.0/0"), dsts
    subnet = routes[dsts.index("192.168.70.0/24")]
    assert subnet["metric"] == 600 and subnet["prefsrc"] == "192.168.70.106"
    assert "10.5.0.0/24" not in dsts  # a plain address: the kernel makes that one again
    assert "noprefixroute" in next(a for kind, a in plan if kind == "address" and a["cidr"] == "192.168.70.106/24")["flags"]


def test_dhcp_hook_adds_the_subnet_route_where_the_address_has_noprefixroute():
    env = {"interface": "wlan1", "ip": "192.168.70.106", "mask": "24", "router": "192.168.70.1",
           "lease": "3600", dhcp.ENV_METRIC: "600"}
    plain = dhcp.lease_commands("renew", env)
    assert not any(c[:3] == ["-4", "route", "replace"] and c[3] != "default" for c in plain)
    cmds = dhcp.lease_commands("renew", env, subnet_route=True)
    subnet = [c for c in cmds if c[:4] == ["-4", "route", "replace", "192.168.70.0/24"]]
    assert subnet == [["-4", "route", "replace", "192.168.70.0/24", "dev", "wlan1", "proto", "kernel",
                       "scope", "link", "src", "192.168.70.106", "metric", "600"]]
    assert cmds.index(subnet[0]) < next(i for i, c in enumerate(cmds) if "default" in c)
