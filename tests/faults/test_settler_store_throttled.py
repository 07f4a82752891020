"""A take-over the store throttles is one skipped intent and a halted run, never a failed run without its report
and metrics (service.py, `_settle_one`)."""

from __future__ import annotations

import time

import pytest

from tests.support import new_key

pytestmark = pytest.mark.faults


def test_a_throttled_take_over_is_a_skipped_intent_not_a_failed_run(function, upstream, aws_faults, own_intent_table):
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1", SETTLE_CONCURRENCY="1")
    upstream.inject({"status": 500, "after_create": True})
    assert function.create(key=new_key()).json()["key_state"] == "bound"
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS

    aws_faults.fail("DynamoDB_20120810.UpdateItem")  # throttled for the whole run: every take-over fails
    try:
        report = function.settle()
    finally:
        aws_faults.heal()

    assert report["due"] >= 1, report  # a report, with the metrics the alarms read, not an error
