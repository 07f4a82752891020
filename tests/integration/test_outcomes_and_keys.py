"""How each way a create can end leaves its key (outcomes.py, service.py), with the Dots emulator answering as it
is told: an answer that may come after the link was made keeps the key bound to its body, and the retry of that
body gets the one link; only a refusal the upstream judged releases a key an earlier attempt may have used; a link
that does not match is canceled and its key spent. Each test ends with the number of links the upstream made."""

from __future__ import annotations

import pytest

from payout_links.problems import PROBLEM_TYPE_PREFIX
from tests.support import new_key, payout_body

pytestmark = pytest.mark.integration


def links_created(upstream) -> int:
    return upstream.stats()["links_created"]


def only_link_id(upstream) -> str:
    (link_id,) = upstream.stats()["links"].values()
    return link_id


ATTEMPT_SECONDS = 0.5
ATTEMPTS = 3
AMBIGUOUS_FAILURES = {
    # mode: (fault, upstream requests the first create makes, status, problem)
    "500-after-create": ({"status": 500, "after_create": True, "count": ATTEMPTS}, ATTEMPTS, 502, "upstream-failed"),
    "dropped-after-create": ({"drop": True, "after_create": True, "count": ATTEMPTS}, ATTEMPTS, 502, "upstream-failed"),
    "timeout-after-create": (
        {"delay_seconds": ATTEMPT_SECONDS + 0.5, "after_create": True, "count": ATTEMPTS},
        ATTEMPTS,
        504,
        "upstream-timeout",
    ),
    "unreadable-2xx": ({"status": 201, "raw_body": "<html>", "after_create": True}, 1, 502, "upstream-failed"),
    "deeply-nested-2xx": (
        {"status": 201, "raw_body": "[" * 100_000 + "]" * 100_000, "after_create": True},
        1,
        502,
        "upstream-failed",
    ),
}


@pytest.mark.parametrize("mode", list(AMBIGUOUS_FAILURES))
def test_an_ambiguous_failure_keeps_the_key_bound_and_the_retry_gets_the_one_link(function, upstream, mode):
    """The link was made, but the answer was lost, unreadable, too slow or wrong: the caller gets a problem, the
    key stays bound to its body (another body is refused), and the same body's retry gets the one link."""
    fault, requests, status, slug = AMBIGUOUS_FAILURES[mode]
    function.set_env(PAYOUT_API_TIMEOUT_SECONDS=str(ATTEMPT_SECONDS), PAYOUT_API_MAX_ATTEMPTS=str(ATTEMPTS))
    key = new_key()
    upstream.inject(fault)

    first = function.create(key=key)

    assert first.status == status and first.is_problem(), first.body
    assert first.json()["type"] == PROBLEM_TYPE_PREFIX + slug
    assert first.json()["key_state"] == "bound"
    assert upstream.stats()["requests"] == requests  # every fault was used up by the first create
    link_id = only_link_id(upstream)

    reused = function.create(payout_body(amount=2600), key=key)
    assert reused.status == 422 and reused.json()["type"] == PROBLEM_TYPE_PREFIX + "idempotency-key-reused"

    retry = function.create(key=key)
    assert retry.status == 201, retry.body
    assert "idempotent-replayed" not in retry.headers
    assert retry.json()["id"] == link_id and retry.json()["amount"] == payout_body()["amount"]
    replay = function.create(key=key)
    assert replay.status == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.body == retry.body
    assert links_created(upstream) == 1


def test_lost_answer_is_recovered_inside_the_request(function, upstream):
    upstream.inject({"drop": True, "after_create": True})

    result = function.create()

    assert result.status == 201
    assert result.json()["id"] == only_link_id(upstream)
    assert upstream.stats()["requests"] == 2
    assert links_created(upstream) == 1


