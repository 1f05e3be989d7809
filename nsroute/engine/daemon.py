"""Starting the engine: as `nsroute-wg IFNAME` (a wireguard-go drop-in) or `nsroute engine`."""

from __future__ import annotations

import logging
import os
import pwd
import sys
import time

from .. import fsmode
from ..config import ConfigError
from ..config import load as load_config
from ..nsutil import NetnsError, entered
from . import privileges, uapi
from .control import ControlError
from .loop import Engine, install_signal_handlers
from .options import Options, OptionsError
from .stats import stats_path
from .tun import TunError
from .udp import UDPError


class EngineError(Exception):
    """Start-up failed; the message is one line for the user."""


# LOG_LEVEL as wireguard-go reads it (verbose, error, silent; debug is its older name for
# verbose), plus info and warning for scripts written for earlier nsroute; any case.
# Unset or empty: info. SILENT is above every level the engine logs at.
SILENT = logging.CRITICAL + 10
LOG_LEVELS = {"verbose": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
              "warning": logging.WARNING, "error": logging.ERROR, "silent": SILENT}


def log_level(value: str | None) -> int:
    """The logging level for a LOG_LEVEL value; EngineError names the accepted ones."""
    if not value:
        return logging.INFO
    try:
        return LOG_LEVELS[value.strip().lower()]
    except KeyError:
        raise EngineError(f"LOG_LEVEL={value!r} is not one of {', '.join(LOG_LEVELS)}") from None


def _resolve_in(netns: str | None):
    """Endpoints given as names are resolved where the socket lives."""
    import socket

    def resolve(ep: tuple[str, int]) -> tuple[str, int]:
        with entered(netns):
            try:
                infos = socket.getaddrinfo(ep[0], ep[1], type=socket.SOCK_DGRAM)
            except OSError as e:
                raise EngineError(f"cannot resolve endpoint {ep[0]}: {e}") from None
        return infos[0][4][0], infos[0][4][1]

    return resolve


