"""How a create can end, and what each ending does to the caller's idempotency key.

Every way a create ends is one of three outcomes:

- CREATED: the upstream answered 2xx with a link that matches the request. The key's record is COMPLETED and
  replays get that link for the record's TTL.
- NOT_CREATED: the upstream certainly made no link: it refused the request (400, 422), rejected our
  credentials (401), rate limited us (429), or was never reached (no connection, no time left to start an
  attempt, the credentials could not be read). The key is released: the caller may retry, even with a corrected
  body.
- UNKNOWN: anything else. A 5xx or a timeout after the request was sent, a dropped connection, a 2xx we cannot
  read or that does not match the request, a crash, a bug. The key stays bound to its request's fingerprint for
  the whole TTL: a retry with the same body asks the upstream again with the same derived key (and so gets the
  link that may already exist), another body is refused.

Only an explicit NOT_CREATED releases a key; whatever is not classified here is UNKNOWN.

The intent behind a key moves through these states (kept in the idempotency record, see idempotency.py):

    NEW ────▶ LOCKED ───▶ COMPLETED   the link, replayed for the TTL
                 │ ╰────▶ RELEASED    the record is deleted: as good as NEW, for any body
                 ╰──────▶ UNKNOWN     the lock is dropped, the fingerprint kept
    UNKNOWN ──(same body)──▶ LOCKED          UNKNOWN ──(another body)──▶ refused (422)

A crash or a Lambda timeout leaves a LOCKED record whose lock expires with the function: it is UNKNOWN from then
on, exactly as if the function had said so.
"""

from __future__ import annotations

from enum import StrEnum

import httpx

from payout_links.problems import Problem


class Outcome(StrEnum):
    CREATED = "created"
    NOT_CREATED = "not-created"
    UNKNOWN = "unknown"


class IntentState(StrEnum):
    """The states of an intent's record, as docs/idempotency.md names them (the logs name the last two)."""

    NEW = "new"
    LOCKED = "locked"
    COMPLETED = "completed"
    RELEASED = "released"
    UNKNOWN = "unknown"


# Upstream answers that say for certain that no link was made for this request.
_NOT_CREATED_STATUSES = frozenset({400, 401, 422, 429})
# Transport failures that happen before any byte of the request could reach the upstream.
_NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def answer_outcome(status: int) -> Outcome:
    """What an upstream status code says about the link. A 2xx is CREATED only once its body has been read and
    checked against the request; until then the caller treats it as UNKNOWN."""
    if 200 <= status < 300:
        return Outcome.CREATED
    if status in _NOT_CREATED_STATUSES:
        return Outcome.NOT_CREATED
    return Outcome.UNKNOWN


def transport_outcome(error: httpx.TransportError) -> Outcome:
    """What a failed exchange says about the link: only a request that never left us is NOT_CREATED."""
    return Outcome.NOT_CREATED if isinstance(error, _NOT_SENT_ERRORS) else Outcome.UNKNOWN


def combined(outcomes: list[Outcome]) -> Outcome:
    """The outcome of a failed create from its attempts' outcomes: UNKNOWN as soon as one attempt may have made
    the link (every attempt sends the same derived key), NOT_CREATED when none did or none was made."""
    return Outcome.UNKNOWN if Outcome.UNKNOWN in outcomes else Outcome.NOT_CREATED


class CreateFailed(Exception):
    """A create that ended without a link for the caller: the problem to answer, and whether a link may exist."""

    def __init__(self, problem: Problem, outcome: Outcome) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.outcome = outcome


def outcome_of(error: BaseException) -> Outcome:
    """The one rule the idempotency store applies when a create raises: release the key only when nothing was
    created for certain. Any other exception, ours or a library's, leaves the outcome UNKNOWN."""
    if isinstance(error, CreateFailed):
        return error.outcome
    return Outcome.UNKNOWN
