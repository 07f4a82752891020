"""The function's configuration, read from the environment on first use, validated as one typed model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from payout_links.service import reset
from payout_links.settings import ConfigurationError, Settings, get_settings

pytestmark = pytest.mark.unit

REQUIRED = {
    "IDEMPOTENCY_TABLE_NAME": "payout-link-idempotency",
    "LINK_OWNERS_TABLE_NAME": "payout-link-owners",
    "PAYOUT_API_SECRET_ID": "payout-link-proxy/dev/dots",
    "PAYOUT_API_BASE_URL": "https://pls.senddotssandbox.com/api",
}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Only the variables a test sets, and a settings cache that forgets between tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    reset()
    yield monkeypatch
    reset()


@pytest.mark.parametrize("missing", list(REQUIRED))
def test_a_missing_required_variable_is_named(environment: pytest.MonkeyPatch, missing: str) -> None:
    environment.delenv(missing)

    with pytest.raises(ConfigurationError) as caught:
        get_settings()

    message = str(caught.value)
    assert missing in message
    assert all(name not in message for name in REQUIRED if name != missing)


def test_an_empty_table_name_is_as_bad_as_none(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("IDEMPOTENCY_TABLE_NAME", "")

    with pytest.raises(ConfigurationError, match="IDEMPOTENCY_TABLE_NAME"):
        get_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PAYOUT_API_BASE_URL", "not a url"),
        ("PAYOUT_API_TIMEOUT_SECONDS", "0"),
        ("PAYOUT_API_TIMEOUT_SECONDS", "30"),
        ("PAYOUT_API_MAX_ATTEMPTS", "0"),
        ("PAYOUT_API_MAX_ATTEMPTS", "three"),
        ("MAX_AMOUNT_CENTS", "-1"),
        ("IDEMPOTENCY_TTL_SECONDS", "10"),
        ("MAX_BODY_BYTES", "100"),
        ("LINK_OWNER_RETENTION_DAYS", "0"),
        ("CALLER_DAILY_AMOUNT_LIMIT_CENTS", "-1"),
        ("CALLER_DAILY_AMOUNT_LIMIT_CENTS", "2.5"),
        ("CALLER_HOURLY_LINK_LIMIT", "-1"),
        ("CALLER_HOURLY_LINK_LIMIT", "thirty"),
        ("LIMIT_OVERRIDES_MAX_AGE_SECONDS", "-1"),
        ("LIMIT_OVERRIDES_MAX_AGE_SECONDS", "86400"),
    ],
)
def test_an_invalid_value_is_named(environment: pytest.MonkeyPatch, name: str, value: str) -> None:
    environment.setenv(name, value)

    with pytest.raises(ConfigurationError) as caught:
        get_settings()

    assert name in str(caught.value)
    assert value not in str(caught.value).replace(name, "")  # names the variable, does not echo its value


def test_defaults_apply_when_only_the_required_variables_are_set() -> None:
    settings = get_settings()

    assert settings.idempotency_table_name == REQUIRED["IDEMPOTENCY_TABLE_NAME"]
    assert settings.payout_api_secret_id == REQUIRED["PAYOUT_API_SECRET_ID"]
    assert settings.payout_api_timeout_seconds == 8.0
    assert settings.payout_api_max_attempts == 3
    assert settings.max_amount_cents == 1_000_000
    assert settings.idempotency_ttl_seconds == 86_400
    assert settings.max_body_bytes == 16_384
    assert settings.credentials_max_age_seconds == 300
    assert settings.link_owners_table_name == REQUIRED["LINK_OWNERS_TABLE_NAME"]
    assert settings.link_owner_retention_days == 400
    assert settings.caller_daily_amount_limit_cents == 2_500_000
    assert settings.caller_hourly_link_limit == 30
    assert settings.limit_overrides_max_age_seconds == 60


def test_set_variables_override_the_defaults(environment: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PAYOUT_API_TIMEOUT_SECONDS": "2.5",
        "PAYOUT_API_MAX_ATTEMPTS": "5",
        "MAX_AMOUNT_CENTS": "50000",
        "IDEMPOTENCY_TTL_SECONDS": "3600",
        "MAX_BODY_BYTES": "4096",
        "CREDENTIALS_MAX_AGE_SECONDS": "0",
        "CALLER_DAILY_AMOUNT_LIMIT_CENTS": "0",
        "CALLER_HOURLY_LINK_LIMIT": "500",
        "LIMIT_OVERRIDES_MAX_AGE_SECONDS": "5",
    }.items():
        environment.setenv(name, value)

    settings = get_settings()

    assert settings.payout_api_timeout_seconds == 2.5
    assert settings.payout_api_max_attempts == 5
    assert settings.max_amount_cents == 50_000
    assert settings.idempotency_ttl_seconds == 3_600
    assert settings.max_body_bytes == 4_096
    assert settings.credentials_max_age_seconds == 0
    assert settings.caller_daily_amount_limit_cents == 0  # off
    assert settings.caller_hourly_link_limit == 500
    assert settings.limit_overrides_max_age_seconds == 5


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.dots.dev/api", "https://api.dots.dev/api/v2/payout-links"),
        ("https://api.dots.dev/api/", "https://api.dots.dev/api/v2/payout-links"),
        ("https://pls.senddotssandbox.com/api", "https://pls.senddotssandbox.com/api/v2/payout-links"),
        ("https://dots.test", "https://dots.test/v2/payout-links"),
        ("https://dots.test/", "https://dots.test/v2/payout-links"),
        ("http://127.0.0.1:8765/api", "http://127.0.0.1:8765/api/v2/payout-links"),
    ],
)
def test_the_payout_links_url_joins_the_base_url(environment: pytest.MonkeyPatch, base_url: str, expected: str) -> None:
    environment.setenv("PAYOUT_API_BASE_URL", base_url)

    assert get_settings().payout_links_url == expected


def test_settings_are_read_once_per_container(environment: pytest.MonkeyPatch) -> None:
    first = get_settings()
    environment.setenv("MAX_AMOUNT_CENTS", "7")

    assert get_settings() is first
    reset()  # a new container
    assert get_settings().max_amount_cents == 7
