"""The local stack driven over HTTP exactly as a frontend would: gateway, worker processes, moto, emulator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import start_stack
from tests.faults.aws_fault_proxy import SERVICE_UNAVAILABLE, AwsFaultProxy
from tests.support import HttpResult, create_until_settled, frontend_headers, new_key, payout_body, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(stack, upstream):
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


def post(
    api: httpx.Client,
    body=None,
    *,
    key: str | None = "new",
    sub: str | None = "user-1",
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> HttpResult:
    all_headers = frontend_headers(key=key, sub=sub, headers=headers)
    if content is None:
        response = api.post("/payout-links", json=payout_body() if body is None else body, headers=all_headers)
    else:
        response = api.post("/payout-links", content=content, headers=all_headers)
    return HttpResult(response.status_code, dict(response.headers), response.content)


def test_create_then_replay_then_mismatch(api, upstream):
    key = new_key()
    created = post(api, key=key)
    replayed = post(api, key=key)
    mismatch = post(api, payout_body(amount=1), key=key)

    assert created.status == 201 and created.headers["content-type"] == "application/json"
    assert replayed.status == 201 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.body == created.body
    assert mismatch.status == 422 and mismatch.is_problem()
    assert mismatch.json()["type"] == "urn:payout-link-proxy:problem:idempotency-key-reused"
    assert upstream.stats()["links_created"] == 1


def test_request_in_flight_gets_409_with_retry_after(api, upstream):
    """The 409 through the stack. Concurrent duplicates across containers are tests/faults/test_concurrency.py's."""
    key = new_key()
    upstream.inject({"delay_seconds": 1.5})
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The first request's answer once settled, as its client would take it: it runs while another one is sent.
        first = pool.submit(create_until_settled, api, payout_body(), key=key)
        # The first request holds the key once the upstream has it (and holds it there for 1.5 s).
        wait_until(lambda: upstream.stats()["creates"] == 1, timeout=20)
        second = post(api, key=key)
        assert first.result()[0].status_code == 201
    assert second.status == 409 and second.is_problem()
    assert second.json()["type"] == "urn:payout-link-proxy:problem:request-in-progress"
    assert second.headers["retry-after"] == "2"
    assert upstream.stats()["links_created"] == 1


# One create per problem the upstream can cause, as a smoke test through the stack. How each upstream answer maps
# is tests/unit/test_upstream_client.py's; what each does to the key, tests/faults/test_failure_points.py's.
UPSTREAM_PROBLEMS = {
    # mode: (fault, status, problem type, key state)
    "upstream-400": ({"status": 400}, 422, "upstream-rejected", "released"),
    "upstream-429": ({"status": 429, "retry_after": "11"}, 429, "upstream-rate-limited", "released"),
    "upstream-500": ({"status": 500, "count": 3}, 502, "upstream-failed", "bound"),
    "upstream-timeout": ({"delay_seconds": 2.5, "count": 3}, 504, "upstream-timeout", "bound"),
}


@pytest.mark.parametrize("mode", list(UPSTREAM_PROBLEMS))
def test_each_upstream_failure_is_its_problem_and_the_retry_gets_one_link(api, upstream, mode):
    fault, status, slug, key_state = UPSTREAM_PROBLEMS[mode]
    key = new_key()
    upstream.inject(fault)

    failed = post(api, key=key)

    assert failed.status == status and failed.is_problem(), failed.body
    assert failed.json()["type"] == f"urn:payout-link-proxy:problem:{slug}"
    assert failed.json()["key_state"] == key_state
    if status == 429:
        assert failed.headers["retry-after"] == "11"
    retry = post(api, key=key)
    assert retry.status == 201
    assert upstream.stats()["links_created"] == 1


def test_a_mismatched_link_is_canceled_and_its_key_spent(api, upstream):
    key = new_key()
    upstream.inject({"link_overrides": {"amount": 1.0}})

    failed = post(api, key=key)
    retry = post(api, key=key)

    assert failed.status == 502 and failed.json()["type"] == "urn:payout-link-proxy:problem:upstream-mismatch"
    assert failed.json()["key_state"] == "spent"
    assert retry.status == 502 and retry.json()["key_state"] == "spent"
    (link,) = upstream.links()  # the one the proxy canceled
    assert link["status"] == "canceled" and upstream.stats()["links_created"] == 1


def test_a_failing_aws_dependency_is_a_503_problem(tmp_path, aws_endpoint, aws_resources, upstream):
    """The 503 through a stack of its own, whose AWS calls pass a fault proxy: DynamoDB refuses the lock. Every
    other way an AWS call fails, and what each does to the key, is tests/faults/test_failure_points.py's."""
    proxy = AwsFaultProxy(aws_endpoint)
    stack = start_stack(tmp_path, AWS_ENDPOINT_URL=proxy.endpoint, PAYOUT_API_BASE_URL=upstream.base_url)
    try:
        with httpx.Client(base_url=stack.url, timeout=30) as api:
            key = new_key()
            proxy.fail("DynamoDB_20120810.PutItem", error=SERVICE_UNAVAILABLE)
            refused = post(api, key=key)
            proxy.heal()
            retry = post(api, key=key)
    finally:
        stack.stop()
        proxy.stop()

    assert refused.status == 503 and refused.is_problem(), refused.body
    assert refused.json()["type"] == "urn:payout-link-proxy:problem:dependency-unavailable"
    assert int(refused.headers["retry-after"]) >= 1
    assert retry.status == 201  # nothing was half-done
    assert upstream.stats()["links_created"] == 1


# One request per problem a body or its headers can earn, as a smoke test through the stack: which bodies, keys and
# headers are refused, and where each refusal points, is the unit tier's (tests/unit/test_models.py,
# test_idempotency_keys.py, test_inbound.py); a missing token is test_frontend_access.py's, a body over the limit
# test_partner_probing.py's.
BAD_INPUT = [
    # (id, request overrides, expected status, problem type, expected pointer or None)
    ("not-json", {"content": b"{amount: 1}"}, 400, "malformed-json", None),
    ("no-key", {"key": None}, 400, "invalid-idempotency-key", None),
    ("not-json-content-type", {"headers": {"content-type": "text/plain"}}, 415, "unsupported-media-type", None),
    ("float-amount", {"body": payout_body(amount=10.5)}, 422, "validation-failed", "#/amount"),
]


@pytest.mark.parametrize(
    ("overrides", "status", "slug", "pointer"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_gets_a_clear_problem_and_loses_nothing(api, upstream, overrides, status, slug, pointer):
    result = post(api, **overrides)

    assert result.status == status, result.body
    assert result.is_problem()
    assert result.json()["type"] == f"urn:payout-link-proxy:problem:{slug}"
    if pointer is not None:
        assert [error["pointer"] for error in result.json()["errors"]] == [pointer]
    assert upstream.stats()["requests"] == 0


@pytest.mark.parametrize("method", ["PUT", "TRACE", "QUERY"])
def test_a_method_no_route_has_is_404_like_api_gateway(api, method):
    response = api.request(method, "/payout-links")

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}
