"""The physical side's resolv.conf follows the networks NetworkManager joins there.

Why: `nsroute exec` (a captive portal's browser, say) and `up`'s own endpoint lookups read
/etc/netns/PHYSICAL/resolv.conf. `up` fills it from the host's resolvers of the moment,
which is right only for the network the laptop was on then: at boot, under the unit,
NetworkManager has no lease yet and the file names no server at all, and after the user
joins another network while up (the café after home), it names servers of a network the
laptop left. Where NetworkManager runs in `physical` (nmphysical.py) it learns each
network's servers from DHCP, and although it is told to leave every resolv.conf of the
host alone (`dns=none`), it writes them to its own no-stub-resolv.conf under
/run/NetworkManager (1.42 does, shown in the desktop tier; its sources write that file in
every DNS mode, while its resolv.conf there is not written by the newest versions). This watch, one more descriptor in
the guard's loop (`Guard.extras`), copies that file into the physical side's each time
NetworkManager replaces it (inotify on its directory: it writes a temporary file and
renames it), in place, so a program already running in `physical` sees the change too.
A file naming no server (NetworkManager just started, nothing leased yet) is not copied:
the last servers known stay until a network brings new ones.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path

from ..nsutil import check, libc
from . import dns
from .nmphysical import NM_RUN

NM_RESOLV = "no-stub-resolv.conf"  # the servers themselves, never a local stub
IN_CLOSE_WRITE, IN_MOVED_TO = 0x08, 0x80

libc.inotify_init1.argtypes = [ctypes.c_int]
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


class Watch:
    """NetworkManager's list of servers, copied to `target` whenever it changes."""

    def __init__(self, target: Path, log: Callable[[str], None], source_dir: Path = NM_RUN) -> None:
        self.target, self.log = target, log
        self.source = source_dir / NM_RESOLV
        self.fd = fd = check(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC), "inotify_init1")
        try:
            source_dir.mkdir(mode=0o755, parents=True, exist_ok=True)  # NetworkManager's own mode
            check(libc.inotify_add_watch(fd, os.fsencode(source_dir), IN_CLOSE_WRITE | IN_MOVED_TO),
                  f"inotify_add_watch {source_dir}")
        except BaseException:
            os.close(fd)
            raise
        self.copy()  # what it wrote before the guard started

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        os.close(self.fd)

    def ready(self) -> None:
        """Something in NetworkManager's directory was written or renamed (few files change
        there: looking at its list of servers each time is simpler than reading the names)."""
        try:
            while os.read(self.fd, 1 << 16):
                pass
        except BlockingIOError:
            pass
        self.copy()

    def copy(self) -> None:
        text = dns.read(str(self.source)) or ""
        servers = dns.servers_in(text)
        if not servers or dns.read(str(self.target)) == text:
            return
        try:
            dns.write_in_place(str(self.target), text)
        except OSError as e:  # `down` removing the directory, say: the guard goes on
            self.log(f"guard: cannot write {self.target}: {e}")
            return
        self.log(f"guard: {self.target}: NetworkManager's servers in the physical namespace, {' '.join(servers)}")
