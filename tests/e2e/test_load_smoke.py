"""`make load` in small: bench/load.py's own driver, with 300 requests instead of 2,000, through the local stack it
starts (`python -m local_stack`, what `make run` runs). So the load driver and what it checks cannot rot unseen
between runs of `make load`: creates with reused keys (the same body, concurrent or not, and another body),
ambiguous upstream failures and their retries, reads and cancels by owners and by strangers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from tests.conftest import ROOT, without_aws_endpoint

pytestmark = pytest.mark.e2e

REQUESTS = 300


def counts(line: str) -> Counter[int]:
    """`200: 58, 201: 220` -> {200: 58, 201: 220}"""
    return Counter({int(status): int(count) for status, count in re.findall(r"(\d{3}): (\d+)", line)})


def summary_line(output: str, label: str) -> str:
    (line,) = [line for line in output.splitlines() if line.strip().startswith(label)]
    return line.strip().removeprefix(label)


def test_a_small_load_makes_one_link_per_intent_and_no_unintended_5xx(tmp_path):
    run = subprocess.run(
        [sys.executable, "bench/load.py", "--requests", str(REQUESTS)],
        cwd=ROOT,
        env={**without_aws_endpoint(os.environ), "TMPDIR": str(tmp_path)},  # its log goes to the temporary dir
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = run.stdout
    assert run.returncode == 0, output + run.stderr[-3000:]

    # What the driver checked, read back from its report: a driver that stopped checking would still fail here.
    sent = int(re.search(r"^load: (\d+) requests", output, re.MULTILINE).group(1))
    assert sent >= REQUESTS  # the plan's, and a retry for an ambiguous intent that had none
    links = int(summary_line(output, "links created"))
    assert links > 0
    assert int(summary_line(output, "distinct intents")) == links
    assert int(summary_line(output, "intents with a 201")) == links
    statuses = counts(summary_line(output, "statuses"))
    assert sum(statuses.values()) == sent  # every request got an answer
    intended = counts(summary_line(output, "intended 5xx"))
    assert {status: n for status, n in statuses.items() if status >= 500} == intended
    assert statuses[201] > 0 and statuses[200] > 0 and statuses[404] > 0  # creates, owners' calls, strangers'
    assert "FAIL" not in output
