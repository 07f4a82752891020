"""The request contract of POST /payout-links (docs/api.md): what is accepted, what is refused, and where the
refusal points; and the canonical request that is both forwarded upstream and fingerprinted for idempotency. And
the query of GET /payout-links."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from payout_links import intent
from payout_links.models import (
    CreatePayoutLinkRequest,
    ListQuery,
    PayoutLink,
    parse_create_request,
    parse_list_query,
    parse_partner_event,
)
from payout_links.problems import MalformedJson, ValidationFailed
from tests.support import LINK_KEYS

pytestmark = pytest.mark.unit

CAP = 1_000_000
KEY = "0f8fad5b-d9cb-469f-a165-70867728950e"
OTHER_KEY = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
PAYEE = {"country_code": "1", "phone_number": "5555550123"}
PAYEE_WITH_EMAIL = {**PAYEE, "email": "ada@example.com"}
ALL_STEPS = [
    "compliance",
    "id-verification",
    "background-check",
    "manage-payments",
    "manage-payouts",
    "payout",
    "redirect",
]


def with_user(**fields: Any) -> dict[str, Any]:
    return {"amount": 2500, "user_id": "user-7", **fields}


def with_payee(payee: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {"amount": 2500, "payee": PAYEE if payee is None else payee, **fields}


def raw(body: dict[str, Any] | bytes) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def parse(body: dict[str, Any] | bytes):
    return parse_create_request(raw(body), max_amount_cents=CAP)


def fingerprint(body: dict[str, Any] | bytes) -> str:
    """What an idempotency record is keyed on: the canonical JSON of the upstream payload."""
    payload = parse(body).upstream_payload()
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def forwarded(body: dict[str, Any]) -> dict[str, Any]:
    """What the caller set: no nulls, no default `false`, never the caller's own idempotency key."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict) and value is not body.get("metadata"):
            return {k: clean(v) for k, v in value.items() if v is not None}
        return value

    return {
        name: clean(value)
        for name, value in body.items()
        if value is not None
        and name != "idempotency_key"
        and not (name == "force_collect_compliance_information" and value is False)
    }


VALID_BODIES = {
    "user_id only": with_user(),
    "payee only": with_payee(),
    "amount of one cent": with_user(amount=1),
    "amount exactly at the cap": with_user(amount=CAP),
    "payee with every field": with_payee(
        {**PAYEE_WITH_EMAIL, "first_name": "Ada", "last_name": "Lovelace", "country_code": "44"}
    ),
    "three-digit country code, 4-digit phone": with_payee({"country_code": "123", "phone_number": "1234"}),
    "15-digit phone": with_payee({"country_code": "1", "phone_number": "123456789012345"}),
    "sms delivery with payee phone": with_payee(delivery={"method": "sms", "message": "Your payout is ready"}),
    "email delivery with payee email": with_payee(PAYEE_WITH_EMAIL, delivery={"method": "email"}),
    "all delivery with phone and email": with_payee(PAYEE_WITH_EMAIL, delivery={"method": "all"}),
    "link delivery needs no payee": with_user(delivery={"method": "link"}),
    "forced compliance collection": with_user(force_collect_compliance_information=True),
    "explicit default compliance flag": with_user(force_collect_compliance_information=False),
    "every additional step once": with_user(additional_steps=ALL_STEPS),
    "tax exempt false": with_user(tax_exempt=False),
    "tax exempt true": with_user(tax_exempt=True),
    "metadata at its bounds": with_user(metadata={"k" * 40: "v" * 500, **{f"key{i}": str(i) for i in range(49)}}),
    "memo at its bound": with_user(memo="m" * 500),
    "body idempotency key": with_user(idempotency_key=KEY),
    "body idempotency key in upper case": with_user(idempotency_key=KEY.upper()),
    "fee paid by the user": with_user(payout_fee_party="user"),
    "fee paid by the platform": with_user(payout_fee_party="platform"),
    "both user_id and payee": with_payee(user_id="user-7"),
}


@pytest.mark.parametrize("body", list(VALID_BODIES.values()), ids=list(VALID_BODIES))
def test_valid_bodies_are_accepted_and_forwarded_as_sent(body: dict[str, Any]) -> None:
    request = parse(body)

    assert request.amount == body["amount"]
    assert request.upstream_payload() == forwarded(body)


