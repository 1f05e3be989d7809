"""An uplink that goes and comes back while up (driver reset, resume, re-plug) works again.

The same site as test_hotplug (the laptop is the guest's initial namespace, where the
kernel creates every new device). Here the re-plugged devices were uplinks that `up`
moved: a USB NIC on DHCP that carries the tunnel (de-authorized and re-authorized on the
USB bus, as a re-plug or a port reset does), and a Wi-Fi radio associated by
wpa_supplicant (the hwsim radio deleted and made again with the same permanent address,
as a driver reset does). Each comes back under a kernel name, lands in the physical
namespace, gets its old name, a lease (dnsmasq's log), its default route, wpa_supplicant
(hostapd's station list) again; the tunnel carries bytes over it again; the router counts
nothing but WireGuard from the laptop; `down` hands it back.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from nsroute.host import dhcp as _dhcp
from tests.support.hosts import LINK_NOISE_NFT, SERVER_WAN4, WG_PORT, wait_handshake
from tests.support.netns import Netns, wait_for
from tests.vm.guest import test_hotplug as hp

site = hp.site  # the fixture: router with an AP and the USB NIC's far end
USB_NAME, WIFI_NAME = "upusb", "upwifi"  # names as udev would give them (not the kernel's)


def lease(site, dev: str, metric: int | None, default: bool = True) -> None:
    """The laptop's own DHCP client takes a lease on `dev` before `up` (as at boot)."""
    env = dict(os.environ, NSROUTE_DHCP_RESOLV=str(site.tmp / f"resolv-{dev}"),
               NSROUTE_DHCP_DEFAULT="1" if default else "0")
    if metric is not None:
        env["NSROUTE_DHCP_METRIC"] = str(metric)
    site.laptop.exec("busybox", "udhcpc", "-q", "-f", "-n", "-i", dev, "-s", str(_dhcp.HOOK), "-t", "10", "-T", "2",
                     env=_dhcp.hook_env(env), timeout=120)


def counters(site) -> dict[str, int]:
    out = site.router.exec("nft", "-j", "list", "counters", "table", "inet", "nsrrv").stdout
    return {c["counter"]["name"]: c["counter"]["packets"] for c in json.loads(out)["nftables"] if "counter" in c}


def count_on_router(site) -> None:
    """`plain`: what arrives from the laptop that is neither WireGuard nor link noise (a leak);
    `wg_usb`: WireGuard arriving over the USB NIC."""
    far = site.usb_far
    rules = site.tmp / "revive.nft"
    rules.write_text(
        "table inet nsrrv {\n  counter plain {}\n  counter wg_usb {}\n"
        "  chain pre {\n    type filter hook prerouting priority -400; policy accept;\n"
        f"    iifname \"{far}\" ip daddr {SERVER_WAN4} udp dport {WG_PORT} counter name wg_usb return\n"
        f"    iifname != {{ \"lan0\", \"lan1\", \"{far}\", \"{site.ap_wlan}\" }} return\n"
        f"    ip daddr {SERVER_WAN4} udp dport {WG_PORT} return\n"
        f"{LINK_NOISE_NFT}"
        "    counter name plain\n  }\n}\n")
    site.router.exec("nft", "-f", str(rules))


def acks(site, dev: str) -> int:
    return site.dnsmasq2_log.read_text().count(f"DHCPACK({dev})")


def revived(site) -> list[dict]:
    return (hp.status(site)["guard"] or {}).get("revived", [])


def v4_in_physical(site, dev: str) -> str:
    return Netns(site.physical).ip("-4", "-o", "addr", "show", "dev", dev, check=False).stdout


def tunnel_answers(site) -> bool:
    return site.laptop.exec("ping", "-c", "1", "-W", "2", "10.99.0.1", check=False).returncode == 0


