"""Which idempotency key a request carries, and the key the upstream gets for it (docs/idempotency.md)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from payout_links.inbound import parse_key_header, resolve_key, webhook_key
from payout_links.intent import Intent, fingerprint, record_id, upstream_key
from payout_links.models import parse_create_request
from payout_links.problems import InvalidIdempotencyKey

pytestmark = pytest.mark.unit

KEY = "0f8fad5b-d9cb-469f-a165-70867728950e"
OTHER_KEY = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("order-1001", "order-1001"),
        ('"order-1001"', "order-1001"),
        ("  order-1001\t", "order-1001"),
        (' "order-1001" ', "order-1001"),
        (KEY, KEY),
        (KEY.upper(), KEY),
        (f'"{KEY.upper()}"', KEY),
        ("a" * 255, "a" * 255),
        ('"' + "a" * 255 + '"', "a" * 255),
        ("!#$%&'()*+,-./:;<=>?@[]^_`{|}~", "!#$%&'()*+,-./:;<=>?@[]^_`{|}~"),
        ("x", "x"),
    ],
    ids=[
        "bare",
        "quoted",
        "whitespace",
        "quoted with whitespace",
        "uuid",
        "upper-case uuid",
        "quoted upper-case uuid",
        "255 chars",
        "255 chars quoted",
        "punctuation",
        "one char",
    ],
)
def test_header_keys_that_are_accepted(header: str, expected: str) -> None:
    assert parse_key_header(header) == expected


def test_non_uuid_keys_keep_their_case() -> None:
    assert parse_key_header("Order-ABC") == "Order-ABC"
    assert parse_key_header("Order-ABC") != parse_key_header("order-abc")


@pytest.mark.parametrize(
    "header",
    ["", "   ", '""', "a" * 256, "clé", "ключ", "order 1001", "order\x001001", "order\x7f", "a\tb", "\x1b[0m"],
    ids=[
        "empty",
        "blank",
        "empty quoted",
        "256 chars",
        "accented",
        "cyrillic",
        "space inside",
        "NUL",
        "DEL",
        "tab inside",
        "escape sequence",
    ],
)
def test_header_keys_that_are_refused(header: str) -> None:
    with pytest.raises(InvalidIdempotencyKey) as caught:
        parse_key_header(header)

    assert caught.value.status == 400


def test_no_header_is_no_key() -> None:
    assert parse_key_header(None) is None


def test_distinct_non_uuid_keys_stay_distinct() -> None:
    # Both are opaque keys of 32 hex digits and some hyphens, but neither is spelled as a UUID; a client that
    # sends both means two intents, so they must not name the same idempotency record.
    first = "0f8fad5bd9cb469f-a16570867728950e"
    second = "0-f-8-f-a-d-5-b-d-9-c-b-4-6-9-f-a-1-6-5-7-0-8-6-7-7-2-8-9-5-0-e"

    assert parse_key_header(first) != parse_key_header(second)


def test_resolve_with_the_header_only() -> None:
    assert resolve_key("order-1001", None) == "order-1001"


def test_resolve_with_the_body_only() -> None:
    assert resolve_key(None, uuid.UUID(KEY)) == KEY


def test_resolve_with_both_equal() -> None:
    assert resolve_key(KEY, uuid.UUID(KEY)) == KEY


@pytest.mark.parametrize(
    ("header", "body_key"), [(KEY.upper(), KEY), (KEY, KEY.upper()), (f'"{KEY.upper()}"', KEY.upper())]
)
def test_resolve_with_both_spelled_in_different_case(header: str, body_key: str) -> None:
    """As the handler does: the header is parsed, the body validated, then the two compared."""
    request = parse_create_request(
        f'{{"amount": 100, "user_id": "u", "idempotency_key": "{body_key}"}}', max_amount_cents=1000
    )

    assert resolve_key(parse_key_header(header), request.idempotency_key) == KEY


@pytest.mark.parametrize(("header", "body_key"), [(OTHER_KEY, KEY), ("order-1001", KEY)])
def test_resolve_with_both_different_is_refused(header: str, body_key: str) -> None:
    with pytest.raises(InvalidIdempotencyKey) as caught:
        resolve_key(parse_key_header(header), uuid.UUID(body_key))

    assert caught.value.status == 400


def test_resolve_with_neither_is_refused() -> None:
    with pytest.raises(InvalidIdempotencyKey) as caught:
        resolve_key(None, None)

    assert caught.value.status == 400
    assert "Idempotency-Key" in caught.value.detail


def test_a_webhook_id_is_the_partners_key() -> None:
    assert webhook_key("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", None) == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


@pytest.mark.parametrize("body_key", [KEY, KEY.upper()], ids=["same", "upper-case"])
def test_a_data_idempotency_key_equal_to_the_webhook_id_names_the_same_key(body_key: str) -> None:
    assert webhook_key(KEY, uuid.UUID(body_key)) == KEY


def test_a_data_idempotency_key_other_than_the_webhook_id_is_refused() -> None:
    with pytest.raises(InvalidIdempotencyKey) as caught:
        webhook_key(KEY, uuid.UUID(OTHER_KEY))

    assert caught.value.status == 400
    assert "webhook-id" in caught.value.detail


@pytest.mark.parametrize(
    "webhook_id", ["m" * 256, "msg 1", "msg_é", ""], ids=["256 chars", "space", "accented", "empty"]
)
def test_an_unusable_webhook_id_is_refused(webhook_id: str) -> None:
    with pytest.raises(InvalidIdempotencyKey) as caught:
        webhook_key(webhook_id, None)

    assert caught.value.status == 400
    assert "webhook-id" in caught.value.detail


FINGERPRINT = fingerprint({"amount": 2500, "user_id": "u-1"})


def test_upstream_key_is_a_version_5_uuid() -> None:
    derived = uuid.UUID(upstream_key("user:user-1", KEY, FINGERPRINT))

    assert derived.version == 5
    assert str(derived) == upstream_key("user:user-1", KEY, FINGERPRINT)


def test_upstream_key_is_deterministic_and_fixed_forever() -> None:
    # A link created before a deploy must be found by a retry after it: the derivation may never change again.
    assert upstream_key("user:user-1", KEY, FINGERPRINT) == upstream_key("user:user-1", KEY, FINGERPRINT)
    # sha256 of '{"amount": 2500, "user_id": "u-1"}', then uuid5(namespace, '["user:user-1", KEY, fingerprint]').
    assert FINGERPRINT == "58c131643266c9570bb92443515d8751cac15dc05dd695ae5835fcebacc7d520"
    assert upstream_key("user:user-1", KEY, FINGERPRINT) == "036cae36-9383-5410-a864-f1b047bb6202"


def test_upstream_key_differs_per_caller_per_key_and_per_request() -> None:
    keys = {
        upstream_key("user:user-1", KEY, FINGERPRINT),
        upstream_key("user:user-2", KEY, FINGERPRINT),
        upstream_key("partner:acme", KEY, FINGERPRINT),
        upstream_key("user:user-1", OTHER_KEY, FINGERPRINT),
        upstream_key("user:user-1", "order-1001", FINGERPRINT),
        upstream_key("user:user-1", KEY, fingerprint({"amount": 2501, "user_id": "u-1"})),
    }

    assert len(keys) == 6
    assert KEY not in keys


@pytest.mark.parametrize(
    ("first", "second"),
    [(("a:b", "c"), ("a", "b:c")), (("user:a", "b"), ("user:", "ab")), (('a", "b', "c"), ("a", 'b", "c'))],
)
def test_upstream_key_is_not_confusable(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert upstream_key(*first, FINGERPRINT) != upstream_key(*second, FINGERPRINT)


def test_the_intent_carries_its_fingerprint_and_upstream_key() -> None:
    intent = Intent.of("user:user-1", KEY, {"amount": 2500, "user_id": "u-1"})

    assert intent.fingerprint == FINGERPRINT
    assert intent.upstream_key == "036cae36-9383-5410-a864-f1b047bb6202"  # the golden value above


def test_the_fingerprint_ignores_key_order_and_the_record_id_is_the_hash_of_caller_and_key() -> None:
    request = {"amount": 2500, "payee": {"phone_number": "5555550123", "country_code": "1"}}
    intent = Intent.of("user:user-1", "k", request)

    assert fingerprint(request) == fingerprint(dict(reversed(request.items()))) == intent.fingerprint
    # The digest Powertools idempotency keyed these records by: sha256 of the sorted JSON of [caller, key].
    assert intent.record_id == record_id("user:user-1", "k")
    assert intent.record_id == "payout-link#" + hashlib.sha256(b'["user:user-1", "k"]').hexdigest()


_UUID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"


@pytest.mark.parametrize(
    "spelling",
    [
        _UUID,
        _UUID.upper(),
        _UUID.replace("-", ""),
        _UUID.replace("-", "").upper(),
        "{" + _UUID + "}",
        "{" + _UUID.upper() + "}",
        "urn:uuid:" + _UUID,
        "urn:uuid:" + _UUID.upper(),
    ],
    ids=["standard", "upper", "hyphenless", "hyphenless upper", "braced", "braced upper", "urn", "urn upper"],
)
def test_every_uuid_spelling_the_body_accepts_names_one_key_in_header_and_body(spelling: str) -> None:
    body_key = parse_create_request(
        f'{{"amount": 1, "user_id": "u", "idempotency_key": "{spelling}"}}', max_amount_cents=10
    ).idempotency_key

    assert parse_key_header(spelling) == _UUID
    assert resolve_key(None, body_key) == _UUID
    assert resolve_key(parse_key_header(spelling), body_key) == _UUID


@pytest.mark.parametrize(
    "spelling",
    ["URN:UUID:" + _UUID, "{" + _UUID.replace("-", "") + "}", "urn:uuid:{" + _UUID + "}", "Urn:Uuid:" + _UUID.upper()],
)
def test_header_only_spellings_of_a_uuid_name_the_same_key(spelling: str) -> None:
    assert parse_key_header(spelling) == _UUID


@pytest.mark.parametrize(
    "spelling", [_UUID[:8] + _UUID[9:], "{" + _UUID, _UUID + "}", "urn:uuid:" + _UUID[:-1], "x" + _UUID, "-" * 36]
)
def test_what_is_not_a_uuid_stays_an_opaque_key(spelling: str) -> None:
    assert parse_key_header(spelling) == spelling
