"""A write whose answer was lost, as botocore sees it: it landed, and botocore sent it again (a read timeout), or
its retry was refused (throttled). The store tells its own write from another request's by the lock token
(store.py, `lock`, `_take_over`, `_store_error`): a lock or a take-over that meets its own token is the request's
own lock, never a 409; a lock write that may have landed is answered "bound", never "released", and the lock it may
have left is dropped at once. Against the moto server, the lost answer made by wrapping the store's client."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from payout_links.intent import Intent
from payout_links.problems import Problem
from payout_links.store import IN_PROGRESS, KeyState, Lock
from tests.support import new_key, payout_body, raw_record

pytestmark = pytest.mark.integration


class LostAnswer:
    """A DynamoDB client whose next call of `operation` lands and then, as botocore would after a lost answer,
    is sent again (`resent`) or refused on its retry (`throttled_retry`)."""

    def __init__(self, client: Any, operation: str, mode: str) -> None:
        self._client = client
        self._operation = operation
        self._mode = mode
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name != self._operation:
            return call

        def lost(**request: Any) -> Any:
            self.calls += 1
            if self.calls > 1:
                return call(**request)
            call(**request)  # it lands; its answer does not arrive
            if self._mode == "resent":
                return call(**request)
            raise ClientError(
                {
                    "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                    "ResponseMetadata": {"RetryAttempts": 1, "HTTPStatusCode": 400},
                },
                name,
            )

        return lost


def test_a_lock_write_that_landed_and_was_resent_is_the_requests_own_lock(new_store, aws_clients, intent_table):
    dynamodb, _ = aws_clients
    client = LostAnswer(dynamodb, "put_item", "resent")
    intent = Intent.of("user:ada", new_key(), payout_body())

    held = new_store(client).lock(intent, lock_seconds=30)

    assert isinstance(held, Lock), held
    record = raw_record(aws_clients, intent_table, intent)
    assert record is not None and record["lock_token"]["S"] == held.token
    # What it replaced is not known: the lock is treated as inherited (a failure that proves nothing keeps it).
    assert held.inherited


def test_a_take_over_that_landed_and_was_resent_is_the_retrys_own_lock(new_store, aws_clients, intent_table):
    dynamodb, _ = aws_clients
    intent = Intent.of("user:ada", new_key(), payout_body())
    first = new_store(dynamodb)
    lock = first.lock(intent, lock_seconds=30)
    assert isinstance(lock, Lock)
    first.mark_unknown(lock)  # the first attempt's outcome is unknown

    client = LostAnswer(dynamodb, "update_item", "resent")
    retry = new_store(client).lock(intent, lock_seconds=30)

    assert isinstance(retry, Lock), retry
    assert client.calls == 1
    record = raw_record(aws_clients, intent_table, intent)
    assert record is not None and record["lock_token"]["S"] == retry.token != lock.token


def test_a_lock_write_that_may_have_landed_is_bound_and_its_lock_dropped(new_store, aws_clients, intent_table):
    """The lock landed unanswered and botocore's retry was throttled: the answer says "bound" (a caller told
    "released" would send the payout again under a new key, while the settler resends this one), and the lock the
    write left is dropped at once, so that the same body's retry takes it over rather than waiting for it."""
    dynamodb, _ = aws_clients
    intent = Intent.of("user:ada", new_key(), payout_body())

    with pytest.raises(Problem) as refused:
        new_store(LostAnswer(dynamodb, "put_item", "throttled_retry")).lock(intent, lock_seconds=30)

    assert refused.value.status == 503 and refused.value.key_state == KeyState.BOUND
    record = raw_record(aws_clients, intent_table, intent)
    assert record is not None and record["status"]["S"] == IN_PROGRESS
    assert record["in_progress_expiration"]["N"] == "0" and record["settle_queue"]["S"] == "due"
    retry = new_store(dynamodb).lock(intent, lock_seconds=30)
    assert isinstance(retry, Lock) and retry.inherited
