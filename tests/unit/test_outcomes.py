"""What each way a create can end says about the link, and so whether the key may be released (outcomes.py). Only
an answer that judged the request (400, 422) or one that proves this attempt made nothing (401, 429, never sent)
releases a key; everything else may have made the link and keeps it bound."""

from __future__ import annotations

import httpx
import pytest

from payout_links.outcomes import CreateFailed, Outcome, answer_outcome, combined, transport_outcome
from payout_links.problems import UpstreamFailed

pytestmark = pytest.mark.unit

REQUEST = httpx.Request("POST", "https://dots.example/api/v2/payout-links")


@pytest.mark.parametrize("status", [200, 201, 202])
def test_a_2xx_is_created_once_checked(status: int) -> None:
    assert answer_outcome(status) is Outcome.CREATED


@pytest.mark.parametrize("status", [400, 422])
def test_a_judged_request_is_refused(status: int) -> None:
    assert answer_outcome(status) is Outcome.REFUSED


@pytest.mark.parametrize("status", [401, 403, 429])
def test_a_request_turned_away_unseen_made_nothing(status: int) -> None:
    assert answer_outcome(status) is Outcome.NOT_CREATED


@pytest.mark.parametrize(
    "status",
    [301, 404, 408, 409, 410, 425, 499, 500, 501, 502, 503, 504, 520, 599],
    ids=lambda status: str(status),
)
def test_every_other_answer_may_have_made_the_link(status: int) -> None:
    """A 5xx, a timeout answered by a proxy (408, 504), Dots' own "in progress" (409): the link may exist."""
    assert answer_outcome(status) is Outcome.UNKNOWN


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("busy")]
)
def test_a_request_that_never_left_made_nothing(error: httpx.TransportError) -> None:
    assert transport_outcome(error) is Outcome.NOT_CREATED


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("slow", request=REQUEST),
        httpx.WriteTimeout("slow", request=REQUEST),
        httpx.ReadError("reset", request=REQUEST),
        httpx.WriteError("reset", request=REQUEST),
        httpx.RemoteProtocolError("dropped", request=REQUEST),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_request_that_may_have_reached_the_upstream_may_have_made_the_link(error: httpx.TransportError) -> None:
    assert transport_outcome(error) is Outcome.UNKNOWN


def test_one_attempt_that_may_have_made_the_link_makes_the_create_unknown() -> None:
    assert combined([Outcome.NOT_CREATED, Outcome.UNKNOWN, Outcome.REFUSED]) is Outcome.UNKNOWN
    assert combined([Outcome.NOT_CREATED, Outcome.REFUSED]) is Outcome.REFUSED
    assert combined([Outcome.NOT_CREATED, Outcome.NOT_CREATED]) is Outcome.NOT_CREATED


@pytest.mark.parametrize(
    ("outcome", "inherited", "releases"),
    [
        (Outcome.REFUSED, False, True),
        (Outcome.REFUSED, True, True),
        (Outcome.NOT_CREATED, False, True),
        (Outcome.NOT_CREATED, True, False),
        (Outcome.UNKNOWN, False, False),
        (Outcome.UNKNOWN, True, False),
    ],
)
def test_only_a_certain_nothing_releases_the_key(outcome: Outcome, inherited: bool, releases: bool) -> None:
    """A request that took over an intent an earlier attempt may have created cannot release it on the strength of
    its own attempts making nothing: only the upstream's judgement (REFUSED) says nothing exists under the key."""
    failure = CreateFailed(UpstreamFailed("failed"), outcome)
    assert failure.releases(inherited=inherited) is releases
