"""Each incident class an operator must be paged for leaves a signal of its own, however little traffic there is: Dots
rejecting the proxy's credentials, Dots rate limiting it, DynamoDB or Secrets Manager failing; and a create whose key
stays bound after an upstream failure tells its caller when to retry (Retry-After), since the proxy will settle it.

The alarms that read these signals are in template.yaml (tests/infra/test_monitoring.py); the drills in
tests/e2e/test_incident_drills.py run the local stack into each incident and evaluate the alarms themselves."""

from __future__ import annotations

import time
from typing import Any

import pytest

from payout_links.problems import BOUND_RETRY_AFTER_SECONDS
from tests.support import emitted_metrics

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
