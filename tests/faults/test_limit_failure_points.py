"""DynamoDB failing where the callers' limits are read and reserved: the overrides item on a container's first
create, and the lock's transaction, which reserves in the same write. Each problem says where the key stands, and
a caller's counters end holding exactly what its created intents reserved, whatever the retries did."""

from __future__ import annotations

import time

import pytest

from local_stack.stack import TABLE_NAME
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


def test_an_unreadable_overrides_item_leaves_a_new_create_under_the_default_limits(
    limited, upstream, aws_faults, aws_clients
):
    """A fresh container cannot read the overrides item: the create is not refused for it (the defaults apply,
    and the next create reads the item again), and its reservation is the defaults' own."""
    sub, key = f"limited-{new_key()}", new_key()
    aws_faults.fail("DynamoDB_20120810.GetItem", error=SERVICE_UNAVAILABLE)

    created = limited.create(key=key, sub=sub)

    assert created.status == 201, created.body
    assert upstream.stats()["creates"] == 1
    aws_faults.heal()
    assert used(aws_clients, TABLE_NAME, f"user:{sub}") == (payout_body()["amount"], 1)


@pytest.mark.parametrize("error", [THROTTLED, SERVICE_UNAVAILABLE], ids=["throttled", "server-error"])
def test_a_failed_lock_transaction_reserves_nothing_twice(
    limited, upstream, aws_faults, aws_clients, aws_resources, error
):
    """The lock and the reserve are one transaction. It failed after botocore's retry: whatever the last answer,
    the first attempt may have landed unanswered, so the key stays bound, and its retry takes the intent over with
    the reservation it may already hold (or locks it anew), so that the counters count the create once."""
    key_state = "bound"
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
