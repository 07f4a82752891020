"""The local gateway behaves like API Gateway under load: a burst queues instead of being reset, and no caller
waits for the function longer than the integration timeout (then API Gateway's own 503)."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import start_stack
from tests.support import create_until_settled, frontend_headers, new_key, payout_body, retry_pause

pytestmark = pytest.mark.e2e

BURST = 300


def create(url: str, key: str | None = None) -> tuple[int | str, float]:
    """One create on a connection of its own: its status (or the connection error's name) and how long it took."""
    answer, seconds = first_answer(url, key or new_key())
    return answer if isinstance(answer, str) else answer.status_code, seconds


def first_answer(url: str, key: str) -> tuple[httpx.Response | str, float]:
    """One create with `key` on a connection of its own, answered as it comes: the answer (or the connection error's
    name) and how long it took."""
    started = time.monotonic()
    try:
        with httpx.Client(timeout=60) as client:
            answer: httpx.Response | str = client.post(
                f"{url}/payout-links", json=payout_body(), headers=frontend_headers(key=key)
            )
    except httpx.TransportError as exc:
        answer = type(exc).__name__
    return answer, time.monotonic() - started


def settled(url: str, key: str) -> tuple[httpx.Response, list[int | str]]:
    """The create with `key` sent again as a client does after an answer that is not final (docs/api.md, the safe
    recipe), until it is final."""
    with httpx.Client(base_url=url, timeout=60) as client:
        return create_until_settled(client, payout_body(), key=key, attempts=20)


def test_a_burst_of_300_queues_for_two_environments_and_loses_nothing(tmp_path, aws_endpoint, aws_resources, upstream):
    """300 intents at once, each then settled as a client settles it: on a busy machine a few first answers are the
    gateway's 503 (a request that waited for an environment past the 30 s integration timeout, whose invocation may
    still have made its link), and the client's retry with the same key and body gets the link. So the first
    answers are only checked for what a burst must never get (a reset, an answer no retry mends); the intents, once
    settled, each have their 201, and Dots holds exactly their links."""
    stack = start_stack(
        tmp_path, AWS_ENDPOINT_URL=aws_endpoint, PAYOUT_API_BASE_URL=upstream.base_url, LOCAL_CONCURRENCY="2"
    )
    keys = [new_key() for _ in range(BURST)]
    try:
        with ThreadPoolExecutor(max_workers=BURST) as callers:
            firsts = list(callers.map(lambda key: first_answer(stack.url, key), keys))
            unsettled = [key for key, (answer, _) in zip(keys, firsts, strict=True) if status(answer) != 201]
            retried = dict(zip(unsettled, callers.map(lambda key: settled(stack.url, key), unsettled), strict=True))
        assert upstream.wait_idle(timeout=30)
    finally:
        stack.stop()

    statuses = [status(answer) for answer, _ in firsts]
    slowest = max(seconds for _, seconds in firsts)
    retries = {key: seen for key, (_, seen) in retried.items()}
    print(f"\nburst: {BURST} creates at LOCAL_CONCURRENCY=2, slowest answer {slowest:.1f} s, retried: {retries}")
    assert [status for status in statuses if not isinstance(status, int)] == []  # no reset, no refused connection
    final = [answer for answer, _ in firsts if status(answer) == 201] + [answer for answer, _ in retried.values()]
    not_retryable = [
        (answer.status_code, answer.text)
        for answer, _ in firsts
        if isinstance(answer, httpx.Response) and answer.status_code != 201 and retry_pause(answer, cap=0) is None
    ]
    assert not_retryable == []
    assert [answer.status_code for answer in final] == [201] * BURST, retries
    links = [link["id"] for link in upstream.links()]
    assert len(links) == BURST  # as many links as intents
    assert sorted(links) == sorted(answer.json()["id"] for answer in final)  # each intent's own
    # Served, not merely answered: a stack that answered every first request with the gateway's 503 would pass the
    # lines above, its clients' retries doing the work. Two environments serve 300 creates in about 10 s here; a few
    # may still meet the 30 s limit on a machine that is busy with other work, which is what the 503 is for.
    assert statuses.count(201) >= 0.9 * BURST, statuses.count(201)
    assert slowest < 31  # API Gateway's 30 s, and a second of slack for this machine


def status(answer: httpx.Response | str) -> int | str:
    return answer if isinstance(answer, str) else answer.status_code


def test_a_burst_of_connections_is_accepted_at_once(stack):
    """300 connections opened at the same instant: each is accepted within half a second. With a listen backlog
    of 5 (socketserver's default) the kernel drops the SYNs it has no room for, and those callers wait for a
    retransmission (a second or more) or are reset."""
    address = urlsplit(stack.url)
    barrier = threading.Barrier(BURST)

    def connect() -> float | str:
        barrier.wait()
        started = time.monotonic()
        try:
            with socket.create_connection((address.hostname, address.port), timeout=10):
                return time.monotonic() - started
        except OSError as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(max_workers=BURST) as callers:
        results = list(callers.map(lambda _: connect(), range(BURST)))

    failed = [result for result in results if isinstance(result, str)]
    assert failed == []
    assert max(results) < 0.5, sorted(results)[-5:]


def test_no_caller_waits_past_the_integration_timeout(tmp_path, aws_endpoint, aws_resources, upstream):
    """One environment, busy with a slow upstream: both callers get API Gateway's 503 at the timeout. The first
    request's invocation goes on (as in Lambda) and makes its link; the queued one never reaches the function."""
    stack = start_stack(
        tmp_path,
        AWS_ENDPOINT_URL=aws_endpoint,
        PAYOUT_API_BASE_URL=upstream.base_url,
        LOCAL_CONCURRENCY="1",
        LOCAL_INTEGRATION_TIMEOUT_SECONDS="2",
    )
    try:
        assert settled(stack.url, new_key())[0].status_code == 201  # warm: the environment has read its credentials
        upstream.inject({"delay_seconds": 4})
        with ThreadPoolExecutor(max_workers=2) as callers:
            first = callers.submit(create, stack.url)
            time.sleep(0.3)
            queued = callers.submit(create, stack.url)
            answers = [first.result(), queued.result()]
        assert upstream.wait_idle(timeout=10)
        # The environment is free again. A request sent now waits behind any still queued for it, so once it is
        # answered, a queued request that was going to run has run.
        assert settled(stack.url, new_key())[0].status_code == 201
    finally:
        stack.stop()

    assert [status for status, _ in answers] == [503, 503]
    assert all(seconds < 3 for _, seconds in answers), answers
    # The warm-up, the first slow one and the last: the queued one never ran.
    assert upstream.stats()["creates"] == 3


def raw_exchange(url: str, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are and read the answer until the gateway closes the connection (or the timeout)."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " "], ids=["letters", "negative", "exponent", "blank"])
def test_a_malformed_content_length_is_a_400_at_once(stack, upstream, length):
    """As API Gateway does: refused by the gateway with 400, the connection closed, the function never called;
    never a traceback, a dropped connection or a read that waits for the client to hang up."""
    started = time.monotonic()
    answer = raw_exchange(
        stack.url,
        f"POST /payout-links HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n{{}}".encode(),
    )

    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert answer.endswith(b'{"message":"Bad Request"}')
    assert time.monotonic() - started < 4
    assert upstream.stats()["requests"] == 0


def test_a_chunked_body_reaches_the_function_whole(stack, upstream):
    """A body sent with Transfer-Encoding: chunked (what a client streaming its body does) is read whole."""
    body = json.dumps(payout_body()).encode()

    def chunks():
        yield body[:10]
        yield body[10:]

    with httpx.Client(timeout=30) as client:
        answer = client.post(f"{stack.url}/payout-links", content=chunks(), headers=frontend_headers())

    assert answer.status_code == 201, answer.text
    assert upstream.stats()["links_created"] == 1