def run_engine(ifname: str, config_file: str | None = None, socket_netns: str | None = None,
               foreground: bool = False, mtu: int = 1420, pidfile: str | None = None,
               bring_up: bool | None = None, user: str | None = None,
               log_to_stdio: bool = False) -> int:
    """Set up as root, then (with `user`) serve as that user with no capabilities.
    `log_to_stdio`: a daemon with LOG_LEVEL set (and not silent) keeps its stdout and
    stderr, as wireguard-go's does (nsroute-wg); otherwise they go to /dev/null or
    $NSROUTE_LOG."""
    level = _check_start(ifname)
    logging.basicConfig(level=level, format=f"nsroute[{ifname}] %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        options = Options.from_env()
    except OptionsError as e:
        raise EngineError(e.strerror or str(e)) from None
    plan = _load_plan(config_file, socket_netns)
    account = _account(user)
    ready_w = None if foreground else _daemonize()
    log_fd = _open_log() if ready_w is not None else None  # while still root
    keep_stdio = (log_to_stdio and log_fd is None and bool(os.environ.get("LOG_LEVEL"))
                  and level != SILENT)
    if account is not None:
        # The counters file is created while root (see prepare_stats_file): removed at exit too.
        privileges.spawn_cleaner([p for p in (pidfile, stats_path(ifname, options.run_dir)) if p],
                                 uapi.socket_path(ifname))
    if bring_up is None:
        bring_up = bool(config_file or socket_netns)
    try:
        engine = _open_engine(ifname, mtu, socket_netns, bring_up, options, plan, config_file)
        if pidfile:
            fsmode.write_file(pidfile, f"{os.getpid()}\n", 0o644)
        if account is not None:
            _drop_privileges(engine, account)
    except EngineError as e:
        if ready_w is None:
            raise
        os.write(ready_w, f"{e}\n".encode())
        os._exit(1)
    _warm_up(engine)
    # Handlers before "ready": a SIGTERM right after it must still stop the loop, whose exit
    # removes the UAPI socket, not kill the process with the socket left behind.
    install_signal_handlers(engine)
    if ready_w is not None:
        os.write(ready_w, b"ok\n")
        os.close(ready_w)
        _detach_stdio(log_fd, keep_stdio)
    try:
        return engine.run()
    finally:
        engine.close()
        if pidfile:
            try:
                os.unlink(pidfile)
            except OSError:
                pass  # unprivileged by now: the cleaner removes it


def _check_start(ifname: str) -> int:
    """What must hold before anything is created; the log level LOG_LEVEL asks for."""
    from ..config import check_ifname

    try:
        check_ifname(ifname)
    except ValueError as e:
        raise EngineError(str(e)) from None
    level = log_level(os.environ.get("LOG_LEVEL"))
    for var in ("WG_TUN_FD", "WG_UAPI_FD"):
        if os.environ.get(var):
            raise EngineError(f"{var} is set: nsroute-wg creates its own TUN and UAPI socket "
                              "and does not take them from a parent (see README)")
    if os.geteuid() != 0:
        raise EngineError("must run as root (it creates a TUN device)")
    return level


def _load_plan(config_file: str | None, socket_netns: str | None) -> uapi.Plan | None:
    if not config_file:
        return None
    try:
        cfg = load_config(config_file, quick=False)
    except ConfigError as e:
        raise EngineError(str(e)) from None
    return uapi.plan_from_config(cfg, resolve=_resolve_in(socket_netns))


def _account(user: str | None) -> pwd.struct_passwd | None:
    """The user to serve as (`user`, else NSROUTE_ENGINE_USER); None to stay root."""
    if user is None:
        user = os.environ.get("NSROUTE_ENGINE_USER") or None
    if not user or user == "root":
        return None
    try:
        return privileges.resolve_user(user)
    except privileges.PrivilegeError as e:
        raise EngineError(str(e)) from None


def _open_engine(ifname: str, mtu: int, socket_netns: str | None, bring_up: bool,
                 options: Options, plan: uapi.Plan | None, config_file: str | None) -> Engine:
    try:
        engine = Engine.open(ifname, mtu=mtu, socket_netns=socket_netns, bring_up=bring_up,
                             options=options)
    except (TunError, UDPError, ControlError, NetnsError) as e:
        raise EngineError(e.strerror or str(e)) from None
    try:
        if plan is not None:
            engine.apply(plan)
    except uapi.UAPIError as e:
        engine.close()
        raise EngineError(f"{config_file}: {e}") from None
    return engine


def _drop_privileges(engine: Engine, account: pwd.struct_passwd) -> None:
    """Serve as `account` from here on, the counters file opened while still root."""
    engine.prepare_stats_file()
    try:
        privileges.drop_to(account)
    except OSError as e:
        engine.close()
        raise EngineError(f"cannot drop privileges to {account.pw_name}: {e}") from None
    engine.privileged = False


def _warm_up(engine: Engine) -> None:
    """A scratch handshake before the engine says it is ready (see wireguard.warmup)."""
    log = logging.getLogger("nsroute.engine")
    start = time.monotonic()
    try:
        ok = engine.warm_up(engine.clock(start))
    except Exception:
        log.exception("warm-up handshake failed (the engine carries on)")
        return
    if not ok:
        log.warning("warm-up handshake did not deliver its packets (the engine carries on)")
    log.debug("warm-up handshake took %.1f ms", (time.monotonic() - start) * 1000)


def _daemonize() -> int:
    """Fork before creating anything, so the TUN, sockets and UAPI credentials all belong to
    the daemon; the parent waits for the child's verdict and exits with it."""
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(w)
        verdict = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            verdict += chunk
        if verdict.startswith(b"ok"):
            os._exit(0)
        msg = verdict.decode(errors="replace").strip() or "engine died during start-up"
        sys.stderr.write(f"{msg}\n")
        sys.stderr.flush()
        os._exit(1)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    return w


def _open_log() -> int | None:
    log_path = os.environ.get("NSROUTE_LOG")
    if not log_path:
        return None
    return fsmode.open_file(log_path, os.O_WRONLY | os.O_APPEND, 0o600)


def _detach_stdio(log_fd: int | None, keep: bool = False) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    out = devnull if log_fd is None else log_fd
    os.dup2(devnull, 0)
    if not keep:
        os.dup2(out, 1)
        os.dup2(out, 2)
