"""`--version` names the installed nsroute, as packagers and bug reports need it."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from click.testing import CliRunner

from nsroute.cli import main, wg_cmd

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_version_options_name_the_release():
    release = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert version("nsroute") == release
    out = CliRunner().invoke(main, ["--version"])
    assert out.exit_code == 0 and out.output == f"nsroute {release}\n"
    out = CliRunner().invoke(wg_cmd, ["--version"])
    assert out.exit_code == 0 and out.output == f"nsroute-wg v{release}\n"
