"""One simulated Lambda execution environment: a process that imports the handler once and serves one event
at a time, like a warm container.

Protocol: one JSON line in on stdin, `{"event": {...}, "request_id": "..."}`; one JSON line out on the
original stdout, `{"response": {...}}` or `{"error": "..."}`. Before the first event the worker writes
`{"ready": true}`. Everything the function prints (logs, EMF metrics) goes to stderr, as CloudWatch would
receive it, so it can never corrupt the protocol.

Run: `python -m local_stack.lambda_worker` with `LAMBDA_TIMEOUT_SECONDS`, `LAMBDA_HANDLER` and the
function's environment set.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from dataclasses import dataclass, field


@dataclass
class LocalLambdaContext:
    """The parts of the Lambda context object that the handler and Powertools read."""

    timeout_seconds: float
    aws_request_id: str
    function_name: str = "payout-link-proxy-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:payout-link-proxy-local"
    log_group_name: str = "/aws/lambda/payout-link-proxy-local"
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec: str):
    module_name, _, function_name = spec.rpartition(".")
    return getattr(importlib.import_module(module_name), function_name)


def main() -> None:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the function's own prints now go to stderr
    handler = load_handler(os.environ.get("LAMBDA_HANDLER", "payout_links.app.lambda_handler"))
    timeout_seconds = float(os.environ["LAMBDA_TIMEOUT_SECONDS"])
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        invocation = json.loads(line)
        context = LocalLambdaContext(timeout_seconds=timeout_seconds, aws_request_id=invocation["request_id"])
        try:
            reply = {"response": handler(invocation["event"], context)}
        except Exception as exc:  # an unhandled error, as Lambda would report it to API Gateway
            reply = {"error": type(exc).__name__}
        sys.stdout.flush()
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