def test_retries_after_5xx_never_make_a_second_link(function, upstream):
    # Each failed attempt did create (or find) the link before answering 5xx: the retries reuse the same key.
    upstream.inject({"status": 500, "after_create": True}, {"status": 502, "after_create": True})

    result = function.create()

    assert result.status == 201
    assert result.json()["id"] == only_link_id(upstream)
    assert upstream.stats()["requests"] == 3
    assert links_created(upstream) == 1


def test_persistent_5xx_gives_502_and_keeps_the_key_bound_to_its_body(function, upstream):
    key = new_key()
    upstream.inject({"status": 500, "count": 3})

    failed = function.create(key=key)
    assert failed.status == 502 and failed.is_problem()
    assert upstream.stats()["requests"] == 3 and links_created(upstream) == 0

    # A 5xx may come after the link was made: the key stays with the first body, which may retry at once.
    assert function.create(payout_body(amount=9_999), key=key).status == 422
    retry = function.create(key=key)
    assert retry.status == 201 and "idempotent-replayed" not in retry.headers
    assert links_created(upstream) == 1


@pytest.mark.parametrize(
    ("then", "answer"),
    [({"status": 429}, 429), ({"status": 401, "count": 2}, 502)],
    ids=["then-rate-limited", "then-401"],
)
def test_a_retry_that_creates_nothing_does_not_release_a_key_whose_link_may_exist(function, upstream, then, answer):
    """The first attempt may have made the link (a 500 after the create); the retry of the same body is refused
    before the upstream looked at it (rate limited, credentials rejected). That proves nothing about the first
    attempt: the key must stay with the first body."""
    function.set_env(PAYOUT_API_MAX_ATTEMPTS="1")
    key = new_key()
    upstream.inject({"status": 500, "after_create": True}, then)

    assert function.create(key=key).status == 502
    refused = function.create(key=key)
    assert refused.status == answer and refused.json()["key_state"] == "bound"

    assert function.create(payout_body(amount=9_999), key=key).status == 422
    retry = function.create(key=key)
    assert retry.status == 201 and retry.json()["id"] == only_link_id(upstream)
    assert links_created(upstream) == 1


def test_a_refusal_the_upstream_judged_releases_a_key_whose_first_attempt_failed(function, upstream):
    """A 500 before the create, then the same body refused with 422: the upstream looked the derived key up and
    judged the request (it returns the existing link for a known key), so no link exists under it: the key is
    released, and a corrected body may use it."""
    function.set_env(PAYOUT_API_MAX_ATTEMPTS="1")
    key = new_key()
    upstream.inject({"status": 500}, {"status": 422})

    assert function.create(key=key).json()["key_state"] == "bound"
    refused = function.create(key=key)
    assert refused.status == 422 and refused.json()["key_state"] == "released"

    corrected = function.create(payout_body(amount=2600), key=key)
    assert corrected.status == 201 and corrected.json()["amount"] == 2600
    assert links_created(upstream) == 1


def test_a_link_that_does_not_match_is_canceled_and_its_key_spent(function, upstream):
    """The upstream made the link but answers with another amount: no one is ever handed that link, so the proxy
    cancels it; the key can never make another (the same body gets the same 502, without the upstream; another
    body is refused), and the caller's next request, under a new key, makes the one live link."""
    key = new_key()
    upstream.inject({"link_overrides": {"amount": 1.0}})

    first = function.create(key=key)

    assert first.status == 502 and first.json()["type"] == PROBLEM_TYPE_PREFIX + "upstream-mismatch"
    assert first.json()["key_state"] == "spent" and "canceled" in first.json()["detail"]
    mismatched = only_link_id(upstream)
    assert upstream.link(mismatched)["status"] == "canceled"
    requests = upstream.stats()["requests"]

    again = function.create(key=key)
    assert again.status == 502 and again.json()["key_state"] == "spent"
    assert function.create(payout_body(amount=2600), key=key).status == 422
    assert upstream.stats()["requests"] == requests  # a spent key never reaches the upstream again

    anew = function.create(key=new_key())
    assert anew.status == 201 and anew.json()["id"] != mismatched
    assert links_created(upstream) == 2
