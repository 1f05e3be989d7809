"""Per-test outcomes from a JUnit XML report (the VM tier's guest session writes one)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def parse_junit(path: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    if not path.exists():
        return outcomes
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome = "passed"
        for child in case:  # JUnit says <failure> and <error>; both are a failed test here
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
        outcomes[name] = outcome
    return outcomes
