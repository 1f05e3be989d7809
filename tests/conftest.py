import os
import shutil

import pytest

from tests.support.netns import lab as _lab

# Guest tests run inside the VM (scripts/vm-run sets NSROUTE_VM=1), where tests/vm's smoke
# test asserts their results; on the host they are not collected at all, rather than
# showing up as skipped.
collect_ignore_glob = [] if os.environ.get("NSROUTE_VM") == "1" else ["vm/guest/*"]
# Likewise the desktop tier's guest tests (scripts/desktop-run sets NSROUTE_DESKTOP=1).
if os.environ.get("NSROUTE_DESKTOP") != "1":
    collect_ignore_glob += ["desktop/guest/*", "desktop/reboot/*"]


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
