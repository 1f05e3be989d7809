"""Who `nsroute exec` runs as and with which environment (no root needed)."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys

import pytest

from nsroute import exec as exec_mod
from nsroute.host import userenv

ROOT = pwd.getpwuid(0)
NOBODY = pwd.getpwnam("nobody")


def test_sudo_user_wins_over_root():
    t = userenv.resolve(None, {"SUDO_UID": str(NOBODY.pw_uid), "SUDO_GID": "4242"})
    assert (t.name, t.uid, t.gid, t.home) == ("nobody", NOBODY.pw_uid, 4242, NOBODY.pw_dir)


def test_pkexec_user():
    t = userenv.resolve(None, {"PKEXEC_UID": str(NOBODY.pw_uid)})
    assert (t.uid, t.gid) == (NOBODY.pw_uid, NOBODY.pw_gid)


def test_explicit_user_beats_sudo_and_root_only_when_asked():
    env = {"SUDO_UID": str(NOBODY.pw_uid)}
    assert userenv.resolve("root", env).uid == 0
    assert userenv.resolve(str(NOBODY.pw_uid), {}).name == "nobody"
    assert userenv.resolve(None, {}).uid == os.getuid()  # nobody invoked us: ourselves


@pytest.mark.parametrize("user,env,msg", [
    ("no-such-user-xyz", {}, "no such user"),
    (None, {"SUDO_UID": "abc"}, "not a numeric uid"),
    (None, {"SUDO_UID": "3999999"}, "no user with uid"),
])
def test_bad_user_is_one_clear_line(user, env, msg):
    with pytest.raises(userenv.UserError, match=msg) as e:
        userenv.resolve(user, env)
    assert "\n" not in str(e.value)


def test_environment_kept_with_identity_and_netns():
    t = userenv.Target("nobody", NOBODY.pw_uid, NOBODY.pw_gid, "/home/x")
    base = {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "PULSE_SERVER": "unix:/p", "HOME": "/root",
            "USER": "root", "LOGNAME": "root", "XDG_RUNTIME_DIR": "/run/user/1000",
            "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"}
    env = userenv.environment(base, t, "physical")
    assert env == base | {"HOME": "/home/x", "USER": "nobody", "LOGNAME": "nobody", "NSROUTE_NETNS": "physical"}


def test_runtime_dir_filled_in_when_sudo_dropped_it(tmp_path, monkeypatch):
    t = userenv.Target("u", 1234, 1234, "/h")
    real_isdir, real_exists = os.path.isdir, os.path.exists
    monkeypatch.setattr(os.path, "isdir", lambda p: p == "/run/user/1234" or real_isdir(p))
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/run/user/1234/bus" or real_exists(p))
    env = userenv.environment({}, t, "phys")
    assert env["XDG_RUNTIME_DIR"] == "/run/user/1234"
    assert env["DBUS_SESSION_BUS_ADDRESS"] == "unix:path=/run/user/1234/bus"
    assert "XDG_RUNTIME_DIR" not in userenv.environment({}, userenv.Target("root", 0, 0, "/root"), "phys")


def test_forwarded_signals():
    assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
            signal.SIGWINCH} == set(exec_mod.FORWARDED)


def test_refuses_when_not_up(tmp_path, monkeypatch):
    monkeypatch.setenv("NSROUTE_RUN_DIR", str(tmp_path))
    with pytest.raises(exec_mod.ExecError) as e:
        exec_mod.run(["true"], physical="nsr-never-made")
    assert "\n" not in str(e.value)
    assert ("not up" in str(e.value)) if os.geteuid() == 0 else ("root" in str(e.value))


def test_empty_command():
    with pytest.raises(exec_mod.ExecError, match="no command"):
        exec_mod.run([], physical="physical")


def _exec_in_child(code: str, ignore: tuple[int, ...] = ()) -> subprocess.CompletedProcess:
    """Run exec's last steps in a fresh Python (it replaces the process), some signals ignored
    by its parent as nohup or a non-interactive shell's `&` would."""
    def preexec() -> None:
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)
    prog = f"import os\nfrom nsroute import exec as x\nx._signals_as_cmd_gets_them()\n{code}"
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=30,
                          preexec_fn=preexec)


def _ignored(status: str) -> set[int]:
    mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigIgn:")), 16)
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def test_cmd_gets_the_callers_signal_dispositions_not_pythons():
    p = _exec_in_child("x._exec(['cat', '/proc/self/status'], os.environ)", ignore=(signal.SIGHUP,))
    assert p.returncode == 0, p.stderr
    ignored = _ignored(p.stdout)
    assert signal.SIGHUP in ignored  # inherited ignored: stays ignored in CMD
    assert not ignored & {signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT}  # Python's own: gone


def test_a_signal_during_set_up_acts_as_on_cmd():
    """Ctrl-C before the exec ends the process by SIGINT (a shell shows 130), no traceback."""
    p = _exec_in_child("os.kill(os.getpid(), 2)\nimport time\ntime.sleep(5)")
    assert p.returncode == -signal.SIGINT and p.stderr == ""


def test_missing_command_is_one_line():
    p = _exec_in_child("try:\n    x._exec(['nsr-no-such-command'], os.environ)\n"
                       "except x.ExecError as e:\n    print(e)")
    assert p.stdout == "nsr-no-such-command: command not found\n", p.stderr
