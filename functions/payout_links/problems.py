"""Typed errors, each carrying the RFC 9457 problem it becomes at the HTTP edge.

Domain code raises these; `app.py` renders them in one place. Details are written for callers: they never
carry upstream text, secrets, stack traces or personal data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Self

PROBLEM_TYPE_PREFIX = "urn:payout-link-proxy:problem:"
# The members every problem body may carry; an extension member (RFC 9457, section 3.2) takes none of these names.
STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "request_id", "errors"})


@dataclass(frozen=True)
class FieldError:
    pointer: str  # JSON pointer into the request body, as a URI fragment: "#/payee/phone_number"
    detail: str


class Problem(Exception):
    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"
    retry_after: int | None = None
    # An upstream failure that leaves a create's key bound says when to retry (Retry-After): Dots' own delay where it
    # gave one, BOUND_RETRY_AFTER_SECONDS otherwise (service.PayoutLinkService._kept_bound).
    retry_after_when_bound: bool = False
    # The metric (a Count) that tells the dashboard why requests are refused; upstream failures have their own.
    metric: str | None = None
    # Whether the failure behind this problem was logged where it happened, at ERROR (a dependency's failure, a
    # link that does not match, a bug): the answer's own line is then a WARNING, so that one failure is one ERROR.
    logged_at_source: bool = False
    # Members of this kind of problem beyond the standard ones, by name (say, `limit` of a `limit-exceeded`, or
    # `key_state` of a create that reached its key's lock).
    extensions: Mapping[str, Any] = MappingProxyType({})

    def __init__(
        self,
        detail: str,
        *,
        errors: tuple[FieldError, ...] = (),
        retry_after: int | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        if retry_after is not None:
            self.retry_after = retry_after
        if extensions:
            self.extend(extensions)

    def extend(self, members: Mapping[str, Any]) -> Self:
        """Add members to this problem's body beyond the standard ones (RFC 9457, section 3.2), for a problem raised
        by one module and completed by another; each JSON-ready, none named like a standard member."""
        if clash := STANDARD_MEMBERS & members.keys():
            raise ValueError(f"extension members may not replace standard ones: {sorted(clash)}")
        self.extensions = MappingProxyType({**self.extensions, **members})
        return self

    def to_dict(self, request_id: str = "") -> dict[str, Any]:
        """The problem body; `request_id` is API Gateway's id of the request (the `apigw-requestid` header), for a
        caller to quote."""
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }
        if request_id:
            body["request_id"] = request_id
        if self.errors:
            body["errors"] = [{"pointer": error.pointer, "detail": error.detail} for error in self.errors]
        return body

    def bound_to(self, key_state: str) -> Self:
        """This problem, saying where the create left its key ("bound", "released" or "spent")."""
        return self.extend({"key_state": str(key_state)})

    @property
    def key_state(self) -> str | None:
        state = self.extensions.get("key_state")
        return None if state is None else str(state)

    @classmethod
    def restored(cls, body: dict[str, Any]) -> Problem:
        """A problem answered before and stored (a spent key's), to be answered again as it was."""
        problem = Problem(str(body.get("detail", "")))
        problem.status = int(body.get("status", 500))
        problem.slug = str(body.get("type", "")).removeprefix(PROBLEM_TYPE_PREFIX) or Problem.slug
        problem.title = str(body.get("title", Problem.title))
        problem.logged_at_source = True  # when the key was spent; answering it again is no new failure
        return problem

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class MalformedJson(Problem):
    status, slug, title = 400, "malformed-json", "Body is not valid JSON"
    metric = "ValidationRejected"


class InvalidIdempotencyKey(Problem):
    status, slug, title = 400, "invalid-idempotency-key", "Missing or invalid idempotency key"
    metric = "ValidationRejected"


class InvalidCursor(Problem):
    status, slug, title = 400, "invalid-cursor", "Invalid cursor"
    metric = "ValidationRejected"


class Unauthenticated(Problem):
    status, slug, title = 401, "unauthenticated", "Authentication required"


class SignatureRejected(Unauthenticated):
    """Every webhook refusal tells the caller the same thing; `reason` (logged, never sent) tells operators.

    Each refused delivery also counts once in `WebhookRefused`, with the service as its only dimension: never the
    partner name in the URL, which whoever sends the request chooses (nor the reason, which the log has)."""

    metric = "WebhookRefused"

    def __init__(self, reason: str) -> None:
        super().__init__("The webhook signature could not be verified.")
        self.reason = reason


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


LINK_NOT_FOUND = "No payout link with this id was created by this caller."


class LinkNotFound(NotFound):
    """The one answer for every link a caller may not see, whatever the reason (which only the logs say)."""

    metric: str | None = "LinkOwnershipRefused"

    def __init__(self) -> None:
        super().__init__(LINK_NOT_FOUND)


class LinkLostUpstream(LinkNotFound):
    """The same answer for a link its caller owns but the upstream no longer knows: not a refused caller, so not
    counted as one (the upstream's 404 is counted with its errors, and logged with the link's id)."""

    metric = None


class RequestInProgress(Problem):
    status, slug, title, retry_after = 409, "request-in-progress", "A request with this key is in progress", 2
    metric = "IdempotencyConflict"


class NotCancelable(Problem):
    status, slug, title = 409, "not-cancelable", "The payout link can no longer be canceled"


class PayloadTooLarge(Problem):
    status, slug, title = 413, "payload-too-large", "Body too large"
    metric = "ValidationRejected"


class UnsupportedMediaType(Problem):
    status, slug, title = 415, "unsupported-media-type", "Content type must be application/json"
    metric = "ValidationRejected"


class ValidationFailed(Problem):
    status, slug, title = 422, "validation-failed", "The request is invalid"
    metric = "ValidationRejected"


class IdempotencyKeyReused(Problem):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency key reused with a different request"
    metric = "IdempotencyConflict"


class UpstreamRejected(Problem):
    status, slug, title = 422, "upstream-rejected", "The payout provider rejected the request"


class Limit(StrEnum):
    """A caller's limit, as the `limit` member of a `limit-exceeded` problem names it."""

    DAILY_AMOUNT = "daily-amount"  # the amount it may pay out per UTC day
    HOURLY_LINKS = "hourly-links"  # the links it may create per UTC clock hour


class LimitExceeded(Problem):
    """The caller's own limit (limits.py), not the payout provider's: `limit` says which one, and Retry-After the
    seconds until its window ends. Counted by `limits.record_refusal`, with the limit as a dimension, rather than
    through `metric`, which has none."""

    status, slug, title = 429, "limit-exceeded", "The caller's payout limit is reached"

    def __init__(self, detail: str, *, limit: Limit, retry_after: int) -> None:
        super().__init__(detail, retry_after=max(1, retry_after), extensions={"limit": Limit(limit).value})
        self.limit = Limit(limit)


class UpstreamRateLimited(Problem):
    status, slug, title, retry_after = 429, "upstream-rate-limited", "The payout provider is rate limiting", 5


# The Retry-After of an upstream failure whose key stays bound (a 502 `upstream-failed` or a 504 `upstream-timeout`
# with `key_state: "bound"`) when Dots gave none: the proxy settles the intent whether or not the caller retries,
# and a retry this soon finds the link as soon as Dots answers again (docs/api.md, Errors).
BOUND_RETRY_AFTER_SECONDS = 5


class UpstreamFailed(Problem):
    status, slug, title = 502, "upstream-failed", "The payout provider failed"
    retry_after_when_bound = True


class UpstreamMismatch(Problem):
    status, slug, title = 502, "upstream-mismatch", "The payout provider's answer does not match the request"
    metric = "UpstreamMismatch"
    logged_at_source = True  # "upstream link does not match the request", or "... about another link"
    # A create's mismatched link not canceled yet keeps its key bound: its retry (or the settler) cancels it.
    retry_after_when_bound = True


class UpstreamLinkConflict(Problem):
    status, slug, title = 502, "upstream-link-conflict", "The payout provider answered with another caller's link"
    metric = "UpstreamLinkConflict"
    logged_at_source = True  # "the upstream's link is already recorded for another owner"


class Dependency(StrEnum):
    """The AWS service a `dependency-unavailable` answer could not do without: the `dependency` dimension of the
    `DependencyUnavailable` metric (never a table's or a secret's name)."""

    DYNAMODB = "dynamodb"  # the idempotency table (intents, limit counters) or the link-owners table
    SECRETS_MANAGER = "secrets-manager"  # the Dots credentials or the partners' webhook secrets


class DependencyUnavailable(Problem):
    """A 503: `dependency` says which AWS service failed, for the count the dependency-unavailable alarm reads
    (observability.count_dependency_unavailable); the caller is told only that a dependency is unavailable. Every
    raise in the function names it (tests/unit/test_problems.py holds them to it)."""

    status, slug, title, retry_after = 503, "dependency-unavailable", "A dependency is unavailable", 2
    logged_at_source = True  # by the store, the secret or the table that failed, with its error code

    def __init__(self, detail: str, *, dependency: Dependency | None = None, **members: Any) -> None:
        super().__init__(detail, **members)
        self.dependency = None if dependency is None else Dependency(dependency)


class UpstreamTimedOut(Problem):
    status, slug, title = 504, "upstream-timeout", "The payout provider did not answer in time"
    retry_after_when_bound = True
