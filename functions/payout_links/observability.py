"""Logger and metrics, configured once; imported by every module that reports something.

Also what a log line may carry of a value a caller chose (`loggable`, `loggable_caller`), and the id of the request
being served (`request_id`), which the upstream gets too."""

from __future__ import annotations

import hashlib
import re
import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()
metrics = Metrics()

# A refused request (say, a 401) records no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# A value a caller chose (a partner name from the URL, a token's `sub` or `client_id`, an idempotency key, a link id
# from the path) is logged as it is only when it is short and plain: what every partner name, UUID, link id and
# usual subject is. Anything else (longer, an email address, spaces, quotes, control or non-ASCII characters) is
# logged as `<sha256:` and the first 16 hex digits of the SHA-256 of its UTF-8 bytes `>`: a fixed 25 characters
# that still tell one value from another, and that no plain value can be mistaken for (`<` is not plain). So is a
# value that is wholly a phone number (an identity provider with phone sign-in may make it the token's `sub`): as
# personal as a payee's, which never reaches a log. Narrow on purpose: no UUID or link id is all digits.
LOGGABLE_MAX_CHARS = 64
_PLAIN = re.compile(rf"[A-Za-z0-9._:|+=~-]{{1,{LOGGABLE_MAX_CHARS}}}")
_PHONE_NUMBER = re.compile(r"\+?[0-9]{7,15}")
# The kinds of caller (inbound.py, app.py): the kind is logged as it is, the name after it by `loggable`.
_CALLER_KINDS = ("user:", "client:", "partner:")
# What the upstream gets as `X-Request-Id`: an id this function made up or API Gateway's, never anything else.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._=-]{1,128}")


# What Powertools adds to every line from the Lambda context that a function's own log group says already: its ARN
# (which names the account) and its memory size. `function_name` and `function_request_id` stay.
_CONTEXT_KEYS_LEFT_OUT = ("function_arn", "function_memory_size")


def leave_out_context_keys() -> None:
    """Drop the context keys no line needs (`inject_lambda_context` adds them again each invocation)."""
    logger.remove_keys(_CONTEXT_KEYS_LEFT_OUT)


def loggable(value: str) -> str:
    """`value` as a log line may carry it: itself when short and plain (and not a phone number), its short hash
    otherwise."""
    if _PLAIN.fullmatch(value) and not _PHONE_NUMBER.fullmatch(value):
        return value
    return f"<sha256:{hashlib.sha256(value.encode('utf-8', errors='surrogatepass')).hexdigest()[:16]}>"


def loggable_caller(caller: str) -> str:
    """A caller (`user:<sub>`, `client:<client_id>`, `partner:<name>`) with its name made `loggable`."""
    for kind in _CALLER_KINDS:
        if caller.startswith(kind):
            return kind + loggable(caller.removeprefix(kind))
    return loggable(caller)


def request_id() -> str | None:
    """The id of the request being served, as every log line carries it (`correlation_id`): API Gateway's request
    id in the API function, the invocation's request id in the settler. None outside an invocation."""
    value = logger.get_correlation_id()
    return value if isinstance(value, str) and _REQUEST_ID.fullmatch(value) else None


# A 503 `dependency-unavailable` (or a settler's resend that could not be made for the same reason), by the AWS
# service that failed: `dependency` is its one dimension beside the service, as the dependency-unavailable alarm
# selects it.
DEPENDENCY_UNAVAILABLE_METRIC = "DependencyUnavailable"


def count_dependency_unavailable(dependency: str) -> None:
    """One `DependencyUnavailable`, with `dependency` (dynamodb, secrets-manager) beside the service: printed now, in
    a document of its own, so that the dimension does not reach the invocation's other metrics."""
    with single_metric(name=DEPENDENCY_UNAVAILABLE_METRIC, unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="dependency", value=str(dependency))


__all__ = [
    "DEPENDENCY_UNAVAILABLE_METRIC",
    "MetricUnit",
    "count_dependency_unavailable",
    "leave_out_context_keys",
    "loggable",
    "loggable_caller",
    "logger",
    "metrics",
    "request_id",
]
