"""What a route needs from the HTTP API event before any work: who calls, and a JSON body within bounds."""

from __future__ import annotations

import base64
import binascii

from payout_links.http import Request
from payout_links.problems import MalformedJson, PayloadTooLarge, Unauthenticated, UnsupportedMediaType


def frontend_caller(event: Request) -> str:
    """The caller scope from the JWT the authorizer verified: `user:<sub>`, or `client:<client_id>` for a
    machine token without a subject. Never taken from the body. A token that carries a `sub` is always a user's:
    an empty one is refused, never taken for the `client_id` beside it (the caller owns links it can read and
    cancel, so no token may pass for a machine client by leaving its subject blank)."""
    claims = event.claims or {}
    if "sub" in claims:
        if subject := claims["sub"]:
            return f"user:{subject}"
    elif client_id := claims.get("client_id"):
        return f"client:{client_id}"
    raise Unauthenticated("A valid bearer token is required.")


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
