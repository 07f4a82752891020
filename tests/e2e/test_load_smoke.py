"""`make load` in small: bench/load.py's own driver, with 300 requests instead of 2,000, through the local stack it
starts (`python -m local_stack`, what `make run` runs). So the load driver and what it checks cannot rot unseen
between runs of `make load`: creates with reused keys (the same body, concurrent or not, and another body),
ambiguous upstream failures and their retries, reads and cancels by owners and by strangers."""

from __future__ import annotations

import pytest

from tests.support import bench_modules

pytestmark = pytest.mark.e2e

REQUESTS = 300

load, load_report = bench_modules("load", "load_report")


def test_a_small_load_makes_one_link_per_intent_and_no_unintended_5xx(tmp_path):
    report = load.run(load.parse_args(["--requests", str(REQUESTS)]), log_dir=tmp_path)
    assert report.ok and report.exit_code == 0, load_report.format_report(report)

    # What the driver measured, from its report: a driver that stopped checking would still fail here.
    assert report.requests >= REQUESTS  # the plan's, and a retry for an ambiguous intent that had none
    assert report.links_created > 0
    assert report.distinct_intents == report.intents_with_201 == report.links_created
    assert sum(report.statuses.values()) == report.requests  # every request got an answer
    assert {status: n for status, n in report.statuses.items() if status >= 500} == report.intended_5xx
    assert report.ambiguous_recovered == report.ambiguous_injected > 0
    statuses = report.statuses
    assert statuses[201] > 0 and statuses[200] > 0 and statuses[404] > 0  # creates, owners' calls, strangers'
