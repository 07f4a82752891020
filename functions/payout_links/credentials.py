"""The Dots Basic-auth credentials, read from one Secrets Manager secret and cached per container."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payout_links.observability import logger
from payout_links.problems import DependencyUnavailable


@dataclass(frozen=True)
class PayoutApiCredentials:
    client_id: str = field(repr=False)
    api_key: str = field(repr=False)

    @property
    def authorization(self) -> str:
        token = base64.b64encode(f"{self.client_id}:{self.api_key}".encode()).decode("ascii")
        return f"Basic {token}"


class CredentialsStore:
    """Fetches the secret on first use, keeps it for `max_age_seconds`, and re-reads it on demand (rotation)."""

    def __init__(
        self,
        secrets_client: Any,
        secret_id: str,
        *,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = secrets_client
        self._secret_id = secret_id
        self._max_age = max_age_seconds
        self._clock = clock
        self._cached: PayoutApiCredentials | None = None
        self._fetched_at = 0.0

    def get(self) -> PayoutApiCredentials:
        if self._cached is None or self._clock() - self._fetched_at >= self._max_age:
            return self.refresh()
        return self._cached

    def refresh(self) -> PayoutApiCredentials:
        self._cached = self._fetch()
        self._fetched_at = self._clock()
        return self._cached

    def _fetch(self) -> PayoutApiCredentials:
        try:
            secret = self._client.get_secret_value(SecretId=self._secret_id)
        except (ClientError, BotoCoreError) as exc:
            code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
            logger.error("payout credentials could not be read", extra={"secrets_error": code})
            raise DependencyUnavailable("The payout credentials are unavailable; retry later.") from None
        try:
            values = json.loads(secret["SecretString"])
            return PayoutApiCredentials(client_id=values["client_id"], api_key=values["api_key"])
        except (KeyError, TypeError, ValueError):
            # The value itself is never logged: it may hold a half-pasted key.
            logger.error("payout credentials secret is not JSON with client_id and api_key")
            raise DependencyUnavailable("The payout credentials are unavailable; retry later.") from None
