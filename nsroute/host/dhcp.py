"""DHCP inside the physical namespace: busybox udhcpc with nsroute's own hook.

Why udhcpc: it is one small static binary in Debian (busybox / busybox-static, already on
most systems for the initramfs), it runs one interface in the foreground without touching
any other, and it delegates every change to a script — so nsroute decides where things go:
the lease's address and routes land on the device inside the physical namespace, its DNS in
/etc/netns/NAME/resolv.conf, never in the protected side's /etc/resolv.conf. dhclient's
stock script, by contrast, writes /etc/resolv.conf itself.

The hook (udhcpc-hook beside this file, which runs `python -m nsroute.host.dhcp EVENT`)
never flushes on `deconfig`: the restored lease stays usable until the server answers, so
nothing drops during the move. It is shipped, not written at run time: /run, where state
lives, is mounted noexec by Debian's initramfs.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .. import fsmode
from . import dns, netns, procs
from .records import FOREVER
from .state import Proc

ENV_RESOLV = "NSROUTE_DHCP_RESOLV"
ENV_METRIC = "NSROUTE_DHCP_METRIC"
ENV_DEFAULT = "NSROUTE_DHCP_DEFAULT"
ENV_PYTHON = "NSROUTE_DHCP_PYTHON"  # the interpreter udhcpc-hook runs this module on
HOOK = Path(__file__).with_name("udhcpc-hook")


def client_argv() -> list[str] | None:
    """udhcpc, standalone or through busybox; None when neither is installed."""
    if shutil.which("udhcpc"):
        return ["udhcpc"]
    if shutil.which("busybox"):
        probe = subprocess.run(["busybox", "--list"], capture_output=True, text=True)
        if "udhcpc" in probe.stdout.split():
            return ["busybox", "udhcpc"]
    return None


def hook_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a udhcpc that runs HOOK: the hook runs this module on our interpreter."""
    return {**env, ENV_PYTHON: sys.executable}


def start(ifname: str, ns: str, resolv_path: str, log: Path,
          request_ip: str | None, metric: int | None, default_route: bool) -> Proc | None:
    """Run udhcpc for `ifname` inside `ns`; None when no client is installed."""
    client = client_argv()
    if client is None:
        return None
    # -p: a file of the deployment on the command line, by which `down` knows a client
    # even when no record of it was written (hotplug.stop)
    argv = [*client, "-f", "-i", ifname, "-s", str(HOOK), "-p", str(log.with_suffix(".pid")),
            "-t", "5", "-T", "2", "-A", "5"]
    if request_ip:
        argv += ["-r", request_ip]
    env = hook_env(dict(os.environ))
    env[ENV_RESOLV] = resolv_path
    env[ENV_DEFAULT] = "1" if default_route else "0"
    if metric is not None:
        env[ENV_METRIC] = str(metric)
    with os.fdopen(fsmode.open_file(log, os.O_WRONLY | os.O_APPEND, 0o600), "ab") as out:
        p = netns.popen(ns, argv, stdout=out, stderr=out, env=env)
    return procs.record(p.pid, f"dhcp {ifname}", argv)


def serves(argv: list[str], ifname: str) -> bool:
    """A udhcpc command line (as `start` makes it) for interface `ifname`."""
    return any(a == "-i" and b == ifname for a, b in zip(argv, argv[1:], strict=False))


def wanted(snap: dict) -> bool:
    """An uplink whose snapshot had a lease, or no IPv4 address at all, keeps a DHCP client."""
    return bool(snap.get("dynamic") or snap.get("unconfigured"))


def start_uplink(snap: dict, ns: str, store_dir: Path, stem: str) -> Proc | None:
    """udhcpc for an uplink in `ns`, as its snapshot asks: `up` and the guard (when the
    uplink comes back) start it the same way. None when no client is installed."""
    name = snap["name"]
    if snap.get("unconfigured") and not snap.get("up"):
        from . import kernel  # not at the top: the hook (run by udhcpc) does without pyroute2

        kernel.set_link(ns, name, up=True)
    return start(name, ns, str(Path("/etc/netns") / ns / "resolv.conf"),
                 store_dir / f"{stem}.dhcp-{name}.log", lease_ip(snap), default_metric(snap),
                 bool(_defaults(snap)) or bool(snap.get("unconfigured")))


