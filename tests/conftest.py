import os
import shutil

import pytest

from tests.support.netns import lab as _lab


def pytest_collection_modifyitems(config, items):
    """Root tests are skipped, loudly, only when not root; CI runs as root and runs them all."""
    if os.geteuid() == 0 and shutil.which("ip"):
        return
    skip = pytest.mark.skip(reason="needs root and network namespaces (CI runs these)")
    for item in items:
        if "root" in item.keywords or "vm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def lab():
    with _lab() as lb:
        yield lb
