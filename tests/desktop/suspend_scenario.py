"""Guest side of the suspend test (tests/desktop/test_desktop_suspend.py): a laptop that
sleeps with the tunnel up and wakes after longer than a session may live.

Run as `python3 -m tests.desktop.suspend_scenario BACKEND` inside the desktop VM (the job
runner of scripts/desktop-run). The VM suspends to RAM (S3) and its RTC wakes it. After a
resume the guest's 9p shares are dead (the kernel's 9p virtio transport does not survive a
suspend), so everything this script needs afterwards is loaded before it sleeps, it runs
only programs from the VM's own disk, and its verdict goes straight to the serial console
as one line; then it powers the VM off, since the job runner could never report.

The desktop: an uplink (veth) into a router namespace with counters, a kernel WireGuard
server behind it (site.py), `nsroute up` with BACKEND. The server's kernel counts sleep
(CLOCK_BOOTTIME): after more than REJECT_AFTER_TIME (180 s) asleep it drops the old session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from tests.desktop.guest.site import (
    SERVER_TUNNEL,
    build_wan,
    client_config,
    counter,
    install_counters,
    make_router_and_server,
    reset_counters,
    static_lan_uplink,
)

VERDICT = "NSROUTE-SUSPEND-VERDICT "
SLEEP = 200  # seconds asleep: more than REJECT_AFTER_TIME
UPLINK = "up0"


def ping_once(timeout: int = 1) -> bool:
    return subprocess.run(["ping", "-c", "1", "-W", str(timeout), SERVER_TUNNEL],
                          capture_output=True, timeout=timeout + 5).returncode == 0


def latest_handshake() -> int:
    out = subprocess.run(["wg", "show", "wg0", "latest-handshakes"], capture_output=True,
                         text=True, timeout=10).stdout.split()
    return int(out[1]) if len(out) >= 2 else 0


def clocks() -> dict[str, float]:
    return {"boot": time.clock_gettime(time.CLOCK_BOOTTIME), "mono": time.monotonic(), "wall": time.time()}


def main(backend: str) -> dict:
    tmp = Path(tempfile.mkdtemp())
    router, server = make_router_and_server()
    static_lan_uplink(router, UPLINK)
    spub, ckey = build_wan(router, server, tmp)
    install_counters(router, ["r-lan"])
    conf = client_config(tmp / "wg0.conf", ckey, spub)
    conf.write_text(conf.read_text().replace("PersistentKeepalive = 25\n", ""))  # only the user's traffic
    p = subprocess.run(["nsroute", "up", str(conf), "--interface", UPLINK, "--backend", backend],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        return {"error": f"nsroute up failed: {p.stderr[-1500:]}"}
    end = time.monotonic() + 60
    while not ping_once() and time.monotonic() < end:
        pass
    before = latest_handshake()
    if not before:
        return {"error": "no handshake before the suspend"}
    reset_counters(router)

    # to sleep: an RTC alarm, then S3 (the write returns after the resume)
    Path("/sys/class/rtc/rtc0/device/power/wakeup").write_text("enabled")
    Path("/sys/class/rtc/rtc0/wakealarm").write_text("0")
    Path("/sys/class/rtc/rtc0/wakealarm").write_text(f"+{SLEEP}")
    t0 = clocks()
    with open("/sys/power/state", "w") as f:
        f.write("mem")
    t1 = clocks()

    # awake: how long until the tunnel carries a ping again
    replied_after = None
    while time.monotonic() - t1["mono"] < 60:
        if ping_once():
            replied_after = time.monotonic() - t1["mono"]
            break
    return {
        "backend": backend,
        "asleep_boottime_s": round(t1["boot"] - t0["boot"], 1),
        "asleep_monotonic_s": round(t1["mono"] - t0["mono"], 1),
        "first_reply_after_resume_s": None if replied_after is None else round(replied_after, 2),
        "handshake_before": before,
        "handshake_after": latest_handshake(),
        "resumed_wall": int(t1["wall"]),
        "beyond": counter(router, "beyond"),
    }


if __name__ == "__main__":
    console = open("/dev/console", "w")  # opened before the sleep: the 9p-backed output is not
    try:
        verdict = main(sys.argv[1])
    except Exception as e:  # noqa: BLE001 (the console is the only way out after a resume)
        verdict = {"error": f"{type(e).__name__}: {e}"}
    console.write(VERDICT + json.dumps(verdict) + "\n")
    console.flush()
    termios.tcdrain(console.fileno())  # on the wire before the kernel's own power-off lines
    time.sleep(1)
    Path("/proc/sys/kernel/sysrq").write_text("1")
    Path("/proc/sysrq-trigger").write_text("o")  # power off now: nothing can report otherwise
