"""What a route needs from the HTTP API event before any work: who calls, a body, and the idempotency key.

The body is JSON within bounds; the key has one spelling, however the request wrote it."""

from __future__ import annotations

import base64
import binascii
import re
import uuid

from payout_links.problems import (
    InvalidIdempotencyKey,
    MalformedJson,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)
from payout_links.router import Request

_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]{1,255}")
# A UUID as people write it: hyphenated or as 32 hex digits, braced or not, as a `urn:uuid:` or not, in any case.
# This covers every spelling the body's `idempotency_key` accepts (and a few more that a header may carry).
_UUID_SPELLINGS = re.compile(
    r"(?:urn:uuid:)?(?:\{(?P<braced>[0-9a-f-]{32,36})\}|(?P<bare>[0-9a-f-]{32,36}))", re.IGNORECASE
)
_UUID_DIGITS = re.compile(r"[0-9a-f]{8}(-?)[0-9a-f]{4}\1[0-9a-f]{4}\1[0-9a-f]{4}\1[0-9a-f]{12}", re.IGNORECASE)


def frontend_caller(event: Request) -> str:
    """The caller scope from the JWT the authorizer verified: `user:<sub>`, or `client:<client_id>` for a
    machine token without a subject. Never taken from the body. A token that carries a `sub` is always a user's:
    a `sub` that names no one (`_names_someone`) is refused, never taken for the `client_id` beside it (the caller
    owns links it can read and cancel, so no token may pass for a machine client by leaving its subject blank)."""
    claims = event.claims or {}
    if "sub" in claims:
        if _names_someone(subject := claims["sub"]):
            return f"user:{subject}"
    elif _names_someone(client_id := claims.get("client_id")):
        return f"client:{client_id}"
    raise Unauthenticated("A valid bearer token is required.")


# What API Gateway hands over for a claim whose JSON value is not a string: every claim reaches the function as a
# string, `null`, `true`, `false` and numbers as their JSON spelling, arrays as `[a b]` (objects as JSON, or so we
# assume). Two tokens with `"sub": null` would be one caller `user:null`; so is every such spelling.
_JSON_LITERAL = re.compile(r"null|true|false|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|\[.*\]|\{.*\}", re.S)


def _names_someone(value: object) -> bool:
    """Whether a `sub` or `client_id`, as the authorizer passed it, names a caller: a non-empty string that is
    not what a JSON null, boolean, number, array or object becomes on its way to the function. A subject that is
    all digits is refused with them: it cannot be told from a number."""
    return isinstance(value, str) and value.strip() != "" and _JSON_LITERAL.fullmatch(value) is None


def json_body(event: Request, *, max_bytes: int) -> bytes:
    """The raw body, once its media type and size are acceptable (415 and 413 come before any parsing)."""
    require_json_media_type(event)
    body = event.body or ""
    # Cheap bound before decoding: UTF-8 needs at least a byte a character, base64 has 4 characters per 3 bytes.
    if len(body) > (-(-max_bytes // 3) * 4 if event.is_base64_encoded else max_bytes):
        raise _too_large(max_bytes)
    return within_limit(decoded_body(event), max_bytes=max_bytes)


def require_json_media_type(event: Request) -> None:
    media_type = (event.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType("Send the body as application/json.")


def decoded_body(event: Request) -> bytes:
    """The body's bytes exactly as sent (what a signature covers), whatever their number; `MalformedJson` (400)
    when API Gateway's base64 does not decode."""
    body = event.body or ""
    if not event.is_base64_encoded:
        return body.encode("utf-8", errors="surrogatepass")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise MalformedJson("The body could not be decoded.") from None


def within_limit(body: bytes, *, max_bytes: int) -> bytes:
    """`body`, refused with 413 over `max_bytes`."""
    if len(body) > max_bytes:
        raise _too_large(max_bytes)
    return body


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The body must be at most {max_bytes} bytes.")


# --- the idempotency key ----------------------------------------------------------------------------------


def parse_key_header(header: str | None) -> str | None:
    """The `Idempotency-Key` header, bare or as a quoted string; None when absent."""
    if header is None:
        return None
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return _checked(value, "The Idempotency-Key header")


def resolve_key(
    header_key: str | None,
    body_key: uuid.UUID | None,
    *,
    header: str = "Idempotency-Key header",
    body: str = "body's idempotency_key",
) -> str:
    """The one key of the request: from the header, from the body, or from both when they agree."""
    if body_key is not None:
        if header_key is not None and header_key != str(body_key):
            raise InvalidIdempotencyKey(f"The {header} and the {body} differ.")
        return str(body_key)
    if header_key is None:
        raise InvalidIdempotencyKey(
            "An idempotency key is required: send an Idempotency-Key header or a body idempotency_key."
        )
    return header_key


def frontend_key(header: str | None, body_key: uuid.UUID | None) -> str:
    """A frontend's key: the `Idempotency-Key` header or the body's `idempotency_key` (equal when both)."""
    return resolve_key(parse_key_header(header), body_key)


def webhook_key(webhook_id: str, body_key: uuid.UUID | None) -> str:
    """A partner event's key: its `webhook-id`, which partners keep when they re-deliver. A `data.idempotency_key`
    is optional and, when sent, must name the same key."""
    key = _checked(webhook_id, "The webhook-id header")
    return resolve_key(key, body_key, header="webhook-id header", body="event's data.idempotency_key")


def _checked(key: str, source: str) -> str:
    if not _VISIBLE_ASCII.fullmatch(key):
        raise InvalidIdempotencyKey(f"{source} must be 1 to 255 visible ASCII characters.")
    return _canonical(key)


def _canonical(key: str) -> str:
    """A UUID, in any spelling the body accepts, becomes its one standard spelling (hyphenated, lower case), so
    that the header and the body name the same intent however it was written. Other keys stay as they are."""
    spelled = _UUID_SPELLINGS.fullmatch(key)
    digits = spelled and (spelled["braced"] or spelled["bare"])
    return str(uuid.UUID(digits)) if digits and _UUID_DIGITS.fullmatch(digits) else key
