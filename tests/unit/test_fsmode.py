"""Modes of what nsroute creates do not depend on the umask (issue 14, item 5)."""

from __future__ import annotations

import os
import pwd
import stat
from contextlib import contextmanager

import pytest

from nsroute import fsmode
from nsroute.engine import control
from nsroute.host import dns


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_dirs_and_their_missing_parents_get_exact_modes_under_umask_077(tmp_path):
    target = tmp_path / "etc" / "netns" / "physical"
    with umask(0o077):
        assert fsmode.make_dirs(target, 0o755) is True
        assert fsmode.make_dirs(tmp_path / "run", 0o700) is True
    assert mode(target) == 0o755
    assert mode(tmp_path / "etc") == 0o755
    assert mode(tmp_path / "etc" / "netns") == 0o755
    assert mode(tmp_path / "run") == 0o700


def test_an_existing_directory_keeps_its_mode(tmp_path):
    d = tmp_path / "theirs"
    d.mkdir()
    d.chmod(0o711)
    assert fsmode.make_dirs(d, 0o755) is False
    assert mode(d) == 0o711


def test_a_file_in_the_way_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        fsmode.make_dirs(tmp_path / "f", 0o755)


def test_files_get_exact_modes_under_any_umask(tmp_path):
    with umask(0o277):  # would strip even the owner's write bit
        fsmode.write_file(tmp_path / "pid", "1\n", 0o644)
        fsmode.replace_file(tmp_path / "state.json", "{}", 0o600, fsync=True)
    assert mode(tmp_path / "pid") == 0o644
    assert mode(tmp_path / "state.json") == 0o600
    assert (tmp_path / "state.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_an_own_file_left_too_open_is_tightened(tmp_path):
    f = tmp_path / "wg0.setconf"
    f.write_text("old")
    f.chmod(0o644)
    fsmode.write_file(f, "private", 0o600)
    assert mode(f) == 0o600 and f.read_text() == "private"


def test_resolv_conf_created_under_umask_077_is_world_readable(tmp_path):
    with umask(0o077):
        dns.write_in_place(str(tmp_path / "resolv.conf"), "nameserver 10.0.0.1\n")
    assert mode(tmp_path / "resolv.conf") == 0o644


def test_an_existing_resolv_conf_keeps_its_mode_and_inode(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text("nameserver 1.1.1.1\n")
    f.chmod(0o640)
    ino = f.stat().st_ino
    dns.write_in_place(str(f), "nameserver 10.0.0.1\n")
    assert (mode(f), f.stat().st_ino, f.read_text()) == (0o640, ino, "nameserver 10.0.0.1\n")


def test_a_dangling_symlink_gets_its_target_created(tmp_path):
    link = tmp_path / "resolv.conf"
    link.symlink_to(tmp_path / "stub-resolv.conf")
    with umask(0o077):
        dns.write_in_place(str(link), "nameserver 10.0.0.1\n")
    assert link.is_symlink()
    assert mode(tmp_path / "stub-resolv.conf") == 0o644


@pytest.mark.root
def test_unprivileged_engine_still_sees_its_socket_in_a_directory_it_cannot_search(tmp_path, monkeypatch):
    """The liveness check the engine runs after dropping privileges: a 0700 socket directory
    made by someone else must not look like 'socket removed', and a removal must still show."""
    sockdir = tmp_path / "wireguard"
    sockdir.mkdir(mode=0o700)
    sockdir.chmod(0o700)
    monkeypatch.setattr(control, "SOCKET_DIR", str(sockdir))
    monkeypatch.setattr(control, "socket_path", lambda ifname: str(sockdir / f"{ifname}.sock"))
    cs = control.ControlSocket("t0", lambda op, lines: "")
    nobody = pwd.getpwnam("nobody")
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                os.stat(cs.path)
                first = b"S"  # could search after all: the test shows nothing
            except PermissionError:
                first = b"1" if cs.still_there() else b"0"
            os.write(to_parent_w, first)
            os.read(to_child_r, 1)
            os.write(to_parent_w, b"1" if cs.still_there() else b"0")
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(to_parent_r, 1) == b"1"
        os.unlink(cs.path)
        os.write(to_child_w, b"x")
        assert os.read(to_parent_r, 1) == b"0"
    finally:
        os.waitpid(pid, 0)
        cs.close()
