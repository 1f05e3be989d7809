"""The pure parts of the Wi-Fi hand-over: wpa_supplicant command lines and its pid file."""

from __future__ import annotations

import threading

import pytest

from nsroute.host.errors import HostError
from nsroute.host.wifi import daemon_argv, read_pidfile, restart_argv


def test_daemon_argv_forces_detach_and_our_pidfile():
    argv = ["wpa_supplicant", "-B", "-i", "wlan0", "-c", "/etc/w.conf", "-P", "/run/w.pid", "-P/x"]
    assert daemon_argv(argv, "/run/nsroute/wpa.pid") == [
        "wpa_supplicant", "-i", "wlan0", "-c", "/etc/w.conf", "-B", "-P", "/run/nsroute/wpa.pid"]


def test_restart_argv_keeps_the_users_own_command():
    assert restart_argv(["wpa_supplicant", "-i", "wlan0", "-P", "/run/w.pid"]) == [
        "wpa_supplicant", "-i", "wlan0", "-P", "/run/w.pid", "-B"]
    already = ["wpa_supplicant", "-B", "-i", "wlan0"]
    assert restart_argv(already) == already
    assert "/dev/null" not in restart_argv(["wpa_supplicant", "-i", "wlan0"])


def test_read_pidfile_waits_for_the_detached_child(tmp_path):
    path = tmp_path / "w.pid"
    timer = threading.Timer(0.2, lambda: path.write_text("4242\n"))
    timer.start()
    try:
        assert read_pidfile(path, timeout=5) == 4242
    finally:
        timer.cancel()


def test_read_pidfile_gives_up_with_one_clear_error(tmp_path):
    with pytest.raises(HostError, match="wrote no pid"):
        read_pidfile(tmp_path / "never.pid", timeout=0.2)
