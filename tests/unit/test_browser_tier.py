"""Where there is no Chromium, the browser tier is one line in `make test`'s summary, not a failure; in CI, where
`.ci/run` installs Chromium, its absence fails the tier instead of hiding it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.browser  # runs pytest itself, twice: not for the fast loop


def run_browser_tier(**env: str) -> subprocess.CompletedProcess[str]:
    inherited = {name: value for name, value in os.environ.items() if name not in ("CI", "CHROMIUM")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/browser"],
        cwd=ROOT,
        env={**inherited, "CHROMIUM": os.path.join(ROOT, "no-such-chromium"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_chromium_the_tier_is_skipped_in_one_line():
    result = run_browser_tier()

    assert result.returncode == 0, result.stdout + result.stderr
    reasons = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(reasons) == 1, result.stdout
    assert "browser tier: no Chromium found" in reasons[0] and "apt-get install chromium" in reasons[0]
    assert "failed" not in result.stdout and "error" not in result.stdout


def test_without_chromium_in_ci_the_tier_fails():
    result = run_browser_tier(CI="true")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "CI never skips this tier" in result.stdout
