"""The RFC 9457 problems callers receive, with the statuses and Retry-After headers of docs/api.md."""

from __future__ import annotations

import json

import pytest

from payout_links import problems
from payout_links.problems import FieldError, Problem

pytestmark = pytest.mark.unit

STATUSES = {
    problems.MalformedJson: 400,
    problems.InvalidIdempotencyKey: 400,
    problems.Unauthenticated: 401,
    problems.NotFound: 404,
    problems.RequestInProgress: 409,
    problems.PayloadTooLarge: 413,
    problems.UnsupportedMediaType: 415,
    problems.ValidationFailed: 422,
    problems.IdempotencyKeyReused: 422,
    problems.UpstreamRejected: 422,
    problems.UpstreamRateLimited: 429,
    problems.UpstreamFailed: 502,
    problems.DependencyUnavailable: 503,
    problems.UpstreamTimedOut: 504,
}
WITH_RETRY_AFTER = {problems.RequestInProgress, problems.UpstreamRateLimited, problems.DependencyUnavailable}


@pytest.mark.parametrize(("kind", "status"), list(STATUSES.items()), ids=[kind.__name__ for kind in STATUSES])
def test_each_problem_renders_type_title_status_and_detail(kind: type[Problem], status: int) -> None:
    body = kind("Something specific happened.").to_dict()

    assert set(body) == {"type", "title", "status", "detail"}
    assert body["status"] == status
    assert body["detail"] == "Something specific happened."
    assert body["type"].startswith("urn:payout-link-proxy:problem:")
    assert body["title"]
    assert json.loads(json.dumps(body)) == body


def test_each_kind_of_problem_has_its_own_type() -> None:
    types = [kind("x").to_dict()["type"] for kind in STATUSES]

    assert len(set(types)) == len(types)


def test_validation_errors_carry_pointer_and_detail() -> None:
    problem = problems.ValidationFailed(
        "One or more fields are invalid.",
        errors=(FieldError("#/payee/phone_number", "String should match pattern"), FieldError("#/amount", "too big")),
    )

    body = problem.to_dict()

    assert body["status"] == 422
    assert body["errors"] == [
        {"pointer": "#/payee/phone_number", "detail": "String should match pattern"},
        {"pointer": "#/amount", "detail": "too big"},
    ]


@pytest.mark.parametrize(
    ("kind", "seconds"),
    [(problems.RequestInProgress, "2"), (problems.UpstreamRateLimited, "5"), (problems.DependencyUnavailable, "2")],
)
def test_retry_after_is_sent_for_409_429_and_503(kind: type[Problem], seconds: str) -> None:
    assert kind("busy").headers() == {"Retry-After": seconds}


@pytest.mark.parametrize("kind", sorted(WITH_RETRY_AFTER, key=lambda kind: kind.__name__))
def test_an_explicit_retry_after_overrides_the_default(kind: type[Problem]) -> None:
    problem = kind("busy", retry_after=37)

    assert problem.headers() == {"Retry-After": "37"}
    assert kind("busy").headers() != problem.headers()  # the override does not leak into the class


@pytest.mark.parametrize(
    "kind", [kind for kind in STATUSES if kind not in WITH_RETRY_AFTER], ids=lambda kind: kind.__name__
)
def test_other_problems_send_no_retry_after(kind: type[Problem]) -> None:
    assert kind("no").headers() == {}


def test_the_generic_problem_is_a_500() -> None:
    problem = Problem("The request could not be completed.")

    assert problem.to_dict()["status"] == 500
    assert problem.headers() == {}
