"""host/resolved.py's pure parts: the D-Bus arguments and the physical side's nsswitch.conf."""

from __future__ import annotations

from nsroute.host import resolved


def test_dns_args_encode_family_length_bytes():
    assert resolved.dns_args(["10.99.0.1"]) == ["1", "2", "4", "10", "99", "0", "1"]
    v6 = resolved.dns_args(["fd00::1", "192.168.1.1"])
    assert v6[:3] == ["2", "10", "16"] and v6[3:19] == ["253", "0"] + ["0"] * 13 + ["1"]
    assert v6[19:] == ["2", "4", "192", "168", "1", "1"]


def test_domain_args_route_everything_then_search():
    assert resolved.domain_args([]) == ["1", ".", "true"]
    assert resolved.domain_args(["corp.example"]) == ["2", ".", "true", "corp.example", "false"]


def test_nsswitch_drops_resolve_and_its_action():
    debian = "passwd: files\nhosts:          files resolve [!UNAVAIL=return] dns myhostname\n"
    assert resolved.nsswitch_without_resolve(debian) == "passwd: files\nhosts: files dns myhostname\n"
    fedora = "hosts:      files myhostname resolve [!UNAVAIL=return] dns\n"
    assert resolved.nsswitch_without_resolve(fedora) == "hosts: files myhostname dns\n"


def test_nsswitch_without_dns_gets_dns():
    assert resolved.nsswitch_without_resolve("hosts: mymachines resolve files\n") == \
        "hosts: mymachines files dns\n"


def test_nsswitch_without_resolve_is_left_alone():
    assert resolved.nsswitch_without_resolve("hosts: files dns\n") is None
    assert resolved.nsswitch_without_resolve("hosts: files resolver-x dns\n") is None


def test_in_use_false_without_resolved(tmp_path, monkeypatch):
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\n")
    monkeypatch.setattr(resolved, "RUN_DIR", str(tmp_path / "absent"))
    assert not resolved.in_use(str(conf))
