"""The time budget at the timeouts a team would choose: every answer comes before the function's time, and a cold
create still reaches Dots, at 6 s (close to the 5 s minimum) as at the template's 20 s.

Each test runs a cold container whose FUNCTION_TIMEOUT_SECONDS and Lambda context agree, as the template sets both
from FunctionTimeoutSeconds. A retryable answer leaves the key bound, and the same key and body then get the one
link."""

from __future__ import annotations

import time

import pytest

from payout_links.budget import TimeBudget
from payout_links.problems import PROBLEM_TYPE_PREFIX
from tests.support import new_key, payout_body

pytestmark = pytest.mark.faults

TIMEOUTS = (6, 20)


@pytest.fixture(params=TIMEOUTS, ids=lambda seconds: f"{seconds}s")
def timeout(request, function) -> float:
    seconds = float(request.param)
    function.set_env(FUNCTION_TIMEOUT_SECONDS=f"{seconds:g}")
    return seconds


def timed_create(function, timeout: float, key: str):
    started = time.monotonic()
    result = function.create(key=key, timeout_seconds=timeout)
    return result, time.monotonic() - started


def assert_bound_then_settled_by_a_retry(function, upstream, failed, key: str) -> None:
    assert failed.is_problem() and failed.json()["key_state"] == "bound", failed.json()
    assert function.create(payout_body(amount=9_999), key=key).status == 422  # still the first body's key
    assert upstream.wait_idle(timeout=30)  # a delayed create outlives its client
    retry = function.create(key=key)
    assert retry.status == 201
    assert [link["idempotency_key"] is not None for link in upstream.links()] == [True]


def test_a_cold_create_reaches_dots(function, upstream, timeout):
    result, elapsed = timed_create(function, timeout, new_key())

    assert result.status == 201, result.json()
    assert elapsed < timeout
    assert len(upstream.links()) == 1


def test_a_slow_upstream_is_answered_before_the_timeout(function, upstream, timeout):
    """One attempt, as long as Dots likes: the deadline, not the attempt's own timeout, cuts it."""
    function.set_env(PAYOUT_API_MAX_ATTEMPTS="1", PAYOUT_API_TIMEOUT_SECONDS="25")
    key = new_key()
    upstream.inject({"delay_seconds": timeout})

    failed, elapsed = timed_create(function, timeout, key)

    assert failed.status == 504 and elapsed < timeout, (failed.status, elapsed)
    assert elapsed >= timeout - TimeBudget.for_timeout(timeout).response_reserve - 0.5  # Dots got the time
    assert_bound_then_settled_by_a_retry(function, upstream, failed, key)


def test_5xx_after_the_link_was_made_is_answered_before_the_timeout(function, upstream, timeout):
    key = new_key()
    upstream.inject(*({"status": 500, "after_create": True} for _ in range(5)))

    failed, elapsed = timed_create(function, timeout, key)

    assert failed.status == 502 and elapsed < timeout, (failed.status, elapsed)
    assert_bound_then_settled_by_a_retry(function, upstream, failed, key)


def test_a_dropped_connection_is_answered_before_the_timeout(function, upstream, timeout):
    key = new_key()
    upstream.inject(*({"drop": True, "after_create": True} for _ in range(5)))

    failed, elapsed = timed_create(function, timeout, key)

    assert failed.status in (502, 504) and elapsed < timeout, (failed.status, elapsed)
    assert_bound_then_settled_by_a_retry(function, upstream, failed, key)


def test_a_stalled_lock_write_is_a_503_before_the_timeout(function, upstream, aws_faults, timeout):
    key = new_key()
    aws_faults.stall("DynamoDB_20120810.PutItem", seconds=timeout, count=4)

    failed, elapsed = timed_create(function, timeout, key)

    assert failed.status == 503 and elapsed < timeout, (failed.status, elapsed)
    assert failed.json()["type"] == PROBLEM_TYPE_PREFIX + "dependency-unavailable"
    assert upstream.stats()["requests"] == 0


def test_a_stalled_secret_read_is_a_503_before_the_timeout(function, upstream, aws_faults, timeout):
    key = new_key()
    aws_faults.stall("secretsmanager.GetSecretValue", seconds=timeout, forward=True)

    failed, elapsed = timed_create(function, timeout, key)

    assert failed.status == 503 and elapsed < timeout, (failed.status, elapsed)
    assert failed.json()["key_state"] == "released"  # Dots was never asked
    assert upstream.stats()["requests"] == 0


def test_a_stalled_completion_is_answered_before_the_timeout(function, upstream, aws_faults, timeout):
    """The link is made, and the transaction that records it hangs (the lock is a plain write while the callers'
    limits are off): the answer still comes in time, and the key stays bound."""
    key = new_key()
    aws_faults.stall("DynamoDB_20120810.TransactWriteItems", seconds=timeout, count=4)

    failed, elapsed = timed_create(function, timeout, key)

    assert failed.status == 503 and elapsed < timeout, (failed.status, elapsed)
    assert len(upstream.links()) == 1
    aws_faults.heal()
    assert aws_faults.wait_idle(timeout=timeout + 5)
    assert_bound_then_settled_by_a_retry(function, upstream, failed, key)
