"""NetworkManager (and the wpa_supplicant it drives) moved into the physical namespace.

Why: on a desktop, NetworkManager is what associates the Wi-Fi, takes the DHCP leases and
lets the user switch networks. Marking the moved devices unmanaged (networkmanager.py)
leaves the uplinks disconnected for as long as nsroute is up. Instead, when systemd runs
NetworkManager, `up` stops it before the devices move, and starts it again inside the
physical namespace through runtime drop-ins (/run/systemd/system/UNIT.d, gone at reboot):
`NetworkNamespacePath=` puts it where the devices now live. It also needs a sysfs of that
namespace (it reads /sys/class/net to tell Wi-Fi from Ethernet, and systemd 252 leaves a
service the initial namespace's /sys), so `up` mounts one, read-only, from inside the
physical namespace and the drop-in binds it over the service's /sys
(`BindReadOnlyPaths=`). Read-only on purpose: NetworkManager then does without udev,
which never sees devices outside the initial namespace and would leave them unmanaged.
wpa_supplicant, which NetworkManager starts over D-Bus, gets the same namespace so it can
see the radios. D-Bus is a filesystem socket: nmcli, the desktop's applet and the user's
secrets agent keep talking to both from the protected side.

What NetworkManager must not do from there, set in a runtime conf.d file:
- push DNS: with systemd-resolved it sends each link's servers by ifindex, and ifindexes
  in `physical` name other links (perhaps the tunnel) in resolved's namespace; without
  resolved it would rewrite /etc/resolv.conf, which the tunnel's DNS owns
  (`dns=none`, `rc-manager=unmanaged`, `systemd-resolved=false`). It still writes the
  servers of the networks it joins to its own files under /run/NetworkManager, which the
  guard passes on to the physical side (nmdns.py);
- run its connectivity (captive-portal) check: its name lookup would go through the
  protected side's resolver, i.e. through the tunnel (`nsroute exec` is the way to a portal).

`down` stops it, removes the drop-ins and, once the devices are home, starts it in the
initial namespace again; it reconnects them as before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import HostError

NM_UNIT = "NetworkManager.service"
WPA_UNIT = "wpa_supplicant.service"
SYSTEMD_RUN = Path("/run/systemd/system")
NM_RUN = Path("/run/NetworkManager")
NM_CONF_DIR = NM_RUN / "conf.d"
DROPIN_NAME = "50-nsroute-physical.conf"
TIMEOUT = 60.0



def nm_conf(unmanaged: list[str]) -> str:
    """NetworkManager's runtime configuration while it runs in the physical namespace.

    `unmanaged`: moved devices it did not manage at home. Without udev there (see above)
    it would forget a udev rule's or the user's choice and start configuring them.
    """
    text = ("# Written by nsroute while up (NetworkManager runs in the physical namespace); "
            "removed by `nsroute down`.\n"
            "[main]\ndns=none\nrc-manager=unmanaged\nsystemd-resolved=false\n\n"
            "[connectivity]\nenabled=false\n")
    if unmanaged:
        text += "\n[keyfile]\nunmanaged-devices=" + ";".join(f"interface-name:{n}" for n in unmanaged) + "\n"
    return text


def runs_in_physical(conf_dir: Path = NM_CONF_DIR) -> bool:
    """`up` set NetworkManager to run in `physical` (its conf.d file, removed by `down`, is
    the record the guard reads)."""
    return (conf_dir / DROPIN_NAME).exists()


def dropin_text(physical: str, sysfs: str) -> str:
    """The unit drop-in that starts a service inside `physical`, with that namespace's sysfs."""
    return ("# Written by nsroute while up; removed by `nsroute down`.\n"
            f"[Service]\nNetworkNamespacePath=/run/netns/{physical}\nBindReadOnlyPaths={sysfs}:/sys\n")


def mount_sysfs(physical: str, where: Path) -> None:
    """A sysfs of `physical` at `where` (sysfs shows the network namespace of whoever mounts it)."""
    where.mkdir(mode=0o755, exist_ok=True)
    if os.path.ismount(where):
        return
    p = subprocess.run(["nsenter", f"--net=/run/netns/{physical}", "mount", "-t", "sysfs",
                        "-o", "ro,nosuid,nodev,noexec", "sysfs", str(where)],
                       capture_output=True, text=True, timeout=TIMEOUT)
    _must(p, f"mount a sysfs of {physical} at {where}")


def unmount_sysfs(where: Path) -> None:
    if os.path.ismount(where):
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=TIMEOUT)
    try:
        where.rmdir()
    except OSError:
        pass


def dropin_path(unit: str, root: Path = SYSTEMD_RUN) -> Path:
    return root / f"{unit}.d" / DROPIN_NAME


