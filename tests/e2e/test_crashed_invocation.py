"""A function process killed mid-request, end to end: what API Gateway answers for an invocation that crashed,
and that the dead invocation's lock is what the caller then meets.

What a crash does to the key over its whole life (the lock lives for the function's timeout, another body is
refused all along, the same body then gets the link that exists) is tests/faults/test_failure_points.py's
(test_process_killed_after_the_upstream_created_the_link), with the function's processes driven directly; and
every other unknown outcome (a lost, slow, dribbled, unreadable or mismatching answer, a stalled AWS call) is
tested there too, in-process.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from payout_links.problems import PROBLEM_TYPE_PREFIX
from tests.conftest import start_stack
from tests.support import HttpResult, frontend_headers, new_key, payout_body, wait_until

pytestmark = pytest.mark.e2e


def post(api: httpx.Client, body: dict | None = None, *, key: str) -> HttpResult:
    response = api.post(
        "/payout-links", json=payout_body() if body is None else body, headers=frontend_headers(key=key)
    )
    return HttpResult(response.status_code, dict(response.headers), response.content)


def test_sigkill_between_the_upstream_answer_and_the_write(tmp_path, aws_endpoint, aws_resources, upstream):
    # The function's timeout: its budget (budget.py) leaves Dots about 5.5 s at 8 s, past the 3 s its answer takes.
    timeout = 8
    stack = start_stack(
        tmp_path,
        AWS_ENDPOINT_URL=aws_endpoint,
        PAYOUT_API_BASE_URL=upstream.base_url,
        LOCAL_CONCURRENCY="1",
        LAMBDA_TIMEOUT_SECONDS=str(timeout),
    )
    try:
        (worker_pid,) = stack.worker_pids
        key = new_key()
        upstream.inject({"delay_seconds": 3, "after_create": True})  # made, then the answer is slow to come
        with httpx.Client(base_url=stack.url, timeout=60) as api:
            answers: list[HttpResult] = []
            caller = threading.Thread(target=lambda: answers.append(post(api, key=key)))
            sent_at = time.monotonic()
            caller.start()
            wait_until(lambda: upstream.stats()["links_created"] == 1, timeout=15)
            os.kill(worker_pid, signal.SIGKILL)
            caller.join(timeout=15)
            assert not caller.is_alive()

            # What API Gateway answers for an invocation that crashed: its own 500, not the function's.
            (crashed,) = answers
            assert crashed.status == 500
            assert crashed.headers["content-type"] == "application/json"
            assert crashed.json() == {"message": "Internal Server Error"}

            # A new execution environment serves the next requests, and meets the dead invocation's lock.
            in_progress = post(api, key=key)
            other_body = post(api, payout_body(amount=2600), key=key)
            assert time.monotonic() < sent_at + timeout  # the lock was still live
            assert in_progress.status == 409 and in_progress.is_problem(), in_progress.body
            assert in_progress.json()["type"] == PROBLEM_TYPE_PREFIX + "request-in-progress"
            assert int(in_progress.headers["retry-after"]) >= 1
            assert other_body.status == 422
            assert other_body.json()["type"] == PROBLEM_TYPE_PREFIX + "idempotency-key-reused"
        assert upstream.stats()["links_created"] == 1
    finally:
        stack.stop()
