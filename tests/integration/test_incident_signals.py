"""Each incident class an operator must be paged for leaves a signal of its own, however little traffic there is: Dots
rejecting the proxy's credentials (401 or 403), Dots rate limiting it, DynamoDB or Secrets Manager failing, a partner
shut out by an entry of the partner secrets that cannot be used; and a create whose key stays bound after an upstream
failure tells its caller when to retry (Retry-After), since the proxy will settle it, while a spent key's does not.

The alarms that read these signals are in template.yaml (tests/infra/test_monitoring.py); the drills in
tests/e2e/test_incident_drills.py run the local stack into each incident and evaluate the alarms themselves."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack.core.template import load_template
from local_stack.stack import TEMPLATE_PATH
from payout_links.problems import BOUND_RETRY_AFTER_SECONDS
from tests.alarms import alarm_rule, emf_samples
from tests.support import OTHER_PARTNER, OTHER_PARTNER_SECRET, emitted_metrics, function_logs, webhook_secret

pytestmark = pytest.mark.integration

NAMESPACE, SERVICE = "PayoutLinkProxy", "payout-link-proxy"


def samples(documents: list[dict[str, Any]]) -> list[tuple[str, dict[str, str], float]]:
    """(metric, dimensions, value) for every value of every metric of the EMF documents, under each of its
    dimension sets."""
    found = []
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        for definition in directive["Metrics"]:
            values = document[definition["Name"]]
            for value in values if isinstance(values, list) else [values]:
                for dimension_set in directive["Dimensions"]:
                    dimensions = {name: document[name] for name in dimension_set}
                    found.append((definition["Name"], dimensions, float(value)))
    return found


def total(documents: list[dict[str, Any]], metric: str, **dimensions: str) -> float:
    wanted = {"service": SERVICE, **dimensions}
    return sum(value for name, found, value in samples(documents) if name == metric and found == wanted)


def test_credentials_dots_rejects_even_after_a_re_read_leave_one_uncured_rejection_per_request(function, upstream):
    """Finding 1: the secret holds keys Dots no longer accepts. The 401 is retried once with the secret read again
    (CredentialsRefreshed), and refused again: the alarm's rejections less re-reads is one per failing request."""
    upstream.set_credentials("rotated-at-dots", "not-what-the-secret-holds")

    with emitted_metrics() as documents:
        results = [function.create() for _ in range(2)]

    assert [result.status for result in results] == [502, 502]
    rejected = total(documents, "UpstreamErrorCredentialsRejected")
    refreshed = total(documents, "CredentialsRefreshed")
    assert (rejected, refreshed) == (4.0, 2.0)
    assert total(documents, "UpstreamErrorRequestRefused") == 0


def test_a_rotation_the_secret_followed_leaves_no_uncured_rejection(function, upstream):
    """A container still holding the old keys gets one 401, re-reads the secret and succeeds: one rejection, one
    re-read, nothing for the credentials alarm."""
    upstream.inject({"status": 401})

    with emitted_metrics() as documents:
        result = function.create()

    assert result.status == 201
    assert total(documents, "UpstreamErrorCredentialsRejected") == total(documents, "CredentialsRefreshed") == 1.0


def test_a_dots_rate_limit_is_counted_apart_from_other_4xx(function, upstream):
    """Finding 2: a 429 from Dots is its own count, not folded into the 4xx of refused requests and credentials."""
    upstream.inject({"status": 429, "retry_after": "7"})

    with emitted_metrics() as documents:
        result = function.create()

    assert (result.status, result.headers["retry-after"]) == (429, "7")
    assert total(documents, "UpstreamErrorRateLimited") == 1.0
    assert total(documents, "UpstreamErrorCredentialsRejected") == total(documents, "UpstreamErrorRequestRefused") == 0


def test_a_request_dots_refuses_is_counted_as_refused(function, upstream):
    upstream.inject({"status": 400, "body": {"message": "invalid payee"}})

    with emitted_metrics() as documents:
        result = function.create()

    assert result.status == 422
    assert total(documents, "UpstreamErrorRequestRefused") == 1.0
    assert total(documents, "UpstreamErrorRateLimited") == total(documents, "UpstreamErrorCredentialsRejected") == 0


@pytest.mark.parametrize(
    ("variable", "dependency"),
    [("IDEMPOTENCY_TABLE_NAME", "dynamodb"), ("PAYOUT_API_SECRET_ID", "secrets-manager")],
    ids=["dynamodb", "secrets-manager"],
)
def test_a_dependency_outage_counts_each_503_by_the_failing_service(function, upstream, variable, dependency):
    """Finding 3: a 503 dependency-unavailable is counted (`DependencyUnavailable`), with the AWS service that
    failed as the one dimension beside the service: a table or a secret that cannot be read (here: does not exist)."""
    function.set_env(**{variable: f"missing-{dependency}-resource"})

    with emitted_metrics() as documents:
        result = function.create()

    assert result.status == 503 and result.json()["type"].endswith("dependency-unavailable")
    assert total(documents, "DependencyUnavailable", dependency=dependency) == 1.0
    (dimension_sets,) = [
        document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        for document in documents
        if "DependencyUnavailable" in document
    ]
    assert [sorted(dimensions) for dimensions in dimension_sets] == [["dependency", "service"]]


def test_the_settler_counts_a_resend_it_could_not_make_for_a_dependency(function, upstream, own_intent_table):
    """The settler answers no one: a resend it could not make because the credentials cannot be read is counted
    as the API counts its 503."""
    function.set_env(SETTLE_AFTER_SECONDS="1")
    upstream.inject({"status": 500, "count": 3})
    assert function.create().json()["key_state"] == "bound"
    function.set_env(PAYOUT_API_SECRET_ID="missing-secrets-manager-resource")
    time.sleep(1.1)  # SETTLE_AFTER_SECONDS

    with emitted_metrics() as documents:
        report = function.settle()

    assert report["due"] == 1 and report["resent"] == 0
    assert total(documents, "DependencyUnavailable", dependency="secrets-manager") == 1.0


