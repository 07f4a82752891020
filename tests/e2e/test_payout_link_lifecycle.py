"""Listing, reading and canceling payout links through the local stack over HTTP, as a frontend would: GET
/payout-links, and GET and DELETE /payout-links/{id}, for the caller that created the links and no one else. The
emulator is the same one the stack calls, so its counters show what reached the upstream (nothing, for anyone but
the owner, and nothing for a list).

Here: each route's smoke test, the 409 and 404 problems through the stack (ids as the wire carries them), the
gateway's scope check and CORS. Who may see which link, and what each upstream answer becomes, are the
integration and unit tiers' (tests/integration/test_link_ownership.py, tests/integration/test_link_listing.py,
tests/unit/test_upstream_client.py)."""

from __future__ import annotations

import http.client
import uuid
from urllib.parse import quote, urlsplit

import httpx
import pytest

from local_stack.core.template import load_template
from local_stack.stack import TEMPLATE_PATH
from tests.support import LINK_KEYS, HttpResult, new_key, payout_body, token

pytestmark = pytest.mark.e2e

ALLOWED_ORIGIN = load_template(TEMPLATE_PATH)["Parameters"]["CorsAllowedOrigins"]["Default"].split(",")[0]
NOT_FOUND_TYPE = "urn:payout-link-proxy:problem:not-found"
NOT_CANCELABLE_TYPE = "urn:payout-link-proxy:problem:not-cancelable"


@pytest.fixture
def api(stack, upstream):
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


def bearer(sub: str | None = "user-1", **claims) -> dict[str, str]:
    return {"authorization": f"Bearer {token(sub, **claims)}"}


def result(response: httpx.Response) -> HttpResult:
    return HttpResult(response.status_code, dict(response.headers), response.content)