def plug_usb_uplink(L) -> None:
    """The USB NIC authorized on the bus, renamed as udev does, up with carrier.

    Why a second plug: once in a CI run the gadget never reported its link to the first
    enumeration of the session (no carrier after 30 s on a quiet machine), and the next
    test's plug of the same NIC had it at once; a re-plug is what a user would do too."""

    def renamed() -> bool:  # enumeration may replace the netdev once (a second configuration)
        names = hp.usb_host_netdevs()
        return len(names) == 1 and L.ip("link", "set", names[0], "name", USB_NAME, check=False).returncode == 0

    def carrier() -> bool:
        return "LOWER_UP" in L.ip("link", "show", USB_NAME, check=False).stdout

    for attempt in (1, 2):
        Path(hp.USB_DEV, "authorized").write_text("1")
        wait_for(renamed, 60, what="the USB NIC, renamed")
        L.ip("link", "set", USB_NAME, "up")
        try:  # the gadget reports its link once the host has configured it (late under load)
            wait_for(carrier, 45, what="the USB NIC's carrier")
            return
        except AssertionError:
            if attempt == 2:
                raise
        print("no carrier on the USB NIC after 45 s: plugging it again")
        Path(hp.USB_DEV, "authorized").write_text("0")
        wait_for(lambda: not hp.usb_host_netdevs(), 30, what="the USB NIC to go")


