"""Exactly one payout link per intent.

An intent is (caller, idempotency key). Powertools idempotency keeps one DynamoDB record per intent: an
INPROGRESS lock that expires with the function's remaining time, then the COMPLETED response for the TTL.
The record's validation hash is the fingerprint of the request, so reusing a key for a different request
is refused. Because a lock can expire while the upstream already created the link (a crash or timeout
between the upstream's answer and our COMPLETED write), every attempt also sends the upstream a key derived
from the intent: the upstream then answers a retry with the link it already made instead of a second one.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.idempotency.serialization.base import BaseIdempotencySerializer

from payout_links.problems import InvalidIdempotencyKey

# Fixed forever: changing it changes every derived upstream key, and with it the upstream's deduplication.
UPSTREAM_KEY_NAMESPACE = uuid.UUID("5d0f7a52-1b8e-4c53-9a3e-2f6c1d9b7e40")
RECORD_KEY_PREFIX = "payout-link"
LOCAL_CACHE_ITEMS = 512  # a few hundred small JSON bodies: well under a megabyte
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]{1,255}")
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


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
    """A UUID written the standard way, in lower case, so that the header and the body name the same intent
    however cased. Other spellings stay as they are: they are distinct keys, not UUIDs."""
    return key.lower() if _UUID_TEXT.fullmatch(key) else key


def upstream_key(caller: str, key: str) -> str:
    """The idempotency key the upstream gets for an intent: the same for every attempt, distinct per caller."""
    return str(uuid.uuid5(UPSTREAM_KEY_NAMESPACE, json.dumps([caller, key])))


@dataclass(frozen=True)
class Created:
    link: dict[str, Any]
    replayed: bool = False


class _CreatedSerializer(BaseIdempotencySerializer):
    """Stores only the link; what comes back from the store is, by definition, a replay."""

    def to_dict(self, data: Created) -> dict:
        return data.link

    def from_dict(self, data: dict) -> Created:
        return Created(link=data)


def _mark_replayed(response: Created, record: DataRecord) -> Created:
    return replace(response, replayed=True)


def exactly_once(
    create: Callable[..., Created],
    *,
    dynamodb_client: Any,
    table_name: str,
    ttl_seconds: int,
) -> tuple[IdempotencyConfig, Callable[..., Created]]:
    """Wrap `create(*, intent, **kwargs)` so that it runs at most once per intent.

    `intent` is `{"caller": ..., "key": ..., "request": <canonical request>}`: the record key is the hash of
    caller and key, the fingerprint the hash of the request. Returns the config, on which the handler
    registers each invocation's Lambda context so that the lock expires with the function.
    """
    config = IdempotencyConfig(
        event_key_jmespath="[caller, key]",
        payload_validation_jmespath="request",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=ttl_seconds,
        hash_function="sha256",
        response_hook=_mark_replayed,
        # A replay in the same container is then served from memory, with no DynamoDB call. Only COMPLETED
        # records are cached, with their expiry, and a cached hit still has its fingerprint checked.
        use_local_cache=True,
        local_cache_max_items=LOCAL_CACHE_ITEMS,
    )
    persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client)
    wrapped = idempotent_function(
        create,
        data_keyword_argument="intent",
        persistence_store=persistence,
        config=config,
        output_serializer=_CreatedSerializer(),
        key_prefix=RECORD_KEY_PREFIX,
    )
    return config, wrapped
