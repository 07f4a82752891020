"""Whatever shape the upstream answers with, callers get the one normalized payout link (docs/api.md)."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack.dots_emulator import LINK_STATUSES
from payout_links.normalize import UnreadableAnswer, mismatches, normalize_payout_link
from tests.support import LINK_KEYS

pytestmark = pytest.mark.unit

PAYEE_KEYS = {"first_name", "last_name", "email", "country_code", "phone_number"}
DELIVERY_KEYS = {"method", "email", "country_code", "phone_number"}

DOCUMENTED_ANSWER: dict[str, Any] = {
    "id": "7e3c1c0e-6a35-4bd6-a6d5-1f3b1e1f8b2a",
    "created": "2024-05-01T12:34:56.789Z",
    "link": "https://pay.example/l/7e3c1c0e",
    "amount": 2500,
    "status": "created",
    "payee": {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "country_code": "1",
        "phone_number": "5555550123",
    },
    "delivery": {"method": "sms", "email": None, "country_code": "1", "phone_number": "5555550123"},
    "tax_exempt": False,
    "claimed_user_id": None,
    "flow_id": "flow_1",
    "metadata": {"order": "A-1001"},
}


def field(name: str, value: Any) -> Any:
    return normalize_payout_link({"id": "pl_1", name: value})[name]


def test_a_documented_answer_comes_through_unchanged() -> None:
    assert normalize_payout_link(DOCUMENTED_ANSWER) == DOCUMENTED_ANSWER


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (2500, 2500),
        (1000.0, 1000),
        (1000.5, None),
        (0.1, None),
        ("1000", 1000),
        ("1000.0", 1000),
        ("ten", None),
        (True, None),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
    ],
    ids=[
        "int",
        "whole float",
        "fractional float",
        "sub-cent",
        "string",
        "whole float string",
        "word",
        "boolean",
        "null",
        "nan",
        "inf",
    ],
)
def test_amount_becomes_integer_cents_or_null(amount: Any, expected: int | None) -> None:
    result = field("amount", amount)

    assert result == expected
    assert result is None or type(result) is int


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("2024-05-01T12:34:56.123456", "2024-05-01T12:34:56.123Z"),
        ("2024-05-01T12:34:56", "2024-05-01T12:34:56.000Z"),
        ("2024-05-01 12:34:56.5", "2024-05-01T12:34:56.500Z"),
        ("2024-05-01T12:34:56Z", "2024-05-01T12:34:56.000Z"),
        ("2024-05-01T14:34:56.250+02:00", "2024-05-01T12:34:56.250Z"),
        ("2024-05-01T07:04:56-05:30", "2024-05-01T12:34:56.000Z"),
        ("2024-04-30T23:30:00-01:00", "2024-05-01T00:30:00.000Z"),
        (1714566896, "2024-05-01T12:34:56.000Z"),
        (1714566896.25, "2024-05-01T12:34:56.250Z"),
        (1714566896123, "2024-05-01T12:34:56.123Z"),
        ("yesterday", None),
        ("", None),
        ("2024-13-45T99:00:00", None),
        (None, None),
        (True, None),
        ({"seconds": 1714566896}, None),
        (10**20, None),
    ],
    ids=[
        "zoneless with microseconds",
        "zoneless",
        "space separator",
        "Z",
        "positive offset",
        "negative offset",
        "offset crossing midnight",
        "epoch seconds",
        "fractional epoch seconds",
        "epoch milliseconds",
        "word",
        "empty",
        "impossible date",
        "null",
        "boolean",
        "object",
        "absurd epoch",
    ],
)
def test_created_becomes_rfc3339_utc_with_z_or_null(created: Any, expected: str | None) -> None:
    assert field("created", created) == expected


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A machine whose local time is not UTC."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_zoneless_timestamps_are_utc_whatever_the_machines_zone() -> None:
    assert field("created", "2024-05-01T12:34:56.5") == "2024-05-01T12:34:56.500Z"
    assert field("created", 1714566896) == "2024-05-01T12:34:56.000Z"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"order": "A-1"}, {"order": "A-1"}),
        ('{"order": "A-1", "batch": "7"}', {"order": "A-1", "batch": "7"}),
        ("{not json", {}),
        ('["a"]', {}),
        (None, {}),
        ([], {}),
        ({"count": 5, "paid": True, "ratio": 0.5}, {"count": "5", "paid": "true", "ratio": "0.5"}),
        ('{"count": 5}', {"count": "5"}),
    ],
    ids=[
        "object",
        "JSON string",
        "invalid JSON string",
        "JSON string of an array",
        "null",
        "array",
        "non-string values",
        "JSON string with a non-string value",
    ],
)
def test_metadata_becomes_an_object_of_strings(metadata: Any, expected: dict[str, str]) -> None:
    result = field("metadata", metadata)

    assert result == expected
    assert all(isinstance(value, str) for value in result.values())


def test_missing_metadata_is_an_empty_object() -> None:
    assert normalize_payout_link({"id": "pl_1"})["metadata"] == {}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("claimed", "claimed"),
        ("DELIVERY_FAILED", "delivery_failed"),
        (" Sent ", "sent"),
        ("unknown_status", None),
        ("paid", None),
        (3, None),
        (None, None),
    ],
)
def test_status_is_a_known_lower_case_status_or_null(status: Any, expected: str | None) -> None:
    assert field("status", status) == expected


@pytest.mark.parametrize("status", LINK_STATUSES)  # the documented statuses, as the Dots emulator reports them
def test_every_documented_status_is_kept(status: str) -> None:
    assert field("status", status) == status


def test_the_legacy_v1_envelope_is_unwrapped() -> None:
    answer = {"success": True, "payout_link": {**DOCUMENTED_ANSWER, "amount": 2500.0}}

    assert normalize_payout_link(answer) == DOCUMENTED_ANSWER


def test_fields_outside_the_contract_are_dropped() -> None:
    answer = {**DOCUMENTED_ANSWER, "internal_ref": "x", "api_key": "should-never-leak", "payee_id": "u_1"}

    link = normalize_payout_link(answer)

    assert set(link) == LINK_KEYS
    assert "should-never-leak" not in str(link)


def test_payee_and_delivery_always_carry_all_their_sub_keys() -> None:
    link = normalize_payout_link(
        {
            "id": "pl_1",
            "payee": {"phone_number": 5555550123, "country_code": 1, "first_name": "", "nickname": "Ada"},
            "delivery": {"method": "link", "message": "hello"},
        }
    )

    assert link["payee"] == {
        "first_name": None,
        "last_name": None,
        "email": None,
        "country_code": "1",
        "phone_number": "5555550123",
    }
    assert link["delivery"] == {"method": "link", "email": None, "country_code": None, "phone_number": None}


@pytest.mark.parametrize("value", [None, "ada", ["x"], 5])
def test_payee_and_delivery_that_are_not_objects_become_null(value: Any) -> None:
    link = normalize_payout_link({"id": "pl_1", "payee": value, "delivery": value})

    assert link["payee"] is None
    assert link["delivery"] is None


def test_empty_payee_and_delivery_objects_carry_all_sub_keys_as_null() -> None:
    link = normalize_payout_link({"id": "pl_1", "payee": {}, "delivery": {}})

    assert link["payee"] == dict.fromkeys(PAYEE_KEYS)
    assert link["delivery"] == dict.fromkeys(DELIVERY_KEYS)


def test_scalar_fields_of_the_wrong_type_become_null() -> None:
    link = normalize_payout_link(
        {"id": 42, "link": 7.5, "tax_exempt": "yes", "claimed_user_id": 17, "flow_id": "", "created": []}
    )

    assert link["id"] == "42"
    assert link["link"] is None
    assert link["tax_exempt"] is None
    assert link["claimed_user_id"] == "17"
    assert link["flow_id"] is None
    assert link["created"] is None


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"id": None},
        {"id": ""},
        {"id": True},
        {"id": 1.5},
        {"id": {"value": "pl_1"}},
        {"success": True, "payout_link": {"amount": 5}},
        {"success": False, "error": "bad request"},
    ],
    ids=["empty", "null id", "empty id", "boolean id", "float id", "object id", "v1 without id", "v1 error"],
)
def test_an_answer_without_an_id_is_unreadable(answer: dict[str, Any]) -> None:
    with pytest.raises(UnreadableAnswer):
        normalize_payout_link(answer)


@pytest.mark.parametrize("answer", [[], [DOCUMENTED_ANSWER], "pl_1", 42, None, True])
def test_an_answer_that_is_not_an_object_is_unreadable(answer: Any) -> None:
    with pytest.raises(UnreadableAnswer):
        normalize_payout_link(answer)


@pytest.mark.parametrize(
    "answer",
    [
        {"id": "pl_1"},
        DOCUMENTED_ANSWER,
        {**DOCUMENTED_ANSWER, "extra": {"nested": True}, "amount": "12.5", "created": "nope", "status": "LOST"},
        {"success": True, "payout_link": {"id": 9, "metadata": "{}", "payee": None}},
    ],
    ids=["id only", "documented", "drifted", "v1"],
)
def test_the_result_always_has_exactly_the_contract_keys(answer: dict[str, Any]) -> None:
    link = normalize_payout_link(answer)

    assert set(link) == LINK_KEYS
    assert isinstance(link["id"], str)
    assert isinstance(link["metadata"], dict)


# -- what the upstream echoes, checked against the request it answers (`mismatches`) --------------------------------

ASKED: dict[str, Any] = {
    "amount": 2500,
    "user_id": "user-7",
    "payee": {"country_code": "1", "phone_number": "5555550123", "first_name": "Ada", "email": "ada@example.com"},
    "delivery": {"method": "sms"},
    "metadata": {"order": "A-1001"},
}


def echo_of(request: dict[str, Any], **answered: Any) -> dict[str, Any]:
    """The upstream's answer to `request` when it echoes every field as sent, but for `answered`."""
    payee = request.get("payee")
    contact = {key: (payee or {}).get(key) for key in ("email", "country_code", "phone_number")}
    return {
        "id": "pl_1",
        "amount": request["amount"],
        "user_id": request.get("user_id"),
        "payee": payee,
        "delivery": {**request["delivery"], **contact} if "delivery" in request else None,
        "metadata": request.get("metadata"),
        **answered,
    }