def _systemctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=TIMEOUT)


def _start(unit: str) -> subprocess.CompletedProcess:
    """`systemctl start`, without waiting when we run inside a unit's start or stop job.

    Why: nsroute@ is ordered before network-pre.target, and NetworkManager after it; a
    blocking start from nsroute@'s ExecStart would wait for a job that waits for us.
    """
    return _systemctl("start", *(["--no-block"] if _in_nsroute_unit() else []), unit)


def _in_nsroute_unit() -> bool:
    """We run in the cgroup of nsroute's own units (nsroute@, nsroute-kernel@)."""
    try:
        cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        return False
    return "/nsroute@" in cgroup or "/nsroute-kernel@" in cgroup


def _in_init_netns() -> bool:
    """Our network namespace is PID 1's: the services systemd starts share our view."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return False


RUNNING, STARTING = "running", "starting"


def presence() -> str:
    """RUNNING: systemd runs NetworkManager (in our namespace); STARTING: it will, a start
    job for it is queued; "" otherwise.

    Why STARTING: at boot nsroute's units run before network-pre.target and NetworkManager
    after it, so it is not running yet when the devices move. Its drop-ins, written now,
    are read when that queued job starts it: it comes up in `physical` from the first,
    and no packet of it ever leaves outside. (Enabled alone is not enough: a user who
    stopped it would find it started by `up`.)
    """
    if not (SYSTEMD_RUN.is_dir() and shutil.which("systemctl") and _in_init_netns()):
        return ""
    try:
        if _systemctl("is-active", "--quiet", NM_UNIT).returncode == 0:
            return RUNNING
        jobs = _systemctl("list-jobs", "--no-legend", "--plain", NM_UNIT).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return STARTING if NM_UNIT in jobs else ""


def available() -> bool:
    """systemd runs NetworkManager here now, or is about to (see `presence`)."""
    return presence() != ""


def _must(p: subprocess.CompletedProcess, what: str) -> None:
    if p.returncode != 0:
        why = (p.stderr or p.stdout).strip().splitlines()
        raise HostError(f"{what}: {why[-1] if why else f'exit status {p.returncode}'}")


def stop() -> None:
    """Before the devices move: NetworkManager and wpa_supplicant let go of them (only
    when RUNNING: at boot a stop would cancel its queued start)."""
    _must(_systemctl("stop", NM_UNIT, WPA_UNIT), f"systemctl stop {NM_UNIT} {WPA_UNIT}")


def start_in(physical: str, unmanaged: list[str], sysfs: Path) -> None:
    """After the devices moved: NetworkManager again (and wpa_supplicant when it asks for
    it over D-Bus), now inside `physical`."""
    mount_sysfs(physical, sysfs)
    write_config(physical, unmanaged, str(sysfs))
    _must(_systemctl("daemon-reload"), "systemctl daemon-reload")
    _must(_start(NM_UNIT), f"systemctl start {NM_UNIT} (in {physical})")


def write_config(physical: str, unmanaged: list[str], sysfs: str) -> None:
    for unit in (NM_UNIT, WPA_UNIT):
        path = dropin_path(unit)
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_text(dropin_text(physical, sysfs))
        path.chmod(0o644)
    NM_CONF_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    conf = NM_CONF_DIR / DROPIN_NAME
    conf.write_text(nm_conf(unmanaged))
    conf.chmod(0o644)


def remove_config() -> None:
    for path in (dropin_path(NM_UNIT), dropin_path(WPA_UNIT), NM_CONF_DIR / DROPIN_NAME):
        path.unlink(missing_ok=True)


def leave(warn: list[str], sysfs: Path) -> None:
    """`down`, before the devices move home: stop both services where they run now."""
    try:
        p = _systemctl("stop", NM_UNIT, WPA_UNIT)
        if p.returncode != 0:
            warn.append(f"systemctl stop {NM_UNIT}: {(p.stderr or p.stdout).strip()}")
    except (OSError, subprocess.TimeoutExpired) as e:
        warn.append(f"systemctl stop {NM_UNIT}: {e}")
    remove_config()
    unmount_sysfs(sysfs)
    try:
        _systemctl("daemon-reload")
    except (OSError, subprocess.TimeoutExpired) as e:
        warn.append(f"systemctl daemon-reload: {e}")


def come_home(problems: list[str]) -> None:
    """`down`, once the devices are home: NetworkManager in the initial namespace again."""
    try:
        p = _start(NM_UNIT)
    except (OSError, subprocess.TimeoutExpired) as e:
        problems.append(f"systemctl start {NM_UNIT}: {e}")
        return
    if p.returncode != 0:
        problems.append(f"systemctl start {NM_UNIT}: {(p.stderr or p.stdout).strip()}")
