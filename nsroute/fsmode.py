"""Files and directories with the mode nsroute means, whatever the caller's umask.

Root's umask is often 077 on hardened machines (and `sudo` passes it on), so a mode given
to mkdir or open is only an upper bound. Every file and directory nsroute creates goes
through here: created, then chmod/fchmod to the exact mode. What already exists and is
not ours (/etc/resolv.conf, a /run/wireguard someone else made) keeps its mode.
"""

from __future__ import annotations

import os
from pathlib import Path

PUBLIC_DIR = 0o755


def make_dirs(path: str | os.PathLike[str], mode: int, parent_mode: int = PUBLIC_DIR) -> bool:
    """Create `path` (and missing parents, `parent_mode`) with exact modes.

    Returns True when `path` itself was created here; an existing directory is left as it is.
    """
    target = Path(path)
    missing = []
    p = target
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created = False
    for d in reversed(missing):
        want = mode if d == target else parent_mode
        try:
            os.mkdir(d, want)
        except FileExistsError:
            continue  # made concurrently by someone else: theirs, left alone
        os.chmod(d, want)
        created = d == target
    if not target.is_dir():
        raise NotADirectoryError(f"{target} is not a directory")
    return created


def open_file(path: str | os.PathLike[str], flags: int, mode: int, force: bool = True) -> int:
    """`os.open(path, flags | O_CREAT, mode)` whose result has exactly `mode` when created.

    force=True: the file is ours, so an existing one gets `mode` too (a private key file
    must not stay readable because an older run left it so). force=False: an existing file
    (a system resolv.conf) keeps its own mode; only a file created here gets `mode`.
    """
    flags |= os.O_CLOEXEC
    if force:
        fd = os.open(path, flags | os.O_CREAT, mode)
    else:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            try:
                return os.open(path, flags & ~os.O_CREAT)
            except FileNotFoundError:  # a dangling symlink: create its target, as O_CREAT does
                fd = os.open(path, flags | os.O_CREAT, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_file(path: str | os.PathLike[str], text: str, mode: int, force: bool = True) -> None:
    """Truncate and write `text` in place (the inode stays: bind mounts and symlinks survive)."""
    fd = open_file(path, os.O_WRONLY | os.O_TRUNC, mode, force)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def replace_file(path: str | os.PathLike[str], text: str, mode: int, fsync: bool = False) -> None:
    """Write a sibling temporary file with `mode`, then rename it over `path` (atomic)."""
    tmp = f"{os.fspath(path)}.{os.getpid()}.tmp"
    fd = open_file(tmp, os.O_WRONLY | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
