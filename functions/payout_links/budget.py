"""The function's time budget: how long one AWS call may take, and what a request keeps back to answer.

Both are derived from the function's timeout, so that every answer is sent before the function's time runs out.

A create spends its time in this order (service.py):

    lock write ≤ W │ secret read ≤ W (cold, or after a 401) │ Dots attempts │ completion write ≤ W │ answer ≤ 0.5 s
                                                            └─ upstream deadline = end - reserve

W, the worst case of one AWS call (DynamoDB or Secrets Manager, its retry included), is a fifth of the timeout,
between 1 and 4 seconds; the reserve kept back after the upstream deadline is W + 0.5 s. In AWS both calls take
tens of milliseconds, so Dots gets nearly all of the rest; W only bounds a dependency that is stuck.

The shortest timeout that works is the smallest one that, with every AWS call at its worst case, still leaves
Dots `MIN_UPSTREAM_SECONDS`:

    T - (lock W + secret W + reserve (W + 0.5)) ≥ 1.5  →  with W = max(1, T/5):  T ≥ 5 s

At 5 s a cold create whose two AWS calls both hang to their limit still gives Dots 1.5 s; at 6 s, 1.9 s. The
template's `FunctionTimeoutSeconds` has that minimum, and a function started with less logs one line saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_FUNCTION_TIMEOUT_SECONDS = 20.0
# Time to serialize and send the answer once the last write is done.
ANSWER_SECONDS = 0.5
# What a cold create must still be able to give the upstream when every AWS call before it hangs to its limit.
MIN_UPSTREAM_SECONDS = 1.5
# One AWS call's share of the timeout, and its bounds: past 4 s a stuck dependency only delays the 503.
_AWS_CALL_SHARE = 1 / 5
_AWS_CALL_MIN_SECONDS = 1.0
_AWS_CALL_MAX_SECONDS = 4.0
# botocore's standard retry mode sleeps up to rand(0, 1) s before retrying a throttled call (25-50 ms for other
# errors); a retry is only made where two attempts and that sleep fit in W.
_RETRY_DELAY_SECONDS = 1.0
_RETRY_FROM_SECONDS = 2.5


@dataclass(frozen=True)
class TimeBudget:
    function_timeout: float
    aws_call: float  # W: the longest one AWS call can take, its retry included
    aws_attempts: int
    aws_connect_timeout: float
    aws_read_timeout: float

    @classmethod
    def for_timeout(cls, function_timeout: float) -> TimeBudget:
        aws_call = min(_AWS_CALL_MAX_SECONDS, max(_AWS_CALL_MIN_SECONDS, function_timeout * _AWS_CALL_SHARE))
        attempts = 2 if aws_call >= _RETRY_FROM_SECONDS else 1
        per_attempt = (aws_call - _RETRY_DELAY_SECONDS * (attempts - 1)) / attempts
        # A third to connect, two thirds to read: a DynamoDB or Secrets Manager answer is a few milliseconds of
        # the read; the rest is for a dependency that is slow rather than gone.
        return cls(
            function_timeout=function_timeout,
            aws_call=aws_call,
            aws_attempts=attempts,
            aws_connect_timeout=round(per_attempt / 3, 3),
            aws_read_timeout=round(per_attempt * 2 / 3, 3),
        )

    @property
    def response_reserve(self) -> float:
        """Kept back from the function's end when the upstream is called: one write to record the outcome, and the
        answer."""
        return self.aws_call + ANSWER_SECONDS

    @property
    def worst_case_upstream_seconds(self) -> float:
        """What a cold create leaves the upstream when the lock write and the secret read both hang to W."""
        return self.function_timeout - 2 * self.aws_call - self.response_reserve


def shortest_workable_timeout() -> int:
    """The smallest whole number of seconds whose budget leaves the upstream MIN_UPSTREAM_SECONDS at worst."""
    seconds = math.ceil(MIN_UPSTREAM_SECONDS + ANSWER_SECONDS)
    while TimeBudget.for_timeout(seconds).worst_case_upstream_seconds < MIN_UPSTREAM_SECONDS:
        seconds += 1
    return seconds


MIN_FUNCTION_TIMEOUT_SECONDS = shortest_workable_timeout()
