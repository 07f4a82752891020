"""DynamoDB failing where the callers' limits are read and reserved: the overrides item on a container's first
create, and the lock's transaction, which reserves in the same write. Each problem says where the key stands, and
a caller's counters end holding exactly what its created intents reserved, whatever the retries did."""

from __future__ import annotations

import time

import pytest

from payout_links.limits import current_counters
from payout_links.problems import PROBLEM_TYPE_PREFIX, Limit
from tests.faults.aws_fault_proxy import SERVICE_UNAVAILABLE, THROTTLED
from tests.support import clear_of_window_end, new_key, payout_body

pytestmark = pytest.mark.faults

LIMITS_ON = {"CALLER_DAILY_AMOUNT_LIMIT_CENTS": "10000", "CALLER_HOURLY_LINK_LIMIT": "5"}
UNAVAILABLE = PROBLEM_TYPE_PREFIX + "dependency-unavailable"


@pytest.fixture
def limited(function, aws_faults):
    function.set_env(**LIMITS_ON)  # after aws_faults' own: both apply to the next (cold) container
    clear_of_window_end(30)
    return function


def used(aws_clients, table: str, caller: str) -> tuple[int, int]:
    """(cents in the caller's current day counter, links in its current hour counter)."""
    dynamodb = aws_clients[0]
    totals = []
    for limit in (Limit.DAILY_AMOUNT, Limit.HOURLY_LINKS):
        counter = current_counters(caller, time.time())[limit]
        item = dynamodb.get_item(TableName=table, Key={"id": {"S": counter.id}}, ConsistentRead=True).get("Item")
        totals.append(int(item[counter.total_attr]["N"]) if item else 0)
    return totals[0], totals[1]


def test_an_unreadable_overrides_item_is_a_503_that_released_the_key(limited, upstream, aws_faults, aws_clients):
    sub, key = f"limited-{new_key()}", new_key()
    aws_faults.fail("DynamoDB_20120810.GetItem", error=SERVICE_UNAVAILABLE)

    refused = limited.create(key=key, sub=sub)

    assert refused.status == 503 and refused.is_problem(), refused.body
    assert refused.json()["type"] == UNAVAILABLE
    assert int(refused.headers["retry-after"]) >= 1
    assert upstream.stats()["requests"] == 0
    assert refused.json().get("key_state") == "released"
    aws_faults.heal()
    # Nothing was recorded against the key: another body takes it.
    assert limited.create(payout_body(amount=2_600), key=key, sub=sub).status == 201


@pytest.mark.parametrize(
    ("error", "key_state"),
    [(THROTTLED, "released"), (SERVICE_UNAVAILABLE, "bound")],
    ids=["throttled-not-applied", "server-error-may-have-landed"],
)
def test_a_failed_lock_transaction_reserves_nothing_twice(
    limited, upstream, aws_faults, aws_clients, aws_resources, error, key_state
):
    """The lock and the reserve are one transaction: refused (throttled), neither was applied and the key is
    free; failed (a 5xx: it may have landed), the key stays bound and its retry takes the intent over with the
    reservation it may already hold, so that the counters count the create once."""
    sub, key = f"limited-{new_key()}", new_key()
    caller, table = f"user:{sub}", aws_resources["table"]
    assert limited.create(key=new_key(), sub=sub).status == 201  # warm: the overrides are read
    aws_faults.fail("DynamoDB_20120810.TransactWriteItems", error=error, count=2)  # the call and its one retry

    failed = limited.create(key=key, sub=sub)

    assert failed.status == 503 and failed.is_problem(), failed.body
    assert failed.json()["key_state"] == key_state
    assert upstream.stats()["links_created"] == 1
    aws_faults.heal()
    retried = limited.create(key=key, sub=sub)
    assert retried.status == 201, retried.body
    assert used(aws_clients, table, caller) == (2 * 2_500, 2)
    assert upstream.stats()["links_created"] == 2
