"""The project's wiring of the core (local_stack/stack.py): one rule for every function's variables, and the
variables `make run` reads for its scheduled functions."""

from __future__ import annotations

import pytest

from local_stack.core.template import function_settings, load_template
from local_stack.stack import (
    CREDENTIALS_SECRET_NAME,
    FUNCTION,
    LOCAL_NAMES,
    TABLE_NAME,
    TEMPLATE_PATH,
    StackConfig,
    local_function_name,
    local_variables,
)

pytestmark = pytest.mark.unit

UPSTREAM = "http://127.0.0.1:9/api"


def declared(function: str) -> dict[str, str]:
    return function_settings(load_template(TEMPLATE_PATH), function, LOCAL_NAMES).environment


def test_every_function_gets_its_own_variables_by_one_rule() -> None:
    environ = {
        "SETTLE_AFTER_SECONDS": "5",
        "SETTLE_MAX_RESENDS_PER_RUN": "7",
        "MAX_AMOUNT_CENTS": "99",
        "PAYOUT_API_BASE_URL": "",  # set but empty: the stack chose its upstream already
        "SOMETHING_ELSE": "x",
    }
    api = local_variables(declared(FUNCTION), environ, UPSTREAM)
    settler = local_variables(declared("SettlerFunction"), environ, UPSTREAM)

    # Nothing a function does not declare is added to it: the API function's rule is the settler's.
    assert api.keys() == declared(FUNCTION).keys() and settler.keys() == declared("SettlerFunction").keys()
    assert settler["SETTLE_MAX_RESENDS_PER_RUN"] == "7" and "MAX_AMOUNT_CENTS" not in settler
    assert api["MAX_AMOUNT_CENTS"] == "99" and "SETTLE_MAX_RESENDS_PER_RUN" not in api
    # Both set when an intent is due (a create that drops its lock, and the settler): both get the same value.
    assert settler["SETTLE_AFTER_SECONDS"] == api["SETTLE_AFTER_SECONDS"] == "5"
    assert api["API_DOCS_ENABLED"] == "true" and "API_DOCS_ENABLED" not in settler
    for variables in (api, settler):
        assert variables["PAYOUT_API_BASE_URL"] == UPSTREAM
        assert variables["IDEMPOTENCY_TABLE_NAME"] == TABLE_NAME
        assert variables["PAYOUT_API_SECRET_ID"] == CREDENTIALS_SECRET_NAME
    assert (
        local_variables(declared("SettlerFunction"), {}, UPSTREAM)["SETTLE_MAX_RESENDS_PER_RUN"]
        == declared("SettlerFunction")["SETTLE_MAX_RESENDS_PER_RUN"]
    )


def test_a_declared_variable_from_the_environment_wins_over_the_local_default() -> None:
    assert local_variables(declared(FUNCTION), {"API_DOCS_ENABLED": "false"}, UPSTREAM)["API_DOCS_ENABLED"] == "false"


def test_functions_have_local_names() -> None:
    assert local_function_name(FUNCTION) == "payout-link-proxy-local"
    assert local_function_name("SettlerFunction") == "payout-link-proxy-local-settler"
    assert local_function_name("ReportFunction") == "payout-link-proxy-local-ReportFunction"


@pytest.mark.parametrize(("given", "period"), [(None, None), ("", None), ("0.5", 0.5), ("0", 0.0), ("90", 90.0)])
def test_local_schedule_seconds_is_the_period_of_every_scheduled_function(given: str | None, period: float | None):
    env = {} if given is None else {"LOCAL_SCHEDULE_SECONDS": given}

    assert StackConfig.from_env(env).schedule_seconds == period


@pytest.mark.parametrize("given", ["-1", "nan", "inf", "soon"])
def test_a_period_that_is_not_a_number_of_seconds_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match=f"LOCAL_SCHEDULE_SECONDS must be a number of seconds.*not '{given}'"):
        StackConfig.from_env({"LOCAL_SCHEDULE_SECONDS": given})


def test_the_control_port_is_any_free_one_unless_given() -> None:
    assert StackConfig.from_env({}).control_port == 0
    assert StackConfig.from_env({"LOCAL_CONTROL_PORT": "3001"}).control_port == 3001


def test_without_jwt_issuer_the_stack_trusts_a_local_issuer_of_its_own_for_its_default_audience() -> None:
    config = StackConfig.from_env({})

    assert config.jwt_issuer is None
    assert config.jwt_audiences == ["payout-link-proxy"]
    assert config.local_issuer_port == 3100
    assert StackConfig.from_env({"LOCAL_ISSUER_PORT": "4100", "JWT_ISSUER": ""}).local_issuer_port == 4100


@pytest.mark.parametrize(
    "issuer",
    [
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
        "https://tenant.example.test/",
        "http://127.0.0.1:8080",
        "http://localhost:8080/realms/dev",
        "http://localhost",
    ],
)
def test_jwt_issuer_is_an_https_url_or_locally_a_loopback_http_one(issuer: str) -> None:
    assert StackConfig.from_env({"JWT_ISSUER": issuer}).jwt_issuer == issuer


@pytest.mark.parametrize(
    "issuer",
    ["http://issuer.example.test", "http://127.0.0.2:80", "http://localhost.example.test", "issuer", "ftp://x"],
)
def test_any_other_jwt_issuer_is_refused(issuer: str) -> None:
    with pytest.raises(ValueError, match="JWT_ISSUER must be an https URL"):
        StackConfig.from_env({"JWT_ISSUER": issuer})


def test_jwt_audience_is_a_comma_separated_list() -> None:
    assert StackConfig.from_env({"JWT_AUDIENCE": "web-app, mobile-app,"}).jwt_audiences == ["web-app", "mobile-app"]
    with pytest.raises(ValueError, match="JWT_AUDIENCE"):
        StackConfig.from_env({"JWT_AUDIENCE": " , "})
