"""Network namespaces that a test makes and always removes.

Every name carries a random tag so that tests never collide with each other or with the
machine's own namespaces; the root namespace is never touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def run(cmd: Sequence[str], check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; raise with its stderr on failure."""
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert a command succeeded, showing its exit status and both outputs when it did not."""
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


class Netns:
    """A named network namespace with helpers to run commands inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen] = []

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["ip", "-n", self.name, *args], check=check)

    def exec(self, *args: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return run(["ip", "netns", "exec", self.name, *args], check=check, timeout=timeout, **kw)

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kw)
        self.procs.append(p)
        return p

    def stop_procs(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self.procs.clear()

    def pids(self) -> list[int]:
        out = run(["ip", "netns", "pids", self.name], check=False).stdout
        return [int(x) for x in out.split()]

    def links(self) -> list[str]:
        out = self.ip("-o", "link", "show").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


class Lab:
    """A set of namespaces with one random tag; `close()` removes all of them."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(3)
        self.namespaces: list[Netns] = []
        self.cleanups: list = []

    def name(self, short: str) -> str:
        return f"nsr-{self.tag}-{short}"

    def netns(self, short: str) -> Netns:
        ns = Netns(self.name(short))
        run(["ip", "netns", "add", ns.name])
        Path(f"/etc/netns/{ns.name}").mkdir(parents=True, exist_ok=True)
        Path(f"/etc/netns/{ns.name}/resolv.conf").write_text("# test host\n")
        ns.ip("link", "set", "lo", "up")
        self.namespaces.append(ns)
        return ns

    def veth(self, a: Netns, a_if: str, b: Netns, b_if: str) -> None:
        """Link two namespaces with a veth pair created directly inside them."""
        tmp = f"nsrt{secrets.token_hex(4)}"
        a.ip("link", "add", a_if, "type", "veth", "peer", "name", tmp)
        a.ip("link", "set", tmp, "netns", b.name)
        b.ip("link", "set", tmp, "name", b_if)
        a.ip("link", "set", a_if, "up")
        b.ip("link", "set", b_if, "up")

    def defer(self, fn) -> None:
        self.cleanups.append(fn)

    def close(self) -> None:
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:
                pass
        for ns in self.namespaces:
            ns.stop_procs()
        for ns in reversed(self.namespaces):
            for pid in ns.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns.name], check=False)
            shutil.rmtree(f"/etc/netns/{ns.name}", ignore_errors=True)


@contextmanager
def lab() -> Iterator[Lab]:
    lb = Lab()
    try:
        yield lb
    finally:
        lb.close()


def wait_for(pred, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll `pred` until it returns a truthy value; fail the test with `what` after `timeout`."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
