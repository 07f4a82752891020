"""The Dots emulator as its own process (`python -m local_stack.dots_emulator`), as a developer runs it."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from local_stack.dots_emulator import DEMO_CLIENT_ID
from tests.local_stack.test_dots_emulator import PAYOUT_PATH, PROJECT_ROOT, http_client, payout

pytestmark = pytest.mark.e2e


def test_cli_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack.dots_emulator", "--port", "0", "--api-key", "cli-key"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("dots emulator listening on http://127.0.0.1:")
        base_url = line.rpartition(" ")[2]
        with http_client(base_url=base_url, auth=(DEMO_CLIENT_ID, "cli-key")) as http:
            assert http.post(PAYOUT_PATH, json=payout()).status_code == 201

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
