"""What is created at most once: one caller's request under one idempotency key, and the names it goes by.

An intent is identified three ways, each fixed forever because records written by one deploy must be found by the
next (tests/integration/test_stored_records.py holds golden values):

- its record id, `payout-link#` and the sha256 of `[caller, key]` as sorted JSON: where the intent's record lives;
- its fingerprint, the sha256 of the canonical request (sorted JSON): the same key with another request is refused;
- its upstream key, a UUIDv5 of (caller, key, fingerprint): what the upstream deduplicates by. Every attempt of an
  intent, the settler's included, sends it, so a retry gets the link the upstream already made instead of a second
  one, and a link made for one body is never handed back for another, even after the record is gone.

These are the digests Powertools idempotency computed for the same record when it kept these records (with
`event_key_jmespath="[caller, key]"`, `payload_validation_jmespath="request"` and sha256), so records from before
the store was the proxy's own are still found and still refuse another body.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

# Fixed forever: changing it changes every derived upstream key, and with it the upstream's deduplication.
UPSTREAM_KEY_NAMESPACE = uuid.UUID("5d0f7a52-1b8e-4c53-9a3e-2f6c1d9b7e40")
RECORD_KEY_PREFIX = "payout-link"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def fingerprint(request: dict[str, Any]) -> str:
    """The request's fingerprint: sha256 of its canonical JSON."""
    return _digest(request)


def record_id(caller: str, key: str) -> str:
    """Where the intent of `caller` under `key` is recorded."""
    return f"{RECORD_KEY_PREFIX}#{_digest([caller, key])}"


def upstream_key(caller: str, key: str, request_fingerprint: str) -> str:
    """The idempotency key the upstream gets for an intent: the same for every attempt, distinct per caller, and
    distinct per request (the upstream returns the first link for a known key whatever the new body says)."""
    return str(uuid.uuid5(UPSTREAM_KEY_NAMESPACE, json.dumps([caller, key, request_fingerprint])))


@dataclass(frozen=True)
class Intent:
    """One caller's request under one idempotency key. Build it with `Intent.of`."""

    caller: str
    key: str
    # The canonical request: what is forwarded upstream, and what the fingerprint is taken of.
    request: dict[str, Any]
    fingerprint: str

    @classmethod
    def of(cls, caller: str, key: str, request: dict[str, Any]) -> Intent:
        return cls(caller=caller, key=key, request=request, fingerprint=fingerprint(request))

    # Each digest taken once per intent, however often the store and the client ask for it.
    @cached_property
    def record_id(self) -> str:
        return record_id(self.caller, self.key)

    @cached_property
    def upstream_key(self) -> str:
        return upstream_key(self.caller, self.key, self.fingerprint)

    @property
    def upstream_payload(self) -> dict[str, Any]:
        """What the upstream gets: the request and the derived key."""
        return {**self.request, "idempotency_key": self.upstream_key}

    @property
    def amount(self) -> int:
        return int(self.request["amount"])
