"""Every write after the lock is conditioned on the lock token of the request that holds it (store.py): two stores,
as two containers have, against the moto server. The first's lock expires and the second takes the intent over;
after that the first's release, its drop (mark unknown) and its completion each fail their condition, and the
second's record is left exactly as it was (read raw). A take-over is the same request's alone: another body never
takes an expired lock, and of two requests taking over at once, one wins."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from local_stack.stack import OWNERS_TABLE_NAME
from payout_links.intent import Intent
from payout_links.problems import IdempotencyKeyReused, RequestInProgress
from payout_links.store import COMPLETED, IN_PROGRESS, IntentStore, KeyState, Lock, LockLost
from tests.support import new_key, payout_body, raw_record

pytestmark = pytest.mark.integration

CALLER = "user:ada"
SHORT_LOCK_SECONDS = 0.3  # the first request's lock: it expires (by design) before the second one comes
LONG_LOCK_SECONDS = 60.0


def counters(aws_clients, table: str) -> dict[str, str]:
    """The callers' limit counters in the table: id -> total."""
    dynamodb, _ = aws_clients
    items = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    return {
        item["id"]["S"]: (item.get("amount") or item.get("links") or {}).get("N", "")
        for item in items
        if item["id"]["S"].startswith("limits#")
    }


def an_intent(**body: Any) -> Intent:
    return Intent.of(CALLER, new_key(), payout_body(**body))


def left_unknown(store: IntentStore, intent: Intent) -> None:
    """`intent` locked by `store`'s request, whose create ended unknown: the lock dropped, the intent due at once."""
    lock = store.lock(intent, lock_seconds=LONG_LOCK_SECONDS)
    assert isinstance(lock, Lock)
    store.mark_unknown(lock, settle_in=0)


def a_link(intent: Intent) -> dict[str, Any]:
    return {
        "id": f"link-{uuid.uuid4().hex[:10]}",
        "created": "2026-12-07T00:00:00.000Z",
        "link": "https://example.com/link",
        "amount": intent.amount,
        "status": "created",
        "payee": None,
        "delivery": None,
        "tax_exempt": None,
        "claimed_user_id": None,
        "flow_id": None,
        "metadata": {},
    }


def taken_over(new_store, *, limits: bool) -> tuple[IntentStore, Lock, IntentStore, Lock]:
    """The first store's lock, expired, and the second store's, which took the same intent over."""
    first, second = new_store(limits=limits), new_store(limits=limits)
    intent = an_intent()
    first_lock = first.lock(intent, lock_seconds=SHORT_LOCK_SECONDS)
    assert isinstance(first_lock, Lock) and not first_lock.inherited
    time.sleep(SHORT_LOCK_SECONDS + 0.05)  # the lock's expiry: what a take-over waits for by design
    second_lock = second.lock(intent, lock_seconds=LONG_LOCK_SECONDS)
    assert isinstance(second_lock, Lock) and second_lock.inherited and second_lock.token != first_lock.token
    return first, first_lock, second, second_lock


@pytest.mark.parametrize("limits", [False, True], ids=["limits-off", "limits-on"])
def test_a_request_whose_lock_was_taken_over_cannot_release_it(new_store, aws_clients, intent_table, limits):
    first, first_lock, _, second_lock = taken_over(new_store, limits=limits)
    held = raw_record(aws_clients, intent_table, second_lock.intent)
    reserved = counters(aws_clients, intent_table)
    assert held is not None and held["lock_token"]["S"] == second_lock.token

    assert first.release(first_lock) is KeyState.BOUND

    assert raw_record(aws_clients, intent_table, second_lock.intent) == held
    assert counters(aws_clients, intent_table) == reserved  # nothing given back for a release that did not happen


def test_a_request_whose_lock_was_taken_over_cannot_drop_it(new_store, aws_clients, intent_table):
    first, first_lock, _, second_lock = taken_over(new_store, limits=False)
    held = raw_record(aws_clients, intent_table, second_lock.intent)

    first.mark_unknown(first_lock)

    after = raw_record(aws_clients, intent_table, second_lock.intent)
    assert after == held, "the second request's lock was dropped by the first"
    assert int(after["in_progress_expiration"]["N"]) > time.time() * 1000


@pytest.mark.parametrize("limits", [False, True], ids=["limits-off", "limits-on"])
def test_a_request_whose_lock_was_taken_over_cannot_complete_it(new_store, aws_clients, intent_table, limits):
    first, first_lock, second, second_lock = taken_over(new_store, limits=limits)
    held = raw_record(aws_clients, intent_table, second_lock.intent)
    late_link = a_link(first_lock.intent)

    with pytest.raises(LockLost):
        first.complete(first_lock, late_link)

    assert raw_record(aws_clients, intent_table, second_lock.intent) == held
    dynamodb, _ = aws_clients
    owner = dynamodb.get_item(TableName=OWNERS_TABLE_NAME, Key={"link_id": {"S": late_link["id"]}}, ConsistentRead=True)
    assert "Item" not in owner, "the late request's link was recorded"
    # The request that holds the lock still completes it, with its own link.
    own_link = a_link(second_lock.intent)
    second.complete(second_lock, own_link)
    record = raw_record(aws_clients, intent_table, second_lock.intent)
    assert record is not None and record["status"]["S"] == COMPLETED
    assert json.loads(record["data"]["S"]) == own_link


