"""Repository-wide pytest settings.

With KUBEFLAT_STRICT_SKIPS=1 (set by scripts/test.sh, so in `make test` and CI) a skipped test
is a failure: every test's prerequisites are installed by `make setup`, so a skip there means a
broken set-up, not an optional feature.
"""
import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("KUBEFLAT_STRICT_SKIPS") == "1":
        report.outcome = "failed"
        report.longrepr = "skipped under KUBEFLAT_STRICT_SKIPS=1: %s" % (report.longrepr,)
