"""The counters file (SIGUSR1) is never empty or half-written for a reader: written at
start, then replaced by rename, or, for an engine that dropped its privileges, rewritten in
place by one write that never makes the file shorter."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

from nsroute.engine import loop
from nsroute.engine.options import Options
from nsroute.wireguard.device import Device


class FakeTun:
    name, vnet, offload_flags, offload_refused = "wgtest0", True, 0, []


def make_engine(run_dir) -> loop.Engine:
    return loop.Engine(FakeTun(), SimpleNamespace(v4=None, v6=None),
                       Options(run_dir=str(run_dir)), device=Device())


def test_in_place_rewrites_never_shrink_or_empty_the_file(tmp_path):
    eng = make_engine(tmp_path)
    eng.prepare_stats_file()
    path = tmp_path / "engine-wgtest0.stats.json"
    first = json.loads(path.read_text())  # there from the start, complete
    assert first["ifname"] == "wgtest0" and first["errors"] == {}
    eng.errors.update({f"some_long_error_name_{i}": i for i in range(20)})
    eng.write_stats()
    long_len = path.stat().st_size
    assert len(json.loads(path.read_text())["errors"]) == 20
    eng.errors.clear()
    eng.write_stats()  # shorter JSON: padded, the file keeps its length
    assert path.stat().st_size == long_len
    assert json.loads(path.read_text())["errors"] == {}
    eng.statsfile.close()


def test_without_a_prepared_file_it_is_replaced_whole(tmp_path):
    eng = make_engine(tmp_path / "run")
    eng.write_stats()
    assert json.loads((tmp_path / "run" / "engine-wgtest0.stats.json").read_text())["pid"] == os.getpid()
    assert os.listdir(tmp_path / "run") == ["engine-wgtest0.stats.json"]  # no temporary left
