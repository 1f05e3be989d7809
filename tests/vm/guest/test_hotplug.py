"""Hot-plugged uplinks while up: the guard moves them out before anything can use them.

Only a real kernel shows this: it creates every new netdev and wiphy in the *initial*
network namespace, so here the laptop is the guest's own initial namespace (a VM with no
network device of its own), and nsroute runs in it as on a real machine.

    laptop = guest's initial namespace                    router            server
      eth0, eth1 (veth) --------------------------------- lan0, lan1 ---- wan0 (WireGuard)
      later: a Wi-Fi dongle (a new mac80211_hwsim radio) ~ wlan (hostapd WPA2, dnsmasq)
      later: a USB NIC (dummy_hcd + g_ether, host side) - usb gadget side (dnsmasq)

A client on the laptop waits for any new device and does what NetworkManager would:
brings it up, runs wpa_supplicant for the saved network, asks DHCP. The witnesses are on
the router: its counters on the new links' far ends (every frame, at ingress), hostapd's
station list and dnsmasq's log, before and after the tunnel is killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.hosts import Site
from tests.support.netns import Netns, run, wait_for
from tests.support.plug import (  # noqa: F401 (test_revive uses them from here)
    USB_DEV,
    Hwsim,
    LinkWatch,
    del_radio_in,
    gadget_netdev,
    phys_here,
    usb_host_netdevs,
)
from tests.vm.guest.conftest import modprobe, module_loaded, sh
from tests.vm.guest.test_wifi import PSK_HEX, SSID

AP_NET, USB_NET = "192.168.80", "192.168.81"

CLIENT = r"""
# What a network manager does with a device it has not seen before: up, associate, DHCP.
end=$(( $(date +%s) + $SECONDS_TO_TRY ))
seen=" $KNOWN "
while [ "$(date +%s)" -lt "$end" ]; do
  for d in /sys/class/net/*; do
    n=${d##*/}
    case "$seen" in *" $n "*) continue ;; esac
    echo "client: trying $n"
    ip link set "$n" up && echo "client: $n up"
    if [ -e "$d/phy80211" ]; then
      wpa_supplicant -B -i "$n" -c "$WPA_CONF" -P "$WPA_PID.$n" && echo "client: wpa_supplicant on $n"
    fi
    busybox udhcpc -i "$n" -n -q -t 3 -T 1 -s /bin/true && echo "client: LEASE on $n"
  done
  sleep 0.05
