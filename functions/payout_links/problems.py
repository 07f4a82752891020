"""Typed errors, each carrying the RFC 9457 problem it becomes at the HTTP edge.

Domain code raises these; `app.py` renders them in one place. Details are written for callers: they never
carry upstream text, secrets, stack traces or personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROBLEM_TYPE_PREFIX = "urn:payout-link-proxy:problem:"


@dataclass(frozen=True)
class FieldError:
    pointer: str  # JSON pointer into the request body, as a URI fragment: "#/payee/phone_number"
    detail: str


class Problem(Exception):
    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"
    retry_after: int | None = None
    # The metric (a Count) that tells the dashboard why requests are refused; upstream failures have their own.
    metric: str | None = None

    def __init__(
        self,
        detail: str,
        *,
        errors: tuple[FieldError, ...] = (),
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        if retry_after is not None:
            self.retry_after = retry_after

    def to_dict(self, request_id: str = "") -> dict[str, Any]:
        """The problem body; `request_id` is API Gateway's id of the request (the `apigw-requestid` header), for a
        caller to quote."""
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if request_id:
            body["request_id"] = request_id
        if self.errors:
            body["errors"] = [{"pointer": error.pointer, "detail": error.detail} for error in self.errors]
        return body

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


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


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


class UpstreamRateLimited(Problem):
    status, slug, title, retry_after = 429, "upstream-rate-limited", "The payout provider is rate limiting", 5


class UpstreamFailed(Problem):
    status, slug, title = 502, "upstream-failed", "The payout provider failed"


class UpstreamMismatch(Problem):
    status, slug, title = 502, "upstream-mismatch", "The payout provider's answer does not match the request"
    metric = "UpstreamMismatch"


class DependencyUnavailable(Problem):
    status, slug, title, retry_after = 503, "dependency-unavailable", "A dependency is unavailable", 2


class UpstreamTimedOut(Problem):
    status, slug, title = 504, "upstream-timeout", "The payout provider did not answer in time"
