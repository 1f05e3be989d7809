"""The guard moves without waiting for a former uplink to be set up (revivals.py)."""

import threading
import time

from nsroute.host import guard
from nsroute.host.revivals import Revivals


def test_work_runs_in_order_beside_the_caller():
    done, gate = [], threading.Event()

    def work(item):
        gate.wait(5)
        done.append(item)

    r = Revivals(work)
    start = time.monotonic()
    for i in range(3):
        r.submit(i)
    assert time.monotonic() - start < 1.0 and done == []  # submit never waits for the work
    gate.set()
    end = time.monotonic() + 5
    while len(done) < 3 and time.monotonic() < end:
        time.sleep(0.01)
    assert done == [0, 1, 2]
    assert r.close(5)


def test_close_finishes_the_one_in_progress_and_drops_the_rest():
    done, started, gate = [], threading.Event(), threading.Event()

    def work(item):
        started.set()
        gate.wait(5)
        done.append(item)

    r = Revivals(work)
    r.submit("a")
    r.submit("b")
    assert started.wait(5)
    threading.Timer(0.2, gate.set).start()
    assert r.close(5)
    assert done == ["a"]
    r.submit("c")  # after close: taken no more
    time.sleep(0.1)
    assert done == ["a"]


def test_close_without_work_and_a_stuck_one():
    assert Revivals(lambda _: None).close(1)
    gate = threading.Event()
    r = Revivals(lambda _: gate.wait(5))
    r.submit(1)
    time.sleep(0.05)
    assert not r.close(0.1)  # still setting up: told, not waited for forever
    gate.set()


def settled(path, done, timeout=5.0):
    end = time.monotonic() + timeout
    while not done(rec := guard.Record.load(path)) and time.monotonic() < end:
        time.sleep(0.02)
    return rec


def test_guard_records_a_move_at_once_and_the_setting_up_when_it_is_done(tmp_path):
    record = tmp_path / "guard.json"

    def slow(m, earlier):
        time.sleep(0.5)
        return [{"name": m.name, "what": m.what, "earlier": len(earlier)}]

    g = guard.Guard("physical", [], [], record, log=lambda _: None, revive=slow)
    start = time.monotonic()
    g._moved(guard.Moved("wiphy", "phy3", 3, time.time(), ["wlan3"], "02:00:00:00:4a:00"))
    g._moved(guard.Moved("netdev", "usb0", 11, time.time(), mac="02:00:00:00:72:01"))
    assert time.monotonic() - start < 0.4  # the second move did not wait for the first's set-up
    assert [m.name for m in guard.Record.load(record).moved] == ["phy3", "usb0"]
    revived = settled(record, lambda rec: len(rec.revived) == 2).revived
    assert g._revivals.close(5)
    assert [(r["name"], r["earlier"]) for r in revived] == [("phy3", 0), ("usb0", 1)]


def test_a_failed_setting_up_is_an_error_in_the_record(tmp_path):
    record = tmp_path / "guard.json"

    def broken(m, earlier):
        raise RuntimeError("no such uplink")

    g = guard.Guard("physical", [], [], record, log=lambda _: None, revive=broken)
    g._moved(guard.Moved("netdev", "eth7", 7, time.time()))
    rec = settled(record, lambda rec: rec.errors)
    assert g._revivals.close(5)
    assert [m.name for m in rec.moved] == ["eth7"] and "cannot set up eth7 again" in rec.errors[0]
