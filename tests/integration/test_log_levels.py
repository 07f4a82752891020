"""Levels that mean something: one failure is one ERROR line, wherever it is noticed; what a caller did wrong, or
what its own limits refuse, is INFO; and a bug, alone, is `unexpected error`, the line the runbook's bug query looks
for, so that an outage of Dots or DynamoDB does not drown it."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from local_stack.core.aws_resources import free_port
from tests.support import frontend_headers, function_logs

pytestmark = pytest.mark.integration

# The runbook's query for bugs (docs/operations.md, `api-5xx`): `filter message = "unexpected error"`.
BUG = "unexpected error"


def logged(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def errors(lines: list[dict[str, Any]]) -> list[str]:
    return [line["message"] for line in lines if line["level"] == "ERROR"]


def test_dynamodb_refusing_connections_is_one_error_naming_its_code(function, upstream):
    """The lock write fails, the drop of a lock that may have landed fails the same way, and the caller gets a 503:
    one failure, one ERROR (the store's, with its code); the rest say what became of it, at WARNING."""
    function.set_env(AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{free_port()}")  # nothing listens there

    with function_logs() as logs:
        result = function.create()

    assert result.status == 503
    lines = logged(logs.getvalue())
    assert errors(lines) == ["idempotency store failed"]
    (failed,) = [line for line in lines if line["level"] == "ERROR"]
    assert failed["store_error"] == "EndpointConnectionError"
    (refused,) = [line for line in lines if line["message"] == "request refused"]
    assert (refused["level"], refused["status"]) == ("WARNING", 503)
    assert not [line for line in lines if line["message"] == BUG]


def test_dots_refusing_a_callers_payee_is_info_on_every_line(function, upstream):
    upstream.inject({"status": 422, "body": {"message": "payee cannot be reached"}})

    with function_logs() as logs:
        result = function.create()

    assert result.status == 422
    lines = logged(logs.getvalue())
    assert [line["message"] for line in lines if line["level"] in ("WARNING", "ERROR")] == []
    (attempt,) = [line for line in lines if line["message"] == "upstream attempt"]
    assert (attempt["level"], attempt["upstream_status"]) == ("INFO", 422)


def test_a_dots_outage_is_one_error_per_request_and_no_bug(function, upstream):
    upstream.inject({"status": 503, "count": 3})

    with function_logs() as logs:
        result = function.create()

    assert result.status == 502
    lines = logged(logs.getvalue())
    assert errors(lines) == ["request refused"]
    assert not [line for line in lines if line["message"] == BUG]


def test_a_bug_is_one_error_the_bug_query_finds(function, upstream, monkeypatch):
    from payout_links import app

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app, "parse_create_request", broken)

    with function_logs() as logs:
        result = function.create()

    assert result.status == 500
    lines = logged(logs.getvalue())
    assert errors(lines) == [BUG]
    (bug,) = [line for line in lines if line["message"] == BUG]
    assert bug["exception_name"] == "RuntimeError"


def test_a_settler_run_dynamodb_fails_logs_one_error_the_runbooks_query_finds(function, upstream):
    """docs/operations.md, settler-errors: `filter level = "ERROR" or @message like /Task timed out|Runtime\\./`, and
    "`idempotency store failed` with a `store_error` is DynamoDB failing". A run whose due-intents query fails still
    fails (settler-errors counts it), and first logs one ERROR of the function's own with the store's error code: the
    runtime's text traceback has no `level` field and no `Runtime.` (the log format is Text)."""
    function.set_env(AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{free_port()}")  # nothing listens there

    # A failed run raises (settler-errors counts it); what it logged is the question.
    with function_logs() as logs, contextlib.suppress(Exception):
        function.settle(timeout_seconds=20)

    lines = logged(logs.getvalue())
    failed = [line for line in lines if line["level"] == "ERROR"]
    assert len(failed) == 1, [line["message"] for line in lines]
    assert failed[0]["message"] == "idempotency store failed"
    assert failed[0].get("store_error") == "EndpointConnectionError", failed[0]


def test_a_mismatched_link_whose_cancel_dots_answers_404_is_one_error(function, upstream):
    """The mismatch is logged at ERROR where it is found; the cancel's 404 is a WARNING, never `upstream does not
    know a recorded link` (that link was never recorded): one incident, one ERROR."""
    upstream.inject({"link_overrides": {"amount": 1}}, {"status": 404, "body": {"message": "not found"}})

    with function_logs() as logs:
        result = function.create()

    assert result.status == 502
    assert errors(logged(logs.getvalue())) == ["upstream link does not match the request"]


def test_a_cancel_dots_answers_without_canceling_is_one_error(function, upstream):
    """Dots answers the DELETE 2xx with the link still `created`: `upstream did not cancel a cancelable link` is the
    ERROR, and the 502's `request refused` a WARNING: one failure, one ERROR."""
    created = function.create()
    assert created.status == 201
    upstream.inject({"link_overrides": {"status": "created"}})

    with function_logs() as logs:
        result = function.request("DELETE", f"/payout-links/{created.json()['id']}", headers=frontend_headers(key=None))

    assert result.status == 502
    assert errors(logged(logs.getvalue())) == ["upstream did not cancel a cancelable link"]