def lease_ip(snap: dict) -> str | None:
    """The leased IPv4 address to ask for again (udhcpc -r)."""
    for a in snap["addresses"]:
        if a["family"] == 4 and a["valid"] != FOREVER:
            return a["cidr"].split("/")[0]
    return None


def _defaults(snap: dict) -> list[dict]:
    """IPv4 default routes of the main table in a snapshot (records.py)."""
    return [r for r in snap["routes"] if r["dst"] == "0.0.0.0/0" and r["table"] == 254]


def default_metric(snap: dict) -> int | None:
    d = _defaults(snap)
    return d[0].get("metric") if d else None


def lease_commands(event: str, env: dict[str, str], subnet_route: bool = False) -> list[list[str]]:
    """The `ip` commands for one udhcpc event (pure: tested without root).

    `subnet_route`: the address is already there with `noprefixroute` (NetworkManager adds
    it so), which `ip addr replace` keeps; then the kernel makes no subnet route, so add it.
    """
    if event not in ("bound", "renew"):
        return []
    dev, ip = env["interface"], env.get("ip")
    if not ip:
        return []
    if env.get("mask"):
        prefix = int(env["mask"])
    elif env.get("subnet"):
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{env['subnet']}").prefixlen
    else:
        prefix = 32
    cmds = []
    addr = ["addr", "replace", f"{ip}/{prefix}"]
    if env.get("broadcast"):
        addr += ["broadcast", env["broadcast"]]
    addr += ["dev", dev]
    if env.get("lease", "").isdigit():
        addr += ["valid_lft", env["lease"], "preferred_lft", env["lease"]]
    cmds.append(addr)
    if subnet_route:
        net = str(ipaddress.IPv4Interface(f"{ip}/{prefix}").network)
        route = ["-4", "route", "replace", net, "dev", dev, "proto", "kernel", "scope", "link", "src", ip]
        if env.get(ENV_METRIC):
            route += ["metric", env[ENV_METRIC]]
        cmds.append(route)
    routers = env.get("router", "").split()
    if routers and env.get(ENV_DEFAULT, "1") == "1":
        route = ["-4", "route", "replace", "default", "via", routers[0], "dev", dev, "proto", "dhcp"]
        if env.get(ENV_METRIC):
            route += ["metric", env[ENV_METRIC]]
        cmds.append(route)
    return cmds


def lease_resolv(env: dict[str, str]) -> str | None:
    servers = env.get("dns", "").split()
    if not servers:
        return None
    search = (env.get("search") or env.get("domain") or "").split()
    return dns.render(servers, search, origin=f"nsroute (DHCP on {env.get('interface', '?')})")


def hook(event: str, env: dict[str, str]) -> int:
    """udhcpc's script: apply a lease in this (physical) namespace; DNS to the physical file."""
    if event in ("bound", "renew"):
        old = _other_leases(env["interface"], env.get("ip", ""))
        noprefix = _noprefixroute(env["interface"], env.get("ip", ""))
        # `ip`, not kernel.py: udhcpc runs this hook on every lease event, and importing
        # pyroute2 would add about 0.4-0.5 s to each (measured: 0.2-0.45 s without, 0.7-0.9 s with)
        for args in lease_commands(event, env, subnet_route=noprefix):
            subprocess.run(["ip", *args], check=False)
        for cidr in old:
            subprocess.run(["ip", "addr", "del", cidr, "dev", env["interface"]], check=False)
        text = lease_resolv(env)
        target = env.get(ENV_RESOLV)
        if text and target and Path(target).parent.is_dir():
            dns.write_in_place(target, text)
    return 0


def _addr_info(dev: str) -> list[dict]:
    import json

    p = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", dev], capture_output=True, text=True)
    try:
        return json.loads(p.stdout)[0]["addr_info"]
    except (ValueError, IndexError, KeyError):
        return []


def _other_leases(dev: str, keep: str) -> list[str]:
    """Leased (finite lifetime) IPv4 addresses on `dev` other than the new one."""
    return [f"{a['local']}/{a['prefixlen']}" for a in _addr_info(dev)
            if a.get("dynamic") and a.get("local") != keep]


def _noprefixroute(dev: str, ip: str) -> bool:
    """`ip` is on `dev` already, flagged `noprefixroute` (a replace keeps the flag)."""
    return any(a.get("local") == ip and a.get("noprefixroute") for a in _addr_info(dev))


if __name__ == "__main__":
    sys.exit(hook(sys.argv[1] if len(sys.argv) > 1 else "", dict(os.environ)))
