"""What the function logs over whole request flows: every fact an operator needs (who called, the amount, the
link id, the outcome), and never a credential, a webhook secret or signature, a bearer token, or a payee's full
phone number or email."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support import (
    EMAIL,
    OTHER_PARTNER_SECRET,
    PARTNER,
    PHONE,
    HttpResult,
    InProcessFunction,
    create_event,
    function_logs,
    never_logged,
    payout_body,
    signed_webhook,
)

pytestmark = pytest.mark.integration


def run_logged(action: Callable[[], tuple[HttpResult, dict[str, str]]]) -> tuple[HttpResult, str, dict[str, Any]]:
    """Run one request; return its result, everything the function logged, and the entry that states the
    outcome (one per request)."""
    with function_logs() as logs:
        result, request_headers = action()
    text = logs.getvalue()
    for value in never_logged(request_headers):
        assert value not in text, f"the logs carry {value[:12]}..."
    entries = [json.loads(line) for line in text.splitlines() if line.startswith('{"level"')]
    (summary,) = [entry for entry in entries if "outcome" in entry]
    return result, text, summary


def frontend(function: InProcessFunction, body: dict | None = None, **kwargs: Any):
    event = create_event(body, **kwargs)
    return lambda: (function.invoke(event), event["headers"])


def partner(function: InProcessFunction, *args: Any, **kwargs: Any):
    request = signed_webhook(*args, **kwargs)
    return lambda: (function.request("POST", request.path, body=request.body, headers=request.headers), request.headers)


def test_a_created_link_is_logged_with_caller_amount_link_and_outcome(function, upstream):
    result, _, summary = run_logged(frontend(function, sub="user-42"))

    assert result.status == 201
    assert summary["caller"] == "user:user-42"
    assert summary["amount"] == 2500
    assert summary["link_id"] == result.json()["id"]
    assert summary["outcome"] == "created"


def test_a_replay_is_logged_as_such(function, upstream):
    run_logged(frontend(function, key="a-key-for-the-log-test"))

    result, _, summary = run_logged(frontend(function, key="a-key-for-the-log-test"))

    assert result.headers["idempotent-replayed"] == "true"
    assert (summary["outcome"], summary["link_id"]) == ("replayed", result.json()["id"])
    assert (summary["caller"], summary["amount"]) == ("user:user-1", 2500)


def test_a_partner_event_is_logged_with_caller_amount_link_and_outcome(function, upstream):
    result, _, summary = run_logged(partner(function))

    assert result.status == 201
    assert summary["caller"] == f"partner:{PARTNER}"
    assert summary["amount"] == 2500
    assert summary["link_id"] == result.json()["id"]
    assert summary["outcome"] == "created"
    assert summary["webhook_id"].startswith("msg_")


@pytest.mark.parametrize(
    ("fault", "status", "outcome"),
    [
        ({"status": 500, "count": 3}, 502, "upstream-failed"),
        ({"status": 401, "count": 2}, 502, "upstream-failed"),
        ({"status": 429, "retry_after": "3"}, 429, "upstream-rate-limited"),
        ({"status": 400, "body": {"message": f"payee {PHONE} / {EMAIL} is not reachable"}}, 422, "upstream-rejected"),
        ({"status": 201, "raw_body": f"<html>{PHONE}</html>"}, 502, "upstream-failed"),
    ],
    ids=["5xx", "credentials rejected", "rate limited", "refusal quoting the payee", "unreadable answer"],
)
def test_upstream_failures_are_logged_with_caller_amount_and_outcome(function, upstream, fault, status, outcome):
    upstream.inject(fault)

    result, _, summary = run_logged(frontend(function, sub="user-7"))

    assert result.status == status
    assert (summary["caller"], summary["amount"], summary["outcome"]) == ("user:user-7", 2500, outcome)


def test_a_validation_error_is_logged_with_caller_and_outcome(function, upstream):
    body = payout_body(amount=10.5)  # still carries the payee's phone and email

    result, _, summary = run_logged(frontend(function, body, sub="user-9"))

    assert result.status == 422
    assert (summary["caller"], summary["outcome"], summary["status"]) == ("user:user-9", "validation-failed", 422)


def test_an_unknown_idempotency_key_error_still_names_the_amount(function, upstream):
    result, _, summary = run_logged(frontend(function, key=None))

    assert result.status == 400
    assert (summary["caller"], summary["amount"], summary["outcome"]) == (
        "user:user-1",
        2500,
        "invalid-idempotency-key",
    )


def test_a_request_without_a_token_is_logged_as_anonymous(function, upstream):
    result, _, summary = run_logged(frontend(function, sub=None))

    assert result.status == 401
    assert (summary["caller"], summary["outcome"]) == ("anonymous", "unauthenticated")


@pytest.mark.parametrize(
    ("signing", "reason"),
    [({"secret": OTHER_PARTNER_SECRET}, "bad-signature"), ({"partner": "no-such-partner"}, "unknown-partner")],
    ids=["bad signature", "unknown partner"],
)
def test_webhook_refusals_are_logged_with_the_claimed_caller_and_why(function, upstream, signing, reason):
    """Every reason is logged at one place (tests/unit/test_webhooks.py checks which reason each failed check is):
    a partner's refused request and a stranger's name."""
    result, text, summary = run_logged(partner(function, **signing))

    assert result.status == 401
    assert summary["caller"] == f"partner:{signing.get('partner', PARTNER)}"
    assert summary["outcome"] == "unauthenticated"
    assert f'"auth_failure":"{reason}"' in text