def wrong_fields(request: dict[str, Any], answer: dict[str, Any]) -> list[str]:
    return mismatches(request, normalize_payout_link(answer), echoed_user_id=answer.get("user_id"))


def with_country_codes(asked: str, echoed: str | int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request for a payee of country code `asked`, and an answer that echoes `echoed` for it."""
    request = {**ASKED, "payee": {**ASKED["payee"], "country_code": asked}}
    echoed_payee = {**ASKED["payee"], "country_code": echoed}
    answer = echo_of(request, payee=echoed_payee, delivery={"method": "sms", "country_code": echoed})
    return request, answer


def test_an_answer_that_echoes_the_request_matches_it() -> None:
    assert wrong_fields(ASKED, echo_of(ASKED)) == []


@pytest.mark.parametrize(
    ("asked", "echoed"),
    [("01", "1"), ("1", "01"), ("001", "1"), ("044", "44"), ("44", "0044"), ("1", 1), ("01", 1), ("0", "00")],
    ids=[
        "01 and 1",
        "1 and 01",
        "001 and 1",
        "044 and 44",
        "44 and 0044",
        "1 and the number 1",
        "01 and 1 (a number)",
        "0 and 00",
    ],
)
def test_country_codes_are_compared_as_numbers(asked: str, echoed: str | int) -> None:
    """Dots may echo "1" for a request that sent "01": the same country, not another link."""
    assert wrong_fields(*with_country_codes(asked, echoed)) == []


@pytest.mark.parametrize(
    ("asked", "echoed"),
    [("1", "44"), ("01", "44"), ("1", "10"), ("10", "1"), ("1", "100"), ("0", "1"), ("1", "US")],
    ids=["1 and 44", "01 and 44", "1 and 10", "10 and 1", "1 and 100", "0 and 1", "1 and no digits"],
)
def test_another_country_code_is_a_mismatch(asked: str, echoed: str) -> None:
    assert wrong_fields(*with_country_codes(asked, echoed)) == ["payee.country_code", "delivery.country_code"]


@pytest.mark.parametrize(
    ("asked", "echoed", "wrong"),
    [
        ("5555550123", "555-555-0123", []),
        ("05555550123", "5555550123", ["payee.phone_number", "delivery.phone_number"]),
        ("5555550123", "05555550123", ["payee.phone_number", "delivery.phone_number"]),
    ],
    ids=["punctuation aside", "a leading zero dropped", "a leading zero added"],
)
def test_phone_numbers_are_compared_as_digit_strings_not_numbers(asked: str, echoed: str, wrong: list[str]) -> None:
    request = {**ASKED, "payee": {**ASKED["payee"], "phone_number": asked}}
    echoed_payee = {**ASKED["payee"], "phone_number": echoed}

    answer = echo_of(request, payee=echoed_payee, delivery={"method": "sms", "phone_number": echoed})

    assert wrong_fields(request, answer) == wrong


COMPOSED = "Jos\u00e9 Zo\u00eb"  # é and ë as one character each (NFC)
DECOMPOSED = "Jose\u0301 Zoe\u0308"  # e and o followed by combining accents (NFD)
# The request with the same text in every echoed field that is text: what Dots may echo in either form.
TEXT_REQUEST: dict[str, Any] = {
    "amount": 2500,
    "user_id": "user " + COMPOSED,
    "payee": {
        "country_code": "1",
        "phone_number": "5555550123",
        "first_name": COMPOSED,
        "last_name": COMPOSED,
        "email": "zo\u00eb@ex\u00e4mple.com",
    },
    "delivery": {"method": "sms"},
    "metadata": {"caf\u00e9": COMPOSED, "order": "A-1001"},
}


def in_form(form: str, value: Any) -> Any:
    """`value` with every string in it, keys included, in the Unicode normalization form `form`."""
    if isinstance(value, str):
        return unicodedata.normalize(form, value)
    if isinstance(value, dict):
        return {in_form(form, key): in_form(form, item) for key, item in value.items()}
    return value


def test_the_forms_differ_as_strings() -> None:
    assert COMPOSED != DECOMPOSED
    assert in_form("NFC", DECOMPOSED) == COMPOSED and in_form("NFD", COMPOSED) == DECOMPOSED


@pytest.mark.parametrize(("asked", "echoed"), [("NFC", "NFD"), ("NFD", "NFC")], ids=["echoed NFD", "echoed NFC"])
def test_text_echoed_in_the_other_normalization_form_is_no_mismatch(asked: str, echoed: str) -> None:
    """Names, email, user and metadata (keys and values): Dots may echo either spelling of the same text."""
    request = in_form(asked, TEXT_REQUEST)

    assert wrong_fields(request, in_form(echoed, echo_of(request))) == []


@pytest.mark.parametrize(("asked", "echoed"), [("NFC", "NFD"), ("NFD", "NFC")], ids=["echoed NFD", "echoed NFC"])
def test_a_metadata_key_echoed_in_the_other_form_still_has_its_value_checked(asked: str, echoed: str) -> None:
    """The key is the same text: its value must match, not go unchecked as if the upstream had left it out."""
    request = in_form(asked, TEXT_REQUEST)
    answer = echo_of(request, metadata=in_form(echoed, {**TEXT_REQUEST["metadata"], "caf\u00e9": "another"}))

    assert wrong_fields(request, answer) == ["metadata.caf\u00e9"]


def test_other_text_in_either_form_is_a_mismatch() -> None:
    request = in_form("NFD", TEXT_REQUEST)
    answer = echo_of(request, payee={**request["payee"], "first_name": "Jos\u00e8 Zo\u00eb"})  # è, not é

    assert wrong_fields(request, answer) == ["payee.first_name"]
