"""The secrets the function reads from Secrets Manager, each fetched lazily and cached per container:
the Dots Basic-auth credentials, and the partners' Standard Webhooks signing secrets."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import BotoCoreError, ClientError

from payout_links.aws import error_code
from payout_links.observability import logger
from payout_links.problems import Dependency, DependencyUnavailable

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
# A partner's name is a path segment and a log field: kept short and plain.
_HMAC_BLOCK_BYTES = 64  # SHA-256's block size
PARTNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The partners refused because their secret is another partner's too, counted once per read of the secret.
SHARED_SECRET_METRIC = "PartnerSecretShared"  # noqa: S105 - a metric name, not a secret
# The partners left out because their entry cannot be used (a name or a secret the function cannot read), counted
# once per read of the secret: each of them is refused as an unknown name until the entry is fixed.
UNUSABLE_SECRET_METRIC = "PartnerSecretUnusable"  # noqa: S105 - a metric name, not a secret


class MalformedSecret(ValueError):
    """The secret's value is not what the function expects; its content never goes into the message."""


class CachedJsonSecret[T]:
    """A JSON secret, fetched on first use, kept for `max_age_seconds`, re-read on demand (rotation).

    `parse` turns the decoded JSON into the value callers get; it raises `MalformedSecret` (or `KeyError`,
    `TypeError`, `ValueError`) for a value it cannot use. `label` names the secret in logs and in the 503.
    """

    def __init__(
        self,
        secrets_client: Any,
        secret_id: str,
        *,
        max_age_seconds: float,
        parse: Callable[[object], T],
        label: str,
        aws_call_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = secrets_client
        # The longest one read can take (budget.py): a read given a deadline starts only if it fits before it.
        self._aws_call_seconds = aws_call_seconds
        self._secret_id = secret_id
        self._max_age = max_age_seconds
        self._parse = parse
        self._label = label
        self._clock = clock
        self._cached: T | None = None
        self._fetched_at = 0.0
        self.last_attempt = -math.inf  # clock time of the last fetch, successful or not

    def get(self, *, deadline: float | None = None) -> T:
        """The cached value, fetched first when missing or too old. A fetch must fit before `deadline` (a clock
        time), so that reading a secret never eats the time the request keeps back to answer."""
        if self._cached is None or self._clock() - self._fetched_at >= self._max_age:
            return self.refresh(deadline=deadline)
        return self._cached

    def forget(self) -> None:
        """Drop the cached value: the next `get` reads the secret again."""
        self._cached = None
        self.last_attempt = -math.inf

    def refresh(self, *, deadline: float | None = None) -> T:
        if deadline is not None and deadline - self._clock() < self._aws_call_seconds:
            # The request's own time ran out (a slow lock write, or a timeout below the budget's minimum): the
            # secret was not even asked for.
            logger.error(f"no time left in this request to read the {self._label}")
            raise DependencyUnavailable(
                f"The request ran out of time before the {self._label} were read; retry later.",
                dependency=Dependency.SECRETS_MANAGER,
            )
        self.last_attempt = self._clock()
        self._cached = self._fetch()
        self._fetched_at = self._clock()
        return self._cached

    def _fetch(self) -> T:
        unavailable = DependencyUnavailable(
            f"The {self._label} are unavailable; retry later.", dependency=Dependency.SECRETS_MANAGER
        )
        try:
            secret = self._client.get_secret_value(SecretId=self._secret_id)
        except (ClientError, BotoCoreError) as exc:
            logger.error(f"{self._label} could not be read", extra={"secrets_error": error_code(exc)})
            raise unavailable from None
        try:
            return self._parse(json.loads(secret["SecretString"]))
        except (KeyError, TypeError, ValueError) as exc:
            # The value itself is never logged: it may hold a half-pasted key.
            reason = str(exc) if isinstance(exc, MalformedSecret) else "not the expected JSON"
            logger.error(f"{self._label} secret is malformed", extra={"secret_problem": reason})
            raise unavailable from None


@dataclass(frozen=True)
class PayoutApiCredentials:
    client_id: str = field(repr=False)
    api_key: str = field(repr=False)

    @property
    def authorization(self) -> str:
        token = base64.b64encode(f"{self.client_id}:{self.api_key}".encode()).decode("ascii")
        return f"Basic {token}"


def _payout_api_credentials(value: object) -> PayoutApiCredentials:
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")  # logged as any other shape that is not the expected JSON
    return PayoutApiCredentials(client_id=value["client_id"], api_key=value["api_key"])


class CredentialsStore(CachedJsonSecret[PayoutApiCredentials]):
    """The Dots credentials: a secret `{"client_id": ..., "api_key": ...}`."""

    def __init__(
        self,
        secrets_client: Any,
        secret_id: str,
        *,
        max_age_seconds: float,
        aws_call_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            secrets_client,
            secret_id,
            max_age_seconds=max_age_seconds,
            parse=_payout_api_credentials,
            label="payout credentials",
            aws_call_seconds=aws_call_seconds,
            clock=clock,
        )


def decode_webhook_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after `whsec_` (padding optional)."""
    if not isinstance(secret, str) or not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise MalformedSecret("a webhook secret must start with whsec_")
    encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSecret("a webhook secret is not base64 after whsec_") from None
    if not key:
        raise MalformedSecret("a webhook secret is empty")
    return key


def _partner_keys(value: object) -> dict[str, tuple[bytes, ...]]:
    """`{"partner": "whsec_..."}` or `{"partner": ["whsec_new", "whsec_old"]}` → each partner's HMAC keys.

    A partner whose entry is unusable is left out rather than failing every partner: logged by name at ERROR, and
    counted in `PartnerSecretUnusable` (the entries left out, once per read of the secret), which an alarm watches.
    So is each partner whose key another partner also has (`_without_shared_keys`)."""
    if not isinstance(value, dict):
        raise MalformedSecret("the partner secrets must be a JSON object of partner name to secrets")
    partners: dict[str, tuple[bytes, ...]] = {}
    unusable = 0
    for partner, secrets in value.items():
        listed = [secrets] if isinstance(secrets, str) else secrets
        try:
            if not PARTNER_NAME.fullmatch(partner):
                raise MalformedSecret("the partner name must be 1-64 letters, digits, '.', '_' or '-'")
            if not isinstance(listed, list) or not listed:
                raise MalformedSecret("a partner needs a whsec_ secret or a list of them")
            partners[partner] = tuple(decode_webhook_secret(secret) for secret in listed)
        except MalformedSecret as exc:
            logger.error("partner entry ignored", extra={"partner": partner[:64], "secret_problem": str(exc)})
            unusable += 1
    if unusable:
        # Printed now, in a document of its own, whichever invocation (if any) this read belongs to.
        with single_metric(name=UNUSABLE_SECRET_METRIC, unit=MetricUnit.Count, value=unusable):
            pass  # printed as the block closes
    return _without_shared_keys(partners)


def _without_shared_keys(partners: dict[str, tuple[bytes, ...]]) -> dict[str, tuple[bytes, ...]]:
    """`partners` without those that share a key with another: the same key as HMAC uses it (`_as_hmac_uses_it`),
    however the secrets are spelled.

    A signature covers the body and the webhook-id, not the partner name in the URL: with one secret configured for
    two partners, one signed delivery could be sent under each name, and each name is a caller of its own, with a
    link of its own. That is a configuration error, and no delivery can tell which of the partners signed: each of
    them is refused (answered as a name that does not exist), every other partner keeps working. Reported once per
    read of the secret: one ERROR line naming the partners (never a secret) and `PartnerSecretShared`, the count
    of partners refused, which an alarm watches."""
    holders: dict[bytes, set[str]] = {}
    for partner, keys in partners.items():
        for key in keys:
            holders.setdefault(_as_hmac_uses_it(key), set()).add(partner)
    shared = sorted({partner for names in holders.values() if len(names) > 1 for partner in names})
    if not shared:
        return partners
    logger.error(
        "partner secret shared by several partners",
        extra={"partners": [partner[:64] for partner in shared], "partners_refused": len(shared)},
    )
    # Printed now, in a document of its own, whichever invocation (if any) this read belongs to.
    with single_metric(name=SHARED_SECRET_METRIC, unit=MetricUnit.Count, value=len(shared)):
        pass  # printed as the block closes
    return {partner: keys for partner, keys in partners.items() if partner not in shared}


def _as_hmac_uses_it(key: bytes) -> bytes:
    """The key HMAC-SHA256 signs with: one longer than the hash's 64-byte block is hashed first, and a shorter one is
    padded with zero bytes; so a key and its digest, or a key and the same key with zero bytes after it, sign alike
    and are one key."""
    if len(key) > _HMAC_BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    return key.ljust(_HMAC_BLOCK_BYTES, b"\0")


class PartnerSecrets:
    """Each partner's webhook signing keys (several during a rotation), from one secret.

    A signature that does not verify re-reads the secret (`keys_for(..., refresh=True)`), so that a partner added
    by an operator, or a rotated secret, works without a cold start; at most once per
    `unknown_partner_refresh_seconds`, so that requests naming made-up partners cannot turn into one Secrets Manager
    call each, and whatever the name, so that the time a refusal takes tells no one which names are real."""

    def __init__(
        self,
        secrets_client: Any,
        secret_id: str,
        *,
        max_age_seconds: float,
        unknown_partner_refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret = CachedJsonSecret(
            secrets_client,
            secret_id,
            max_age_seconds=max_age_seconds,
            parse=_partner_keys,
            label="partner webhook secrets",
            clock=clock,
        )
        self._refresh_interval = unknown_partner_refresh_seconds
        self._clock = clock

    def forget(self) -> None:
        self._secret.forget()

    def keys_for(self, partner: str, *, refresh: bool = False) -> tuple[bytes, ...]:
        """The partner's keys in the stored order; empty for a partner that does not exist, and for one whose secret
        another partner has too (refused, and so answered exactly as a name that does not exist).

        With `refresh` (after a signature did not verify), the secret is read again first, at most once per
        `unknown_partner_refresh_seconds` whatever the name: a partner an operator just added, or a rotated
        secret, then works without a cold start, and a made-up name costs what a real one does."""
        if not PARTNER_NAME.fullmatch(partner):
            return ()
        partners = self._secret.get()
        if refresh and self._clock() - self._secret.last_attempt >= self._refresh_interval:
            # A failed re-read must not answer differently from a name that does not exist: a 503 here, where a
            # real partner with a bad signature gets 401, would tell a stranger which names are real.
            with contextlib.suppress(DependencyUnavailable):
                partners = self._secret.refresh()
        return partners.get(partner, ())
