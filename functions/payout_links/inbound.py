"""What a route needs from the HTTP API event before any work: who calls, and a JSON body within bounds."""

from __future__ import annotations

import base64
import binascii

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from payout_links.problems import MalformedJson, PayloadTooLarge, Unauthenticated, UnsupportedMediaType


def frontend_caller(event: APIGatewayProxyEventV2) -> str:
    """The caller scope from the JWT the authorizer verified: `user:<sub>`, or `client:<client_id>` for a
    machine token without a subject. Never taken from the body."""
    authorizer = event.request_context.authorizer
    claims = (authorizer.jwt_claim if authorizer else None) or {}
    if subject := claims.get("sub"):
        return f"user:{subject}"
    if client_id := claims.get("client_id"):
        return f"client:{client_id}"
    raise Unauthenticated("A valid bearer token is required.")


def json_body(event: APIGatewayProxyEventV2, *, max_bytes: int) -> bytes:
    """The raw body, once its media type and size are acceptable (415 and 413 come before any parsing)."""
    require_json_media_type(event)
    return raw_body(event, max_bytes=max_bytes)


def require_json_media_type(event: APIGatewayProxyEventV2) -> None:
    media_type = (event.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType("Send the body as application/json.")


def raw_body(event: APIGatewayProxyEventV2, *, max_bytes: int) -> bytes:
    """The body's bytes exactly as sent (what a signature covers), refused with 413 over `max_bytes`."""
    body = event.body or ""
    # Cheap bound before decoding: UTF-8 needs at least a byte a character, base64 has 4 characters per 3 bytes.
    if len(body) > (-(-max_bytes // 3) * 4 if event.is_base64_encoded else max_bytes):
        raise PayloadTooLarge(f"The body must be at most {max_bytes} bytes.")
    if event.is_base64_encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise MalformedJson("The body could not be decoded.") from None
    else:
        raw = body.encode("utf-8", errors="surrogatepass")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The body must be at most {max_bytes} bytes.")
    return raw