def test_a_bound_keys_502_says_when_to_retry(function, upstream):
    """Finding 7: Dots failed every attempt with a 5xx and gave no Retry-After; the key stays bound (the proxy will
    settle the intent), and the answer tells the caller when to retry: BOUND_RETRY_AFTER_SECONDS."""
    upstream.inject({"status": 500, "count": 3})

    result = function.create()

    assert (result.status, result.json()["key_state"]) == (502, "bound")
    assert result.headers["retry-after"] == str(BOUND_RETRY_AFTER_SECONDS)


def test_a_bound_keys_502_passes_on_dots_own_retry_after(function, upstream):
    upstream.inject({"status": 503, "retry_after": "11", "count": 3})

    result = function.create()

    assert (result.status, result.json()["key_state"]) == (502, "bound")
    assert result.headers["retry-after"] == "11"


def test_a_bound_keys_504_says_when_to_retry(function, upstream):
    function.set_env(PAYOUT_API_TIMEOUT_SECONDS="0.3")
    upstream.inject({"delay_seconds": 0.6, "count": 3})

    result = function.create()

    assert (result.status, result.json()["key_state"]) == (504, "bound")
    assert result.headers["retry-after"] == str(BOUND_RETRY_AFTER_SECONDS)


def test_a_dots_403_on_a_first_create_releases_the_key_as_a_401_does(function, upstream):
    """Dots refusing the credentials with 403 made no link, as with 401: the secret is read again once, and a 403
    again is `502` `upstream-failed` with the key released (docs/operations.md, upstream-credentials-rejected), not
    a bound key the settler would resend with the same refused credentials."""
    forbidden = {"status": 403, "body": {"message": "forbidden"}}
    upstream.inject(forbidden, forbidden)  # the first answer, and the one after the secret is read again

    with emitted_metrics() as documents:
        result = function.create()

    assert result.status == 502
    assert result.json()["key_state"] == "released", result.json()
    assert total(documents, "UpstreamErrorCredentialsRejected") == 2.0
    assert total(documents, "CredentialsRefreshed") == 1.0


def test_a_mismatched_link_not_canceled_yet_keeps_its_key_bound_and_says_when_to_retry(function, upstream):
    """Dots answers the create with a link for another amount, then fails the cancel: 502 upstream-mismatch with
    `key_state: "bound"` and a detail that says "retry with the same key and body", and a Retry-After, as every
    other bound 502."""
    upstream.inject({"link_overrides": {"amount": 1}}, {"status": 500})

    result = function.create()

    assert (result.status, result.json()["type"].rsplit(":", 1)[1]) == (502, "upstream-mismatch")
    assert result.json()["key_state"] == "bound"
    assert result.headers.get("retry-after") == str(BOUND_RETRY_AFTER_SECONDS), result.headers


def test_a_mismatched_link_canceled_spends_its_key_without_a_retry_after(function, upstream):
    """The same mismatch, canceled at once: the key is spent and a retry can never make the link, so the answer says
    nothing about when to retry."""
    upstream.inject({"link_overrides": {"amount": 1}})

    result = function.create()

    assert (result.status, result.json()["type"].rsplit(":", 1)[1]) == (502, "upstream-mismatch")
    assert result.json()["key_state"] == "spent"
    assert "retry-after" not in result.headers, result.headers


def alarms_that_fire(documents: list[dict[str, Any]]) -> list[str]:
    """The template's alarms of one period (Sum or Maximum of its metrics) that the documents would make fire, judged
    as tests/alarms.py judges them in the drills, at their threshold parameters' defaults."""
    template = load_template(TEMPLATE_PATH)
    found = emf_samples("\n".join(json.dumps(document) for document in documents))
    firing = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        try:
            rule = alarm_rule(logical_id, template)
        except ValueError:
            continue  # more than one evaluation period (settler-not-running)
        if all(metric.stat == "Sum" for metric in rule.metrics.values()):
            if rule.fires(found):
                firing.append(rule.name)
            continue
        (metric,) = rule.metrics.values()  # a Maximum of one metric
        values = [
            s.value
            for s in found
            if (s.namespace, s.name) == (metric.namespace, metric.name)
            and dict(s.dimensions) == dict(metric.dimensions)
        ]
        if values and max(values) >= rule.threshold:
            firing.append(rule.name)
    return firing


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


def test_a_partner_shut_out_by_an_unusable_secret_entry_pages_within_a_handful_of_deliveries(
    function, upstream, partner_with_a_broken_entry
):
    """Every delivery of acme is refused (401, as an unknown name), far below webhook-refusals' threshold; the entry
    left out is logged at ERROR (`partner entry ignored`) and counted (PartnerSecretUnusable, as PartnerSecretShared
    is for a shared secret), and partner-secret-unusable fires: a real partner shut out on a quiet afternoon pages
    someone."""
    with emitted_metrics() as documents, function_logs() as logs:
        answers = [function.webhook(partner="acme", secret="whsec_" + partner_with_a_broken_entry) for _ in range(3)]

    assert [answer.status for answer in answers] == [401, 401, 401]
    assert "partner entry ignored" in [
        line["message"] for line in map(json.loads, logs.getvalue().splitlines()) if line["level"] == "ERROR"
    ]
    assert "partner-secret-unusable" in alarms_that_fire(documents)
