"""POST /payout-links through the real handler, DynamoDB and Secrets Manager on a moto server over HTTP, and
the Dots emulator over HTTP. Each test starts from a cold container."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import httpx
import pytest

from local_stack.core.lambda_worker import LocalLambdaContext
from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID
from local_stack.stack import CREDENTIALS_SECRET_NAME
from payout_links import service
from payout_links.app import lambda_handler
from payout_links.intent import UPSTREAM_KEY_NAMESPACE
from tests.support import LINK_KEYS, create_event, function_logs, new_key, payout_body, token

pytestmark = pytest.mark.integration


def upstream_requests(upstream) -> int:
    return upstream.stats()["requests"]


def test_creates_a_normalized_link_and_forwards_only_what_the_caller_set(function, upstream):
    key = new_key()
    result = function.create(payout_body(memo=None, tax_exempt=True), key=key)

    assert result.status == 201
    assert result.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in result.headers
    link = result.json()
    assert set(link) == LINK_KEYS
    assert link["amount"] == 2500 and isinstance(link["amount"], int)  # the emulator answers 2500.0
    assert link["created"].endswith("Z")
    assert link["metadata"] == {"order": "A-1001"}  # the emulator answers a JSON string
    assert link["payee"]["phone_number"] == "5555550123" and link["payee"]["last_name"] is None
    assert link["id"] in upstream.stats()["links"].values()

    sent = upstream.stats()["last_request"]["body"]
    assert "memo" not in sent  # explicit null on an optional field is not forwarded
    assert sent["tax_exempt"] is True
    # The upstream key is derived from (caller, key, fingerprint of what was sent): a UUIDv5 the caller never sees.
    forwarded = {name: value for name, value in sent.items() if name != "idempotency_key"}
    request_fingerprint = hashlib.sha256(json.dumps(forwarded, sort_keys=True).encode()).hexdigest()
    derivation = json.dumps(["user:user-1", key, request_fingerprint])
    assert sent["idempotency_key"] == str(uuid.uuid5(UPSTREAM_KEY_NAMESPACE, derivation))


def test_replay_returns_the_same_body_without_calling_the_upstream(function, upstream):
    key = new_key()
    first = function.create(key=key)
    calls = upstream_requests(upstream)

    replay = function.create(key=key)

    assert replay.status == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.body == first.body
    assert upstream_requests(upstream) == calls


def test_replay_is_also_served_to_a_new_container(function, upstream):
    """The record in DynamoDB, not the container's memory, answers: a new container replays the first answer
    without asking the upstream again (which would also hand back the same link, by the derived key)."""
    key = new_key()
    first = function.create(key=key)
    assert first.status == 201 and "idempotent-replayed" not in first.headers
    function.reset_container()

    replay = function.create(key=key)

    assert (replay.status, replay.body) == (201, first.body)
    assert replay.headers["idempotent-replayed"] == "true"
    assert upstream.stats()["creates"] == 1
    assert upstream.stats()["links_created"] == 1


def padded_body(size: int) -> str:
    """A valid create body of exactly `size` bytes: JSON allows trailing whitespace."""
    body = json.dumps(payout_body())
    assert len(body) <= size
    return body + " " * (size - len(body))


@pytest.mark.parametrize("configured", [None, "2048"], ids=["template-limit", "configured-limit"])
def test_the_body_limit_is_the_configured_one(function, upstream, configured):
    """MAX_BODY_BYTES (the template's, or another) is what the create route enforces: a body of exactly that many
    bytes is served, one byte more is a 413 that never reaches the upstream."""
    if configured is not None:
        function.set_env(MAX_BODY_BYTES=configured)
    limit = int(os.environ["MAX_BODY_BYTES"])

    over = function.create(padded_body(limit + 1))
    at = function.create(padded_body(limit))

    assert over.status == 413 and over.is_problem()
    assert over.json()["detail"] == f"The body must be at most {limit} bytes."
    assert at.status == 201
    assert upstream.stats()["creates"] == 1


def test_a_request_is_fingerprinted_once(function, upstream, monkeypatch):
    from payout_links import intent

    fingerprinted: list[dict] = []
    fingerprint = intent.fingerprint
    monkeypatch.setattr(intent, "fingerprint", lambda request: fingerprinted.append(request) or fingerprint(request))
    key = new_key()

    first = function.create(key=key)
    function.reset_container()  # the replay reads the record from DynamoDB and checks its validation hash
    replay = function.create(key=key)

    assert (first.status, replay.status) == (201, 201)
    assert len(fingerprinted) == 2  # once per request: for the upstream key and the record's validation hash


def test_body_key_and_quoted_header_name_the_same_intent(function, upstream):
    key = new_key()
    first = function.create(payout_body(idempotency_key=key), key=None)
    replay = function.create(payout_body(idempotency_key=key), key=f'"{key.upper()}"')

    assert first.status == 201
    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]


def test_same_key_with_a_different_body_is_refused(function, upstream):
    key = new_key()
    function.create(key=key)
    calls = upstream_requests(upstream)

    result = function.create(payout_body(amount=2600), key=key)

    assert result.status == 422 and result.is_problem()
    assert result.json()["type"].endswith("idempotency-key-reused")
    assert upstream_requests(upstream) == calls


def test_an_invalid_body_does_not_bind_its_key(function, upstream):
    """Validation comes before the key is taken: the corrected request, with the same key, creates the link."""
    key = new_key()
    assert function.create(payout_body(amount=10.5), key=key).status == 422

    corrected = function.create(payout_body(amount=1050), key=key)

    assert corrected.status == 201 and "idempotent-replayed" not in corrected.headers
    assert upstream.stats()["creates"] == 1


def test_equivalent_bodies_are_the_same_intent(function, upstream):
    key = new_key()
    function.create(payout_body(), key=key)
    reordered = json.dumps(dict(reversed(list(payout_body(force_collect_compliance_information=False).items()))))

    replay = function.create(reordered, key=key)

    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"


def test_callers_do_not_share_keys(function, upstream):
    """The caller is the token's subject, or its client_id without one (a machine token): never the body, which
    here names someone else. A user and a machine of the same name are two callers."""
    key, body = new_key(), payout_body(user_id="user-2")
    machine = {"authorization": f"Bearer {token(None, client_id='user-2')}"}
    answers = [
        function.create(body, key=key, sub="user-1"),
        function.create(body, key=key, sub="user-2"),
        function.create(body, key=key, sub=None, headers=machine),
    ]
    again = function.create(body, key=key, sub=None, headers=machine)

    assert [answer.status for answer in answers] == [201, 201, 201]
    assert not [answer for answer in answers if "idempotent-replayed" in answer.headers]
    assert len({answer.json()["id"] for answer in answers}) == 3
    assert again.headers["idempotent-replayed"] == "true" and again.body == answers[2].body
    assert upstream.stats()["links_created"] == 3


def test_rotated_credentials_are_re_read_once(function, upstream, aws_clients):
    _, secrets = aws_clients
    assert function.create().status == 201  # the container now caches the current credentials
    upstream.set_credentials("rotated-client", "rotated-key-not-a-secret")
    secrets.put_secret_value(
        SecretId=CREDENTIALS_SECRET_NAME,
        SecretString=json.dumps({"client_id": "rotated-client", "api_key": "rotated-key-not-a-secret"}),
    )
    try:
        calls = upstream_requests(upstream)
        result = function.create()
        assert result.status == 201
        assert upstream_requests(upstream) == calls + 2  # one 401, one success after re-reading the secret
    finally:
        secrets.put_secret_value(
            SecretId=CREDENTIALS_SECRET_NAME,
            SecretString=json.dumps({"client_id": DEMO_CLIENT_ID, "api_key": DEMO_API_KEY}),
        )


def test_a_creation_time_outside_the_calendar_is_null_and_replayed_as_such(function, upstream):
    # Moving this instant to UTC leaves year 1: a time that cannot be written, so not one to vouch for
    # (tests/unit/test_upstream_client.py). The record stores the link as answered, null included.
    upstream.inject({"link_overrides": {"created": "0001-01-01T00:00:00+01:00"}})
    key = new_key()

    created = function.create(key=key)
    replay = function.create(key=key)

    assert created.status == 201, created.body
    assert set(created.json()) == LINK_KEYS and created.json()["created"] is None
    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.body == created.body


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "text/plain"}, {"idempotency-key": "bad key with spaces"}, {}],
    ids=["415", "400", "422"],
)
def test_every_problem_carries_the_request_id_api_gateway_gave(function, headers):
    """The id a user quotes to support: the event's requestId, which API Gateway also sends as `apigw-requestid`."""
    event = create_event({"amount": 0} if not headers else None, headers=headers)
    event["requestContext"]["requestId"] = "Quote-Me-1234abc="

    answer = function.invoke(event)

    assert answer.status in (400, 415, 422)
    assert answer.json()["request_id"] == "Quote-Me-1234abc="
    assert answer.is_problem()


def test_a_problem_without_api_gateway_has_no_request_id(function):
    """Invoked directly (no requestContext.requestId), the body has no empty or made-up id."""
    event = create_event({"amount": 0})
    del event["requestContext"]["requestId"]

    answer = lambda_handler(event, LocalLambdaContext(20.0, "direct-invoke"))

    assert answer["statusCode"] == 422
    assert "request_id" not in json.loads(answer["body"])


class BrokenDependency(RuntimeError):
    """A failure no handler expects: a bug in the function or in a library it uses."""


# What the exception says; none of it may reach the caller.
INTERNAL_DETAIL = "pool state corrupted at 0x7f3a9c (internal-marker-5e1d)"


def test_an_unexpected_error_is_a_500_problem_that_shows_nothing_of_it(function, upstream, monkeypatch):
    """Whatever raises where no handler expects it: the caller gets the generic problem, never the exception's
    text, its repr or a traceback; the operator gets the exception in the logs."""

    def broken(request: httpx.Request) -> httpx.Response:
        raise BrokenDependency(INTERNAL_DETAIL)

    # The upstream's HTTP client, as the container builds it, is the dependency that fails.
    working_client = service.deadline_client
    monkeypatch.setattr(service, "deadline_client", lambda **_: httpx.Client(transport=httpx.MockTransport(broken)))
    function.reset_container()
    key = new_key()

    with function_logs() as logs:
        result = function.create(key=key)

    assert result.status == 500
    assert result.headers["content-type"] == "application/problem+json"
    assert result.headers["cache-control"] == "no-store"
    assert result.json() == {
        "type": "urn:payout-link-proxy:problem:internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "The request could not be completed; retry with the same key.",
        "request_id": result.request_id,
    }
    exposed = result.body.decode() + json.dumps(result.headers)
    for leak in (INTERNAL_DETAIL, "internal-marker", "BrokenDependency", "RuntimeError", "Traceback", 'File "'):
        assert leak not in exposed
    entries = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    (logged,) = [entry for entry in entries if entry["message"] == "unexpected error"]
    assert logged["level"] == "ERROR"
    assert logged["exception_name"] == "BrokenDependency"
    assert "Traceback" in logged["exception"] and INTERNAL_DETAIL in logged["exception"]
    assert upstream.stats()["requests"] == 0

    # As the detail says: once the fault is gone, the same key creates the link.
    monkeypatch.setattr(service, "deadline_client", working_client)
    function.reset_container()
    retry = function.create(key=key)
    assert retry.status == 201 and "idempotent-replayed" not in retry.headers
    assert upstream.stats()["links_created"] == 1
