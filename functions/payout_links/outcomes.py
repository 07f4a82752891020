"""How a create can end, and what each ending does to the caller's idempotency key.

Every way a create ends is one of four outcomes:

- CREATED: the upstream answered 2xx with a link that matches the request. The key's record is COMPLETED and
  replays get that link for the record's TTL.
- REFUSED: the upstream judged the request and refused it (400, 422). It looked the derived key up first, so no
  link exists under it, whatever earlier attempts did: the key is released, even for a retry or a settler run
  that took over an unknown intent.
- NOT_CREATED: this request's attempts certainly made no link: the upstream rejected our credentials (401, 403),
  rate limited us (429), or was never reached (no connection, no time left to start an attempt, the credentials could
  not be read). The key is released, unless the request took over an intent an earlier attempt may have created:
  that stays unknown.
- UNKNOWN: anything else. A 5xx or a timeout after the request was sent, a dropped connection, a 2xx we cannot
  read or that does not match the request, a crash, a bug. The key stays bound to its request's fingerprint: a
  retry with the same body asks the upstream again with the same derived key (and so gets the link that may
  already exist), another body is refused, and if the caller never retries, the settler does (store.py).

Only REFUSED and NOT_CREATED release a key; whatever is not classified here is UNKNOWN. store.py draws the states
an intent's record moves through.
"""

from __future__ import annotations

from enum import StrEnum

import httpx

from payout_links.problems import Problem


class Outcome(StrEnum):
    CREATED = "created"
    REFUSED = "refused"
    NOT_CREATED = "not-created"
    UNKNOWN = "unknown"


# Upstream answers that judged the request: no link exists under its key.
_REFUSED_STATUSES = frozenset({400, 422})
# Upstream answers that say for certain that this attempt made no link.
_NOT_CREATED_STATUSES = frozenset({401, 403, 429})
# Transport failures that happen before any byte of the request could reach the upstream.
_NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def answer_outcome(status: int) -> Outcome:
    """What an upstream status code says about the link. A 2xx is CREATED only once its body has been read and
    checked against the request; until then the caller treats it as UNKNOWN."""
    if 200 <= status < 300:
        return Outcome.CREATED
    if status in _REFUSED_STATUSES:
        return Outcome.REFUSED
    if status in _NOT_CREATED_STATUSES:
        return Outcome.NOT_CREATED
    return Outcome.UNKNOWN


def transport_outcome(error: httpx.TransportError) -> Outcome:
    """What a failed exchange says about the link: only a request that never left us is NOT_CREATED."""
    return Outcome.NOT_CREATED if isinstance(error, _NOT_SENT_ERRORS) else Outcome.UNKNOWN


def combined(outcomes: list[Outcome]) -> Outcome:
    """The outcome of a failed create from its attempts' outcomes: UNKNOWN as soon as one attempt may have made
    the link (every attempt sends the same derived key), REFUSED when the upstream judged one, NOT_CREATED when
    none did or none was made."""
    for outcome in (Outcome.UNKNOWN, Outcome.REFUSED):
        if outcome in outcomes:
            return outcome
    return Outcome.NOT_CREATED


class CreateFailed(Exception):
    """A create that ended without a link for the caller: the problem to answer, whether a link may exist, and
    the id of a link the upstream made that does not match the request (never handed out: it is canceled)."""

    def __init__(self, problem: Problem, outcome: Outcome, *, mismatched_link_id: str | None = None) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.outcome = outcome
        self.mismatched_link_id = mismatched_link_id

    def releases(self, *, inherited: bool) -> bool:
        """Whether the key may be released: nothing exists under it for certain."""
        return self.outcome is Outcome.REFUSED or (self.outcome is Outcome.NOT_CREATED and not inherited)
