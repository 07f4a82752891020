"""Following one request from the gateway to Dots and back by its keys, not by its time: every upstream attempt and
outcome line names the intent's derived upstream key (what Dots deduplicates by) and the link once it is known, and
Dots gets the request's id (the `correlation_id` of its lines) in `X-Request-Id` with every call."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support import create_event, frontend_headers, function_logs, http_event, new_key

pytestmark = pytest.mark.integration

REQUEST_ID = "x-request-id"  # the header Dots gets (upstream.REQUEST_ID_HEADER), as the emulator records it


def logged(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_create_names_its_upstream_key_and_link_on_its_lines_and_sends_its_request_id(function, upstream):
    event = create_event(key="order-7731")
    with function_logs() as logs:
        result = function.invoke(event)

    assert result.status == 201
    sent = upstream.stats()["last_request"]
    upstream_key = sent["body"]["idempotency_key"]
    request_id = event["requestContext"]["requestId"]
    assert sent["headers"][REQUEST_ID] == request_id
    (outcome,) = [line for line in logged(logs.getvalue()) if line["message"] == "payout link created"]
    assert outcome["correlation_id"] == request_id
    assert outcome["upstream_key"] == upstream_key
    assert outcome["link_id"] == result.json()["id"]
    assert outcome["idempotency_key"] == "order-7731"


def test_every_attempt_of_a_failed_create_names_the_upstream_key_and_carries_the_same_request_id(function, upstream):
    """A 502 after three 5xx: the lines an operator gives Dots (by key) and the one a caller quotes (by id)."""
    upstream.inject({"status": 500, "count": 3})
    event = create_event()
    with function_logs() as logs:
        result = function.invoke(event)

    assert result.status == 502
    upstream_key = upstream.stats()["last_request"]["body"]["idempotency_key"]
    lines = logged(logs.getvalue())
    attempts = [line for line in lines if line["message"] == "upstream attempt"]
    assert len(attempts) == 3
    (refused,) = [line for line in lines if line["message"] == "request refused"]
    for line in [*attempts, refused]:
        assert line["upstream_key"] == upstream_key, line
        assert line["correlation_id"] == event["requestContext"]["requestId"], line


def test_a_read_names_the_link_on_its_upstream_lines_and_sends_the_request_id(function, upstream):
    link = function.create().json()
    upstream.inject({"status": 503})
    event = http_event("GET", f"/payout-links/{link['id']}", headers=frontend_headers(key=None))
    with function_logs() as logs:
        result = function.invoke(event)

    assert result.status == 502
    sent = upstream.stats()["last_request"]
    assert sent["headers"][REQUEST_ID] == event["requestContext"]["requestId"]
    lines = logged(logs.getvalue())
    (attempt,) = [line for line in lines if line["message"] == "upstream attempt"]
    (refused,) = [line for line in lines if line["message"] == "request refused"]
    assert attempt["link_id"] == refused["link_id"] == link["id"]


def test_a_settler_resend_names_its_upstream_key_and_link_and_sends_the_runs_id(function, upstream, own_intent_table):
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1")
    upstream.inject({"status": 500})
    lost = function.create(key=new_key(), sub="settled-later")
    assert lost.json()["key_state"] == "bound"
    upstream_key = upstream.stats()["last_request"]["body"]["idempotency_key"]
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS

    with function_logs() as logs:
        report = function.settle()

    assert report["settled"] == 1, report
    lines = logged(logs.getvalue())
    (settled,) = [line for line in lines if line["message"] == "intent settled: payout link recorded"]
    assert settled["upstream_key"] == upstream_key
    assert settled["caller"] == "user:settled-later"
    (run,) = [line for line in lines if line["message"] == "settler run"]
    sent = upstream.stats()["last_request"]
    assert sent["body"]["idempotency_key"] == upstream_key
    assert sent["headers"][REQUEST_ID] == run["correlation_id"] == settled["correlation_id"]
    assert settled["link_id"] == (upstream.links()[-1]["id"])