done
"""


# ------------------------------------------------------------------- the site


@pytest.fixture
def site(kernel_modules, lab, tmp_path):
    """The laptop is this guest's initial namespace; router with an AP and a USB NIC's far end."""
    name = lab.name("laptop")
    run(["ip", "netns", "attach", name, "1"])  # a name for the initial namespace, not a new one
    Path(f"/etc/netns/{name}").mkdir(parents=True, exist_ok=True)
    Path(f"/etc/netns/{name}/resolv.conf").write_text("# the guest's initial namespace\n")
    lab.defer(lambda: (run(["ip", "netns", "del", name], check=False),
                       subprocess.run(["rm", "-rf", f"/etc/netns/{name}"], check=False)))
    for m in ("mac80211_hwsim", "g_ether", "dummy_hcd"):
        if module_loaded(m):
            sh("rmmod", m)
    s = Site(lab, tmp_path, laptop=Netns(name))
    R = s.router

    # The router's access point: a radio made before `up`, moved to the router.
    modprobe("mac80211_hwsim", "radios=1")
    wait_for(lambda: phys_here(), 10, what="the AP's radio")
    (ap_phy,) = phys_here()
    s.ap_wlan = os.listdir(f"/sys/class/ieee80211/{ap_phy}/device/net")[0]
    sh("iw", "phy", ap_phy, "set", "netns", "name", R.name)
    lab.defer(lambda: sh("rmmod", "mac80211_hwsim", check=False))
    R.ip("addr", "add", f"{AP_NET}.1/24", "dev", s.ap_wlan)
    conf = tmp_path / "hostapd.conf"
    conf.write_text(f"interface={s.ap_wlan}\ndriver=nl80211\nssid={SSID}\nhw_mode=g\nchannel=1\n"
                    f"wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_psk={PSK_HEX}\n")
    s.hostapd_log = tmp_path / "hostapd.log"
    R.popen("hostapd", "-t", "-f", str(s.hostapd_log), str(conf), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
    wait_for(lambda: s.hostapd_log.exists() and "AP-ENABLED" in s.hostapd_log.read_text(), 60,
             what="hostapd to enable the AP")

    # The USB NIC: the gadget side goes to the router; the host side is unplugged for now.
    modprobe("dummy_hcd")
    modprobe("g_ether")
    lab.defer(lambda: (sh("rmmod", "g_ether", check=False), sh("rmmod", "dummy_hcd", check=False)))
    wait_for(lambda: usb_host_netdevs(), 60, what="the USB NIC to enumerate")
    s.usb_far = gadget_netdev()
    sh("ip", "link", "set", s.usb_far, "netns", R.name)
    Path(USB_DEV, "authorized").write_text("0")
    wait_for(lambda: not usb_host_netdevs(), 30, what="the USB NIC to go away")
    R.ip("addr", "add", f"{USB_NET}.1/24", "dev", s.usb_far)
    R.ip("link", "set", s.usb_far, "up")

    s.dnsmasq2_log = tmp_path / "dnsmasq2.log"
    R.popen("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", f"--interface={s.ap_wlan}", f"--interface={s.usb_far}",
            "--except-interface=lo", "--user=root", "--group=root",
            f"--dhcp-range={AP_NET}.100,{AP_NET}.150,255.255.255.0,2m",
            f"--dhcp-range={USB_NET}.100,{USB_NET}.150,255.255.255.0,2m",
            f"--dhcp-leasefile={tmp_path / 'leases2'}", "--log-dhcp", f"--log-facility={s.dnsmasq2_log}",
            "--pid-file=", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: s.dnsmasq2_log.exists() and "started" in s.dnsmasq2_log.read_text(), 30,
             what="dnsmasq on the new links")
    # Every frame that reaches the router over the two new links, at ingress (link layer).
    rules = tmp_path / "far-ends.nft"
    rules.write_text("table netdev nsrhp {\n"
                     f"  chain ap {{ type filter hook ingress device \"{s.ap_wlan}\" priority 0; counter; }}\n"
                     f"  chain usb {{ type filter hook ingress device \"{s.usb_far}\" priority 0; counter; }}\n"
                     "}\n")
    R.exec("nft", "-f", str(rules))
    s.wpa_conf = tmp_path / "wpa.conf"
    s.wpa_conf.write_text(f"ctrl_interface=/run/wpa_supplicant-hp\nnetwork={{\n  ssid=\"{SSID}\"\n"
                          f"  psk={PSK_HEX}\n  key_mgmt=WPA-PSK\n}}\n")
    yield s
    for pidfile in tmp_path.glob("wpa.pid.*"):  # a client's wpa_supplicant, if one started
        try:
            os.kill(int(pidfile.read_text()), 15)
        except (OSError, ValueError):
            pass


def laptop_links(site) -> list[str]:
    """The laptop's links, less hwsim0 (mac80211_hwsim's monitor device, there since the module loaded)."""
    return sorted(n for n in site.laptop.links() if n != "hwsim0")


def far_end_frames(site) -> dict[str, int]:
    out = site.router.exec("nft", "-j", "list", "table", "netdev", "nsrhp").stdout
    return {r["rule"]["chain"]: r["rule"]["expr"][0]["counter"]["packets"]
            for r in json.loads(out)["nftables"] if "rule" in r}


def stations(site) -> str:
    return site.router.exec("iw", "dev", site.ap_wlan, "station", "dump").stdout.strip()


def start_client(site, seconds: int) -> subprocess.Popen:
    env = dict(os.environ, KNOWN=" ".join(os.listdir("/sys/class/net")), SECONDS_TO_TRY=str(seconds),
               WPA_CONF=str(site.wpa_conf), WPA_PID=str(site.tmp / "wpa.pid"))
    return subprocess.Popen(["sh", "-c", CLIENT], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def status(site) -> dict:
    p = site.nsroute("status", "--physical", site.physical, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def moved(site) -> list[dict]:
    return (status(site)["guard"] or {}).get("moved", [])


def wifs_in(ns: str) -> str:
    return Netns(ns).exec("iw", "dev").stdout


def in_physical(site) -> tuple[set[str], list[str]]:
    ph = Netns(site.physical)
    phy_list = ph.exec("iw", "phy").stdout
    return ({ln.split()[1] for ln in phy_list.splitlines() if ln.startswith("Wiphy")}, ph.links())


# ------------------------------------------------------------------- the test


@pytest.mark.parametrize("backend", ["userspace", "kernel"])
def test_new_uplinks_move_out_and_nothing_leaks(site, backend):
    t0 = time.monotonic()

    def mark(what: str) -> None:
        print(f"{time.monotonic() - t0:6.1f}s {what}")

    L = site.laptop
    r = site.up("--backend", backend, timeout=600)  # minutes under TCG on a busy host
    assert r.returncode == 0, r.stderr
    mark("up")
    before_phys = phys_here()
    assert laptop_links(site) == sorted(["lo", site.tun])
    info = status(site)
    assert info["guard"]["running"] and info["guard"]["block"], info["guard"]

    client = start_client(site, 25)
    hwsim = Hwsim()
    watch = LinkWatch()
    try:
        # (a) a Wi-Fi dongle and (b) a USB NIC, plugged in while up
        plugged = time.time()
        hwsim.new_radio()
        Path(USB_DEV, "authorized").write_text("1")
        wait_for(lambda: {m["what"] for m in moved(site)} >= {"wiphy", "netdev"}, 60,
                 what="the guard to move the new radio and the USB NIC")
        mark("both moved")
        dongle = next(m for m in moved(site) if m["what"] == "wiphy")
        usb = next(m for m in moved(site) if m["what"] == "netdev")
        # The radio moved before its interface existed: mac80211 then creates the
        # interface where the radio is, so it never appears on the laptop at all.
        wait_for(lambda: f"phy#{dongle['index']}" in wifs_in(site.physical), 30,
                 what="the dongle's interface in the physical namespace")
        phys_there, links_there = in_physical(site)
        assert dongle["name"] in phys_there and dongle["name"] not in phys_here()
        assert usb["name"] in links_there and not usb_host_netdevs()
        assert laptop_links(site) == sorted(["lo", site.tun])
        # each moved within a second of the kernel announcing it
        for m, seen in ((dongle, plugged), (usb, watch.appeared(index=usb["index"]))):
            print(f"{m['what']} {m['name']}: moved {m['time'] - seen:.3f}s after it appeared")
            assert 0 <= m["time"] - seen < 1.0, (m, seen)

        # The tunnel dies: the engine is killed (or the kernel link deleted); nothing changes.
        if backend == "userspace":
            os.kill(status(site)["engine"]["pid"], 9)
        else:
            L.ip("link", "del", "dev", site.tun)
        mark("tunnel killed")
        # A driver re-creating its device (the dongle removed and plugged again) while up.
        del_radio_in(site.physical, dongle["name"])
        hwsim.new_radio()
        wait_for(lambda: sum(m["what"] == "wiphy" for m in moved(site)) >= 2, 30,
                 what="the re-plugged radio to move")
        mark("re-plugged radio moved")
        assert laptop_links(site) == ["lo"]
        out, _ = client.communicate(timeout=120)
        print(out)
        assert "LEASE" not in out, out
        assert stations(site) == "", stations(site)
        assert far_end_frames(site) == {"ap": 0, "usb": 0}, far_end_frames(site)
        dhcp_log = site.dnsmasq2_log.read_text()
        assert "DHCPDISCOVER" not in dhcp_log, dhcp_log
        assert "AP-STA-CONNECTED" not in site.hostapd_log.read_text()
        st = status(site)
        assert st["guard"]["running"] and not st["guard"]["errors"], st["guard"]
        text = site.nsroute("status", "--physical", site.physical).stdout
        assert f"moved wiphy {dongle['name']}" in text, text
    finally:
        hwsim.close()
        watch.sock.close()
        if client.poll() is None:
            client.kill()
        r = site.down(timeout=600)
    assert r.returncode == 0, r.stderr
    mark("down")
    # `down` hands every device back: the radios that moved, the USB NIC.
    new_phys = phys_here() - before_phys
    assert len(new_phys) == 1, (before_phys, phys_here())  # the re-plugged radio (the first is gone)
    assert len(usb_host_netdevs()) == 1, os.listdir("/sys/class/net")
    assert "nsroute_guard" not in L.exec("nft", "list", "tables").stdout
    assert not os.path.exists(f"/run/netns/{site.physical}")
