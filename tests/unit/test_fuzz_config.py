"""Fuzzing the configuration parser: `config.parse` on arbitrary text and mutated configs.

The outcome is a `Config` or a `ConfigError`, never another exception; a `ConfigError`
that knows its line says `file:line:` in its message, and that line exists in the file.
Both formats (wg-quick and `wg setconf`) are fuzzed.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsroute import config
from nsroute.config import ConfigError

FUZZ = settings(max_examples=10_000, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
PATH = "/etc/nsroute/fuzz0.conf"

VALID = """\
[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
ListenPort = 51820
FwMark = 0x1234
Address = 10.200.100.8/24, fd00::8/64
DNS = 10.200.100.1, example.internal
MTU = 1420
Table = off
PostUp = echo up
SaveConfig = false

[Peer]
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
PresharedKey = /UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = 192.95.5.67:1234
PersistentKeepalive = 25

[Peer]
PublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=
AllowedIPs = 10.10.10.230/32 # a comment
Endpoint = [2607:5300:60:6b0::c05f:543]:2468
"""
VALID_LINES = VALID.splitlines()

KEYS = ["PrivateKey", "ListenPort", "FwMark", "Address", "DNS", "MTU", "Table", "PreUp",
        "PostUp", "PreDown", "PostDown", "SaveConfig", "PublicKey", "PresharedKey",
        "AllowedIPs", "Endpoint", "PersistentKeepalive", "privatekey", "LISTENPORT", "Bogus"]
VALUES = ["", "off", "0", "65535", "65536", "-1", "²", "0x", "0xffffffff", "0x100000000",
          "true", "false", "yes", "1.2.3.4", "1.2.3.4/33", "::/0", "fe80::1%eth0/64",
          "[::1]:1", "host:0", "AAAA", "=" * 44, "A" * 43 + "=", "A" * 44,
          "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "a, ,b", ",", "\x00", "\ufeff"]
# Files are read as UTF-8 text; random bytes decoded that way are cheaper to draw than st.text.
text = st.binary(max_size=60).map(lambda b: b.decode("utf-8", "replace"))
chars = st.one_of(st.sampled_from("=[]#,:/ \t\r\x00\x0b\x0c\x1c\x85\u2028\ufeff²%"),
                  st.binary(min_size=1, max_size=4).map(lambda b: b.decode("utf-8", "replace")))
SECTIONS = ["[Interface]", "[Peer]", "[peer]", "[ Peer ]", "[Peer", "Peer]", "[]",
            "[Interface] # x", "[[Peer]]"]
# Every key with every value and spacing, precomputed: one cheap draw per line.
LINES = sorted({f"{k}{sp}={sp}{v}" for k in KEYS for v in VALUES for sp in ("", " ", "\t")}
               | set(SECTIONS) | set(VALID_LINES))
kv_line = st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(KEYS), text)
any_line = st.one_of(st.sampled_from(LINES), st.sampled_from(LINES), kv_line, text)


def check(text_: str, quick: bool) -> str:
    n_lines = len(text_.splitlines())
    try:
        cfg = config.parse(text_, path=PATH, quick=quick)
    except ConfigError as e:
        msg = str(e)
        if e.line is not None:
            assert msg.startswith(f"{PATH}:{e.line}: "), msg
            assert 1 <= e.line <= n_lines, (e.line, n_lines)
        else:
            assert msg.startswith(f"{PATH}: "), msg
        return "error"
    assert cfg.path == PATH
    return "ok"


def test_arbitrary_text():
    @FUZZ
    @given(t=st.one_of(text, st.lists(any_line, max_size=10).map("\n".join),
                       st.binary(max_size=200).map(lambda b: b.decode("latin-1"))),
           quick=st.booleans())
    def one(t, quick):
        check(t, quick)

    one()


def test_mutations_of_a_valid_config():
    assert check(VALID, True) == "ok"
    outcomes = {"ok": 0, "error": 0}

    @FUZZ
    @given(ops=st.lists(st.tuples(st.sampled_from(["delete", "duplicate", "swap", "insert",
                                                   "replace_value", "splice_char", "truncate"]),
                                  st.integers(0, 200), st.integers(0, 200), any_line,
                                  chars),
                        min_size=1, max_size=4),
           quick=st.booleans())
    def one(ops, quick):
        lines = list(VALID_LINES)
        for op, i, j, new, ch in ops:
            if not lines:
                lines = [new]
                continue
            i %= len(lines)
            j %= len(lines)
            if op == "delete":
                del lines[i]
            elif op == "duplicate":
                lines.insert(j, lines[i])
            elif op == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            elif op == "insert":
                lines.insert(i, new)
            elif op == "replace_value":
                key, sep, _ = lines[i].partition("=")
                lines[i] = f"{key}{sep or '='} {new.partition('=')[2] or new}"
            elif op == "splice_char":
                s = lines[i]
                k = j % (len(s) + 1)
                lines[i] = s[:k] + ch + s[k + 1:]
            else:
                lines[i] = lines[i][: j % (len(lines[i]) + 1)]
        outcomes[check("\n".join(lines), quick)] += 1

    one()
    assert min(outcomes.values()) >= 300, outcomes
