"""The backports wireguard-go missing: tests that need it fail with the reason, never skip."""

from __future__ import annotations

import pytest

from tests.support import wggo, wgpair


@pytest.fixture
def fetch_fails(tmp_path, monkeypatch):
    script = tmp_path / "fetch-wireguard-go"
    script.write_text("import sys\nprint('fetch-wireguard-go: apt-get update failed: no network', "
                      "file=sys.stderr)\nsys.exit(1)\n")
    monkeypatch.setattr(wggo, "FETCH", script)
    wggo.new_info.cache_clear()
    yield
    wggo.new_info.cache_clear()


def test_missing_new_build_is_an_error_with_the_fetch_reason(fetch_fails):
    with pytest.raises(wggo.MissingBuild, match="no wireguard-go-new .*no network"):
        wgpair.impl_cmd(wggo.NEW)
    assert wgpair.impl_cmd(wggo.OLD) == ["wireguard-go"]


def test_unknown_implementation_is_refused():
    with pytest.raises(ValueError):
        wgpair.impl_cmd("wireguard-go-2019")
