"""samconfig.toml: one SAM CLI environment per stage, each naming its own stack and overriding only parameters
the template has, with values the template accepts."""

from __future__ import annotations

import re
import shlex
import tomllib
from typing import Any

import pytest

from local_stack.core.template import load_template
from local_stack.stack import TEMPLATE_PATH
from tests.support import ROOT

pytestmark = pytest.mark.infra

STAGE_OF = {"default": "dev", "staging": "staging", "prod": "prod"}
SANDBOX, PRODUCTION = "https://pls.senddotssandbox.com/api", "https://api.dots.dev/api"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    with (ROOT / "samconfig.toml").open("rb") as handle:
        return tomllib.load(handle)


def overrides(config: dict[str, Any], environment: str) -> dict[str, str]:
    """A stage's parameter values: the template's defaults, then its parameter_overrides."""
    parameters = load_template(TEMPLATE_PATH)["Parameters"]
    values = {name: str(parameter["Default"]) for name, parameter in parameters.items() if "Default" in parameter}
    for item in shlex.split(config[environment]["deploy"]["parameters"]["parameter_overrides"]):
        name, _, value = item.partition("=")
        assert name in parameters, f"[{environment}] overrides {name}, which the template does not have"
        values[name] = value
    return values


def test_there_is_one_environment_per_stage(config):
    assert set(config) - {"version"} == set(STAGE_OF)
    stacks = [config[environment]["global"]["parameters"]["stack_name"] for environment in STAGE_OF]
    assert stacks == [f"payout-link-proxy-{stage}" for stage in STAGE_OF.values()]


@pytest.mark.parametrize("environment", STAGE_OF)
def test_each_stage_deploys_with_values_the_template_accepts(config, environment):
    deploy = config[environment]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM" and deploy["resolve_s3"] is True
    values = overrides(config, environment)
    assert values["Stage"] == STAGE_OF[environment]
    for name, parameter in load_template(TEMPLATE_PATH)["Parameters"].items():
        if name not in values:
            continue  # asked for by `sam deploy --guided` (JwtIssuer, JwtAudience)
        value = values[name]
        if "AllowedValues" in parameter:
            assert value in parameter["AllowedValues"], (environment, name, value)
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], value), (environment, name, value)
        if "MinValue" in parameter:
            assert int(value) >= parameter["MinValue"], (environment, name, value)


def test_only_prod_pays_out_for_real_and_it_is_guarded(config):
    prod = overrides(config, "prod")
    assert prod["PayoutApiBaseUrl"] == PRODUCTION
    assert int(prod["ReservedConcurrency"]) > 0
    assert prod["EnableApiDocs"] == "false" and prod["LogLevel"] == "INFO"
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    for environment in ("default", "staging"):
        assert overrides(config, environment)["PayoutApiBaseUrl"] == SANDBOX
