"""POST /webhooks/{partner}/payout-links through the real handler, with the partner secrets in Secrets Manager
(moto over HTTP) and the Dots emulator over HTTP. Every request is signed by the `standardwebhooks` library."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from local_stack.stack import PARTNER_SECRETS_NAME
from payout_links.intent import fingerprint, upstream_key
from tests.support import (
    OTHER_PARTNER,
    OTHER_PARTNER_SECRET,
    PARTNER,
    TEST_PARTNERS,
    new_webhook_id,
    partner_event,
    payout_body,
    webhook_secret,
)

pytestmark = pytest.mark.integration


def links_created(upstream) -> int:
    return upstream.stats()["links_created"]


def assert_unauthenticated(result, upstream) -> None:
    assert result.status == 401 and result.is_problem(), result.body
    assert result.json()["type"].endswith(":unauthenticated")
    assert result.json()["detail"] == "The webhook signature could not be verified."  # the same for every case
    assert upstream.stats()["requests"] == 0


# --- success, re-delivery, new events -----------------------------------------------------------------------


def test_a_signed_event_creates_a_link_scoped_to_the_partner(function, upstream):
    webhook_id = new_webhook_id()

    result = function.webhook(webhook_id=webhook_id)

    assert result.status == 201 and result.headers["content-type"] == "application/json"
    assert result.json()["amount"] == 2500 and result.json()["id"] in upstream.stats()["links"].values()
    sent = upstream.stats()["last_request"]["body"]
    forwarded = {name: value for name, value in sent.items() if name != "idempotency_key"}
    assert sent["idempotency_key"] == upstream_key(f"partner:{PARTNER}", webhook_id, fingerprint(forwarded))


def test_a_re_delivered_event_gives_the_same_link_without_a_second_upstream_call(function, upstream):
    webhook_id = new_webhook_id()
    first = function.webhook(webhook_id=webhook_id)
    calls = upstream.stats()["requests"]

    # Partners re-sign each delivery: a later attempt carries a new timestamp and signature, the same id.
    again = function.webhook(webhook_id=webhook_id, at=datetime.now(UTC) + timedelta(seconds=40))

    assert first.status == again.status == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body == first.body
    assert upstream.stats()["requests"] == calls
    assert links_created(upstream) == 1


def test_a_new_event_id_is_a_new_intent(function, upstream):
    first = function.webhook(webhook_id=new_webhook_id())
    second = function.webhook(webhook_id=new_webhook_id())

    assert first.status == second.status == 201
    assert first.json()["id"] != second.json()["id"]
    assert links_created(upstream) == 2


def test_partners_do_not_share_event_ids(function, upstream):
    webhook_id = new_webhook_id()
    mine = function.webhook(webhook_id=webhook_id)
    theirs = function.webhook(webhook_id=webhook_id, partner=OTHER_PARTNER, secret=OTHER_PARTNER_SECRET)

    assert mine.status == theirs.status == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert "idempotent-replayed" not in theirs.headers


def test_a_frontend_key_equal_to_a_webhook_id_is_another_callers_intent(function, upstream):
    key = str(uuid.uuid4())
    partner = function.webhook(webhook_id=key)
    frontend = function.create(key=key)

    assert partner.status == frontend.status == 201
    assert partner.json()["id"] != frontend.json()["id"]


def test_the_same_event_id_with_a_different_body_is_refused(function, upstream):
    webhook_id = new_webhook_id()
    function.webhook(webhook_id=webhook_id)

    result = function.webhook(partner_event(payout_body(amount=9999)), webhook_id=webhook_id)

    assert result.status == 422 and result.json()["type"].endswith(":idempotency-key-reused")
    assert links_created(upstream) == 1


def test_a_partner_added_to_the_secret_works_without_a_cold_start(function, upstream, aws_clients):
    _, secrets = aws_clients
    function.set_env(UNKNOWN_PARTNER_REFRESH_SECONDS="0")
    assert function.webhook().status == 201  # this container now caches the partner secrets
    newcomer_secret = webhook_secret("initech-test-secret-not-real")
    secrets.put_secret_value(
        SecretId=PARTNER_SECRETS_NAME, SecretString=json.dumps({**TEST_PARTNERS, "initech": newcomer_secret})
    )
    try:
        result = function.webhook(partner="initech", secret=newcomer_secret)
    finally:
        secrets.put_secret_value(SecretId=PARTNER_SECRETS_NAME, SecretString=json.dumps(TEST_PARTNERS))

    assert result.status == 201


# --- a refused delivery: 401, before the upstream ---------------------------------------------------------------
# Every way to fail the signature check, and that each is the same 401, is tests/unit/test_webhooks.py's: here, that
# the handler answers the refusal as that problem and calls no one.


def test_a_delivery_signed_with_another_partners_secret_is_a_401_that_reaches_nothing(function, upstream):
    assert_unauthenticated(function.webhook(secret=OTHER_PARTNER_SECRET), upstream)


# --- what only a verified delivery can get: 413, 422, 400 ---------------------------------------------------------
# The order of the checks (signature, size, media type) is tests/unit/test_webhooks.py's.


OVERSIZED = partner_event(payout_body(memo="x" * 20_000))  # over MAX_BODY_BYTES


def test_an_oversized_body_is_a_413_once_its_signature_verifies(function, upstream):
    result = function.webhook(OVERSIZED)

    assert result.status == 413 and result.is_problem()
    assert upstream.stats()["requests"] == 0


def test_an_invalid_envelope_is_a_422_pointing_into_it(function, upstream):
    """Which envelopes are invalid, and where each refusal points, is tests/unit/test_models.py's."""
    event = partner_event(payout_body(payee={"country_code": "1", "phone_number": "555-0123"}))

    result = function.webhook(event)

    assert result.status == 422 and result.is_problem()
    assert [error["pointer"] for error in result.json()["errors"]] == ["#/data/payee/phone_number"]
    assert upstream.stats()["requests"] == 0


def test_a_data_idempotency_key_other_than_the_webhook_id_is_a_400(function, upstream):
    """The event's data.idempotency_key reaches the key check (tests/unit/test_idempotency_keys.py has the rules)."""
    result = function.webhook(partner_event(payout_body(idempotency_key=str(uuid.uuid4()))))

    assert result.status == 400 and result.json()["type"].endswith(":invalid-idempotency-key")
    assert "webhook-id" in result.json()["detail"]
