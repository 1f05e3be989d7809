"""nsroute in the desktop VM is the Debian package, installed with apt as a user would.

Why here: the other guest tests drive /usr/bin/nsroute, so what they prove holds for the
installed package; this file checks what installing it must give on its own.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tomllib
from pathlib import Path

from .conftest import sh

REPO = Path(__file__).resolve().parents[3]


def _version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_installed_from_the_package():
    status = sh("dpkg-query", "-W", "-f=${Status} ${Version}", "nsroute").stdout
    assert status == f"install ok installed {_version()}"
    for cmd in ("nsroute", "nsroute-wg"):
        assert shutil.which(cmd) == f"/usr/bin/{cmd}", cmd
        owner = sh("dpkg", "-S", f"/usr/bin/{cmd}").stdout
        assert owner.startswith("nsroute:"), owner
    assert sh("nsroute", "--version").stdout.strip() == f"nsroute {_version()}"
    assert sh("nsroute-wg", "--version").stdout.strip() == f"nsroute-wg v{_version()}"
    # the commands ignore the caller's PYTHONPATH: they run the package's own code
    env = dict(os.environ, PYTHONPATH="/nonexistent")
    p = sh("env", f"PYTHONPATH={env['PYTHONPATH']}", "nsroute", "genkey")
    assert len(p.stdout.strip()) == 44
    # the engine's unprivileged user, made by the package's postinst
    assert sh("id", "-u", "nsroute").stdout.strip().isdigit()


def test_units_man_pages_and_completion():
    for unit in ("nsroute@wg0.service", "nsroute-kernel@wg0.service"):
        load = sh("systemctl", "show", "-P", "LoadState", unit).stdout.strip()
        assert load == "loaded", unit
        path = sh("systemctl", "show", "-P", "FragmentPath", unit).stdout.strip()
        assert path.startswith("/lib/systemd/system/") or path.startswith("/usr/lib/systemd/system/"), path
    for page, title in (("nsroute.8.gz", ".TH NSROUTE 8"), ("nsroute-wg.8.gz", ".TH NSROUTE-WG 8")):
        text = gzip.decompress(Path("/usr/share/man/man8", page).read_bytes()).decode()
        assert text.startswith(title), page
    # bash completes nsroute's commands through the installed completion script
    script = ("source /usr/share/bash-completion/completions/nsroute; "
              "COMP_WORDS=(nsroute st); COMP_CWORD=1; _nsroute_completion nsroute; "
              'printf "%s\\n" "${COMPREPLY[@]}"')
    words = sh("bash", "-c", script).stdout.split()
    assert "status" in words and "up" not in words, words


def test_dhcp_hook_runs_from_the_package_on_a_noexec_run():
    """udhcpc runs the installed hook, which must not live under /run: Debian's initramfs
    mounts /run noexec (here too), and a hook written there never ran (leases were lost)."""
    opts = sh("findmnt", "-no", "OPTIONS", "/run").stdout
    assert "noexec" in opts.split(","), opts  # the trap this test is about is set here
    hook = Path("/usr/lib/nsroute/nsroute/host/udhcpc-hook")
    assert os.access(hook, os.X_OK) and "noexec" not in sh("findmnt", "-no", "OPTIONS", "-T", str(hook)).stdout
    # a `deconfig` event (which changes nothing) runs the package's module through it
    p = sh("env", "NSROUTE_DHCP_PYTHON=/usr/bin/python3", "interface=lo", str(hook), "deconfig")
    assert p.returncode == 0 and p.stderr == "", p.stderr