def test_body_idempotency_key_is_read_as_a_uuid_whatever_its_case() -> None:
    assert str(parse(with_user(idempotency_key=KEY.upper())).idempotency_key) == KEY


INVALID_BODIES = {
    "fractional amount": (with_user(amount=10.5), ["#/amount"]),
    "amount as a string": (with_user(amount="100"), ["#/amount"]),
    "amount as a boolean": (with_user(amount=True), ["#/amount"]),
    "zero amount": (with_user(amount=0), ["#/amount"]),
    "negative amount": (with_user(amount=-1), ["#/amount"]),
    "amount above the cap": (with_user(amount=CAP + 1), ["#/amount"]),
    "huge amount": (with_user(amount=10**30), ["#/amount"]),
    "null amount": (with_user(amount=None), ["#/amount"]),
    "amount missing": ({"user_id": "user-7"}, ["#/amount"]),
    "misspelled amount": ({"amout": 2500, "user_id": "user-7"}, ["#/amount", "#/amout"]),
    "unknown top-level field": (with_user(note="hi"), ["#/note"]),
    "neither user_id nor payee": ({"amount": 2500}, ["#/user_id"]),
    "empty user_id": ({"amount": 2500, "user_id": ""}, ["#/user_id"]),
    "numeric user_id": ({"amount": 2500, "user_id": 42}, ["#/user_id"]),
    "phone with punctuation": (with_payee({**PAYEE, "phone_number": "555-0123"}), ["#/payee/phone_number"]),
    "phone too short": (with_payee({**PAYEE, "phone_number": "123"}), ["#/payee/phone_number"]),
    "phone as a number": (with_payee({**PAYEE, "phone_number": 5555550123}), ["#/payee/phone_number"]),
    "phone with a trailing newline": (with_payee({**PAYEE, "phone_number": "5555550123\n"}), ["#/payee/phone_number"]),
    "payee without phone": (with_payee({"country_code": "1"}), ["#/payee/phone_number"]),
    "four-digit country code": (with_payee({**PAYEE, "country_code": "1234"}), ["#/payee/country_code"]),
    "country code with plus": (with_payee({**PAYEE, "country_code": "+1"}), ["#/payee/country_code"]),
    "malformed payee email": (with_payee({**PAYEE, "email": "ada.example.com"}), ["#/payee/email"]),
    "unknown payee field": (with_payee({**PAYEE, "middle_name": "B"}), ["#/payee/middle_name"]),
    "payee not an object": (with_payee("5555550123"), ["#/payee"]),
    "unknown delivery method": (with_user(delivery={"method": "fax"}), ["#/delivery/method"]),
    "delivery without method": (with_user(delivery={"message": "hi"}), ["#/delivery/method"]),
    "delivery message not a string": (with_user(delivery={"method": "link", "message": 42}), ["#/delivery/message"]),
    "sms delivery without payee": (with_user(delivery={"method": "sms"}), ["#/payee"]),
    "email delivery without payee": (with_user(delivery={"method": "email"}), ["#/payee/email"]),
    "email delivery, payee without email": (with_payee(delivery={"method": "email"}), ["#/payee/email"]),
    "all delivery without payee": (with_user(delivery={"method": "all"}), ["#/payee", "#/payee/email"]),
    "all delivery, payee without email": (with_payee(delivery={"method": "all"}), ["#/payee/email"]),
    "compliance flag as a string": (
        with_user(force_collect_compliance_information="yes"),
        ["#/force_collect_compliance_information"],
    ),
    "compliance flag as 1": (
        with_user(force_collect_compliance_information=1),
        ["#/force_collect_compliance_information"],
    ),
    "duplicate step": (with_user(additional_steps=["payout", "payout"]), ["#/additional_steps/1"]),
    "duplicate step later on": (
        with_user(additional_steps=["compliance", "payout", "compliance"]),
        ["#/additional_steps/2"],
    ),
    "unknown step": (with_user(additional_steps=["payout", "skydive"]), ["#/additional_steps/1"]),
    "steps not an array": (with_user(additional_steps="payout"), ["#/additional_steps"]),
    "tax_exempt as a string": (with_user(tax_exempt="true"), ["#/tax_exempt"]),
    "metadata value not a string": (with_user(metadata={"order": 5}), ["#/metadata/order"]),
    "metadata value too long": (with_user(metadata={"note": "v" * 501}), ["#/metadata/note"]),
    "metadata key too long": (with_user(metadata={"k" * 41: "v"}), ["#/metadata/" + "k" * 41]),
    "metadata key with / and ~, too long": (
        with_user(metadata={"a/b~" + "x" * 40: "v"}),
        ["#/metadata/a~1b~0" + "x" * 40],
    ),
    "too many metadata keys": (with_user(metadata={f"k{i}": "v" for i in range(51)}), ["#/metadata"]),
    "metadata as an array": (with_user(metadata=["a"]), ["#/metadata"]),
    "memo too long": (with_user(memo="m" * 501), ["#/memo"]),
    "idempotency key not a uuid": (with_user(idempotency_key="order-1"), ["#/idempotency_key"]),
    "unknown fee party": (with_user(payout_fee_party="both"), ["#/payout_fee_party"]),
    "two mistakes at once": (
        with_payee({**PAYEE, "phone_number": "x"}, amount=0),
        ["#/amount", "#/payee/phone_number"],
    ),
}


