"""Wi-Fi switched off and on while the unit keeps a NetworkManager laptop behind the tunnel.

`systemctl start nsroute@wg0` on the NetworkManager site (desk.py); the user unplugs the
cable (NetworkManager disconnects eth5), so the Wi-Fi is the only way to the VPN. Then
the two ways a laptop's Wi-Fi goes off and on again:

1. the airplane-mode key: a soft rfkill block of the laptop's radio (written to
   /dev/rfkill, as `rfkill block` and the desktop's rfkill daemon do), then an unblock;
2. the applet's switch: `nmcli radio wifi off` / `on` from the protected side (NetworkManager
   itself then writes the rfkill block of every Wi-Fi radio).

During each block: the radio is not associated, NetworkManager shows Wi-Fi off (what the
applet draws), `nsroute status` is not healthy and says the Wi-Fi is switched off, nothing
passes the tunnel and the router counts nothing leaking. After each unblock:
NetworkManager in `physical` reconnects the saved network by itself (associated, a lease,
its default route) and the tunnel carries checksummed bytes again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from nsroute.host import rfkill as rf

from .conftest import sh
from .desk import (
    ETH,
    SSID,
    SSID2,
    assert_reconnected_in_physical,
    associated,
    connected,
    diagnose,
    nm_states,
    start_ap,
    start_unit,
    stop,
    tunnel_carries,
)
from .site import SERVER_TUNNEL, assert_nothing_beyond, counter, reset_counters

RADIO_BACK = 180.0  # scan, association and DHCP under TCG; NetworkManager's scans back off
GUARD_LOG = Path("/run/nsroute/host-physical.guard.log")


def rfkill_index(phy: str) -> int:
    """The rfkill switch of radio `phy` (cfg80211 names it after the phy); read while the
    radio is still in this namespace (sysfs shows a switch only where its radio is)."""
    for d in Path("/sys/class/rfkill").iterdir():
        try:
            if (d / "name").read_text().strip() == phy:
                return int(d.name.removeprefix("rfkill"))
        except OSError:
            continue
    raise AssertionError(f"no rfkill switch named {phy}: {os.listdir('/sys/class/rfkill')}")


def soft_block(idx: int, on: bool) -> None:
    """What `rfkill block|unblock IDX` (and the airplane-mode key's daemon) write to /dev/rfkill."""
    fd = os.open(rf.DEV, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, rf.EVENT.pack(idx, rf.TYPE_WLAN, rf.OP_CHANGE, int(on), 0))
    finally:
        os.close(fd)


def wifi(wlan: str, ns: str | None = "physical") -> dict[str, bool]:
    """The Wi-Fi half of what a user checks (desk.connected): nmcli, association, lease, route."""
    return {k: v for k, v in connected(ns, wlan).items() if k.startswith("wifi")}


def wait_wifi(wlan: str, timeout: float, ns: str | None = "physical") -> tuple[dict[str, bool], float]:
    start = time.monotonic()
    got = wifi(wlan, ns)
    while not all(got.values()) and time.monotonic() - start < timeout:
        time.sleep(1)
        got = wifi(wlan, ns)
    return got, time.monotonic() - start


def nm_radio() -> str:
    """NetworkManager's Wi-Fi switch, as `nmcli radio wifi` (and the applet) show it."""
    return sh("nmcli", "radio", "wifi").stdout.strip()


def status() -> tuple[dict, str, int]:
    """`nsroute status --json`, its text, and `status --check`'s exit status."""
    info = json.loads(sh("nsroute", "status", "--json").stdout)
    text = sh("nsroute", "status", check=False).stdout
    return info, text, sh("nsroute", "status", "--check", check=False).returncode


def radio_log() -> str:
    """What NetworkManager and wpa_supplicant logged about rfkill (who noticed the switch)."""
    out = sh("journalctl", "-u", "NetworkManager", "-u", "wpa_supplicant", "--no-pager", "-n", "400",
             check=False).stdout
    return "\n".join(ln for ln in out.splitlines() if "rfkill" in ln.lower())[-2500:]


def guard_lines() -> str:
    try:
        return "\n".join(ln for ln in GUARD_LOG.read_text().splitlines() if "rfkill" in ln)
    except OSError:
        return "(no guard log)"


def assert_off(desk: dict, how: str) -> list[str]:
    """During a block: nothing associated, nothing passes or leaks (asserted); what
    NetworkManager and `status` say about it (returned when wrong, so that the scenario
    goes on and a run shows every way it is off)."""
    wlan, router = desk["wlan"], desk["router"]
    end = time.monotonic() + 60
    while (associated(wlan, "physical") or nm_states().get(wlan) == "connected") and time.monotonic() < end:
        time.sleep(1)
    assert not associated(wlan, "physical"), f"still associated after {how}"
    assert nm_states().get(wlan) != "connected", f"NetworkManager still has {wlan} connected after {how}"
    assert sh("ping", "-c", "2", "-W", "2", SERVER_TUNNEL, check=False).returncode != 0, \
        "the tunnel answered with its only uplink switched off"
    assert counter(router, "dns") == 0, "a DNS query reached the router"
    assert_nothing_beyond(router)
    radio = nm_radio()
    info, text, check = status()
    print(f"after {how}: nmcli radio wifi = {radio}; nsroute status:\n{text}\nrfkill in the journal:\n{radio_log()}")
    wrong = []
    if radio != "disabled":
        wrong.append(f"after {how} NetworkManager shows Wi-Fi {radio!r} (the applet draws it on)")
    if check == 0 or info["healthy"]:
        wrong.append(f"after {how} status --check calls it healthy:\n{text}")
    mine = [p["kind"] for p in info["problems"] if p.get("subject") == wlan]
    if mine != ["wifi-blocked"]:
        wrong.append(f"after {how} status says of {wlan}: {mine}, not that it is switched off")
    return wrong


def assert_back(desk: dict, how: str) -> None:
    """After an unblock: the saved network reconnected in `physical`, the tunnel carries bytes."""
    wlan = desk["wlan"]
    got, took = wait_wifi(wlan, RADIO_BACK)
    assert all(got.values()), (f"Wi-Fi not back within {RADIO_BACK:g}s of {how}: {got}\n"
                               f"guard: {guard_lines()}\n{radio_log()}\n{diagnose()}")
    print(f"Wi-Fi connected again {took:.1f}s after {how}; guard said: {guard_lines() or '(nothing)'}\n"
          f"rfkill in the journal:\n{radio_log()}")
    assert nm_radio() == "enabled"
    tunnel_carries(desk["server"])
    info, text, check = status()
    assert check == 0 or all(p.get("subject") == ETH for p in info["problems"]), text
    assert counter(desk["router"], "dns") == 0, "a DNS query reached the router"
    assert_nothing_beyond(desk["router"])


def aps_back(desk: dict) -> None:
    """NetworkManager's switch blocks every Wi-Fi radio of the machine, the simulated access
    points' too: give hostapd time to come back by itself, else start it again (router
    plumbing: a real access point is another machine)."""
    for key, ssid in (("ap1", SSID), ("ap2", SSID2)):
        log = desk["tmp"] / f"hostapd-{ssid}.log"
        end = time.monotonic() + 20
        while time.monotonic() < end:
            text = log.read_text()
            flags = json.loads(sh("ip", "-j", "-n", desk["router"], "link", "show", "dev", desk[key]).stdout)[0]["flags"]
            if (desk["procs"][key].poll() is None and "UP" in flags
                    and text.rfind("AP-ENABLED") > text.rfind("AP-DISABLED")):
                break
            time.sleep(1)
        else:
            print(f"hostapd for {ssid} did not come back by itself: started again")
            stop(desk["procs"][key])
            desk["procs"][key] = start_ap(desk["router"], desk[key], ssid, desk["tmp"])


def test_wifi_off_and_on_under_networkmanager(unit):
    desk = unit
    router, wlan = desk["router"], desk["wlan"]
    phy = Path(f"/sys/class/net/{wlan}/phy80211/name").read_text().strip()
    idx = rfkill_index(phy)
    got, _ = wait_wifi(wlan, 30, None)
    assert all(got.values()), f"nmcli did not connect the Wi-Fi before start: {got}\n{diagnose()}"

    start_unit(desk)
    assert_reconnected_in_physical(wlan, "systemctl start")
    sh("nmcli", "device", "disconnect", ETH)  # the cable unplugged: the Wi-Fi the only way out
    end = time.monotonic() + 30
    while connected("physical", wlan)["eth default route"] and time.monotonic() < end:
        time.sleep(0.5)
    reset_counters(router)
    tunnel_carries(desk["server"])

    try:
        # 1. the airplane-mode key: a soft rfkill block of the laptop's radio
        soft_block(idx, True)
        wrong = assert_off(desk, f"rfkill block {idx}")
        soft_block(idx, False)
        assert_back(desk, f"rfkill unblock {idx}")

        # 2. the applet's switch, from the protected side
        sh("nmcli", "radio", "wifi", "off")
        wrong += assert_off(desk, "nmcli radio wifi off")
        sh("nmcli", "radio", "wifi", "on")
        aps_back(desk)
        assert_back(desk, "nmcli radio wifi on")
    finally:  # whatever failed: the radio on again, for the tests after this one
        soft_block(idx, False)
        sh("nmcli", "radio", "wifi", "on", check=False)

    sh("systemctl", "stop", desk["unit"], timeout=180)
    back, took = wait_wifi(wlan, 90, None)
    assert all(back.values()), f"Wi-Fi not connected at home after stop: {back}\n{diagnose()}"
    assert nm_radio() == "enabled"
    print(f"Wi-Fi connected at home {took:.1f}s after systemctl stop returned")
    assert not wrong, "\n".join(wrong)
