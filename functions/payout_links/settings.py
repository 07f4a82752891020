"""The function's configuration: one typed model, read from the environment and validated on first use."""

from __future__ import annotations

import os
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from payout_links.budget import DEFAULT_FUNCTION_TIMEOUT_SECONDS, TimeBudget


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    idempotency_table_name: str = Field(min_length=1)
    link_owners_table_name: str = Field(min_length=1)
    # How long a link stays readable and cancelable by its owner through the proxy (its owner record's TTL).
    link_owner_retention_days: int = Field(default=400, ge=1, le=3650)
    payout_api_secret_id: str = Field(min_length=1)
    # An absolute http(s) URL without spaces: read as a string, since pydantic's URL types cost the cold start
    # their whole module (validators, JSON schema) for one value read once.
    payout_api_base_url: str = Field(pattern=r"^https?://[^/\s?#]+(/\S*)?$")
    # The function's own Timeout, as the template sets both from one parameter: what the time budget (budget.py)
    # and the AWS clients' timeouts are derived from.
    function_timeout_seconds: float = Field(default=DEFAULT_FUNCTION_TIMEOUT_SECONDS, ge=1, le=900)
    payout_api_timeout_seconds: float = Field(default=8.0, gt=0, le=25)
    payout_api_max_attempts: int = Field(default=3, ge=1, le=5)
    max_amount_cents: int = Field(default=1_000_000, gt=0)
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)
    # How long an intent of unknown outcome waits for its caller's retry before the settler resends it; how many
    # one settler run resends at most, and how many at a time.
    settle_after_seconds: int = Field(default=120, ge=1, le=3600)
    settle_max_resends_per_run: int = Field(default=100, ge=1, le=1000)
    settle_concurrency: int = Field(default=4, ge=1, le=16)
    max_body_bytes: int = Field(default=16_384, ge=1_024, le=1_048_576)
    credentials_max_age_seconds: int = Field(default=300, ge=0)
    # Optional so that a deployment without partners needs no secret; the webhook route refuses to run without it.
    partner_webhook_secrets_id: str | None = Field(default=None, min_length=1)
    unknown_partner_refresh_seconds: float = Field(default=30, ge=0)
    # Each caller's limits (limits.py): the amount it may pay out per UTC day and the links it may create per UTC
    # clock hour, 0 turning that limit off; per-caller overrides in the idempotency table are re-read at most this
    # often by each container.
    caller_daily_amount_limit_cents: int = Field(default=2_500_000, ge=0)
    caller_hourly_link_limit: int = Field(default=30, ge=0)
    limit_overrides_max_age_seconds: float = Field(default=60, ge=0, le=3600)
    # GET /openapi.json and /docs answer 404 unless the stack was deployed with EnableApiDocs=true.
    api_docs_enabled: bool = False

    @property
    def budget(self) -> TimeBudget:
        return TimeBudget.for_timeout(self.function_timeout_seconds)

    @property
    def payout_links_url(self) -> str:
        return f"{self.payout_api_base_url.rstrip('/')}/v2/payout-links"

    def required_partner_webhook_secrets_id(self) -> str:
        if self.partner_webhook_secrets_id is None:
            raise ConfigurationError("invalid or missing environment variables: PARTNER_WEBHOOK_SECRETS_ID")
        return self.partner_webhook_secrets_id


class ConfigurationError(RuntimeError):
    """The function was deployed with missing or invalid settings: an operator problem, not a caller's."""


@cache
def get_settings() -> Settings:
    env = {name.lower(): value for name, value in os.environ.items() if name.lower() in Settings.model_fields}
    try:
        return Settings.model_validate(env)
    except ValidationError as exc:
        fields = ", ".join(str(error["loc"][0]).upper() for error in exc.errors() if error["loc"])
        raise ConfigurationError(f"invalid or missing environment variables: {fields}") from None
