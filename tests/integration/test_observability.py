"""What an operator gets from the function: JSON log lines that carry the API Gateway request id and the cold start
flag, and CloudWatch metrics (EMF) with the names, units, namespace and dimensions that the template's alarms and
dashboard rely on."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support import (
    FUNCTION_METRICS,
    PARTNER,
    create_event,
    emitted_metrics,
    function_logs,
    new_key,
    partner_event,
    payout_body,
    signed_webhook,
)

pytestmark = pytest.mark.integration

NAMESPACE, SERVICE = "PayoutLinkProxy", "payout-link-proxy"


def metrics_of(documents: list[dict[str, Any]]) -> dict[str, tuple[str, list[float], list[list[str]]]]:
    """Metric name -> (unit, values, dimension sets), across the EMF documents of one invocation."""
    found = {}
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        for dimension_set in directive["Dimensions"]:
            for dimension in dimension_set:
                assert isinstance(document[dimension], str) and document[dimension]
        for definition in directive["Metrics"]:
            name = definition["Name"]
            assert name not in found, f"{name} reported twice in one invocation"
            values = document[name] if isinstance(document[name], list) else [document[name]]
            found[name] = (definition["Unit"], values, directive["Dimensions"])
    for name, (unit, _, _) in found.items():
        assert FUNCTION_METRICS.get(name) == unit, f"{name} ({unit}) is not a metric the template knows"
    return found


def invoke(function, **create) -> tuple[Any, dict[str, tuple[str, list[float], list[list[str]]]]]:
    with emitted_metrics() as documents:
        result = function.create(**create)
    return result, metrics_of(documents)


def test_a_create_counts_one_link_and_one_upstream_latency_sample(function, upstream):
    result, metrics = invoke(function)

    assert result.status == 201
    assert metrics["PayoutLinkCreated"][:2] == ("Count", [1.0])
    unit, latencies, dimensions = metrics["UpstreamLatency"]
    assert unit == "Milliseconds" and len(latencies) == 1 and latencies[0] > 0
    assert dimensions == [["service"]]
    # The container was cold: ColdStart comes in its own document, per function and service.
    assert metrics["ColdStart"][:2] == ("Count", [1.0])
    assert sorted(metrics["ColdStart"][2][0]) == ["function_name", "service"]
    assert "IdempotentReplay" not in metrics and not any(name.startswith("UpstreamError") for name in metrics)


def test_a_replay_counts_a_replay_and_calls_no_one(function, upstream):
    key = new_key()
    function.create(key=key)

    result, metrics = invoke(function, key=key)

    assert result.headers["idempotent-replayed"] == "true"
    assert set(metrics) == {"IdempotentReplay"}  # no link created, no upstream call, no cold start
    assert metrics["IdempotentReplay"][:2] == ("Count", [1.0])


@pytest.mark.parametrize(
    ("fault", "environment", "metric", "status"),
    [
        ({"status": 500, "count": 3}, {}, "UpstreamError5xx", 502),
        ({"drop": True, "count": 3}, {}, "UpstreamErrorConnection", 502),
        ({"delay_seconds": 0.6, "count": 3}, {"PAYOUT_API_TIMEOUT_SECONDS": "0.3"}, "UpstreamErrorTimeout", 504),
        ({"status": 201, "raw_body": "<html>maintenance</html>", "count": 3}, {}, "UpstreamErrorUnreadable", 502),
    ],
    ids=["5xx", "connection", "timeout", "unreadable-2xx"],
)
def test_an_upstream_failure_counts_each_failed_attempt_by_class(
    function, upstream, fault, environment, metric, status
):
    function.set_env(**environment)
    upstream.inject(fault)

    result, metrics = invoke(function)

    assert result.status == status
    unit, failures, dimensions = metrics[metric]
    attempts = len(metrics["UpstreamLatency"][1])
    assert unit == "Count" and failures == [1.0] * attempts and dimensions == [["service"]]
    assert "PayoutLinkCreated" not in metrics


def test_refusals_count_by_cause(function, upstream):
    key = new_key()
    function.create(key=key)  # also the container's cold start
    _, invalid = invoke(function, body={"amount": "100"})
    _, reused = invoke(function, body={"amount": 1, "user_id": "u-1"}, key=key)

    assert set(invalid) == {"ValidationRejected"}
    assert set(reused) == {"IdempotencyConflict"}


# A name only a stranger would send: it must not reach a metric, where it would become a dimension value.
STRANGERS_PARTNER_NAME = "stranger-chosen-name-7f3a"


def _bad_signature(request):
    request.headers["webhook-signature"] = signed_webhook(webhook_id="msg_other").headers["webhook-signature"]
    return request


@pytest.mark.parametrize(
    "refused",
    [lambda: _bad_signature(signed_webhook()), lambda: signed_webhook(partner=STRANGERS_PARTNER_NAME)],
    ids=["bad-signature", "unknown-partner"],
)
def test_each_refused_webhook_delivery_counts_once_with_no_per_request_dimension(function, upstream, refused):
    """Refusals are what a stranger flooding the webhook route produces (the route's throttle is shared by every
    partner): the count feeds an alarm, and carries neither the partner name the URL claims nor the reason.
    Every failed check is the same `SignatureRejected`, whose class carries the metric (tests/unit/test_webhooks.py):
    one refusal of a partner's request and one of a stranger's name stand for them all."""
    request = refused()
    with emitted_metrics() as documents:
        result = function.request("POST", request.path, body=request.body, headers=request.headers)

    assert result.status == 401
    metrics = metrics_of(documents)
    metrics.pop("ColdStart", None)  # the first invocation of a container
    assert metrics == {"WebhookRefused": ("Count", [1.0], [["service"]])}
    emitted = json.dumps(documents)
    assert STRANGERS_PARTNER_NAME not in emitted and f'"{PARTNER}"' not in emitted


def test_a_delivery_that_passes_the_signature_check_is_not_counted_as_refused(function, upstream):
    with emitted_metrics() as documents:
        created = function.webhook()
        too_large = function.webhook(
            partner_event(payout_body(memo="x" * 20_000))
        )  # signed, over MAX_BODY_BYTES: a 413

    assert (created.status, too_large.status) == (201, 413)
    assert "WebhookRefused" not in metrics_of(documents)


def test_a_rotated_credential_is_counted_when_reread(function, upstream):
    upstream.inject({"status": 401})

    result, metrics = invoke(function)

    assert result.status == 201
    assert metrics["CredentialsRefreshed"][:2] == ("Count", [1.0])
    assert metrics["UpstreamErrorCredentialsRejected"][:2] == ("Count", [1.0])


def test_each_log_line_is_json_with_the_request_id_and_the_cold_start_flag(function, upstream):
    events = [create_event(), create_event()]
    with function_logs() as logs:
        for event in events:
            function.invoke(event)

    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    outcomes = [line for line in lines if line.get("outcome") == "created"]
    assert [line["correlation_id"] for line in outcomes] == [event["requestContext"]["requestId"] for event in events]
    assert [line["cold_start"] for line in outcomes] == [True, False]
    assert {line["service"] for line in lines} == {SERVICE}


def test_a_link_that_does_not_match_is_counted_and_logged_at_error_with_the_fields_not_the_values(function, upstream):
    upstream.inject({"link_overrides": {"amount": 1.0, "payee": {"country_code": "1", "phone_number": "5550000000"}}})

    with function_logs() as logs:
        result, metrics = invoke(function)

    assert result.status == 502 and result.json()["type"].endswith("upstream-mismatch")
    assert metrics["UpstreamMismatch"][:2] == ("Count", [1.0])
    assert metrics["MismatchedLinkCanceled"][:2] == ("Count", [1.0])  # and the key spent
    assert "MismatchedLinkNotCanceled" not in metrics
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    (mismatch,) = [line for line in lines if line["message"] == "upstream link does not match the request"]
    assert mismatch["level"] == "ERROR"
    assert mismatch["mismatched_fields"] == ["amount", "payee.phone_number"]
    assert "5550000000" not in logs.getvalue()
    (refused,) = [line for line in lines if line["message"] == "request refused"]
    # The mismatch is the one ERROR; the answer's line, which names the outcome, is a WARNING.
    assert (refused["level"], refused["create_outcome"]) == ("WARNING", "unknown")
    assert [line["message"] for line in lines if line["level"] == "ERROR"] == [mismatch["message"]]


SETTLER_METRICS = {
    "IntentsDue",
    "IntentsResent",
    "IntentsSettled",
    "IntentsReleased",
    "IntentsStillUnknown",
    "StrandedIntents",
    "OldestDueIntentAge",
}


def test_every_settler_run_reports_its_counts_even_with_nothing_due(function, upstream, own_intent_table):
    """What the settler alarms read: each run that completes reports every one of its metrics once, 0 included,
    so that a run with nothing to do still says that it ran (the settler-not-running alarm breaches on no data)."""
    with emitted_metrics() as documents:
        report = function.settle()

    metrics = metrics_of(documents)  # every name known, with its unit
    # Intents other tests left bound may be due in this session's table: their resends report upstream metrics.
    assert set(metrics) >= SETTLER_METRICS
    for name in SETTLER_METRICS:
        _, values, dimensions = metrics[name]
        assert len(values) == 1 and dimensions == [["service"]], name
    assert metrics["IntentsDue"][1] == [float(report["due"])]
    assert metrics["StrandedIntents"][1] == [float(report["stranded"])]
    assert metrics["OldestDueIntentAge"][0] == "Seconds"


def test_a_settler_resend_answered_with_another_callers_link_is_counted_and_logged_with_the_link_and_caller(
    function, upstream, aws_clients, aws_resources, own_intent_table
):
    """An owner conflict the settler meets (no caller is waiting for its answer) raises the same alarm as a
    caller's, and its log lines say which link and whose intent, for the runbook's first query."""
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1")
    upstream.inject({"status": 500, "after_create": True})
    lost = function.create(key=new_key(), sub="conflicted")
    assert lost.json()["key_state"] == "bound"
    (link,) = upstream.links()
    dynamodb, _ = aws_clients
    dynamodb.put_item(  # the link id already recorded for someone else
        TableName=aws_resources["owners_table"],
        Item={
            "link_id": {"S": link["id"]},
            "owner": {"S": "user:someone-else"},
            "created_at": {"N": str(int(time.time()))},
            "expires_at": {"N": str(int(time.time()) + 3600)},
        },
    )
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS

    with function_logs() as logs, emitted_metrics() as documents:
        report = function.settle()

    assert report["spent"] >= 1, report
    assert metrics_of(documents)["UpstreamLinkConflict"][:2] == ("Count", [1.0])
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    (conflict,) = [
        line for line in lines if line["message"] == "the upstream's link is already recorded for another owner"
    ]
    assert (conflict["link_id"], conflict["caller"]) == (link["id"], "user:conflicted")
    # The caller is this intent's alone: the run's own line carries none.
    (run,) = [line for line in lines if line["message"] == "settler run"]
    assert "caller" not in run
