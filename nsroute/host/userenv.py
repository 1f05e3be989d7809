"""Who `nsroute exec` runs a command as, and with which environment.

`sudo nsroute exec -- firefox` must start firefox as the person who typed it, with their
groups, home, display and sound, not as root: root is used only when asked for by name
or when nobody else invoked us.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass


class UserError(Exception):
    """The user to run as cannot be determined; the message is one line for the terminal."""


@dataclass(frozen=True)
class Target:
    """The identity CMD runs under."""

    name: str
    uid: int
    gid: int
    home: str

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def _by_uid(uid: int, why: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        raise UserError(f"{why}: no user with uid {uid} in the password database") from None


def _uid_from(env: Mapping[str, str], var: str) -> int | None:
    value = env.get(var, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{var}={value!r} is not a numeric uid") from None


def resolve(user: str | None, env: Mapping[str, str]) -> Target:
    """--user USER (name or uid), else the invoking user (SUDO_UID/SUDO_GID, PKEXEC_UID), else us."""
    if user is not None:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            if not user.isdigit():
                raise UserError(f"no such user: {user}") from None
            pw = _by_uid(int(user), f"--user {user}")
        return Target(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
    uid = _uid_from(env, "SUDO_UID")
    if uid is not None:
        pw = _by_uid(uid, "SUDO_UID")
        gid = _uid_from(env, "SUDO_GID")
        return Target(pw.pw_name, pw.pw_uid, pw.pw_gid if gid is None else gid, pw.pw_dir)
    uid = _uid_from(env, "PKEXEC_UID")
    if uid is not None:
        pw = _by_uid(uid, "PKEXEC_UID")
        return Target(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
    pw = _by_uid(os.getuid(), "current user")
    return Target(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def environment(base: Mapping[str, str], target: Target, netns: str) -> dict[str, str]:
    """The caller's environment (display, sound, bus...) with the target's identity and NSROUTE_NETNS.

    sudo's env_reset often drops XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS; when they
    are missing and the user's runtime directory exists, point them at it so desktop
    programs find their session.
    """
    env = dict(base)
    env["HOME"] = target.home
    env["USER"] = env["LOGNAME"] = target.name
    env["NSROUTE_NETNS"] = netns
    if not target.is_root:
        runtime = f"/run/user/{target.uid}"
        if "XDG_RUNTIME_DIR" not in env and os.path.isdir(runtime):
            env["XDG_RUNTIME_DIR"] = runtime
        bus = f"{env.get('XDG_RUNTIME_DIR', runtime)}/bus"
        if "DBUS_SESSION_BUS_ADDRESS" not in env and os.path.exists(bus):
            env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={bus}"
    return env
