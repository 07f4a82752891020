"""A link the upstream answers with is the caller's only when it matches what was asked, field by field
(normalize.py, `mismatches`): each field that decides where the money goes, or how much, is checked on its own, and
an amount the upstream does not echo is no match."""

from __future__ import annotations

from typing import Any

import pytest

from payout_links.normalize import mismatches, normalize_payout_link

pytestmark = pytest.mark.unit

ASKED: dict[str, Any] = {
    "amount": 2500,
    "user_id": "user-7",
    "tax_exempt": False,
    "payee": {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "country_code": "1",
        "phone_number": "5555550123",
    },
    "delivery": {"method": "sms"},
    "metadata": {"order": "A-1001"},
}


def echoed(**changed: Any) -> dict[str, Any]:
    """The upstream's answer echoing ASKED exactly, but for `changed` (top-level fields)."""
    payee = ASKED["payee"]
    return {
        "id": "pl_1",
        "amount": ASKED["amount"],
        "user_id": ASKED["user_id"],
        "tax_exempt": ASKED["tax_exempt"],
        "payee": dict(payee),
        "delivery": {"method": "sms", **{key: payee[key] for key in ("email", "country_code", "phone_number")}},
        "metadata": dict(ASKED["metadata"]),
        **changed,
    }


def wrong(answer: dict[str, Any]) -> list[str]:
    return mismatches(ASKED, normalize_payout_link(answer), echoed_user_id=answer.get("user_id"))


def test_the_exact_echo_matches() -> None:
    assert wrong(echoed()) == []


@pytest.mark.parametrize("amount", [None, 2499, 25, 250_000], ids=["not echoed", "a cent less", "dollars", "x100"])
def test_an_amount_other_than_the_one_asked_is_a_mismatch(amount: int | None) -> None:
    answer = echoed(amount=amount)
    if amount is None:
        del answer["amount"]
    assert wrong(answer) == ["amount"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("phone_number", "5555550999"),
        ("email", "mallory@example.com"),
        ("country_code", "44"),
        ("first_name", "Mallory"),
        ("last_name", "Byron"),
    ],
)
def test_another_payee_is_a_mismatch(key: str, value: str) -> None:
    """The payee the link pays out to, as the upstream echoes it, is the one asked for: any field of it that differs
    names it (the delivery's own copy of the contact details is left as asked, so the payee alone is checked)."""
    payee = {**ASKED["payee"], key: value}
    assert f"payee.{key}" in wrong(echoed(payee=payee))


@pytest.mark.parametrize("method", ["email", "link", "all"])
def test_another_delivery_method_is_a_mismatch(method: str) -> None:
    """A link sent by email (or handed out as a bare link) when an SMS to the payee's phone was asked for."""
    delivery = {**echoed()["delivery"], "method": method}
    assert wrong(echoed(delivery=delivery)) == ["delivery.method"]


@pytest.mark.parametrize(
    ("key", "value"), [("phone_number", "5555550999"), ("email", "mallory@example.com"), ("country_code", "44")]
)
def test_another_delivery_contact_is_a_mismatch(key: str, value: str) -> None:
    delivery = {**echoed()["delivery"], key: value}
    assert wrong(echoed(delivery=delivery)) == [f"delivery.{key}"]


def test_another_user_tax_exemption_or_metadata_is_a_mismatch() -> None:
    assert wrong(echoed(user_id="user-8")) == ["user_id"]
    assert wrong(echoed(tax_exempt=True)) == ["tax_exempt"]
    assert wrong(echoed(metadata={"order": "A-1002"})) == ["metadata.order"]