def test_the_holder_still_releases_its_own_lock_after_a_late_request_failed_to(new_store, aws_clients, intent_table):
    first, first_lock, second, second_lock = taken_over(new_store, limits=True)
    assert first.release(first_lock) is KeyState.BOUND

    assert second.release(second_lock) is KeyState.RELEASED
    assert raw_record(aws_clients, intent_table, second_lock.intent) is None
    assert set(counters(aws_clients, intent_table).values()) == {"0"}  # the one reservation given back, once


def test_an_expired_lock_is_never_taken_over_by_another_body(new_store, aws_clients, intent_table):
    """A crashed request's expired lock (or an unknown intent's) is its own body's to take over: another body under
    the same key is refused (422, the key bound), and the record still names the first body."""
    first, second = new_store(), new_store()
    intent = an_intent()
    lock = first.lock(intent, lock_seconds=SHORT_LOCK_SECONDS)
    assert isinstance(lock, Lock)
    time.sleep(SHORT_LOCK_SECONDS + 0.05)
    before = raw_record(aws_clients, intent_table, intent)

    other = Intent.of(CALLER, intent.key, payout_body(amount=intent.amount + 1))
    with pytest.raises(IdempotencyKeyReused) as refused:
        second.lock(other, lock_seconds=LONG_LOCK_SECONDS)

    assert refused.value.key_state == KeyState.BOUND
    assert raw_record(aws_clients, intent_table, intent) == before
    # The same body still takes it over.
    assert isinstance(second.lock(intent, lock_seconds=LONG_LOCK_SECONDS), Lock)


def test_an_unknown_intent_is_never_taken_over_by_another_body(new_store, aws_clients, intent_table):
    first, second = new_store(), new_store()
    intent = an_intent()
    lock = first.lock(intent, lock_seconds=LONG_LOCK_SECONDS)
    assert isinstance(lock, Lock)
    first.mark_unknown(lock)
    before = raw_record(aws_clients, intent_table, intent)
    assert before is not None and before["status"]["S"] == IN_PROGRESS

    other = Intent.of(CALLER, intent.key, payout_body(amount=intent.amount + 1))
    with pytest.raises(IdempotencyKeyReused):
        second.lock(other, lock_seconds=LONG_LOCK_SECONDS)
    assert raw_record(aws_clients, intent_table, intent) == before


def test_of_two_take_overs_from_the_same_read_one_wins(new_store, aws_clients, intent_table):
    """Two settler runs (or a run and a caller's retry) read the unknown intent at the same moment and each tries to
    take it over: the take-over is conditioned on the record being as read (its token), so the first write wins and
    the second finds the record changed, sends nothing, and leaves the winner's lock alone. The two writes are made
    one after the other: the moto server does not make concurrent conditional writes atomic, DynamoDB does."""
    first_run, second_run = new_store(), new_store()
    intent = an_intent()
    left_unknown(first_run, intent)
    (due_first,) = first_run.due(limit=10)
    (due_second,) = second_run.due(limit=10)

    winner = first_run.take_over_due(due_first, lock_seconds=LONG_LOCK_SECONDS)
    assert winner is not None
    held = raw_record(aws_clients, intent_table, intent)

    assert second_run.take_over_due(due_second, lock_seconds=LONG_LOCK_SECONDS) is None
    assert raw_record(aws_clients, intent_table, intent) == held
    assert held is not None and held["lock_token"]["S"] == winner.token


def test_the_settler_leaves_an_intent_a_callers_retry_took_first(new_store, aws_clients, intent_table):
    """The settler read the intent as due; before its take-over, the caller's retry took the lock. The settler's
    take-over fails (the record changed since it was read) and sends nothing; the retry's lock stands."""
    settler, caller = new_store(), new_store()
    intent = an_intent()
    left_unknown(caller, intent)
    (due,) = settler.due(limit=10)

    retry = caller.lock(intent, lock_seconds=LONG_LOCK_SECONDS)
    assert isinstance(retry, Lock) and retry.inherited
    held = raw_record(aws_clients, intent_table, intent)

    assert settler.take_over_due(due, lock_seconds=LONG_LOCK_SECONDS) is None
    assert raw_record(aws_clients, intent_table, intent) == held


def test_a_callers_retry_while_the_settler_holds_the_lock_is_in_progress(new_store, aws_clients, intent_table):
    settler, caller = new_store(), new_store()
    intent = an_intent()
    left_unknown(caller, intent)
    (due,) = settler.due(limit=10)
    resend = settler.take_over_due(due, lock_seconds=LONG_LOCK_SECONDS)
    assert resend is not None
    held = raw_record(aws_clients, intent_table, intent)

    with pytest.raises(RequestInProgress) as refused:
        caller.lock(intent, lock_seconds=LONG_LOCK_SECONDS)

    assert refused.value.key_state == KeyState.BOUND
    assert raw_record(aws_clients, intent_table, intent) == held
