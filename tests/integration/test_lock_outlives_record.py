"""A take-over near the end of its record's TTL: the record is kept at least as long as the lock and the settler's
look after it, and a record whose lock is held is never replaced by another body (store.py, `_take_over`,
`lock`)."""

from __future__ import annotations

import threading
import time

import pytest

from local_stack.stack import TABLE_NAME
from payout_links.intent import record_id
from tests.support import new_key, payout_body, wait_until

pytestmark = pytest.mark.integration


def test_a_held_lock_is_never_overwritten_by_another_body_when_the_record_expires(function, upstream, aws_clients):
    dynamodb, _ = aws_clients
    function.set_env(PAYOUT_API_MAX_ATTEMPTS="1", PAYOUT_API_TIMEOUT_SECONDS="6")
    key = new_key()
    upstream.inject({"status": 500, "after_create": True})
    assert function.create(key=key).json()["key_state"] == "bound"
    (first_link,) = upstream.links()

    expires = int(time.time()) + 2  # the record is 24 h old, less two seconds
    dynamodb.update_item(
        TableName=TABLE_NAME,
        Key={"id": {"S": record_id("user:user-1", key)}},
        UpdateExpression="SET expiration = :e",
        ExpressionAttributeValues={":e": {"N": str(expires)}},
    )

    # The caller's retry takes the intent over; the upstream takes 5 s to answer it.
    upstream.inject({"delay_seconds": 5})
    answers = {}
    retry = threading.Thread(target=lambda: answers.update(retry=function.create(key=key)))
    retry.start()
    wait_until(lambda: upstream.stats()["requests"] == 2, timeout=5)
    wait_until(lambda: int(time.time()) > expires, timeout=5)  # `#expiry < :now`, in whole seconds

    other = function.create(payout_body(amount=9_999), key=key)  # while the retry's lock is held
    retry.join()

    assert other.status in (409, 422), ("another body took a key whose lock was held", other.status)
    assert answers["retry"].status == 201 and answers["retry"].json()["id"] == first_link["id"], answers["retry"].body
