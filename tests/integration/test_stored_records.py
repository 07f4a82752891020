"""Records written by one deploy must be found by the next: the idempotency record's `id` (the hash of caller and
key, under the `payout-link` prefix), its `validation` hash (the request's fingerprint) and the key the upstream
gets (derived from caller, key and fingerprint) are fixed forever. The golden values below were computed by the
code as it was before the request path was restructured; a change that moves any of them strands every intent in
flight at the time of a deploy (a retry would make a second link, or a replay would be refused as another body).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from local_stack.stack import TABLE_NAME
from payout_links.intent import record_id
from tests.support import PARTNER, partner_event

pytestmark = pytest.mark.integration

FRONTEND_SUB = "golden-user"
FRONTEND_KEY = "golden-intent-0001"
FRONTEND_BODY = {
    "amount": 4321,
    "payee": {"country_code": "1", "phone_number": "5555550199", "first_name": "Grace"},
    "delivery": {"method": "sms"},
    "metadata": {"order": "G-1"},
}
FRONTEND_RECORD_ID = "payout-link#ca2cf25e173ace0cea830cf8782869fa442fe7d561e1aed7507a0dfc0350d40d"
FRONTEND_VALIDATION = "81e315bf571edfdfd6842632de79d6626bdcc384a67368bc2c56850745cd5613"
FRONTEND_UPSTREAM_KEY = "755bbec1-a5e8-5676-9e7c-77cdfcd6ac89"

PARTNER_WEBHOOK_ID = "msg_golden0001"
PARTNER_DATA = {"amount": 1234, "user_id": "golden-partner-user", "delivery": {"method": "link"}}
PARTNER_RECORD_ID = "payout-link#09b58b3daf3ae2db457a65f8024a545920b3cd7144ec44b1b51d7e1eb263c84d"
PARTNER_VALIDATION = "aff5e9f7776de33de0c6aaa14447bb82fe2f711c09dda683f2383903185e167e"
PARTNER_UPSTREAM_KEY = "1755726f-88f3-587c-bee7-42df0d1b1d88"

# A record the previous deploy completed, for another intent with the frontend's body.
EARLIER_SUB = "golden-replayer"
EARLIER_KEY = "golden-intent-0002"
EARLIER_RECORD_ID = "payout-link#3b94d81d7368ba94dd8c068f50a499a6e26d59355374c3cc9f5b6e64beb61173"
EARLIER_LINK = {
    "amount": 4321,
    "claimed_user_id": None,
    "created": "2026-11-30T22:40:56.895Z",
    "delivery": {"country_code": "1", "email": None, "method": "sms", "phone_number": "5555550199"},
    "flow_id": "c150b741-7c2d-49b8-b1c7-2f7c3f2fb5d3",
    "id": "4e099750-a0f5-41c4-ab69-fce075462d4d",
    "link": "https://sandbox.dots.example/payout/4e099750-a0f5-41c4-ab69-fce075462d4d",
    "metadata": {"order": "G-1"},
    "payee": {
        "country_code": "1",
        "email": None,
        "first_name": "Grace",
        "last_name": None,
        "phone_number": "5555550199",
    },
    "status": "created",
    "tax_exempt": False,
}


def stored(aws_clients: Any, record_id: str, *, table: str = TABLE_NAME) -> dict[str, Any]:
    dynamodb, _ = aws_clients
    item = dynamodb.get_item(TableName=table, Key={"id": {"S": record_id}}, ConsistentRead=True).get("Item")
    assert item is not None, f"no record {record_id}"
    return item


def test_a_frontends_create_writes_the_record_and_sends_the_key_it_always_did(function, upstream, aws_clients):
    result = function.create(FRONTEND_BODY, key=FRONTEND_KEY, sub=FRONTEND_SUB)

    assert result.status == 201, result.body
    assert upstream.stats()["last_request"]["body"]["idempotency_key"] == FRONTEND_UPSTREAM_KEY
    item = stored(aws_clients, FRONTEND_RECORD_ID)
    assert item["validation"] == {"S": FRONTEND_VALIDATION}
    assert item["status"] == {"S": "COMPLETED"}
    assert json.loads(item["data"]["S"]) == result.json()


def test_a_partners_create_writes_the_record_and_sends_the_key_it_always_did(function, upstream, aws_clients):
    result = function.webhook(partner_event(data=PARTNER_DATA), webhook_id=PARTNER_WEBHOOK_ID, partner=PARTNER)

    assert result.status == 201, result.body
    assert upstream.stats()["last_request"]["body"]["idempotency_key"] == PARTNER_UPSTREAM_KEY
    item = stored(aws_clients, PARTNER_RECORD_ID)
    assert item["validation"] == {"S": PARTNER_VALIDATION}
    assert json.loads(item["data"]["S"]) == result.json()


def test_a_record_the_previous_deploy_completed_is_replayed_and_still_refuses_another_body(
    function, upstream, aws_clients
):
    dynamodb, _ = aws_clients
    dynamodb.put_item(
        TableName=TABLE_NAME,
        Item={
            "id": {"S": EARLIER_RECORD_ID},
            "expiration": {"N": str(int(time.time()) + 3600)},
            "status": {"S": "COMPLETED"},
            "validation": {"S": FRONTEND_VALIDATION},
            "data": {"S": json.dumps(EARLIER_LINK, sort_keys=True)},
        },
    )

    replay = function.create(FRONTEND_BODY, key=EARLIER_KEY, sub=EARLIER_SUB)
    other_body = function.create({**FRONTEND_BODY, "amount": 4322}, key=EARLIER_KEY, sub=EARLIER_SUB)

    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true", replay.body
    assert replay.json() == EARLIER_LINK
    assert other_body.status == 422 and other_body.json()["type"].endswith(":idempotency-key-reused")
    assert upstream.stats()["requests"] == 0


def test_a_record_the_store_completes_is_one_powertools_idempotency_reads_as_completed(function, upstream, aws_clients):
    """The other direction: the store is the proxy's own, but its records keep the layout Powertools idempotency
    wrote and read (so a rollback to a deploy that used Powertools still replays them). Read through Powertools'
    public persistence API, configured as the proxy configured it, the record is COMPLETED with the link, and
    another request is refused as another body."""
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyValidationError

    from payout_links.intent import RECORD_KEY_PREFIX
    from payout_links.models import parse_create_request

    dynamodb, _ = aws_clients
    created = function.create(FRONTEND_BODY, key=FRONTEND_KEY + "-pt", sub=FRONTEND_SUB)
    assert created.status == 201, created.body
    request = parse_create_request(json.dumps(FRONTEND_BODY), max_amount_cents=10**9).upstream_payload()
    persistence = DynamoDBPersistenceLayer(table_name=TABLE_NAME, boto3_client=dynamodb)
    persistence.configure(
        IdempotencyConfig(
            event_key_jmespath="[caller, key]", payload_validation_jmespath="request", hash_function="sha256"
        ),
        key_prefix=RECORD_KEY_PREFIX,
    )
    intent = {"caller": f"user:{FRONTEND_SUB}", "key": FRONTEND_KEY + "-pt", "request": request}

    record = persistence.get_record(intent)

    assert record is not None and record.status == "COMPLETED"
    assert record.response_json_as_dict() == created.json()
    with pytest.raises(IdempotencyValidationError):
        persistence.get_record({**intent, "request": {**request, "amount": request["amount"] + 1}})


def test_a_create_the_previous_deploy_left_unknown_is_queued_for_the_settler_once_its_caller_retries(
    function, upstream, aws_clients, own_intent_table
):
    """A record in flight at the upgrade carries none of the settler's attributes, so the settler never finds it
    by itself. Its caller's retry takes it over as any unknown intent, and if that one fails too the intent is
    queued like any other, with an age counted from that retry (not from 1970: the oldest-due-intent alarm reads
    it)."""
    dynamodb, _ = aws_clients
    sub, key = "golden-unknown", "golden-intent-0003"
    record = record_id(f"user:{sub}", key)
    dynamodb.put_item(
        TableName=own_intent_table,
        Item={
            "id": {"S": record},
            "expiration": {"N": str(int(time.time()) + 3600)},
            "status": {"S": "INPROGRESS"},
            "validation": {"S": FRONTEND_VALIDATION},
            "in_progress_expiration": {"N": str(int(time.time() * 1000) - 60_000)},  # the crashed request's lock
        },
    )
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1")
    upstream.inject({"status": 500})

    retry = function.create(FRONTEND_BODY, key=key, sub=sub)

    assert retry.status == 502 and retry.json()["key_state"] == "bound"
    item = stored(aws_clients, record, table=own_intent_table)
    assert item["settle_queue"] == {"S": "due"}
    assert abs(json.loads(item["intent"]["S"])["since"] - time.time()) < 60
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS
    report = function.settle()
    assert report["settled"] == 1 and 0 <= report["oldest_due_seconds"] < 60, report
    assert stored(aws_clients, record, table=own_intent_table)["status"] == {"S": "COMPLETED"}
