"""Red team: incidents that leave no signal an alarm pages on, log lines that say too much or too loudly, and
answers whose Retry-After or key_state is not what the runbook promises. Each test states what should hold; it
fails until the product does.

Alarms are judged as tests/alarms.py judges them in the drills: the template's own alarms, at their threshold
parameters' defaults, against the EMF documents the handler printed."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack.core.aws_resources import free_port
from local_stack.core.template import load_template
from local_stack.stack import TEMPLATE_PATH
from tests.alarms import alarm_rule, emf_samples
from tests.support import (
    OTHER_PARTNER,
    OTHER_PARTNER_SECRET,
    PHONE,
    emitted_metrics,
    frontend_headers,
    function_logs,
    webhook_secret,
)

pytestmark = pytest.mark.integration

# A value longer than this never reaches a log line whole (tests/e2e/test_incident_drills.py holds callers to it).
LOGGED_VALUE_BOUND = 128


def logged(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def errors(lines: list[dict[str, Any]]) -> list[str]:
    return [line["message"] for line in lines if line["level"] == "ERROR"]


def alarms_that_fire(documents: list[dict[str, Any]]) -> list[str]:
    """The template's alarms of one period (Sum or Maximum of its metrics) that the documents would make fire."""
    template = load_template(TEMPLATE_PATH)
    samples = emf_samples("\n".join(json.dumps(document) for document in documents))
    firing = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        try:
            rule = alarm_rule(logical_id, template)
        except ValueError:
            continue  # more than one evaluation period (settler-not-running)
        if all(metric.stat == "Sum" for metric in rule.metrics.values()):
            if rule.fires(samples):
                firing.append(rule.name)
            continue
        (metric,) = rule.metrics.values()  # a Maximum of one metric
        values = [
            s.value
            for s in samples
            if (s.namespace, s.name) == (metric.namespace, metric.name)
            and dict(s.dimensions) == dict(metric.dimensions)
        ]
        if values and max(values) >= rule.threshold:
            firing.append(rule.name)
    return firing


# --- 1. an incident that does not page: a partner's entry in the partner secrets is unusable ----------------------


@pytest.fixture
def partner_with_a_broken_entry(function, aws_clients) -> Iterator[str]:
    """The partner secrets after an operator's botched rotation: acme's new secret pasted without its `whsec_`
    prefix; globex is fine."""
    _, secrets = aws_clients
    name = f"payout-link-proxy/test/partners-{uuid.uuid4().hex[:12]}"
    broken = webhook_secret("acme-rotated-secret-not-real").removeprefix("whsec_")
    secrets.create_secret(Name=name, SecretString=json.dumps({"acme": broken, OTHER_PARTNER: OTHER_PARTNER_SECRET}))
    function.set_env(PARTNER_WEBHOOK_SECRETS_ID=name)
    yield broken
    secrets.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


def test_a_partner_shut_out_by_an_unusable_secret_entry_pages_after_a_handful_of_deliveries(
    function, upstream, partner_with_a_broken_entry
):
    """Every delivery of acme is refused (401, as an unknown name) and the function logs `partner entry ignored` at
    ERROR on each read of the secret; but nothing is counted that an alarm reads below webhook-refusals' 300. A real
    partner shut out on a quiet afternoon pages no one, unlike the shared-secret case (partner-secret-shared).
    Expected: some alarm fires within three of its deliveries (say, a PartnerSecretUnusable count, as
    PartnerSecretShared is)."""
    with emitted_metrics() as documents, function_logs() as logs:
        answers = [function.webhook(partner="acme", secret="whsec_" + partner_with_a_broken_entry) for _ in range(3)]

    assert [answer.status for answer in answers] == [401, 401, 401]
    assert "partner entry ignored" in errors(logged(logs.getvalue()))
    assert alarms_that_fire(documents), "a partner refused for an unusable secret entry pages no one"


# --- 2. the settler failing on DynamoDB: the runbook's settler-errors query finds nothing ---------------------------


