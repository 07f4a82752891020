"""What a log line may carry of what a caller chose, and of what AWS says: a partner name from the URL, a token's
subject, an idempotency key or a link id Dots chose is logged as it is only when short and plain (and not a phone
number), and as a short hash otherwise (one helper, `observability.loggable`); a store error is logged by its code,
never by the SDK's text, which in AWS names the account, the role and the resource."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest

from tests.support import PHONE, frontend_headers, function_logs, http_event, payout_body, signed_webhook

pytestmark = pytest.mark.integration

# A line of the function's, whatever a caller sent: its own keys, Powertools' and a few short values.
MAX_LINE_BYTES = 1200


def logged(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def hashed(value: str) -> str:
    return f"<sha256:{hashlib.sha256(value.encode()).hexdigest()[:16]}>"


def test_a_long_partner_name_from_the_url_is_logged_as_a_short_hash(function, upstream):
    name = "p" + "x" * 2999  # a 3,000-character path segment: anyone can send one
    request = signed_webhook(partner=name)

    with function_logs() as logs:
        result = function.request("POST", request.path, body=request.body, headers=request.headers)

    assert result.status == 401
    text = logs.getvalue()
    assert "x" * 65 not in text
    lines = logged(text)
    assert lines and {line["caller"] for line in lines} == {f"partner:{hashed(name)}"}
    assert max(len(line.encode()) for line in text.splitlines()) < MAX_LINE_BYTES
    # Nor what the log group says already: the function's ARN (which names the account) and memory size.
    assert not [line for line in lines if {"function_arn", "function_memory_size"} & line.keys()]


def test_a_real_partner_name_is_logged_as_it_is(function, upstream):
    with function_logs() as logs:
        result = function.webhook()

    assert result.status == 201
    assert {line["caller"] for line in logged(logs.getvalue())} == {"partner:acme"}


@pytest.mark.parametrize(
    ("sub", "key"),
    [("s" * 200, "k" * 255), ("ada@example.org", "order#1/ada@example.org"), ('zo\u00eb"\\', 'a"b\\c')],
    ids=["long", "email-like", "quotes-and-non-ascii"],
)
def test_an_odd_subject_or_key_is_logged_as_a_short_hash(function, upstream, sub, key):
    event = http_event("POST", "/payout-links", body=payout_body(), headers=frontend_headers(key=key, sub=sub))

    with function_logs() as logs:
        result = function.invoke(event)

    assert result.status == 201
    text = logs.getvalue()
    lines = logged(text)
    assert {line["caller"] for line in lines} == {f"user:{hashed(sub)}"}
    assert {line["idempotency_key"] for line in lines} == {hashed(key)}
    for value in (sub, key, json.dumps(sub)[1:-1], json.dumps(key)[1:-1]):
        assert value not in text


def test_a_store_error_is_logged_by_its_code_never_by_the_sdks_text(function, upstream):
    """The link owners table missing (a wrong name, a deleted table): AWS's text names it, and in AWS the account."""
    link = function.create().json()
    missing = f"no-such-owners-table-{uuid.uuid4().hex[:8]}"
    function.set_env(LINK_OWNERS_TABLE_NAME=missing)

    with function_logs() as logs:
        result = function.invoke(http_event("GET", f"/payout-links/{link['id']}", headers=frontend_headers(key=None)))

    assert result.status == 503
    text = logs.getvalue()
    assert missing not in text and "not found" not in text.lower()
    (failed,) = [line for line in logged(text) if line["level"] == "ERROR"]
    assert failed["store_error"] == "ResourceNotFoundException"


# A value longer than this never reaches a log line whole (tests/e2e/test_incident_drills.py holds callers to it).
LOGGED_VALUE_BOUND = 128


def test_a_mismatched_links_id_from_dots_is_logged_bounded(function, upstream):
    """Dots (or whatever sits between) answers with a mismatched link whose id is 5,000 characters: every line about
    it and its cancel carries `link_id` through `loggable`, as the request's own lines do."""
    upstream.inject({"link_overrides": {"id": "L" * 5000, "amount": 1}})

    with function_logs() as logs:
        result = function.create()

    assert result.status == 502
    lines = logged(logs.getvalue())
    too_long = [line["message"] for line in lines if any(len(str(v)) > LOGGED_VALUE_BOUND for v in line.values())]
    assert too_long == [], too_long
    assert {line["link_id"] for line in lines if "link_id" in line} == {hashed("L" * 5000)}


def test_a_subject_that_is_a_phone_number_is_logged_as_a_short_hash(function, upstream):
    """Identity providers with phone sign-in may use the number as the token's `sub`: as personal as a payee's phone
    number, which never reaches a log (tests.support.never_logged). `caller` is `user:<sha256:...>`."""
    sub = "+1" + PHONE

    with function_logs() as logs:
        result = function.create(sub=sub)

    assert result.status == 201
    assert PHONE not in logs.getvalue()
    assert {line["caller"] for line in logged(logs.getvalue())} == {f"user:{hashed(sub)}"}
