"""The payout-link API as the emulator answers it: its routes, its checks, the links it builds, its answers' shapes.

Functions and values only, no state: `emulator.py` keeps the links, `server.py` speaks HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

PAYOUT_LINKS_PATH = "/api/v2/payout-links"
SHAPES = ("v2", "v2-200", "v1")
DELIVERY_METHODS = ("sms", "link", "email", "all")
LINK_STATUSES = (
    "created",
    "delivery_pending",
    "delivery_failed",
    "sent",
    "delivered",
    "claimed",
    "reversed",
    "canceled",
    "expired",
)
CANCELABLE_STATUSES = frozenset({"created", "delivery_pending", "delivery_failed", "sent", "delivered"})

type Json = dict[str, Any]

# Marks a request body that is not valid JSON (None is a valid JSON value).
UNREADABLE: Any = object()


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, built before anything is written to the socket."""

    status: int
    payload: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(body).encode(), headers=headers)


def error_reply(status: int, message: str) -> Reply:
    return json_reply(status, {"message": message})


class ApiError(Exception):
    """A client error the emulator answers with `{"message": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def reply(self) -> Reply:
        return error_reply(self.status, str(self))


def link_not_found() -> ApiError:
    return ApiError(404, "Payout link not found")


@dataclass(frozen=True)
class Route:
    """A payout-link API request: `kind` is "create", "read" or "cancel"; reads and cancels name a link."""

    kind: str
    link_id: str | None = None


def payout_route(method: str, path: str) -> Route | None:
    """The payout-link API request that `method path` is, or None (then it is answered 404 and not counted)."""
    if path == PAYOUT_LINKS_PATH:
        return Route("create") if method == "POST" else None
    prefix = PAYOUT_LINKS_PATH + "/"
    segment = path.removeprefix(prefix)
    if not path.startswith(prefix) or not segment or "/" in segment:
        return None  # exactly one segment after /payout-links/
    kind = {"GET": "read", "DELETE": "cancel"}.get(method)
    return Route(kind, unquote(segment)) if kind is not None else None


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body, or `UNREADABLE`."""
    try:
        return json.loads(raw)
    except ValueError:  # covers both bad JSON and bad UTF-8
        return UNREADABLE


def basic_credentials(header: str | None) -> bytes | None:
    """The decoded `client_id:api_key` of a Basic Authorization header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def validate_payout(body: Any) -> Json:
    """Reject what the real API would reject; just enough for the link to be built safely."""
    if body is UNREADABLE or not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON body")
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ApiError(400, "amount must be a positive integer number of cents")
    if body.get("user_id") is None and body.get("payee") is None:
        raise ApiError(400, "user_id or payee is required")
    for key in ("payee", "delivery", "metadata"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise ApiError(400, f"{key} must be an object")
    delivery = body.get("delivery") or {}
    if "method" in delivery and delivery["method"] not in DELIVERY_METHODS:
        raise ApiError(400, f"delivery.method must be one of {', '.join(DELIVERY_METHODS)}")
    idempotency_key = body.get("idempotency_key")
    if idempotency_key is not None and not isinstance(idempotency_key, str):
        raise ApiError(400, "idempotency_key must be a string or null")
    return body


def _delivery_view(delivery: Json | None, payee: Json | None) -> Json | None:
    """Dots echoes delivery merged with the payee's contact details."""
    if delivery is None:
        return None
    payee = payee or {}
    return {
        "method": delivery.get("method"),
        "email": payee.get("email"),
        "country_code": payee.get("country_code"),
        "phone_number": payee.get("phone_number"),
    }


def build_link(payout: Json) -> Json:
    """A link object with the same drift as the real API (float amount, naive time, string metadata)."""
    link_id = str(uuid.uuid4())
    metadata = payout.get("metadata")
    return {
        "id": link_id,
        "created": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds"),
        "link": f"https://sandbox.dots.example/payout/{link_id}",
        "amount": float(payout["amount"]),
        "status": "created",
        "payee": payout.get("payee"),
        "delivery": _delivery_view(payout.get("delivery"), payout.get("payee")),
        "tax_exempt": payout.get("tax_exempt") is True,
        "claimed_user_id": None,
        "flow_id": str(uuid.uuid4()),
        "metadata": json.dumps(metadata) if metadata is not None else None,
        "user_id": payout.get("user_id"),
        "memo": payout.get("memo"),
        "livemode": False,
    }


def wrap(link: Json, shape: str, created: bool = False) -> Reply:
    """`link` as the current shape answers it; only a create answers 201, and only in shape v2."""
    if shape == "v1":
        return json_reply(200, {"success": True, "payout_link": link})
    return json_reply(201 if created and shape == "v2" else 200, link)
