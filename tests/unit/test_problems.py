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


@pytest.mark.parametrize("limit", list(problems.Limit))
def test_a_refused_limit_is_a_429_that_names_the_limit_and_when_to_retry(limit: problems.Limit) -> None:
    problem = problems.LimitExceeded("The caller's limit is reached.", limit=limit, retry_after=1800)

    body = problem.to_dict("req-1")

    assert body == {
        "type": "urn:payout-link-proxy:problem:limit-exceeded",
        "title": problem.title,
        "status": 429,
        "detail": "The caller's limit is reached.",
        "limit": limit.value,
        "request_id": "req-1",
    }
    assert json.loads(json.dumps(body)) == body  # the limit is sent as its plain name
    assert problem.headers() == {"Retry-After": "1800"}


def test_a_limit_refusal_is_not_the_upstreams_rate_limit() -> None:
    """Both are 429s; a caller tells its own limit (wait for the window) from the provider's (retry soon) by type."""
    ours = problems.LimitExceeded("x", limit=problems.Limit.HOURLY_LINKS, retry_after=60)
    theirs = problems.UpstreamRateLimited("x")

    assert ours.status == theirs.status == 429
    assert ours.to_dict()["type"] != theirs.to_dict()["type"]
    assert "limit" not in theirs.to_dict()
    assert not isinstance(ours, problems.UpstreamRateLimited)


@pytest.mark.parametrize("seconds", [0, -5])
def test_a_limit_refusal_never_tells_a_caller_to_retry_at_once(seconds: int) -> None:
    problem = problems.LimitExceeded("x", limit=problems.Limit.DAILY_AMOUNT, retry_after=seconds)

    assert problem.headers() == {"Retry-After": "1"}


def test_an_unknown_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="monthly"):
        problems.LimitExceeded("x", limit="monthly", retry_after=5)  # type: ignore[arg-type]


def test_extension_members_join_the_body_without_replacing_standard_ones() -> None:
    problem = problems.UpstreamFailed("Dots failed.").extend({"key_state": "bound"})

    assert problem.to_dict()["key_state"] == "bound"
    assert problems.UpstreamFailed("Dots failed.").to_dict().keys() == {"type", "title", "status", "detail"}
    with pytest.raises(ValueError, match="status"):
        problem.extend({"status": 200})
    assert problem.to_dict()["status"] == 502


def test_every_dependency_unavailable_the_function_raises_names_the_failing_service():
    """The dependency-unavailable alarm selects DependencyUnavailable by its `dependency` dimension: a 503 raised
    without one would be counted where no alarm looks."""
    import ast

    from tests.support import ROOT

    unnamed = []
    for path in (ROOT / "functions" / "payout_links").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "DependencyUnavailable"
                and "dependency" not in {keyword.arg for keyword in node.keywords}
            ):
                unnamed.append(f"{path.name}:{node.lineno}")
    assert not unnamed
