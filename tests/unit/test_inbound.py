"""What the handler takes from an HTTP API event before any work: a JSON body within bounds, and the caller."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from payout_links.inbound import decoded_body, frontend_caller, json_body, within_limit
from payout_links.problems import MalformedJson, PayloadTooLarge, Unauthenticated, UnsupportedMediaType
from payout_links.router import Request
from tests.support import http_event, token_claims

pytestmark = pytest.mark.unit

LIMIT = 1_024
BODY = b'{"amount": 2500, "user_id": "user-7"}'


def event(
    body: str | None = BODY.decode(),
    *,
    headers: dict[str, str] | None = None,
    base64_encoded: bool = False,
    claims: dict[str, Any] | None = None,
) -> Request:
    """POST /payout-links as API Gateway sends it (tests.support.http_event), with `claims` (over a token's usual
    ones: `iss`, `aud`, `scope`, `iat`, `exp`) when the authorizer verified a token with them. With
    `base64_encoded`, `body` is the event's base64 text exactly as given, valid or not (API Gateway itself sends
    only valid base64)."""
    headers = {"content-type": "application/json"} if headers is None else dict(headers)
    if claims is not None:
        headers["authorization"] = "Bearer " + token_claims(claims)
    raw = http_event("POST", "/payout-links", body=None if base64_encoded else body, headers=headers)
    if base64_encoded and body is not None:
        raw.update(body=body, isBase64Encoded=True)
    return Request.from_event(raw)


def gateway_event(body: bytes, content_type: str | None) -> Request:
    """The event the local gateway builds for a request with these bytes and this content type."""
    headers = {} if content_type is None else {"content-type": content_type}
    return Request.from_event(http_event("POST", "/payout-links", body=body, headers=headers))


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
        "application/problem+json; charset=UTF-8",
        " application/json ;charset=utf-8",
    ],
)
def test_json_media_types_are_accepted(content_type: str) -> None:
    assert json_body(event(headers={"content-type": content_type}), max_bytes=LIMIT) == BODY


def test_the_content_type_header_name_is_case_insensitive() -> None:
    request = http_event("POST", "/payout-links", body=BODY, headers={"content-type": "application/json"})
    request["headers"] = {"Content-Type": "application/json"}  # API Gateway lower-cases names; a direct invoke may not

    assert json_body(Request.from_event(request), max_bytes=LIMIT) == BODY


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/xml",
        "",
        None,
    ],
)
def test_other_media_types_are_refused_with_415(content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}

    with pytest.raises(UnsupportedMediaType) as caught:
        json_body(event(headers=headers), max_bytes=LIMIT)

    assert caught.value.status == 415


def test_the_media_type_is_checked_before_the_size() -> None:
    with pytest.raises(UnsupportedMediaType):
        json_body(event("x" * (LIMIT + 1), headers={"content-type": "text/plain"}), max_bytes=LIMIT)


def test_a_body_exactly_at_the_limit_is_accepted() -> None:
    body = '{"memo": "' + "m" * (LIMIT - 12) + '"}'
    assert len(body.encode()) == LIMIT

    assert json_body(event(body), max_bytes=LIMIT) == body.encode()


@pytest.mark.parametrize(
    "body",
    ["x" * (LIMIT + 1), "é" * (LIMIT // 2 + 1), "€" * (LIMIT // 3 + 1), "x" * (10 * LIMIT)],
    ids=["one byte over", "two-byte characters", "three-byte characters", "far over"],
)
def test_a_body_over_the_limit_in_bytes_is_refused_with_413(body: str) -> None:
    assert len(body.encode()) > LIMIT

    with pytest.raises(PayloadTooLarge) as caught:
        json_body(event(body), max_bytes=LIMIT)

    assert caught.value.status == 413
    assert str(LIMIT) in caught.value.detail


def test_multi_byte_characters_count_in_bytes_not_characters() -> None:
    body = "é" * (LIMIT // 2)

    assert json_body(event(body), max_bytes=LIMIT) == body.encode()


def test_a_base64_body_is_decoded() -> None:
    encoded = base64.b64encode(BODY).decode()

    assert json_body(event(encoded, base64_encoded=True), max_bytes=LIMIT) == BODY


def test_a_base64_body_exactly_at_the_limit_is_accepted_and_above_refused() -> None:
    at_limit = bytes(range(256)) * (LIMIT // 256)
    assert len(at_limit) == LIMIT

    assert json_body(event(base64.b64encode(at_limit).decode(), base64_encoded=True), max_bytes=LIMIT) == at_limit
    with pytest.raises(PayloadTooLarge):
        json_body(event(base64.b64encode(at_limit + b"x").decode(), base64_encoded=True), max_bytes=LIMIT)


@pytest.mark.parametrize("encoded", ["not base64!", "eyJhIjox*Q==", "eyJhIjoxfQ", "eyJh\nIjoxfQ=="])
def test_invalid_base64_is_refused_with_400(encoded: str) -> None:
    with pytest.raises(MalformedJson) as caught:
        json_body(event(encoded, base64_encoded=True), max_bytes=LIMIT)

    assert caught.value.status == 400


def test_a_missing_body_is_empty() -> None:
    assert json_body(event(None), max_bytes=LIMIT) == b""


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["text", "base64"])
def test_the_decoded_body_has_no_size_limit(base64_encoded: bool) -> None:
    """What a webhook signature is checked over, before the size: every byte as sent."""
    body = b'{"memo": "' + "é".encode() * (10 * LIMIT) + b'"}'
    sent = base64.b64encode(body).decode() if base64_encoded else body.decode()

    assert decoded_body(event(sent, base64_encoded=base64_encoded)) == body


def test_a_body_that_does_not_decode_is_malformed() -> None:
    with pytest.raises(MalformedJson):
        decoded_body(event("not base64!", base64_encoded=True))


def test_the_limit_is_in_bytes_and_inclusive() -> None:
    assert within_limit(b"x" * LIMIT, max_bytes=LIMIT) == b"x" * LIMIT
    with pytest.raises(PayloadTooLarge) as caught:
        within_limit(b"x" * (LIMIT + 1), max_bytes=LIMIT)
    assert caught.value.status == 413 and str(LIMIT) in caught.value.detail


def test_the_local_gateways_events_are_read_the_same_way() -> None:
    binary = b'{"memo": "\xff"}'

    assert json_body(gateway_event(BODY, "application/json"), max_bytes=LIMIT) == BODY
    assert json_body(gateway_event(binary, "application/json"), max_bytes=LIMIT) == binary
    with pytest.raises(UnsupportedMediaType):
        json_body(gateway_event(BODY, None), max_bytes=LIMIT)


@pytest.mark.parametrize(
    ("claims", "caller"),
    [
        ({"sub": "user-1"}, "user:user-1"),
        ({"sub": "user-1", "client_id": "app-9"}, "user:user-1"),
        ({"client_id": "app-9"}, "client:app-9"),
    ],
    ids=["sub", "sub wins over client_id", "client_id without sub"],
)
def test_the_caller_comes_from_the_verified_claims(claims: dict[str, str], caller: str) -> None:
    assert frontend_caller(event(claims=claims)) == caller


@pytest.mark.parametrize(
    "claims",
    [
        None,
        {},
        {"sub": ""},
        {"sub": "", "client_id": "app-9"},
        {"scope": "payouts:write"},
    ],
    ids=["no authorizer", "no claims", "empty sub", "empty sub beside a client_id", "neither sub nor client_id"],
)
def test_no_caller_is_a_401(claims: dict[str, str] | None) -> None:
    with pytest.raises(Unauthenticated) as caught:
        frontend_caller(event(claims=claims))

    assert caught.value.status == 401


# What API Gateway makes of a JSON value that is not a string: its spelling (arrays as `[a b]`). None of them names
# anyone: two tokens with `sub: null` (or `false`, `0`, `[]`...) must not become one caller.
NO_ONE = [None, True, False, 0, 1.5, -2, 1e3, [], ["a", "b"], {}, {"a": 1}, "", "null", "true", "0", "[a b]", "{}"]
NO_ONE_IDS = ["null", "true", "false", "0", "1.5", "-2", "1e3", "[]", "[a b]", "{}", "object"]
NO_ONE_IDS += ["empty", "'null'", "'true'", "'0'", "'[a b]'", "'{}'"]


@pytest.mark.parametrize("value", NO_ONE, ids=NO_ONE_IDS)
@pytest.mark.parametrize(
    "naming", [{"client_id": "app-9"}, {}], ids=["sub beside a client_id", "client_id without sub"]
)
def test_a_naming_claim_that_is_a_json_literals_spelling_names_no_caller(naming: dict[str, str], value: Any) -> None:
    """The `sub` when there is one (never falling back to the client_id beside it), else the `client_id`."""
    claims = {"sub": value, **naming} if naming else {"client_id": value}

    with pytest.raises(Unauthenticated):
        frontend_caller(event(claims=claims))


@pytest.mark.parametrize("value", [None, 0, ["a"], {"a": "b"}], ids=["None", "0", "list", "dict"])
def test_a_naming_claim_that_is_not_a_string_in_the_event_names_no_caller(value: Any) -> None:
    """API Gateway sends strings only; an event that carries anything else is refused all the same."""
    raw = http_event("GET", "/payout-links")
    raw["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": value, "client_id": "app-9"}, "scopes": []}}

    with pytest.raises(Unauthenticated):
        frontend_caller(Request.from_event(raw))


@pytest.mark.parametrize("subject", ["user-1", "auth0|5f7c8ec7c33c6c004bbafe82", "null-user", "0x", "[a", "ada b"])
def test_a_naming_claim_that_only_looks_odd_still_names_its_caller(subject: str) -> None:
    assert frontend_caller(event(claims={"sub": subject})) == f"user:{subject}"
    assert frontend_caller(event(claims={"client_id": subject})) == f"client:{subject}"


def test_the_caller_is_never_taken_from_the_body() -> None:
    body = '{"amount": 2500, "user_id": "user-7", "sub": "admin"}'

    with pytest.raises(Unauthenticated):
        frontend_caller(event(body, claims={}))
    assert frontend_caller(event(body, claims={"sub": "user-1"})) == "user:user-1"