@pytest.mark.parametrize("backend", ["userspace", "kernel"])
def test_usb_uplink_on_dhcp_comes_back(site, backend):
    L, ph = site.laptop, Netns(site.physical)
    # The USB NIC plugged before `up`, renamed as udev does, on DHCP; the only way to the VPN.
    plug_usb_uplink(L)
    lease(site, USB_NAME, metric=50)
    L.ip("-4", "route", "flush", "exact", "0.0.0.0/0", "dev", "eth0")  # eth0's and eth1's defaults
    L.ip("-4", "route", "flush", "exact", "0.0.0.0/0", "dev", "eth1")
    assert f"default via {hp.USB_NET}.1 dev {USB_NAME}" in L.ip("-4", "route").stdout
    count_on_router(site)

    r = site.up("--interface", USB_NAME, "--backend", backend, timeout=600)
    assert r.returncode == 0, r.stderr
    try:
        wait_handshake(L, site.tun, timeout=60)
        wait_for(lambda: tunnel_answers(site), 60, what="the tunnel to answer")
        assert counters(site)["wg_usb"] > 0, counters(site)

        # Unplugged: the device and everything on it goes.
        Path(hp.USB_DEV, "authorized").write_text("0")
        wait_for(lambda: USB_NAME not in ph.links(), 30, what="the USB NIC to go")
        assert not tunnel_answers(site)  # no other way to the VPN server
        wg_before, acks_before = counters(site)["wg_usb"], acks(site, site.usb_far)
        plugged = time.time()
        Path(hp.USB_DEV, "authorized").write_text("1")

        wait_for(lambda: any(x["name"] == USB_NAME for x in revived(site)), 60,
                 what="the guard to set the USB NIC up again")
        back = next(x for x in revived(site) if x["name"] == USB_NAME)
        print(f"back as {back['arrived_as']} {back['time'] - plugged:.2f}s after the re-plug: {back}")
        assert back["what"] == "netdev" and back["arrived_as"] != USB_NAME and not back["failures"], back
        assert USB_NAME in ph.links() and not hp.usb_host_netdevs()
        wait_for(lambda: acks(site, site.usb_far) > acks_before, 60, what="a new DHCP lease")
        wait_for(lambda: f"{hp.USB_NET}." in v4_in_physical(site, USB_NAME), 30, what="the lease's address")
        wait_for(lambda: f"default via {hp.USB_NET}.1 dev {USB_NAME}" in ph.ip("-4", "route").stdout, 30,
                 what="the default route through the USB NIC")
        wait_for(lambda: tunnel_answers(site), 90, what="the tunnel to answer again")
        ping = L.exec("ping", "-c", "5", "-i", "0.3", "-s", "1200", "10.99.0.1", check=False)
        assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout
        assert counters(site)["wg_usb"] > wg_before, counters(site)
        assert hp.laptop_links(site) == sorted(["lo", site.tun])
        st = hp.status(site)
        usb = next(i for i in st["interfaces"] if i["name"] == USB_NAME)
        assert usb["dhcp_pid"] in back["pids"], (usb, back)
        check = site.nsroute("status", "--physical", site.physical, "--check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "came back" in site.nsroute("status", "--physical", site.physical).stdout
        assert counters(site)["plain"] == 0, counters(site)
    finally:
        r = site.down(timeout=600)
    assert r.returncode == 0, r.stderr
    # home under its own name, although udev names every USB NIC that arrives enx<MAC>
    # (Debian's 73-usb-net-by-mac.link), and with its lease
    assert USB_NAME in L.links() and f"{hp.USB_NET}." in L.ip("-4", "addr", "show", "dev", USB_NAME).stdout
    assert not os.path.exists(f"/run/netns/{site.physical}")


def laptop_radio(hwsim: hp.Hwsim, L: Netns) -> str:
    """A new radio on the laptop, its interface named as udev would (WIFI_NAME): its phy."""
    before = hp.phys_here()
    hwsim.new_radio()
    wait_for(lambda: hp.phys_here() - before, 30, what="the laptop's radio")
    (phy,) = hp.phys_here() - before
    (dev,) = os.listdir(f"/sys/class/ieee80211/{phy}/device/net")
    L.ip("link", "set", dev, "name", WIFI_NAME)
    return phy


@pytest.mark.parametrize("backend", ["userspace", "kernel"])
def test_wifi_uplink_reassociates_after_a_driver_reset(site, backend):
    L, ph = site.laptop, Netns(site.physical)
    hwsim = hp.Hwsim()
    try:
        phy = laptop_radio(hwsim, L)
        mac = Path(f"/sys/class/ieee80211/{phy}/macaddress").read_text().strip()
        pidfile = site.tmp / "wpa.pid.up"  # the fixture ends it
        L.exec("wpa_supplicant", "-B", "-i", WIFI_NAME, "-c", str(site.wpa_conf), "-P", str(pidfile))
        wait_for(lambda: "Connected" in L.exec("iw", "dev", WIFI_NAME, "link").stdout, 60, what="association")
        lease(site, WIFI_NAME, metric=None, default=False)

        r = site.up("--interface", WIFI_NAME, "--backend", backend, timeout=600)
        assert r.returncode == 0, r.stderr
        try:
            associated = lambda: "Connected" in ph.exec("iw", "dev", WIFI_NAME, "link", check=False).stdout  # noqa: E731
            wait_for(associated, 60, what="association in physical after up")
            acks_before = acks(site, site.ap_wlan)
            # The driver resets: the radio goes, and comes back with the same permanent address.
            hp.del_radio_in(site.physical, phy)
            wait_for(lambda: WIFI_NAME not in ph.links(), 30, what="the radio to go")
            hwsim.new_radio(mac)
            wait_for(lambda: any(x["name"] == WIFI_NAME for x in revived(site)), 60,
                     what="the guard to set the radio up again")
            back = next(x for x in revived(site) if x["name"] == WIFI_NAME)
            print(f"back: {back}")
            assert back["what"] == "wiphy" and not back["failures"], back
            wait_for(associated, 90, what="re-association in physical")
            assert mac in hp.stations(site), hp.stations(site)
            wait_for(lambda: acks(site, site.ap_wlan) > acks_before, 60, what="a new lease over Wi-Fi")
            wait_for(lambda: f"{hp.AP_NET}." in v4_in_physical(site, WIFI_NAME), 30, what="the lease's address")
            assert hp.laptop_links(site) == sorted(["lo", site.tun])
            st = hp.status(site)
            wifi = next(i for i in st["interfaces"] if i["name"] == WIFI_NAME)
            assert wifi["associated"] and wifi["dhcp_pid"] in back["pids"], (wifi, back)
        finally:
            r = site.down(timeout=600)
        assert r.returncode == 0, r.stderr
        # down hands the new radio back and restarts the laptop's own wpa_supplicant on it
        assert WIFI_NAME in L.links()
        wait_for(lambda: "Connected" in L.exec("iw", "dev", WIFI_NAME, "link").stdout, 60,
                 what="association on the laptop after down")
    finally:
        hwsim.close()


def rfkill_of(phy: str) -> str:
    """The rfkill switch (rfkillN) of a radio here: cfg80211 names it after the phy.

    The class lists every switch, but sysfs shows a switch's attributes only in the
    namespace its radio is in (the others' links dangle)."""
    for d in Path("/sys/class/rfkill").iterdir():
        try:
            if (d / "name").read_text().strip() == phy:
                return d.name
        except OSError:
            continue
    raise AssertionError(f"no rfkill named {phy}: {os.listdir('/sys/class/rfkill')}")


def soft_block(ns: Netns, rfkill: str, on: bool) -> None:
    """What the Wi-Fi key or airplane mode does, written where the radio's sysfs is."""
    ns.exec("sh", "-c", f"echo {int(on)} > /sys/class/rfkill/{rfkill}/soft")


@pytest.mark.parametrize("backend", ["userspace", "kernel"])
def test_wifi_uplink_comes_back_after_rfkill(site, backend):
    """Soft-blocked (the laptop's Wi-Fi key, airplane mode) and unblocked while up: the
    radio stays, cfg80211 closes its netdev, the kernel flushes its routes. The guard
    brings the interface up again (wpa_supplicant in `physical` has no rfkill), which
    associates again; the guard has its DHCP client renew, which puts the default route
    back long before the lease's own renewal time (a minute here)."""
    L, ph = site.laptop, Netns(site.physical)
    hwsim = hp.Hwsim()
    try:
        rfkill = rfkill_of(laptop_radio(hwsim, L))
        pidfile = site.tmp / "wpa.pid.up"  # the fixture ends it
        wpa_log = site.tmp / "wpa.log"  # `up` restarts it with these arguments: its log tells on failure
        L.exec("wpa_supplicant", "-B", "-i", WIFI_NAME, "-c", str(site.wpa_conf), "-P", str(pidfile),
               "-f", str(wpa_log), "-d")
        wait_for(lambda: "Connected" in L.exec("iw", "dev", WIFI_NAME, "link").stdout, 60, what="association")
        lease(site, WIFI_NAME, metric=50)  # Wi-Fi the only way to the VPN
        L.ip("-4", "route", "flush", "exact", "0.0.0.0/0", "dev", "eth0")
        L.ip("-4", "route", "flush", "exact", "0.0.0.0/0", "dev", "eth1")
        default = f"default via {hp.AP_NET}.1 dev {WIFI_NAME}"
        assert default in L.ip("-4", "route").stdout

        r = site.up("--interface", WIFI_NAME, "--backend", backend, timeout=600)
        assert r.returncode == 0, r.stderr
        try:
            associated = lambda: "Connected" in ph.exec("iw", "dev", WIFI_NAME, "link", check=False).stdout  # noqa: E731
            wait_for(associated, 60, what="association in physical after up")
            wait_for(lambda: tunnel_answers(site), 90, what="the tunnel to answer over Wi-Fi")
            acks_before = acks(site, site.ap_wlan)

            soft_block(ph, rfkill, True)
            wait_for(lambda: not associated(), 30, what="the radio to go quiet")
            wait_for(lambda: default not in ph.ip("-4", "route").stdout, 10, what="the route flushed with the link")
            assert not tunnel_answers(site)  # no other way to the VPN server
            time.sleep(2)
            unblocked = time.monotonic()
            soft_block(ph, rfkill, False)

            try:
                wait_for(associated, 90, what="re-association in physical")
            except AssertionError:
                print(ph.ip("link", "show", WIFI_NAME).stdout, ph.exec("cat", f"/sys/class/rfkill/{rfkill}/soft").stdout)
                print("\n".join(ln for ln in wpa_log.read_text().splitlines()
                                if any(w in ln.lower() for w in ("rfkill", "interface", "state", "ifup", "flags"))))
                raise
            wait_for(lambda: default in ph.ip("-4", "route").stdout, 30,
                     what="the default route through Wi-Fi again")
            print(f"default route back {time.monotonic() - unblocked:.1f}s after the unblock")
            assert acks(site, site.ap_wlan) > acks_before  # renewed, well before T1
            assert f"{hp.AP_NET}." in v4_in_physical(site, WIFI_NAME)
            wait_for(lambda: tunnel_answers(site), 90, what="the tunnel to answer again")
            ping = L.exec("ping", "-c", "5", "-i", "0.3", "-s", "1200", "10.99.0.1", check=False)
            assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout
            g = hp.status(site)["guard"]
            assert any(x["name"] == WIFI_NAME and x["pids"] for x in g["renewed"]), g
            assert g["revived"] == [] and g["errors"] == [], g  # the radio never went
            assert hp.laptop_links(site) == sorted(["lo", site.tun])
        finally:
            soft_block(ph, rfkill, False)
            r = site.down(timeout=600)
        assert r.returncode == 0, r.stderr
        assert WIFI_NAME in L.links()
    finally:
        hwsim.close()