@pytest.mark.parametrize(("body", "expected_pointers"), list(INVALID_BODIES.values()), ids=list(INVALID_BODIES))
def test_invalid_bodies_are_refused_with_pointers_to_the_fields(
    body: dict[str, Any], expected_pointers: list[str]
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse(body)

    problem = caught.value
    assert problem.status == 422
    assert sorted(error.pointer for error in problem.errors) == expected_pointers
    assert all(error.detail for error in problem.errors)
    assert [error["pointer"] for error in problem.to_dict()["errors"]] == [error.pointer for error in problem.errors]


def test_the_cap_is_the_one_configured() -> None:
    assert parse_create_request(raw(with_user(amount=500)), max_amount_cents=500).amount == 500
    with pytest.raises(ValidationFailed) as caught:
        parse_create_request(raw(with_user(amount=501)), max_amount_cents=500)
    assert [error.pointer for error in caught.value.errors] == ["#/amount"]
    assert "500" in caught.value.errors[0].detail


CONTROL_DETAIL = "must not contain control characters or line separators"
# C0 controls (tab and line breaks too), DEL, a C1 control, and the Unicode line and paragraph separators.
CONTROL_CHARACTERS = {
    "NUL": "\x00",
    "line feed": "\n",
    "carriage return": "\r",
    "tab": "\t",
    "bell": "\x07",
    "DEL": "\x7f",
    "next line (C1)": "\x85",
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "right-to-left override": "\u202e",
    "first-strong isolate": "\u2068",
}
# Every string of the body that is forwarded upstream: a body with `text` inside an otherwise valid value of the
# field, and where the error must point.
FORWARDED_STRINGS: dict[str, Callable[[str], tuple[dict[str, Any], str]]] = {
    "user_id": lambda text: (with_user(user_id=f"user{text}7"), "#/user_id"),
    "payee.first_name": lambda text: (with_payee({**PAYEE, "first_name": f"Ada{text}Bcc"}), "#/payee/first_name"),
    "payee.last_name": lambda text: (with_payee({**PAYEE, "last_name": f"Love{text}lace"}), "#/payee/last_name"),
    "payee.email": lambda text: (with_payee({**PAYEE, "email": f"ada{text}@example.com"}), "#/payee/email"),
    "payee.country_code": lambda text: (with_payee({**PAYEE, "country_code": f"4{text}4"}), "#/payee/country_code"),
    "payee.phone_number": lambda text: (
        with_payee({**PAYEE, "phone_number": f"55555{text}50123"}),
        "#/payee/phone_number",
    ),
    "delivery.message": lambda text: (
        with_user(delivery={"method": "link", "message": f"Your payout{text}is ready"}),
        "#/delivery/message",
    ),
    "memo": lambda text: (with_user(memo=f"thanks{text}again"), "#/memo"),
    "metadata key": lambda text: (with_user(metadata={f"or{text}der": "A-1001"}), f"#/metadata/or{text}der"),
    "metadata value": lambda text: (with_user(metadata={"order": f"A-{text}1001"}), "#/metadata/order"),
}
DIGIT_STRINGS = ("payee.country_code", "payee.phone_number")


@pytest.mark.parametrize("character", list(CONTROL_CHARACTERS.values()), ids=list(CONTROL_CHARACTERS))
@pytest.mark.parametrize("field", list(FORWARDED_STRINGS))
def test_control_characters_are_refused_in_every_forwarded_string(field: str, character: str) -> None:
    """Forwarded, they would end up in the payee's SMS and email: a NUL in an address, a CR/LF that starts a line
    of the sender's choosing. The error names the character class, not the field's format."""
    body, pointer = FORWARDED_STRINGS[field](character)

    with pytest.raises(ValidationFailed) as caught:
        parse(body)

    assert [(error.pointer, error.detail) for error in caught.value.errors] == [(pointer, CONTROL_DETAIL)]


@pytest.mark.parametrize("field", list(FORWARDED_STRINGS))
def test_control_characters_in_a_partner_event_are_refused_pointing_into_its_data(field: str) -> None:
    data, pointer = FORWARDED_STRINGS[field]("\r\n")
    event = {"type": "payout_link.create", "timestamp": "2026-11-24T23:50:00Z", "data": data}

    with pytest.raises(ValidationFailed) as caught:
        parse_partner_event(raw(event), max_amount_cents=CAP)

    assert [(error.pointer, error.detail) for error in caught.value.errors] == [
        ("#/data" + pointer.removeprefix("#"), CONTROL_DETAIL)
    ]


EVENT = {"type": "payout_link.create", "timestamp": "2026-11-24T23:50:00Z", "data": with_payee()}
INVALID_EVENTS = {
    "wrong type": ({**EVENT, "type": "payout_link.updated"}, ["#/type"]),
    "timestamp not RFC 3339": ({**EVENT, "timestamp": "yesterday"}, ["#/timestamp"]),
    "timestamp in seconds": ({**EVENT, "timestamp": "1795564200"}, ["#/timestamp"]),
    "no data": ({"type": "payout_link.create", "timestamp": "2026-11-24T23:50:00Z"}, ["#/data"]),
    "fractional amount": ({**EVENT, "data": with_payee(amount=10.5)}, ["#/data/amount"]),
    "amount above the cap": ({**EVENT, "data": with_payee(amount=CAP + 1)}, ["#/data/amount"]),
    "phone with punctuation": (
        {**EVENT, "data": with_payee({**PAYEE, "phone_number": "555-0123"})},
        ["#/data/payee/phone_number"],
    ),
    "neither user_id nor payee": ({**EVENT, "data": {"amount": 100}}, ["#/data/user_id"]),
    "unknown data field": ({**EVENT, "data": with_payee(amout=5)}, ["#/data/amout"]),
    "unknown envelope field": ({**EVENT, "extra": "field"}, ["#/extra"]),
    "not an object": ([EVENT], ["#"]),
}


@pytest.mark.parametrize(("event", "expected_pointers"), list(INVALID_EVENTS.values()), ids=list(INVALID_EVENTS))
def test_invalid_partner_events_are_refused_with_pointers_into_the_envelope(
    event: dict[str, Any] | list[Any], expected_pointers: list[str]
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_partner_event(json.dumps(event).encode(), max_amount_cents=CAP)

    assert caught.value.status == 422
    assert sorted(error.pointer for error in caught.value.errors) == expected_pointers


def test_a_partner_event_that_is_not_json_is_malformed_not_invalid() -> None:
    with pytest.raises(MalformedJson) as caught:
        parse_partner_event(b'{"type": "payout_link.create", "data": {', max_amount_cents=CAP)

    assert caught.value.status == 400


def test_a_valid_partner_event_carries_its_data_as_a_create_request() -> None:
    assert parse_partner_event(raw(EVENT), max_amount_cents=CAP).data.upstream_payload() == forwarded(EVENT["data"])


@pytest.mark.parametrize(
    "text", ["Zoë", "José Ñúñez", "日本語", "Łódź", "Ада", "🎉🙂", "O'Brien-Smith", "Ada\u00a0Lovelace"]
)
def test_ordinary_non_ascii_text_is_accepted_and_forwarded_as_sent(text: str) -> None:
    body = with_payee(
        {**PAYEE, "first_name": text, "last_name": text, "email": "zoë@exämple.com"},
        user_id=text,
        delivery={"method": "link", "message": text},
        memo=text,
        metadata={text: text},
    )

    assert parse(body).upstream_payload() == forwarded(body)


# -- one request however its text is written: every free-text string is held in Unicode normalization form C ----

COMPOSED_E, DECOMPOSED_E = "\u00e9", "e\u0301"  # é as one character, and as e with a combining acute accent
# Every free-text string of the body: what `FORWARDED_STRINGS` names, but for the two made of digits only.
FREE_TEXT = {name: build for name, build in FORWARDED_STRINGS.items() if name not in DIGIT_STRINGS}
SPELLED = {
    "amount": 2500,
    "user_id": "Jos\u00e9-7",
    "payee": {
        "country_code": "1",
        "phone_number": "5555550123",
        "first_name": "Jos\u00e9",
        "last_name": "N\u00fa\u00f1ez Zo\u00eb",
        "email": "jos\u00e9@ex\u00e4mple.com",
    },
    "delivery": {"method": "all", "message": "\u00a1Tu pago est\u00e1 listo, Jos\u00e9!"},
    "memo": "Caf\u00e9 cr\u00e8me, \ud55c\uad6d\uc5b4",  # Hangul syllables compose from jamo too
    "metadata": {"caf\u00e9": "cr\u00e8me br\u00fbl\u00e9e", "order": "A-1001"},
}


def spelled(form: str, value: Any) -> Any:
    """`value` with every string in it, keys included, in the Unicode normalization form `form`."""
    if isinstance(value, str):
        return unicodedata.normalize(form, value)
    if isinstance(value, dict):
        return {spelled(form, key): spelled(form, item) for key, item in value.items()}
    return value


def test_the_two_spellings_differ_byte_for_byte() -> None:
    assert raw(spelled("NFC", SPELLED)) != raw(spelled("NFD", SPELLED))
    assert spelled("NFC", SPELLED) == SPELLED


@pytest.mark.parametrize("field", list(FREE_TEXT))
def test_every_free_text_field_is_held_composed_however_it_was_written(field: str) -> None:
    composed, _ = FREE_TEXT[field](COMPOSED_E)
    decomposed, _ = FREE_TEXT[field](DECOMPOSED_E)

    payload = parse(decomposed).upstream_payload()

    assert payload == parse(composed).upstream_payload() == forwarded(composed)
    assert "\u0301" not in json.dumps(payload, ensure_ascii=False)


def test_composed_and_decomposed_bodies_are_one_intent() -> None:
    """One payload forwarded, one fingerprint, one upstream key: the second spelling replays the first."""
    composed, decomposed = parse(SPELLED).upstream_payload(), parse(spelled("NFD", SPELLED)).upstream_payload()

    assert decomposed == composed == forwarded(SPELLED)
    assert intent.fingerprint(decomposed) == intent.fingerprint(composed)
    assert intent.upstream_key("user:user-1", KEY, intent.fingerprint(decomposed)) == (
        intent.upstream_key("user:user-1", KEY, intent.fingerprint(composed))
    )


def test_a_partner_events_data_is_held_composed_too() -> None:
    event = {"type": "payout_link.create", "timestamp": "2026-11-24T23:50:00Z", "data": spelled("NFD", SPELLED)}

    assert parse_partner_event(raw(event), max_amount_cents=CAP).data.upstream_payload() == forwarded(SPELLED)


# Each limited free-text string: a body with `text` as (part of) the field's value, the field's limit in
# characters, and where an error points.
LIMITED: dict[str, tuple[Callable[[str], dict[str, Any]], int, str]] = {
    "user_id": (lambda text: with_user(user_id=text), 100, "#/user_id"),
    "payee.first_name": (lambda text: with_payee({**PAYEE, "first_name": text}), 100, "#/payee/first_name"),
    "payee.last_name": (lambda text: with_payee({**PAYEE, "last_name": text}), 100, "#/payee/last_name"),
    "payee.email local part": (
        lambda text: with_payee({**PAYEE, "email": f"{text}@example.com"}),
        64,
        "#/payee/email",
    ),
    "delivery.message": (
        lambda text: with_user(delivery={"method": "link", "message": text}),
        500,
        "#/delivery/message",
    ),
    "memo": (lambda text: with_user(memo=text), 500, "#/memo"),
    "metadata key": (lambda text: with_user(metadata={text: "v"}), 40, "#/metadata/{text}"),
    "metadata value": (lambda text: with_user(metadata={"order": text}), 500, "#/metadata/order"),
}


@pytest.mark.parametrize("field", list(LIMITED))
def test_length_limits_count_the_composed_text(field: str) -> None:
    """`é` written decomposed is two code points, and one character once composed: it counts as one."""
    body, limit, pointer = LIMITED[field]

    at_the_limit = parse(body(DECOMPOSED_E * limit))  # twice the limit in code points, as sent
    with pytest.raises(ValidationFailed) as caught:
        parse(body(DECOMPOSED_E * (limit + 1)))

    assert at_the_limit.upstream_payload() == forwarded(body(COMPOSED_E * limit))
    assert [error.pointer for error in caught.value.errors] == [pointer.format(text=DECOMPOSED_E * (limit + 1))]


def test_length_limits_count_the_composed_text_even_where_it_is_longer() -> None:
    """A few characters have no composed form of their own (U+0958, Devanagari qa, is क and a nukta in NFC):
    what is counted is what is forwarded."""
    assert unicodedata.normalize("NFC", "\u0958") == "\u0915\u093c"
    assert parse(with_payee({**PAYEE, "first_name": "\u0958" * 50})).payee is not None

    with pytest.raises(ValidationFailed) as caught:
        parse(with_payee({**PAYEE, "first_name": "\u0958" * 51}))

    assert [error.pointer for error in caught.value.errors] == ["#/payee/first_name"]


def test_metadata_keys_that_are_one_text_in_two_spellings_are_refused() -> None:
    """Composed, they would be one key, and one of the two values would be dropped without a word."""
    body = with_user(metadata={"caf" + COMPOSED_E: "A-1", "caf" + DECOMPOSED_E: "A-2"})

    with pytest.raises(ValidationFailed) as caught:
        parse(body)

    assert [error.pointer for error in caught.value.errors] == ["#/metadata"]
    assert "caf" + COMPOSED_E in caught.value.errors[0].detail


def free_text_schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every string schema under `node` that is neither a closed set (enum, const) nor a format (uuid)."""
    if isinstance(node, dict):
        if node.get("type") == "string" and not {"enum", "const", "format"} & node.keys():
            yield node
        for value in node.values():
            yield from free_text_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from free_text_schemas(value)


def test_the_json_schema_says_that_control_characters_are_refused() -> None:
    """What the OpenAPI document is generated from: every free-text string and every metadata key has a pattern
    that refuses them inside an otherwise matching value."""
    schema = CreatePayoutLinkRequest.model_json_schema()
    metadata = next(option for option in schema["properties"]["metadata"]["anyOf"] if option["type"] == "object")
    patterns = [node.get("pattern") for node in free_text_schemas(schema)] + list(metadata["patternProperties"])
    assert metadata["additionalProperties"] is False  # a key that does not match is refused, not merely unchecked

    for pattern in patterns:
        assert pattern is not None
        sample = next(
            text for text in ("Ada Lovelace", "44", "5555550123", "ada@example.com") if re.search(pattern, text)
        )
        for character in CONTROL_CHARACTERS.values():
            for at in (1, len(sample) - 1):
                assert not re.search(pattern, sample[:at] + character + sample[at:]), (pattern, character)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"\xff\xfe\x00{",
        b'{"amount": 2500, "user_id": "\xff\xfe"}',
        b'{"amount": 2500, "user_id": "user-7"',
        b'{"amount": 2500, "user_id": "user-7",}',
        b"{'amount': 2500}",
    ],
    ids=["text", "empty", "invalid UTF-8", "invalid UTF-8 inside a string", "truncated", "trailing comma", "quotes"],
)
def test_bodies_that_are_not_json_are_malformed_not_invalid(body: bytes) -> None:
    with pytest.raises(MalformedJson) as caught:
        parse(body)

    assert caught.value.status == 400
    assert "errors" not in caught.value.to_dict()


@pytest.mark.parametrize("body", [b"[]", b'[{"amount": 2500, "user_id": "user-7"}]', b'"amount"', b"2500", b"null"])
def test_json_that_is_not_an_object_is_invalid(body: bytes) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse(body)

    assert caught.value.status == 422
    assert [error.pointer for error in caught.value.errors] == ["#"]


OPTIONAL_NULLS = {
    "user_id (payee given)": (with_payee(), "user_id"),
    "payee (user_id given)": (with_user(), "payee"),
    "delivery": (with_user(), "delivery"),
    "force_collect_compliance_information": (with_user(), "force_collect_compliance_information"),
    "additional_steps": (with_user(), "additional_steps"),
    "tax_exempt": (with_user(), "tax_exempt"),
    "metadata": (with_user(), "metadata"),
    "memo": (with_user(), "memo"),
    "idempotency_key": (with_user(), "idempotency_key"),
    "payout_fee_party": (with_user(), "payout_fee_party"),
}


@pytest.mark.parametrize(("body", "field"), list(OPTIONAL_NULLS.values()), ids=list(OPTIONAL_NULLS))
def test_null_on_an_optional_field_means_absent(body: dict[str, Any], field: str) -> None:
    assert parse({**body, field: None}).upstream_payload() == parse(body).upstream_payload()


@pytest.mark.parametrize(
    ("absent", "with_null"),
    [
        (with_payee(PAYEE), with_payee({**PAYEE, "first_name": None, "last_name": None, "email": None})),
        (with_user(delivery={"method": "link"}), with_user(delivery={"method": "link", "message": None})),
    ],
    ids=["payee names and email", "delivery message"],
)
def test_null_on_an_optional_nested_field_means_absent(absent: dict[str, Any], with_null: dict[str, Any]) -> None:
    assert parse(with_null).upstream_payload() == parse(absent).upstream_payload() == forwarded(absent)


BASE_INTENT: dict[str, Any] = {
    "amount": 2500,
    "payee": {"country_code": "1", "phone_number": "5555550123", "first_name": "Ada", "email": "ada@example.com"},
    "delivery": {"method": "sms", "message": "Your payout is ready"},
    "metadata": {"order": "A-1001", "batch": "7"},
    "additional_steps": ["compliance", "payout"],
}


def reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    return value


SAME_INTENT = {
    "keys in another order": raw(reordered(BASE_INTENT)),
    "other whitespace": json.dumps(BASE_INTENT, indent=4).replace(":", " :\t").encode(),
    "explicit nulls": raw(
        {
            **BASE_INTENT,
            "user_id": None,
            "memo": None,
            "tax_exempt": None,
            "payout_fee_party": None,
            "idempotency_key": None,
            "payee": {**BASE_INTENT["payee"], "last_name": None},
        }
    ),
    "compliance flag false": raw({**BASE_INTENT, "force_collect_compliance_information": False}),
    "a body idempotency key": raw({**BASE_INTENT, "idempotency_key": KEY}),
    "another body idempotency key": raw({**BASE_INTENT, "idempotency_key": OTHER_KEY}),
}


@pytest.mark.parametrize("variant", list(SAME_INTENT.values()), ids=list(SAME_INTENT))
def test_bodies_asking_for_the_same_thing_have_one_fingerprint_and_payload(variant: bytes) -> None:
    assert parse(variant).upstream_payload() == parse(BASE_INTENT).upstream_payload()
    assert fingerprint(variant) == fingerprint(BASE_INTENT)


DIFFERENT_INTENT = {
    "amount": {**BASE_INTENT, "amount": 2501},
    "payee phone": {**BASE_INTENT, "payee": {**BASE_INTENT["payee"], "phone_number": "5555550124"}},
    "payee email": {**BASE_INTENT, "payee": {**BASE_INTENT["payee"], "email": "grace@example.com"}},
    "payee added name": {**BASE_INTENT, "payee": {**BASE_INTENT["payee"], "last_name": "Lovelace"}},
    "metadata value": {**BASE_INTENT, "metadata": {"order": "A-1002", "batch": "7"}},
    "metadata key added": {**BASE_INTENT, "metadata": {**BASE_INTENT["metadata"], "extra": "x"}},
    "delivery method": {**BASE_INTENT, "delivery": {"method": "link", "message": "Your payout is ready"}},
    "compliance forced": {**BASE_INTENT, "force_collect_compliance_information": True},
    "user_id added": {**BASE_INTENT, "user_id": "user-7"},
    "memo added": {**BASE_INTENT, "memo": "thanks"},
}


@pytest.mark.parametrize("variant", list(DIFFERENT_INTENT.values()), ids=list(DIFFERENT_INTENT))
def test_bodies_asking_for_something_else_have_another_fingerprint(variant: dict[str, Any]) -> None:
    assert parse(variant).upstream_payload() != parse(BASE_INTENT).upstream_payload()
    assert fingerprint(variant) != fingerprint(BASE_INTENT)


def test_upstream_payload_never_carries_nulls_nor_the_callers_key() -> None:
    body = {
        **BASE_INTENT,
        "idempotency_key": KEY,
        "memo": None,
        "payout_fee_party": None,
        "payee": {**BASE_INTENT["payee"], "last_name": None},
    }

    payload = parse(body).upstream_payload()

    assert "idempotency_key" not in payload
    assert payload == forwarded(body)
    assert "null" not in json.dumps(payload)


def test_payout_link_json_has_exactly_the_contract_keys() -> None:
    minimal = PayoutLink(
        id="pl_1",
        created=None,
        link=None,
        amount=None,
        status=None,
        payee=None,
        delivery=None,
        tax_exempt=None,
        claimed_user_id=None,
        flow_id=None,
        metadata={},
    )
    full = PayoutLink(
        id="pl_2",
        created="2024-05-01T12:00:00.000Z",
        link="https://pay.test/pl_2",
        amount=2500,
        status="sent",
        payee={"first_name": "Ada", "last_name": None, "email": None, "country_code": "1", "phone_number": "5555"},
        delivery={"method": "sms", "email": None, "country_code": "1", "phone_number": "5555"},
        tax_exempt=False,
        claimed_user_id=None,
        flow_id="flow_1",
        metadata={"order": "A-1"},
    )

    for link in (minimal, full):
        assert set(json.loads(link.model_dump_json())) == LINK_KEYS
        assert set(link.model_dump(mode="json")) == LINK_KEYS
    assert json.loads(minimal.model_dump_json())["metadata"] == {}
    assert set(full.model_dump()["payee"]) == {"first_name", "last_name", "email", "country_code", "phone_number"}
    assert set(full.model_dump()["delivery"]) == {"method", "email", "country_code", "phone_number"}


# -- GET /payout-links: the query -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "query"),
    [
        ({}, ListQuery(limit=20, cursor=None)),
        ({"limit": "1"}, ListQuery(limit=1, cursor=None)),
        ({"limit": "100"}, ListQuery(limit=100, cursor=None)),
        ({"limit": "007"}, ListQuery(limit=7, cursor=None)),
        ({"cursor": "abc", "limit": "5"}, ListQuery(limit=5, cursor="abc")),
        ({"cursor": ""}, ListQuery(limit=20, cursor="")),  # the owners refuse it: only they can read a cursor
    ],
)
def test_a_list_query_within_bounds_is_accepted(parameters: dict[str, str], query: ListQuery) -> None:
    assert parse_list_query(parameters) == query


@pytest.mark.parametrize(
    "limit", ["0", "101", "1000", "-1", "+5", " 5", "5 ", "5.0", "1e1", "ten", "", "0x10", "2,3", "\u0665", "1_0"]
)
def test_a_limit_that_is_not_an_integer_from_1_to_100_is_refused_pointing_at_it(limit: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_list_query({"limit": limit})

    assert refused.value.status == 422
    assert [(error.pointer, error.detail) for error in refused.value.errors] == [
        ("#/limit", "must be an integer from 1 to 100")
    ]


def test_an_unknown_query_parameter_is_refused_so_that_a_typo_surfaces() -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_list_query({"limt": "5", "a/b": "", "limit": "0"})

    assert [error.pointer for error in refused.value.errors] == ["#/a~1b", "#/limt", "#/limit"]