def create(api: httpx.Client, sub: str | None = "user-1", **claims) -> dict:
    """A link made through the proxy by `sub` (or by `client_id` in `claims`); its 201 body."""
    headers = {"content-type": "application/json", "idempotency-key": new_key(), **bearer(sub, **claims)}
    response = api.post("/payout-links", json=payout_body(), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def read(api: httpx.Client, link_id: str, sub: str | None = "user-1", **claims) -> HttpResult:
    return result(api.get(f"/payout-links/{link_id}", headers=bearer(sub, **claims)))


def cancel(api: httpx.Client, link_id: str, sub: str | None = "user-1", **claims) -> HttpResult:
    return result(api.delete(f"/payout-links/{link_id}", headers=bearer(sub, **claims)))


def raw_request(base_url: str, method: str, raw_path: str, headers: dict[str, str]) -> HttpResult:
    """`raw_path` exactly as given on the request line: no client-side normalization of `..` or escapes."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.request(method, raw_path, headers=headers)
        response = connection.getresponse()
        return HttpResult(
            response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def lifecycle_counts(upstream) -> dict[str, int]:
    stats = upstream.stats()
    return {name: stats[name] for name in ("requests", "creates", "reads", "cancels")}


# --- the owner ---------------------------------------------------------------------------------------------------


def test_the_owner_reads_the_link_as_created_and_never_cached(api, upstream):
    created = create(api)

    answer = read(api, created["id"])

    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json().keys() == created.keys() == LINK_KEYS
    assert answer.json() == created
    assert upstream.stats()["reads"] == 1  # read fresh from the upstream, not from the proxy's records


def test_cancel_then_cancel_again_are_both_200_canceled(api, upstream):
    link_id = create(api)["id"]

    first = cancel(api, link_id)
    again = cancel(api, link_id)

    for answer in (first, again):
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.json().keys() == LINK_KEYS
        assert answer.json()["id"] == link_id and answer.json()["status"] == "canceled"
    assert upstream.link(link_id)["status"] == "canceled"
    assert read(api, link_id).json()["status"] == "canceled"


def test_a_link_past_canceling_is_a_409_not_cancelable(api, upstream):
    """The 409 not-cancelable through the stack; every state past canceling is the integration tier's."""
    link_id = create(api)["id"]
    before = upstream.set_status(link_id, "claimed")

    answer = cancel(api, link_id)

    assert answer.status == 409, answer.body
    assert answer.is_problem()
    assert answer.json()["type"] == NOT_CANCELABLE_TYPE
    assert upstream.link(link_id) == before  # the link is as it was: status, claimed user, everything


def test_the_owner_lists_its_links_page_by_page_and_no_one_else_can_follow_its_cursor(api, upstream):
    """The list's smoke: pages through the stack (the cursor as the query string carries it), another caller's use
    of that cursor (400), and the gateway's scope check (either scope lists). The upstream is never asked."""
    owner, stranger = f"lister-{uuid.uuid4().hex[:12]}", f"lister-{uuid.uuid4().hex[:12]}"
    links = [create(api, owner)["id"] for _ in range(3)]
    before = lifecycle_counts(upstream)

    first = result(api.get("/payout-links", params={"limit": 2}, headers=bearer(owner)))
    cursor = first.json()["next_cursor"]
    second = result(api.get("/payout-links", params={"limit": 2, "cursor": cursor}, headers=bearer(owner)))
    foreign = result(api.get("/payout-links", params={"cursor": cursor}, headers=bearer(stranger)))
    read_only = result(api.get("/payout-links", headers=bearer(owner, scope="payouts:read")))
    no_scope = result(api.get("/payout-links", headers=bearer(owner, scope="profile")))

    assert first.status == second.status == 200, (first.body, second.body)
    assert first.headers["cache-control"] == second.headers["cache-control"] == "no-store"
    assert [item["id"] for item in first.json()["items"]] == links[:0:-1]
    assert [item["id"] for item in second.json()["items"]] == links[:1]
    assert second.json()["next_cursor"] is None
    assert foreign.status == 400 and foreign.is_problem()
    assert foreign.json()["type"] == "urn:payout-link-proxy:problem:invalid-cursor"
    assert read_only.status == 200 and [item["id"] for item in read_only.json()["items"]] == links[::-1]
    assert no_scope.status == 403 and no_scope.json() == {"message": "Forbidden"}
    assert lifecycle_counts(upstream) == before


# --- everyone else -----------------------------------------------------------------------------------------------


MALFORMED_PATHS = {
    "spaces-and-bang": "/payout-links/" + quote("not a valid id!", safe="!"),
    "dot-dot": "/payout-links/..",
    "encoded-dot-dot": "/payout-links/%2e%2e",
    "200-chars": "/payout-links/" + "a" * 200,
    "encoded-slash": "/payout-links/abc%2Fdef",
    "unicode": "/payout-links/" + quote("lïnk-ünïcødé-✓"),
    "single-dot": "/payout-links/.",
    "encoded-null": "/payout-links/abc%00def",
    # Characters no route parameter takes: the function answers from its no-route handler, with the same 404.
    "backslash": "/payout-links/abc\\def",
    "quote-and-backtick": '/payout-links/a"b`c',
}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_foreign_and_malformed_ids_get_one_identical_404(api, upstream, stack, method):
    """Whatever the reason an id is not the caller's, the answer is the same bytes: an id reveals nothing."""
    strangers_link = create(api, "alice")["id"]
    before = lifecycle_counts(upstream)
    foreign = upstream.seed_link()["id"]  # made at Dots directly, never through the proxy
    headers = bearer("bob")
    paths = {
        "stranger": f"/payout-links/{strangers_link}",
        "unknown-uuid": f"/payout-links/{uuid.uuid4()}",
        "foreign": f"/payout-links/{foreign}",
        **MALFORMED_PATHS,
    }

    answers = {case: raw_request(stack.url, method, path, headers) for case, path in paths.items()}

    for case, answer in answers.items():
        assert answer.status == 404, (case, answer.body)
        assert answer.headers["content-type"] == "application/problem+json", case
        assert answer.is_problem(), (case, answer.body)
    reference = answers["stranger"].body_but_request_id()
    assert answers["stranger"].json()["type"] == NOT_FOUND_TYPE
    assert answers["stranger"].json()["title"] == "Not found"
    different = {case: answer.body for case, answer in answers.items() if answer.body_but_request_id() != reference}
    assert not different, (reference, different)
    assert lifecycle_counts(upstream) == before
    assert upstream.link(foreign)["status"] == "created"


def test_a_read_only_token_reads_but_its_cancel_is_refused_by_the_gateway(api, upstream):
    link_id = create(api, "user-1")["id"]

    answer = read(api, link_id, "user-1", scope="payouts:read")
    refused = cancel(api, link_id, "user-1", scope="payouts:read")

    assert answer.status == 200 and answer.json()["id"] == link_id
    assert refused.status == 403
    assert refused.json() == {"message": "Forbidden"}  # API Gateway's own body: the function never ran
    assert lifecycle_counts(upstream) == {"requests": 2, "creates": 1, "reads": 1, "cancels": 0}
    assert upstream.link(link_id)["status"] == "created"


# --- browsers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_preflight_for_read_and_cancel_is_allowed_from_the_default_origin(api, upstream, method):
    response = api.options(
        f"/payout-links/{uuid.uuid4()}",
        headers={
            "origin": ALLOWED_ORIGIN,
            "access-control-request-method": method,
            "access-control-request-headers": "authorization",
        },
    )

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert method in response.headers["access-control-allow-methods"].split(",")
    assert "authorization" in response.headers["access-control-allow-headers"].split(",")
    assert upstream.stats()["requests"] == 0


def test_read_cancel_and_404_answers_carry_the_cors_headers(api, upstream):
    link_id = create(api)["id"]
    cors = {"origin": ALLOWED_ORIGIN, **bearer()}

    answers = [
        api.get(f"/payout-links/{link_id}", headers=cors),
        api.delete(f"/payout-links/{link_id}", headers=cors),
        api.get(f"/payout-links/{uuid.uuid4()}", headers=cors),
    ]

    assert [response.status_code for response in answers] == [200, 200, 404]
    assert all(response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN for response in answers)
