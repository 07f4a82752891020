"""An unknown intent the settler cannot resend before its record expires (the run is halted) is stranded for
operators, never left to expire and hand its key to another body (service.py, `_settle_one`; store.py,
`strand`)."""

from __future__ import annotations

import time

import pytest

from payout_links.intent import record_id
from tests.support import new_key, payout_body, wait_until

pytestmark = pytest.mark.integration


def test_an_unknown_intent_the_settler_skipped_is_stranded_not_handed_to_another_body(
    function, upstream, aws_clients, own_intent_table
):
    dynamodb, _ = aws_clients
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1", SETTLE_CONCURRENCY="1")
    older, key = new_key(), new_key()
    upstream.inject({"status": 500, "after_create": True}, {"status": 500, "after_create": True})
    assert function.create(key=older).json()["key_state"] == "bound"
    time.sleep(1.1)  # settle_at is in whole seconds: the older intent is due strictly first
    assert function.create(key=key).json()["key_state"] == "bound"
    first_links = {link["id"] for link in upstream.links()}
    assert len(first_links) == 2

    expires = int(time.time()) + 2  # `key`'s record was first locked 24 h ago, less two seconds
    dynamodb.update_item(
        TableName=own_intent_table,
        Key={"id": {"S": record_id("user:user-1", key)}},
        UpdateExpression="SET expiration = :e",
        ExpressionAttributeValues={":e": {"N": str(expires)}},
    )
    wait_until(lambda: int(time.time()) > expires, timeout=5)

    # The upstream is still failing: the run halts on the first intent it resends (the older one) and skips the rest.
    upstream.inject({"status": 503})
    report = function.settle()
    assert report["halted"] and report["results"].get("stranded") == 1, report

    # Nothing settled `key`'s intent, and its link may exist: it is stranded (kept, counted for operators), not
    # silently free for another body.
    assert report["stranded"] >= 1, report
    other = function.create(payout_body(amount=9_999), key=key)
    assert other.status == 422 and other.json()["key_state"] == "bound", other.body
