"""The kernel backend: WireGuard's own netns recipe, automated.

The kernel's WireGuard interface opens its UDP socket in the namespace where it was
*created*, and keeps it there when the interface moves. So: create it in the physical
namespace (host mode; in container mode, where nsroute runs), configure it over netlink
there, move it into the protected namespace. There is no engine process: the kill
switch is the same shape (delete the link and nothing can leave), and `up` again
recreates it. Addresses, MTU, routes and DNS are the same steps as for the userspace
engine (tunnel.configure).

Pure parts (backend choice, the netlink device description) take their inputs as
arguments so the unit tests need neither root nor the module.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import config as wgconfig
from . import netns, tunnel
from .errors import HostError

MODULE = "wireguard"
BACKENDS = ("auto", "userspace", "kernel")


# ------------------------------------------------------------------ the choice


def module_available(sys_module: Path = Path("/sys/module")) -> bool:
    """True when the kernel has WireGuard: loaded (or built in), else after `modprobe`.

    /sys/module/wireguard exists for the built-in driver too (it has a MODULE_VERSION).
    """
    if (sys_module / MODULE).exists():
        return True
    if shutil.which("modprobe") is None:
        return False
    try:
        subprocess.run(["modprobe", "-q", MODULE], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return (sys_module / MODULE).exists()


def choose(requested: str, available: Callable[[], bool] = module_available) -> str:
    """`auto` -> kernel when the module is there, else userspace; `kernel` without it -> error."""
    if requested not in BACKENDS:
        raise HostError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    if requested == "userspace":
        return "userspace"
    if available():
        return "kernel"
    if requested == "kernel":
        raise HostError("--backend kernel: this kernel has no wireguard module "
                        "(modprobe wireguard failed); use --backend userspace (nothing changed)")
    return "userspace"


# --------------------------------------------------------- the netlink config


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def resolve_endpoints(cfg: wgconfig.Config, ns: str | None, local: bool = False) -> dict[bytes, tuple[str, int]]:
    """Peer public key -> (literal address, port), resolved where the UDP socket lives."""
    out = {}
    for p in cfg.peers:
        if p.endpoint is None:
            continue
        host, port = p.endpoint
        addr = tunnel.resolve_local(host, port) if local else tunnel.resolve(host, port, ns)
        out[p.public_key] = (addr.split("%")[0], port)
    return out


def device_spec(cfg: wgconfig.Config, endpoints: dict[bytes, tuple[str, int]]) -> dict[str, Any]:
    """What to tell the kernel, in the shape of pyroute2's WireGuard.set (keys in base64).

    Device: private key, listen port (absent: the kernel picks one), fwmark (0 clears it).
    Each peer replaces its allowed IPs, so a re-run sets exactly the file's list.
    """
    i = cfg.interface
    if i.private_key is None:
        raise HostError(f"{cfg.path}: [Interface] has no PrivateKey")
    peers = []
    for p in cfg.peers:
        peer: dict[str, Any] = {"public_key": _b64(p.public_key), "replace_allowed_ips": True,
                                "allowed_ips": [str(n) for n in p.allowed_ips],
                                "persistent_keepalive": p.persistent_keepalive or 0}
        if p.preshared_key is not None:
            peer["preshared_key"] = _b64(p.preshared_key)
        if p.public_key in endpoints:
            peer["endpoint_addr"], peer["endpoint_port"] = endpoints[p.public_key]
        peers.append(peer)
    return {"private_key": _b64(i.private_key), "listen_port": i.listen_port,
            "fwmark": i.fwmark or 0, "peers": peers}


# ------------------------------------------------------------------ the steps


def _wireguard_socket():
    try:
        from pyroute2 import WireGuard
    except ImportError as e:  # pragma: no cover - pyroute2 is a dependency
        raise HostError(f"the kernel backend needs pyroute2 with WireGuard support: {e}") from None
    return WireGuard()


def create(ifname: str, ns: str | None, mtu: int) -> None:
    """`ip link add IF type wireguard` in `ns`: its UDP socket will live in `ns` for good."""
    if netns.link(ns, ifname) is not None:
        raise HostError(f"interface {ifname} already exists in {ns or 'this namespace'}")
    p = netns.ip(ns, "link", "add", "dev", ifname, "type", "wireguard", check=False)
    if p.returncode != 0:
        raise HostError(f"cannot create WireGuard interface {ifname}: {p.stderr.strip() or p.returncode}")
    netns.ip(ns, "link", "set", "dev", ifname, "mtu", str(mtu))


def configure(ifname: str, ns: str | None, spec: dict[str, Any]) -> None:
    """Keys, port, fwmark and peers over generic netlink, from inside `ns`."""
    try:
        with netns.entered(ns):
            wg = _wireguard_socket()
            try:
                wg.set(ifname, private_key=spec["private_key"], listen_port=spec["listen_port"],
                       fwmark=spec["fwmark"])
                for peer in spec["peers"]:
                    wg.set(ifname, peer=peer)
            finally:
                wg.close()
    except HostError:
        raise
    except Exception as e:  # netlink errors come as NetlinkError/OSError/ValueError
        raise HostError(f"cannot configure WireGuard interface {ifname} over netlink: {e}") from None


def set_keepalive(ifname: str, ns: str | None, public_key: bytes, seconds: int) -> None:
    """One peer's persistent keepalive (0: off); turning it on sends a keepalive at once."""
    try:
        with netns.entered(ns):
            wg = _wireguard_socket()
            try:
                wg.set(ifname, peer={"public_key": _b64(public_key), "persistent_keepalive": seconds})
            finally:
                wg.close()
    except HostError:
        raise
    except Exception as e:
        raise HostError(f"cannot set the keepalive of a peer of {ifname} over netlink: {e}") from None