def test_a_settler_run_dynamodb_fails_logs_an_error_the_runbooks_query_finds(function, upstream):
    """docs/operations.md, settler-errors: `filter level = "ERROR" or @message like /Task timed out|Runtime\\./`, and
    "`idempotency store failed` with a `store_error` is DynamoDB failing". A run whose due-intents query fails raises
    StoreUnavailable out of the handler, unlogged by the function: the runtime's text traceback carries no `level`
    field and no `Runtime.` (the log format is Text), so the entry's first query comes back empty for the commonest
    cause of the alarm. Expected: one ERROR line from the function, with the store's error code."""
    function.set_env(AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{free_port()}")  # nothing listens there

    # A failed run may raise (settler-errors counts it); what it logged is the question.
    with function_logs() as logs, contextlib.suppress(Exception):
        function.settle(timeout_seconds=20)

    lines = logged(logs.getvalue())
    failed = [line for line in lines if line["level"] == "ERROR"]
    assert len(failed) == 1, [line["message"] for line in lines]
    assert failed[0].get("store_error") == "EndpointConnectionError", failed[0]


# --- 3. Retry-After on a bound key's 502 ----------------------------------------------------------------------------


def test_a_mismatched_link_not_canceled_yet_keeps_its_key_bound_and_says_when_to_retry(function, upstream):
    """Dots answers the create with a link for another amount, then fails the cancel: 502 upstream-mismatch with
    `key_state: "bound"` and a detail that says "retry with the same key and body"; but no Retry-After, unlike every
    other bound 502 (problems.UpstreamMismatch lacks `retry_after_when_bound`)."""
    upstream.inject({"link_overrides": {"amount": 1}}, {"status": 500})

    result = function.create()

    assert (result.status, result.json()["type"].rsplit(":", 1)[1]) == (502, "upstream-mismatch")
    assert result.json()["key_state"] == "bound"
    assert result.headers.get("retry-after") is not None, result.headers


# --- 4. a link id Dots chose is logged whole; one incident, two ERRORs ----------------------------------------------


def test_a_mismatched_links_id_from_dots_is_logged_bounded(function, upstream):
    """Dots (or whatever sits between) answers with a mismatched link whose id is 5,000 characters. The lines about
    its cancel (`upstream does not know a recorded link`, `a mismatched link is not canceled yet`) log `link_id`
    whole, not through `loggable`, overriding the bounded `link_id` the request's lines carry (service.py
    `_cancel_mismatched`, `_owned_by_another`; upstream.py `_lifecycle_refusal`)."""
    upstream.inject({"link_overrides": {"id": "L" * 5000, "amount": 1}})

    with function_logs() as logs:
        result = function.create()

    assert result.status == 502
    lines = logged(logs.getvalue())
    too_long = [line["message"] for line in lines if any(len(str(v)) > LOGGED_VALUE_BOUND for v in line.values())]
    assert too_long == [], too_long


def test_a_mismatched_link_whose_cancel_dots_answers_404_is_one_error(function, upstream):
    """The mismatch is logged at ERROR where it is found; the cancel's 404 then logs a second ERROR, `upstream does
    not know a recorded link`, claiming a *recorded* link was lost (it never was recorded): one incident, two
    ERRORs, one of them misleading."""
    upstream.inject({"link_overrides": {"amount": 1}}, {"status": 404, "body": {"message": "not found"}})

    with function_logs() as logs:
        result = function.create()

    assert result.status == 502
    assert errors(logged(logs.getvalue())) == ["upstream link does not match the request"]


def test_a_cancel_dots_answers_without_canceling_is_one_error(function, upstream):
    """Dots answers the DELETE 2xx with the link still `created`: `upstream did not cancel a cancelable link` at
    ERROR, then the 502's `request refused` at ERROR too (UpstreamFailed is not `logged_at_source`): two ERRORs for
    one failure."""
    created = function.create()
    assert created.status == 201
    upstream.inject({"link_overrides": {"status": "created"}})

    with function_logs() as logs:
        result = function.request("DELETE", f"/payout-links/{created.json()['id']}", headers=frontend_headers(key=None))

    assert result.status == 502
    assert len(errors(logged(logs.getvalue()))) == 1, errors(logged(logs.getvalue()))


# --- 5. a phone number reaches the logs -----------------------------------------------------------------------------


def test_a_subject_that_is_a_phone_number_is_not_logged_whole(function, upstream):
    """Identity providers with phone sign-in may use the number as the token's `sub`. `loggable` passes anything short
    and plain, and `+` and digits are plain: `caller` is `user:+15555550123` on every line. The drills hold the
    payee's phone number to never reaching a log (tests.support.never_logged); a user's is as personal."""
    with function_logs() as logs:
        result = function.create(sub="+1" + PHONE)

    assert result.status == 201
    assert PHONE not in logs.getvalue()


# --- 6. a 403 from Dots: what the runbook says callers see -----------------------------------------------------------


def test_a_dots_403_on_a_first_create_releases_the_key_as_the_runbook_says(function, upstream):
    """docs/operations.md: upstream-credentials-rejected counts 401 and 403, and callers see "`502` `upstream-failed`,
    `key_state: "released"` on a first create". A 403 is not classified (outcomes.py): UNKNOWN, the key stays bound,
    the settler resends it every backoff with the same refused credentials, and the secret is never re-read for it.
    Either the runbook or outcomes.py is wrong; Dots refusing the credentials made no link."""
    upstream.inject({"status": 403, "body": {"message": "forbidden"}})

    result = function.create()

    assert result.status == 502
    assert result.json()["key_state"] == "released", result.json()


# --- 7. the runbook's stranded-intents query: whose intent? ---------------------------------------------------------


def test_an_intent_the_settler_strands_unsent_names_its_caller_and_upstream_key(
    function, upstream, aws_clients, own_intent_table
):
    """docs/operations.md, stranded-intents: `filter message = "intent stranded: its outcome is still unknown" |
    fields @timestamp, caller`. An intent a run strands without resending it (halted, or no time left:
    `IntentStore.strand`) is logged before `_settle_one` names the intent on its thread: the line has no `caller`
    and no `upstream_key`, so the query lists blanks and the operator cannot tell which intent to look up at Dots."""
    dynamodb, _ = aws_clients
    function.set_env(SETTLE_AFTER_SECONDS="1", PAYOUT_API_MAX_ATTEMPTS="1")
    upstream.inject({"status": 500, "after_create": True})
    assert function.create(sub="strand-me").json()["key_state"] == "bound"
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS
    (item,) = dynamodb.scan(TableName=own_intent_table)["Items"]
    dynamodb.update_item(  # nearly 24 hours old: less than the strand margin left
        TableName=own_intent_table,
        Key={"id": item["id"]},
        UpdateExpression="SET expiration = :expiry",
        ExpressionAttributeValues={":expiry": {"N": str(int(time.time()) + 60)}},
    )

    with function_logs() as logs:
        report = function.settle(timeout_seconds=3)  # too little time for any resend

    assert report["stranded"] == 1, report
    (stranded,) = [line for line in logged(logs.getvalue()) if line["message"].startswith("intent stranded")]
    assert stranded.get("caller") == "user:strand-me", stranded
    assert stranded.get("upstream_key"), stranded
