"""What the routes do once the caller is known: create a payout link for an intent, exactly once; read or
cancel a link, for its owner only; list a caller's own links.

A create, from the route to the upstream, each step named for what it does:

1. `app.post_payout_link` (a frontend) or `app.receive_partner_event` (a partner): parse the body, settle the
   idempotency key, then call
2. `PayoutLinkService.create_once(caller, key, request, context=...)`: the intent, created at most once; it runs
3. `PayoutLinkService._create_at_upstream(intent=..., deadline=...)`, wrapped once per service by Powertools'
   idempotency (`idempotency.once_per_intent`): run only when the intent has no record yet, it calls
4. `PayoutApiClient.create_payout_link(payload, deadline=...)`: the upstream's create, attempted until it answers
   or the deadline comes.

`get_service()` and `get_partner_secrets()` are the composition root: they build the clients once per
container, on first use, so that importing the handler does no I/O and a warm request reuses every connection.
`reset()` forgets everything a container keeps between invocations.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

import httpx
from aws_lambda_powertools.utilities.typing import LambdaContext

from payout_links import api_docs, aws
from payout_links.credentials import CredentialsStore, PartnerSecrets
from payout_links.deadlines import deadline_client
from payout_links.idempotency import Created, Intent, IntentStore, intent_config, once_per_intent
from payout_links.models import CreatePayoutLinkRequest
from payout_links.owners import LinkOwners
from payout_links.settings import get_settings
from payout_links.upstream import PayoutApiClient

# Time kept back from the function's deadline to record the result and answer after the upstream returns: the
# longest a DynamoDB write can take, its retry included (see aws.py), and half a second to answer.
RESPONSE_RESERVE_SECONDS = aws.WORST_CASE_CALL_SECONDS + 0.5


# A read or a cancel writes nothing after the upstream answers: it keeps back only the time to answer.
LIFECYCLE_RESERVE_SECONDS = 0.5


class PayoutLinkService:
    def __init__(
        self, *, payout_api: PayoutApiClient, owners: LinkOwners, intents: IntentStore, intent_ttl_seconds: int
    ) -> None:
        self.payout_api = payout_api
        self._owners = owners
        self._idempotency = intent_config(ttl_seconds=intent_ttl_seconds)
        self._create_at_upstream_once = once_per_intent(
            self._create_at_upstream, store=intents, config=self._idempotency
        )

    def create_once(
        self, caller: str, key: str, request: CreatePayoutLinkRequest, *, context: LambdaContext
    ) -> Created:
        """The link for the intent (caller, key, request): created at the upstream the first time, the same link
        (`replayed`) after that. The same caller and key with another request is refused
        (`IdempotencyValidationError`); while another request holds the intent, `IdempotencyAlreadyInProgressError`.
        A create that fails raises `CreateFailed`, and the intent's record keeps or releases the key by outcomes.py.
        """
        self._idempotency.register_lambda_context(context)  # the intent's lock expires with this invocation
        deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - RESPONSE_RESERVE_SECONDS
        intent = Intent.of(caller, key, request.upstream_payload())
        return self._create_at_upstream_once(intent=intent, deadline=deadline)

    def _create_at_upstream(self, *, intent: Intent, deadline: float) -> Created:
        """The intent sent upstream under its derived key (see idempotency.py); at most once per intent."""
        payload = {**intent.request, "idempotency_key": intent.upstream_key}
        return Created(link=self.payout_api.create_payout_link(payload, deadline=deadline))

    def read_payout_link(self, caller: str, link_id: str, *, remaining_millis: int) -> dict[str, Any]:
        """The link as the upstream has it now, for its owner only (`LinkNotFound` for anyone else)."""
        self._owners.require_owner(caller, link_id)
        return self.payout_api.retrieve_payout_link(link_id, deadline=_lifecycle_deadline(remaining_millis))

    def cancel_payout_link(self, caller: str, link_id: str, *, remaining_millis: int) -> dict[str, Any]:
        """Cancel the link at the upstream and return it, canceled; for its owner only."""
        self._owners.require_owner(caller, link_id)
        return self.payout_api.cancel_payout_link(link_id, deadline=_lifecycle_deadline(remaining_millis))

    def list_payout_links(
        self, caller: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the links `caller` created, newest first, and the cursor to the next page (None on the last):
        from the owner records alone, never from the upstream."""
        return self._owners.list_links(caller, limit=limit, cursor=cursor)


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

    owners = LinkOwners(
        dynamodb_client=aws.client("dynamodb"),
        table_name=settings.link_owners_table_name,
        retention_seconds=settings.link_owner_retention_days * 86_400,
    )
    intents = IntentStore(
        table_name=settings.idempotency_table_name, boto3_client=aws.client("dynamodb"), owners=owners
    )
    return PayoutLinkService(
        payout_api=payout_api, owners=owners, intents=intents, intent_ttl_seconds=settings.idempotency_ttl_seconds
    )


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
    cold_start.is_cold_start = True