def move(ifname: str, src: str | None, dst: str | None) -> None:
    """Move the link from `src` to `dst` (any namespace reference: None, name or path)."""
    from pyroute2 import IPRoute

    target = os.open(netns.path_of(dst), os.O_RDONLY)
    try:
        with netns.entered(src), IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                raise HostError(f"WireGuard interface {ifname} vanished before it could be moved")
            ipr.link("set", index=found[0], net_ns_fd=target)
    except HostError:
        raise
    except Exception as e:
        raise HostError(f"cannot move {ifname} into {dst or 'this namespace'}: {e}") from None
    finally:
        os.close(target)


def delete(ifname: str, ns: str | None) -> None:
    """Remove the link from `ns` if it is a WireGuard link there (never anything else)."""
    link = netns.link(ns, ifname)
    if link is not None and (link.get("linkinfo") or {}).get("info_kind") == "wireguard":
        netns.ip(ns, "link", "del", "dev", ifname, check=False)


def is_wireguard(ifname: str, ns: str | None) -> bool:
    link = netns.link(ns, ifname)
    return link is not None and (link.get("linkinfo") or {}).get("info_kind") == "wireguard"


# ---------------------------------------------------------------- reading back


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    value = obj.get_attr(name) if hasattr(obj, "get_attr") else None
    return default if value is None else value


def _key(value: Any) -> bytes | None:
    """pyroute2 decodes keys as {'key': raw, 'value': base64}, or gives raw/base64 alone."""
    if value is None:
        return None
    if isinstance(value, dict) or hasattr(value, "get"):
        raw = value.get("key")
        if isinstance(raw, bytes) and len(raw) == 32:
            return raw
        value = value.get("value")
    if isinstance(value, bytes) and len(value) == 32:
        return value
    if isinstance(value, bytes | str):
        return base64.b64decode(value)
    return None


def parse_device(msgs: Any) -> dict[str, Any]:
    """pyroute2's WireGuard.info answer -> the same shape as engine.uapi.get()."""
    dev: dict[str, Any] = {"peers": []}
    for m in msgs:
        if "listen_port" not in dev and _attr(m, "WGDEVICE_A_LISTEN_PORT") is not None:
            dev["listen_port"] = _attr(m, "WGDEVICE_A_LISTEN_PORT")
            dev["fwmark"] = _attr(m, "WGDEVICE_A_FWMARK", 0)
        for p in _attr(m, "WGDEVICE_A_PEERS", []):
            ep = _attr(p, "WGPEER_A_ENDPOINT")
            endpoint = None
            if ep is not None and ep.get("addr") and ep.get("port"):
                endpoint = wgconfig.format_endpoint((ep["addr"], ep["port"]))
            hs = _attr(p, "WGPEER_A_LAST_HANDSHAKE_TIME")
            dev["peers"].append({
                "public_key": _key(_attr(p, "WGPEER_A_PUBLIC_KEY")),
                "endpoint": endpoint,
                "allowed_ips": [a.get("addr") for a in _attr(p, "WGPEER_A_ALLOWEDIPS", []) if a.get("addr")],
                "last_handshake_time": (hs["tv_sec"] + hs["tv_nsec"] / 1e9) if hs is not None else 0,
                "rx_bytes": _attr(p, "WGPEER_A_RX_BYTES", 0),
                "tx_bytes": _attr(p, "WGPEER_A_TX_BYTES", 0),
                "persistent_keepalive_interval": _attr(p, "WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", 0),
            })
    return dev


def device(ifname: str, ns: str | None) -> dict[str, Any] | None:
    """The interface's state as `status` shows it; None if it is not a WireGuard link there."""
    if not is_wireguard(ifname, ns):
        return None
    try:
        with netns.entered(ns):
            wg = _wireguard_socket()
            try:
                return parse_device(wg.info(ifname))
            finally:
                wg.close()
    except Exception:
        return None
