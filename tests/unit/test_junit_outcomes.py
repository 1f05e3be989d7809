"""The VM tier reads the guest's JUnit report: a failed guest test must read as failed.

Why: JUnit writes a failure as <failure>, and a reader that kept that tag as the outcome
let `test_no_guest_test_failed` pass beside a failing guest test.
"""

from __future__ import annotations

from tests.support.junit import parse_junit

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
  <testcase classname="tests.vm.guest.test_a" name="test_ok" time="1"/>
  <testcase classname="tests.vm.guest.test_a" name="test_bad" time="1"><failure message="x">x</failure></testcase>
  <testcase classname="tests.vm.guest.test_b" name="test_broken" time="1"><error message="y">y</error></testcase>
  <testcase classname="tests.vm.guest.test_b" name="test_skip" time="0"><skipped message="z"/></testcase>
</testsuite></testsuites>
"""


def test_failure_and_error_read_as_failed(tmp_path):
    report = tmp_path / "guest.xml"
    report.write_text(REPORT)
    assert parse_junit(report) == {
        "test_a::test_ok": "passed",
        "test_a::test_bad": "failed",
        "test_b::test_broken": "failed",
        "test_b::test_skip": "skipped",
    }


def test_missing_report_has_no_outcomes(tmp_path):
    assert parse_junit(tmp_path / "absent.xml") == {}
