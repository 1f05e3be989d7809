"""The UAPI unix socket: accepts `wg` clients and answers get/set requests in the loop."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat

from .. import fsmode
from .uapi import SOCKET_DIR, UAPIError, socket_path

log = logging.getLogger("nsroute.uapi")
MAX_REQUEST = 16 << 20


class ControlError(OSError):
    pass


class ControlSocket:
    """Listening socket plus the buffers of connected clients, all non-blocking."""

    def __init__(self, ifname: str, handler) -> None:
        """`handler(op, lines) -> str` returns the reply body (without errno) or raises UAPIError."""
        self.path = socket_path(ifname)
        self.handler = handler
        fsmode.make_dirs(SOCKET_DIR, 0o755)  # wireguard-go's 0755, whatever the umask
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
            except OSError:
                os.unlink(self.path)  # stale: its engine is gone
            else:
                raise ControlError(errno.EADDRINUSE, f"{self.path} is in use by a running engine")
            finally:
                probe.close()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        old = os.umask(0o077)
        try:
            self.listener.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.listener.listen(16)
        self.inode = os.stat(self.path).st_ino
        # Opened while still root: if the engine, unprivileged later, may not search the
        # directory (someone else's 0700 /run/wireguard), removal still shows as nlink 0.
        self.pinned = os.open(self.path, os.O_PATH | os.O_CLOEXEC)
        self.clients: dict[int, tuple[socket.socket, bytearray]] = {}

    def still_there(self) -> bool:
        """Deleting the socket file is a documented way to stop a userspace engine."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        except PermissionError:
            return os.fstat(self.pinned).st_nlink > 0
        return st.st_ino == self.inode and stat.S_ISSOCK(st.st_mode)

    def accept(self) -> list[socket.socket]:
        new = []
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return new
            except OSError as e:
                log.warning("uapi accept: %s", e)
                return new
            conn.setblocking(False)
            self.clients[conn.fileno()] = (conn, bytearray())
            new.append(conn)

    def readable(self, fd: int) -> bool:
        """Serve what a client sent; False when the client is gone."""
        conn, buf = self.clients[fd]
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            self.drop(fd)
            return False
        buf += chunk
        if len(buf) > MAX_REQUEST:
            self._reply(conn, "", errno.ENOMEM)
            self.drop(fd)
            return False
        while True:
            req = self._take_request(buf)
            if req is None:
                return True
            op, lines = req
            try:
                body = self.handler(op, lines)
                code = 0
            except UAPIError as e:
                log.warning("uapi %s refused: %s", op, e)
                body, code = "", e.code
            if not self._reply(conn, body, code):
                self.drop(fd)
                return False

    @staticmethod
    def _take_request(buf: bytearray) -> tuple[str, list[str]] | None:
        end = buf.find(b"\n\n")
        if end < 0:
            # `get=1\n\n` may arrive as "get=1\n" then "\n"; nothing else is a complete request.
            return None
        raw = bytes(buf[: end + 1])
        del buf[: end + 2]
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return ("invalid", [])
        lines = text.split("\n")[:-1]
        first = lines[0] if lines else ""
        if first == "get=1":
            return ("get", lines[1:])
        if first == "set=1":
            return ("set", lines[1:])
        return ("invalid", lines)

    @staticmethod
    def _reply(conn: socket.socket, body: str, code: int) -> bool:
        data = (body + f"errno={code}\n\n").encode()
        conn.setblocking(True)
        conn.settimeout(2.0)
        try:
            conn.sendall(data)
        except OSError:
            return False
        finally:
            conn.setblocking(False)
        return True

    def drop(self, fd: int) -> None:
        entry = self.clients.pop(fd, None)
        if entry:
            entry[0].close()

    def close(self) -> None:
        for fd in list(self.clients):
            self.drop(fd)
        self.listener.close()
        os.close(self.pinned)
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass  # gone already, or we run unprivileged and the cleaner removes it
