"""POST /webhooks/{partner}/payout-links through the real handler, with the partner secrets in Secrets Manager
(moto over HTTP) and the Dots emulator over HTTP. Every request is signed by the `standardwebhooks` library."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from local_stack.stack import PARTNER_SECRETS_NAME
from payout_links.intent import fingerprint, upstream_key
from tests.support import (
    OTHER_PARTNER,
    OTHER_PARTNER_SECRET,
    PARTNER,
    PARTNER_SECRET,
    TEST_PARTNERS,
    HttpResult,
    emitted_metrics,
    function_logs,
    new_webhook_id,
    partner_event,
    payout_body,
    signed_webhook,
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


def test_a_partners_secret_rotated_in_secrets_manager_works_without_a_cold_start(function, upstream, aws_clients):
    """The partner signs with a secret added to its entry after this container read the secret: the signature first
    fails against the cached keys, the secret is read again, and the delivery is verified."""
    _, secrets = aws_clients
    function.set_env(UNKNOWN_PARTNER_REFRESH_SECONDS="0")
    assert function.webhook().status == 201  # this container now caches the partner secrets
    rotated = webhook_secret("acme-rotated-test-secret-not-real")
    secrets.put_secret_value(
        SecretId=PARTNER_SECRETS_NAME, SecretString=json.dumps({**TEST_PARTNERS, PARTNER: [rotated, PARTNER_SECRET]})
    )
    try:
        result = function.webhook(secret=rotated)
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


# --- a secret belongs to one partner --------------------------------------------------------------------------------
# The signature covers the body and the webhook-id, never the partner name in the URL: a secret configured for two
# partners would let one signed delivery be sent under each name, and each name is a caller of its own, with its own
# link. Such a secret is refused for every partner it is configured for; the others keep working.

SHARED_SECRET = webhook_secret("shared-by-two-partners-not-real")
SHARING = {"alpha": SHARED_SECRET, "beta": [webhook_secret("beta-new-not-real"), SHARED_SECRET.rstrip("=")]}
GAMMA_SECRET = webhook_secret("gamma-test-secret-not-real")


@pytest.fixture
def sharing_partners(function, aws_clients) -> Iterator[None]:
    """The function reads a partner secret of its own, in which alpha and beta share a key and gamma has its own."""
    _, secrets = aws_clients
    name = f"payout-link-proxy/test/partners-{uuid.uuid4().hex[:12]}"
    secrets.create_secret(Name=name, SecretString=json.dumps({**SHARING, "gamma": GAMMA_SECRET}))
    function.set_env(PARTNER_WEBHOOK_SECRETS_ID=name)
    yield
    secrets.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


def post(function, partner: str, request) -> HttpResult:
    """The one signed request `request`, sent to `partner`'s URL: only the path changes, never a signed byte."""
    return function.request("POST", f"/webhooks/{partner}/payout-links", body=request.body, headers=request.headers)


def test_one_delivery_sent_to_each_partner_sharing_its_secret_makes_no_link(function, upstream, sharing_partners):
    request = signed_webhook(secret=SHARED_SECRET)

    answers = [post(function, partner, request) for partner in ("alpha", "beta")]

    assert links_created(upstream) == 0, [answer.status for answer in answers]
    for answer in answers:
        assert_unauthenticated(answer, upstream)


def test_a_partner_sharing_its_secret_is_answered_as_a_name_that_does_not_exist(function, upstream, sharing_partners):
    """The same status, headers and body but for the request's own id: no oracle of which names are configured."""
    request = signed_webhook(secret=SHARED_SECRET)

    shared, unknown = post(function, "alpha", request), post(function, "no-such-partner", request)

    assert shared.status == unknown.status == 401
    assert shared.body_but_request_id() == unknown.body_but_request_id()
    assert shared.headers == unknown.headers
    assert upstream.stats()["requests"] == 0


def test_partners_sharing_a_secret_are_refused_logged_and_counted_once_while_another_works(
    function, upstream, sharing_partners
):
    """One read of the secret (the first request's; the refused names are within the unknown-partner interval):
    one ERROR line naming both partners and no secret, one PartnerSecretShared of 2."""
    with function_logs() as logs, emitted_metrics() as documents:
        alpha = function.webhook(partner="alpha", secret=SHARED_SECRET)
        gamma = function.webhook(partner="gamma", secret=GAMMA_SECRET)
        beta = function.webhook(partner="beta", secret=SHARING["beta"][0])  # its own key does not help

    assert gamma.status == 201
    assert alpha.status == beta.status == 401
    assert links_created(upstream) == 1
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    (shared,) = [line for line in lines if line["message"] == "partner secret shared by several partners"]
    assert shared["level"] == "ERROR" and shared["partners"] == ["alpha", "beta"]
    for secret in (SHARED_SECRET, SHARED_SECRET.removeprefix("whsec_").rstrip("="), GAMMA_SECRET):
        assert secret not in logs.getvalue()
    counted = [document["PartnerSecretShared"] for document in documents if "PartnerSecretShared" in document]
    assert counted in ([2.0], [[2.0]])
