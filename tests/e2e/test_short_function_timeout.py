"""`LAMBDA_TIMEOUT_SECONDS=6 make run`: a function timeout close to the 5 s minimum creates links, and the upstream's
faults still end in an answer before the function's time, the key bound as documented; below the minimum, the stack
says so once, at start-up."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import start_stack
from tests.support import create_until_settled, frontend_headers, new_key, payout_body

pytestmark = pytest.mark.e2e

TIMEOUT = 6.0


@pytest.fixture
def stack_with_timeout(tmp_path, aws_endpoint, aws_resources, upstream):
    """`make run` with LAMBDA_TIMEOUT_SECONDS, against the session's moto server and emulator; stopped at the end."""
    started = []

    def start(seconds: float, *, concurrency: int):
        started.append(
            start_stack(
                tmp_path,
                AWS_ENDPOINT_URL=aws_endpoint,
                PAYOUT_API_BASE_URL=upstream.base_url,
                LOCAL_CONCURRENCY=str(concurrency),
                LAMBDA_TIMEOUT_SECONDS=f"{seconds:g}",
            )
        )
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def six_second_stack(stack_with_timeout):
    return stack_with_timeout(TIMEOUT, concurrency=2)


def post(api: httpx.Client, key: str, body: dict | None = None) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = api.post("/payout-links", json=body or payout_body(), headers=frontend_headers(key=key))
    return answer, time.monotonic() - started


def retried_until_created(api: httpx.Client, key: str) -> httpx.Response:
    """What a client does with a retryable answer: the same key and body again, until a final answer."""
    return create_until_settled(api, key=key)[0]


def test_a_six_second_function_creates_links(six_second_stack, upstream):
    assert "function timeout: 6 s" in six_second_stack.banner and "WARNING" not in six_second_stack.banner
    keys = [new_key() for _ in range(8)]
    with httpx.Client(base_url=six_second_stack.url, timeout=30) as api:
        first = [post(api, key) for key in keys]
        finals = [retried_until_created(api, key) for key in keys]

    assert all(elapsed < TIMEOUT for _, elapsed in first), [round(elapsed, 2) for _, elapsed in first]
    assert [answer.status_code for answer in finals] == [201] * len(keys)
    assert sorted(link["idempotency_key"] is not None for link in upstream.links()) == [True] * len(keys)


@pytest.mark.parametrize(
    ("fault", "attempts", "statuses"),
    [
        ({"status": 500, "after_create": True}, 3, {502}),  # made, then a 5xx, for each of the 3 attempts
        ({"delay_seconds": TIMEOUT}, 1, {504}),  # slower than the whole function: one attempt, cut at the deadline
        ({"drop": True, "after_create": True}, 3, {502, 504}),  # made, then the connection dropped
    ],
    ids=["5xx-after-create", "slow-upstream", "dropped-connection"],
)
def test_upstream_faults_end_before_the_function_timeout_with_the_key_bound(
    six_second_stack, upstream, fault, attempts, statuses
):
    key = new_key()
    with httpx.Client(base_url=six_second_stack.url, timeout=30) as api:
        assert retried_until_created(api, new_key()).status_code == 201  # a warm environment, like most requests
        upstream.inject(*([fault] * attempts))
        failed, elapsed = post(api, key)
        problem = failed.json()
        assert failed.status_code in statuses and elapsed < TIMEOUT, (failed.status_code, problem, elapsed)
        assert problem["key_state"] == "bound"
        assert post(api, key, payout_body(amount=9_999))[0].status_code == 422  # the key is still the first body's
        assert upstream.wait_idle(timeout=2 * TIMEOUT)
        retried = retried_until_created(api, key)

    assert retried.status_code == 201, retried.text
    made_under_key = [link for link in upstream.links() if link["idempotency_key"] is not None]
    assert len(made_under_key) == 2  # the warm-up's, and this key's one link


def test_a_timeout_below_the_minimum_is_named_once_at_start_up(stack_with_timeout):
    running = stack_with_timeout(4, concurrency=1)

    assert running.banner.count("WARNING") == 1
    assert "below 5 s" in running.banner
