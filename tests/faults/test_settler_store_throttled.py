"""A take-over the store throttles, or fails in an outage, is one skipped intent and a halted run, never a failed
run without its report and metrics (service.py, `_settle_one`); and the resend it kept the settler from making is
counted where the dependency-unavailable alarm looks."""

from __future__ import annotations

import time

import pytest

from tests.faults.aws_fault_proxy import SERVICE_UNAVAILABLE
from tests.support import emitted_metrics, new_key

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


def test_a_settler_resend_dynamodb_will_not_take_over_is_counted_as_dependency_unavailable(
    function, upstream, aws_faults, own_intent_table
):
    """DynamoDB answers 503 to every UpdateItem (an outage, not a throttle: table-throttles does not see it). The
    due-intents query works, each take-over fails (`idempotency store failed` at ERROR), the run halts and reports:
    the intent is not resent, and DependencyUnavailable (dependency=dynamodb) is counted, as the alarm's description
    and the runbook say ("or settler resends not made for the same reason"), rather than waiting half an hour for
    oldest-due-intent."""
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1", SETTLE_CONCURRENCY="1")
    upstream.inject({"status": 500, "after_create": True})
    assert function.create(key=new_key()).json()["key_state"] == "bound"
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS

    aws_faults.fail("DynamoDB_20120810.UpdateItem", error=SERVICE_UNAVAILABLE)
    try:
        with emitted_metrics() as documents:
            report = function.settle()
    finally:
        aws_faults.heal()

    assert report["due"] >= 1 and report["resent"] == 0, report
    counted = [
        document["DependencyUnavailable"]
        for document in documents
        if "DependencyUnavailable" in document and document.get("dependency") == "dynamodb"
    ]
    assert counted, "a resend DynamoDB kept the settler from making is not counted"
