"""Verifies partner webhooks, signed per the Standard Webhooks spec (https://www.standardwebhooks.com).

The signature is checked on the raw body before anything in it is parsed: an HMAC-SHA256, keyed with the
partner's secret, of `"{webhook-id}.{webhook-timestamp}." + body`, sent base64 as `v1,<signature>` in the
space-separated `webhook-signature` header. Any listed signature made with any of the partner's secrets passes
(that is how rotation works); the timestamp must be within five minutes of now, either way, so that a captured
request cannot be replayed later. The `svix-*` header names are accepted when the `webhook-*` ones are absent.

Signatures and secrets are never logged; a refusal logs only which check failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from payout_links import inbound
from payout_links.credentials import PartnerSecrets
from payout_links.observability import logger
from payout_links.problems import MalformedJson, SignatureRejected
from payout_links.router import Request

TOLERANCE_SECONDS = 300
SIGNATURE_VERSION = "v1"
_HEADER_PREFIXES = ("webhook-", "svix-")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DIGEST_SIZE = hashlib.sha256().digest_size
# What a request naming an unknown partner is verified against: a key no one holds, made once per process, so that
# such a request costs the work of a real partner's with one secret and fails the same way.
_NOBODYS_KEYS = (secrets.token_bytes(_DIGEST_SIZE),)


@dataclass(frozen=True)
class Delivery:
    """A partner's request whose signature checked out."""

    webhook_id: str
    body: bytes


def verified_delivery(
    event: Request,
    partner: str,
    partners: PartnerSecrets,
    *,
    max_bytes: int,
    now: Callable[[], float] = time.time,
) -> Delivery:
    """The partner's request, checked in this order: the signature over the body as sent, whatever its size
    (401); the body is within `max_bytes` (413); its media type is JSON (415). Whether the body parses as JSON
    is the caller's next step (400).

    A stranger must not learn which partner names exist. So the signature comes first, and a request naming an
    unknown partner is decoded and verified all the same, against a throwaway key, then refused with the one 401
    every failed check gets: neither the answer nor the time taken sets real names apart, and only a request
    signed by a real partner can learn the size limit or the media type. Hashing an oversized body costs little:
    API Gateway and Lambda bound it. A base64 body that does not decode cannot be verified: a 401 too."""
    keys = partners.keys_for(partner)
    try:
        body = _decoded_body(event)
        try:
            webhook_id = verify(body, event.headers, keys or _NOBODYS_KEYS, now=now())
        except SignatureRejected:
            # Any name, real or not, whose signature did not verify: the secret may have changed since it was read
            # (a partner added, a secret rotated); it is read again, at most once per interval, and checked again.
            keys = partners.keys_for(partner, refresh=True)
            webhook_id = verify(body, event.headers, keys or _NOBODYS_KEYS, now=now())
    except SignatureRejected as refusal:
        raise _rejected(refusal.reason if keys else "unknown-partner") from None
    if not keys:
        raise _rejected("unknown-partner")  # signed with the throwaway key: never a way in
    body = inbound.within_limit(body, max_bytes=max_bytes)
    inbound.require_json_media_type(event)
    return Delivery(webhook_id=webhook_id, body=body)


def verify(body: bytes, headers: Mapping[str, str], keys: Sequence[bytes], *, now: float) -> str:
    """The `webhook-id` of a request signed with one of `keys` at a time within the tolerance of `now`;
    `SignatureRejected` otherwise. `headers` must look names up case-insensitively."""
    webhook_id, timestamp, signatures = _signature_headers(headers)
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureRejected("malformed-timestamp")
    age = now - int(timestamp)
    if age > TOLERANCE_SECONDS:
        raise SignatureRejected("stale-timestamp")
    if age < -TOLERANCE_SECONDS:
        raise SignatureRejected("future-timestamp")
    candidates = _signatures(signatures)
    if not candidates:
        raise SignatureRejected("malformed-signature")
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        # Every candidate is compared, each in constant time: which one matched reveals nothing.
        if any([hmac.compare_digest(expected, candidate) for candidate in candidates]):
            return webhook_id
    raise SignatureRejected("bad-signature")


def _signature_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    for prefix in _HEADER_PREFIXES:
        webhook_id, timestamp, signature = (headers.get(prefix + name) for name in ("id", "timestamp", "signature"))
        if webhook_id or timestamp or signature:
            if not (webhook_id and timestamp and signature):
                raise SignatureRejected("missing-header")
            return webhook_id, timestamp, signature
    raise SignatureRejected("missing-header")


def _signatures(header: str) -> list[bytes]:
    """The decoded `v1` signatures of the header; other versions and malformed entries are skipped."""
    decoded = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(signature) == _DIGEST_SIZE:
            decoded.append(signature)
    return decoded


def _decoded_body(event: Request) -> bytes:
    try:
        return inbound.decoded_body(event)
    except MalformedJson:
        raise SignatureRejected("undecodable-body") from None


def _rejected(reason: str) -> SignatureRejected:
    logger.info("webhook signature rejected", extra={"auth_failure": reason})
    return SignatureRejected(reason)
