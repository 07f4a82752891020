"""What the routes do once the caller is known: create a payout link for an intent, exactly once; read or
cancel a link, for its owner only.

`get_service()` and `get_partner_secrets()` are the composition root: they build the clients once per
container, on first use, so that importing the handler does no I/O and a warm request reuses every connection.
`reset()` forgets everything a container keeps between invocations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

from payout_links import api_docs, aws
from payout_links.credentials import CredentialsStore, PartnerSecrets
from payout_links.deadlines import deadline_client
from payout_links.idempotency import Created, exactly_once, fingerprint, upstream_key
from payout_links.models import CreatePayoutLinkRequest
from payout_links.owners import LinkOwners
from payout_links.settings import get_settings
from payout_links.upstream import PayoutApiClient

# Time kept back from the function's deadline to record the result and answer after the upstream returns: the
# longest a DynamoDB write can take, its retry included (see aws.py), and half a second to answer.
RESPONSE_RESERVE_SECONDS = aws.WORST_CASE_CALL_SECONDS + 0.5


# A read or a cancel writes nothing after the upstream answers: it keeps back only the time to answer.
LIFECYCLE_RESERVE_SECONDS = 0.5


@dataclass(frozen=True)
class PayoutLinkService:
    payout_api: PayoutApiClient
    idempotency_config: IdempotencyConfig
    owners: LinkOwners
    _create_once: Any

    def create_payout_link(
        self, caller: str, key: str, request: CreatePayoutLinkRequest, *, remaining_millis: int
    ) -> Created:
        deadline = time.monotonic() + remaining_millis / 1000 - RESPONSE_RESERVE_SECONDS
        intent = {"caller": caller, "key": key, "request": request.upstream_payload()}
        return self._create_once(intent=intent, deadline=deadline)

    def read_payout_link(self, caller: str, link_id: str, *, remaining_millis: int) -> dict[str, Any]:
        """The link as the upstream has it now, for its owner only (`LinkNotFound` for anyone else)."""
        self.owners.require_owner(caller, link_id)
        return self.payout_api.retrieve_payout_link(link_id, deadline=_lifecycle_deadline(remaining_millis))

    def cancel_payout_link(self, caller: str, link_id: str, *, remaining_millis: int) -> dict[str, Any]:
        """Cancel the link at the upstream and return it, canceled; for its owner only."""
        self.owners.require_owner(caller, link_id)
        return self.payout_api.cancel_payout_link(link_id, deadline=_lifecycle_deadline(remaining_millis))


def _lifecycle_deadline(remaining_millis: int) -> float:
    return time.monotonic() + remaining_millis / 1000 - LIFECYCLE_RESERVE_SECONDS


@cache
def get_service() -> PayoutLinkService:
    settings = get_settings()
    credentials = CredentialsStore(
        aws.client("secretsmanager"),
        settings.payout_api_secret_id,
        max_age_seconds=settings.credentials_max_age_seconds,
    )
    http = deadline_client(
        headers={"Accept": "application/json", "User-Agent": "payout-link-proxy"},
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=30),
        follow_redirects=False,
    )
    payout_api = PayoutApiClient(
        http,
        settings.payout_links_url,
        credentials,
        attempt_timeout=settings.payout_api_timeout_seconds,
        max_attempts=settings.payout_api_max_attempts,
    )

    def create(*, intent: dict[str, Any], deadline: float) -> Created:
        request = intent["request"]
        derived_key = upstream_key(intent["caller"], intent["key"], fingerprint(request))
        payload = {**request, "idempotency_key": derived_key}
        return Created(link=payout_api.create_payout_link(payload, deadline=deadline))

    owners = LinkOwners(
        dynamodb_client=aws.client("dynamodb"),
        table_name=settings.link_owners_table_name,
        retention_seconds=settings.link_owner_retention_days * 86_400,
    )
    config, create_once = exactly_once(
        create,
        dynamodb_client=aws.client("dynamodb"),
        table_name=settings.idempotency_table_name,
        ttl_seconds=settings.idempotency_ttl_seconds,
        owners=owners,
    )
    return PayoutLinkService(payout_api=payout_api, idempotency_config=config, owners=owners, _create_once=create_once)


@cache
def get_partner_secrets() -> PartnerSecrets:
    settings = get_settings()
    return PartnerSecrets(
        aws.client("secretsmanager"),
        settings.required_partner_webhook_secrets_id(),
        max_age_seconds=settings.credentials_max_age_seconds,
        unknown_partner_refresh_seconds=settings.unknown_partner_refresh_seconds,
    )


def reset() -> None:
    """Forget everything this container keeps between invocations, as a new execution environment starts without
    it: the settings, the service (its clients, the idempotency store's local cache, the cached credentials), the
    partner secrets, the AWS session and clients, the API document, and Powertools' cold-start flags, so that the
    next invocation logs and counts a cold start. For tests; in Lambda a container is never reset."""
    from aws_lambda_powertools.logging import logger as powertools_logger
    from aws_lambda_powertools.metrics.provider import cold_start

    get_settings.cache_clear()
    get_service.cache_clear()
    get_partner_secrets.cache_clear()
    api_docs.openapi_document.cache_clear()
    aws.reset()
    powertools_logger.is_cold_start = True
    cold_start.reset_cold_start_flag()
