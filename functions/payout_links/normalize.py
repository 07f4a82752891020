"""Turn whatever shape the upstream answered with into the one `PayoutLink` shape callers rely on.

The upstream's answers drift between versions and doc pages: floats for cents, timestamps without a zone or
with microseconds, metadata as a JSON string, extra fields, and the legacy v1 `{"success": ..., "payout_link":
{...}}` wrapper. Anything we cannot read with confidence becomes null; only a missing id makes the answer
unreadable, because without it the link cannot be named.
"""

from __future__ import annotations

import json
import math
import unicodedata
from datetime import UTC, datetime
from typing import Any, TypeIs

from payout_links.models import PAYOUT_LINK_STATUSES, LinkDelivery, LinkPayee, PayoutLink, PayoutLinkStatus


class UnreadableAnswer(ValueError):
    """The upstream said 2xx but its body does not describe a payout link."""


def normalize_payout_link(answer: object) -> dict[str, Any]:
    link = _unwrap(answer)
    link_id = link.get("id")
    if not isinstance(link_id, str | int) or isinstance(link_id, bool) or str(link_id) == "":
        raise UnreadableAnswer("the answer carries no payout link id")
    return PayoutLink(
        id=str(link_id),
        created=_timestamp(link.get("created")),
        link=_text(link.get("link")),
        amount=_cents(link.get("amount")),
        status=_status(link.get("status")),
        payee=_sub_object(LinkPayee, link.get("payee")),
        delivery=_sub_object(LinkDelivery, link.get("delivery")),
        tax_exempt=link.get("tax_exempt") if isinstance(link.get("tax_exempt"), bool) else None,
        claimed_user_id=_text(link.get("claimed_user_id")),
        flow_id=_text(link.get("flow_id")),
        metadata=_metadata(link.get("metadata")),
    ).model_dump(mode="json")


def _unwrap(answer: object) -> dict[str, Any]:
    if isinstance(answer, dict):
        wrapped = answer.get("payout_link")
        return wrapped if isinstance(wrapped, dict) else answer  # a dict there: the legacy v1 envelope
    raise UnreadableAnswer("the answer is not a JSON object")


def _text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    return None


def _cents(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return _cents(json.loads(value))
        except ValueError:
            return None
    return None  # a fractional cent is not an amount we can vouch for


def _timestamp(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, int | float):
            seconds = value / 1000 if value > 10**11 else value  # epoch milliseconds or seconds
            moment = datetime.fromtimestamp(seconds, tz=UTC)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value.strip())
        else:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # the upstream's zoneless timestamps are UTC
        # Moving to UTC can leave the calendar (0001-01-01T00:00:00+01:00): such a time is unreadable, not an error.
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return None


def _status(value: object) -> PayoutLinkStatus | None:
    if not isinstance(value, str):
        return None
    status = value.strip().lower()
    return status if _is_status(status) else None


def _is_status(value: str) -> TypeIs[PayoutLinkStatus]:
    return value in PAYOUT_LINK_STATUSES


def _sub_object[M: (LinkPayee, LinkDelivery)](model: type[M], value: object) -> M | None:
    """The payee or delivery object: each of its keys as text, null when the upstream did not say."""
    if not isinstance(value, dict):
        return None
    return model(**{key: _text(value.get(key)) for key in model.model_fields})


def _metadata(value: object) -> dict[str, str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {
        str(key): item if isinstance(item, str) else json.dumps(item) for key, item in value.items() if item is not None
    }


def mismatches(request: dict[str, Any], link: dict[str, Any], *, echoed_user_id: str | None) -> list[str]:
    """The fields where a normalized link contradicts the request it answers: the amount, which must be there, and
    whatever else the upstream echoes of the request (payee, delivery, user, tax exemption, metadata), wherever
    both sides state it. A link the upstream handed back for another request (or altered) must never reach the
    caller as theirs. Text is compared as a person reads it (case, spacing and Unicode form aside; phone numbers
    by their digits, country codes as numbers), so that an upstream that tidies what it echoes does not strand a
    legitimate link. Metadata keys are matched in either Unicode form, so that an echoed value is always checked."""
    asked_payee = request.get("payee") or {}
    asked = {
        "amount": request["amount"],
        "user_id": request.get("user_id"),
        "tax_exempt": request.get("tax_exempt"),
        **{f"payee.{key}": value for key, value in asked_payee.items()},
        "delivery.method": (request.get("delivery") or {}).get("method"),
        **{f"delivery.{key}": asked_payee.get(key) for key in ("email", "country_code", "phone_number")},
        **{f"metadata.{_nfc(key)}": value for key, value in (request.get("metadata") or {}).items()},
    }
    echoed = {
        "amount": link["amount"],
        "user_id": echoed_user_id,
        "tax_exempt": link["tax_exempt"],
        **{f"payee.{key}": value for key, value in (link["payee"] or {}).items()},
        **{f"delivery.{key}": value for key, value in (link["delivery"] or {}).items()},
        **{f"metadata.{_nfc(key)}": value for key, value in link["metadata"].items()},
    }
    wrong = [] if link["amount"] == request["amount"] else ["amount"]
    for field, value in asked.items():
        answer = echoed.get(field)
        if (
            field != "amount"
            and value is not None
            and answer is not None
            and _comparable(field, value) != _comparable(field, answer)
        ):
            wrong.append(field)
    return wrong


def echoed_user_id(answer: object) -> str | None:
    """The `user_id` the upstream says the link is for (not part of the normalized link); None if it says none."""
    return _text(_unwrap(answer).get("user_id"))


def _comparable(field: str, value: object) -> object:
    if not isinstance(value, str):
        return value
    if field.endswith(("phone_number", "country_code")):
        digits = "".join(character for character in value if character.isdigit())
        if field.endswith("country_code") and digits:
            # A number: "01", "1" and "001" are one country. Leading zeros go, rather than calling int(), which
            # refuses a string of more than 4,300 digits (and the upstream's echo may be anything).
            return digits.lstrip("0") or "0"
        return digits  # a phone number's leading zero is one of its digits
    return " ".join(_nfc(value).split()).casefold()


def _nfc(text: str) -> str:
    """The text in Unicode normalization form C: one spelling of what may be written composed (U+00E9) or
    decomposed (e, U+0301), as the request models hold it."""
    return unicodedata.normalize("NFC", text)
