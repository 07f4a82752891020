"""One simulated Lambda execution environment: a process that imports the handler once and serves one event
at a time, like a warm container.

Protocol: one JSON line in on stdin, `{"event": {...}, "request_id": "..."}`; one JSON line out on the
original stdout, `{"response": {...}}` or `{"error": "..."}`. Before the first event the worker writes
`{"ready": true}`. Everything the function prints (logs, EMF metrics) goes to stderr, as CloudWatch would
receive it, so it can never corrupt the protocol.

Run: `python -m local_stack.core.lambda_worker HANDLER TIMEOUT_SECONDS` (HANDLER as `module.function`) with the
function's environment set, where the handler's module can be imported. The context's name, memory and region
come from the variables Lambda sets (`AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_REGION`).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

# The account every local ARN names.
LOCAL_ACCOUNT_ID = "123456789012"


@dataclass
class LocalLambdaContext:
    """The parts of the Lambda context object that handlers and Powertools read."""

    timeout_seconds: float
    aws_request_id: str
    function_name: str = "local-function"
    memory_limit_in_mb: int = 128
    region: str = "us-east-1"
    function_version: str = "$LATEST"
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @classmethod
    def from_environment(
        cls, timeout_seconds: float, aws_request_id: str, env: Mapping[str, str] = os.environ
    ) -> LocalLambdaContext:
        """As Lambda's runtime builds it: the function's name, memory and region from its reserved variables."""
        return cls(
            timeout_seconds,
            aws_request_id,
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME", cls.function_name),
            memory_limit_in_mb=int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", cls.memory_limit_in_mb)),
            region=env.get("AWS_REGION", cls.region),
        )

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec: str):
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        raise ValueError(f"a handler is module.function, not {spec!r}")
    return getattr(importlib.import_module(module_name), function_name)


def main(arguments: list[str]) -> None:
    handler_spec, timeout = arguments
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the function's own prints now go to stderr
    handler = load_handler(handler_spec)
    timeout_seconds = float(timeout)
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        invocation = json.loads(line)
        context = LocalLambdaContext.from_environment(timeout_seconds, invocation["request_id"])
        try:
            reply = {"response": handler(invocation["event"], context)}
        except Exception as exc:  # an unhandled error, as Lambda would report it to API Gateway
            reply = {"error": type(exc).__name__}
        sys.stdout.flush()
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
