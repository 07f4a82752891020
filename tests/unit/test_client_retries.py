"""The client the e2e tests act as (tests/support.py `send_until_settled`): which answers it sends again with the same
key and body, as docs/api.md's safe recipe says, how long it waits, and that it stops."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support import retry_pause, send_until_settled

pytestmark = pytest.mark.unit

PREFIX = "urn:payout-link-proxy:problem:"


def answer(status: int, problem: str | None = None, *, retry_after: str | None = None, **fields: str) -> httpx.Response:
    headers = {"retry-after": retry_after} if retry_after else {}
    if problem is None:
        return httpx.Response(status, json={"message": "Service Unavailable"}, headers=headers)
    body = {"type": PREFIX + problem, "status": status, **fields}
    headers["content-type"] = "application/problem+json"
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


@pytest.mark.parametrize(
    ("response", "pause"),
    [
        (answer(409, "request-in-progress", retry_after="2", key_state="bound"), 2.0),
        (answer(429, "upstream-rate-limited", retry_after="11", key_state="released"), 3.0),  # capped
        (answer(429, "limit-exceeded", retry_after="1", key_state="released"), 1.0),
        (answer(502, "upstream-failed", key_state="bound"), 0.5),
        (answer(503, "dependency-unavailable", retry_after="2", key_state="released"), 2.0),
        (answer(504, "upstream-timeout", key_state="bound"), 0.5),
        (answer(500, "internal-error"), 0.5),  # no key_state: taken as bound
        (answer(503), 0.5),  # API Gateway's own, past the integration timeout
        (answer(500), 0.5),  # API Gateway's own, for an invocation that crashed
    ],
    ids=lambda value: str(value) if isinstance(value, float) else None,
)
def test_answers_the_recipe_says_to_retry_are_retried_after_retry_after_capped(response, pause):
    assert retry_pause(response, cap=3.0) == pause


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201, json={"id": "pl_1"}),
        answer(409, "not-cancelable"),
        answer(422, "idempotency-key-reused", key_state="bound"),
        answer(422, "upstream-rejected", key_state="released"),
        answer(400, "invalid-idempotency-key"),
        answer(429),  # API Gateway's throttle names no Retry-After
        answer(502, "upstream-mismatch", key_state="spent"),
        answer(502, "upstream-link-conflict", key_state="spent"),
    ],
)
def test_a_final_answer_is_not_retried(response):
    assert retry_pause(response, cap=3.0) is None


def test_a_create_is_sent_until_its_answer_is_final_and_no_more_than_the_attempts():
    answers = iter([answer(503), answer(409, "request-in-progress", retry_after="0"), httpx.Response(201, json={})])

    final, seen = send_until_settled(lambda: next(answers), cap=0)

    assert final.status_code == 201 and seen == [503, 409, 201]
    final, seen = send_until_settled(lambda: answer(503), attempts=3, cap=0)
    assert final.status_code == 503 and seen == [503, 503, 503]


def test_a_retryable_answer_a_test_is_about_is_kept():
    final, seen = send_until_settled(lambda: answer(504, "upstream-timeout", key_state="bound"), retry_on={409, 503})

    assert final.status_code == 504 and seen == [504]


def test_no_answer_is_retried_and_raised_when_it_is_the_last():
    calls = []

    def send() -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("no answer")

    with pytest.raises(httpx.ReadTimeout):
        send_until_settled(send, attempts=2, cap=0)
    assert len(calls) == 2
