"""Checks of the SAM template.

Two kinds of test live here:

* Facts that the function, the local runner and operators rely on, read straight
  from template.yaml in plain Python (no tools needed).
* The AWS tools' own verdicts: cfn-lint, `sam validate` (with and without
  --lint) and a `sam build`, whose artifacts are then inspected. These use the
  separate tools venv (.venv-tools, or the one TOOLS_VENV points at), created by
  `make tools`. A missing venv fails the tests: it is never a reason to skip them.
* checkov's security scan, from its own venv (.venv-checkov, or CHECKOV_VENV),
  created by `make checkov`: its pins clash with aws-sam-cli's.

No AWS account and no Docker are needed: the tools run with a fixed region and
fake credentials, and nothing here talks to AWS. The layer's build fetches its
wheels from the package index (or uv's cache).
"""

from __future__ import annotations

import base64
import copy
import csv
import fnmatch
import functools
import hashlib
import io
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from local_stack.core.gateway import Cors
from local_stack.core.template import load_template
from local_stack.stack import TEMPLATE_PATH
from payout_links import store
from payout_links.settings import Settings
from tests.support import CORS_ALLOW_HEADERS, canonical_name, locked_layer_packages

pytestmark = pytest.mark.infra

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = Path(os.environ.get("TOOLS_VENV", REPO_ROOT / ".venv-tools")) / "bin"
CHECKOV_BIN = Path(os.environ.get("CHECKOV_VENV", REPO_ROOT / ".venv-checkov")) / "bin"
UV_BIN = REPO_ROOT / ".venv-uv" / "bin"

# API Gateway gives up on a Lambda integration after 30 seconds.
API_GATEWAY_INTEGRATION_LIMIT_SECONDS = 30

ITEM_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
SECRET_ACTIONS = {"secretsmanager:GetSecretValue"}

# Provided by the Lambda runtime; a copy in the layer would shadow it.
RUNTIME_PROVIDED_PACKAGES = ("boto3", "botocore", "s3transfer")
# Environment variables that the local runner reads straight from the template.
LITERAL_VARIABLES = (
    "PAYOUT_API_TIMEOUT_SECONDS",
    "PAYOUT_API_MAX_ATTEMPTS",
    "MAX_BODY_BYTES",
    "CREDENTIALS_MAX_AGE_SECONDS",
    "UNKNOWN_PARTNER_REFRESH_SECONDS",
)
# The secret the function reads: the stack's own, or the one whose ARN was given instead.
SECRET_IN_USE = {
    secret: {"Fn::If": [f"Create{secret}", {"Ref": secret}, {"Ref": f"Existing{secret}Arn"}]}
    for secret in ("PayoutApiCredentialsSecret", "PartnerWebhookSecretsSecret")
}
# Imported by the function at run time; they must come from the layer.
LAYER_PACKAGES = ("aws_lambda_powertools", "httpx", "pydantic", "pydantic_core", "jmespath")


# --- facts read from the template ---------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    """The payout-links function's properties, with Globals.Function filled in where it sets nothing."""
    resource = template["Resources"]["PayoutLinksFunction"]
    assert resource["Type"] == "AWS::Serverless::Function"
    return {**template["Globals"]["Function"], **resource["Properties"]}


def test_idempotency_table_matches_powertools_layout(template: dict[str, Any]) -> None:
    """The records keep the layout Powertools idempotency wrote (key `id`, TTL on `expiration`), so that records
    from before the store was the proxy's own are still found; the only other attributes the table defines are the
    settle-queue index's keys."""
    table = template["Resources"]["IdempotencyTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [
        {"AttributeName": "id", "AttributeType": "S"},
        {"AttributeName": store.A.QUEUE, "AttributeType": "S"},
        {"AttributeName": store.A.SETTLE_AT, "AttributeType": "N"},
    ]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": store.A.EXPIRY, "Enabled": True}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


def test_the_settle_queue_index_is_sparse_and_holds_what_the_settler_resends(template: dict[str, Any]) -> None:
    """One index, keyed by the queue (`due` or `stranded`) and the time an intent is due: only unsettled intents
    carry those attributes, so the settler's query reads what is due and never scans. It projects every attribute:
    the settler resends from the index's copy of the record (caller, key, request, lock token)."""
    (index,) = template["Resources"]["IdempotencyTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert index == {
        "IndexName": store.SETTLE_INDEX,
        "KeySchema": [
            {"AttributeName": store.A.QUEUE, "KeyType": "HASH"},
            {"AttributeName": store.A.SETTLE_AT, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }


def test_the_owners_table_is_durable_and_expires_by_its_own_retention(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    """Owner records outlive idempotency records (400 days by default, not 24 hours): losing them would leave
    every link unreadable and uncancelable, so the table survives the stack and can be restored."""
    table = template["Resources"]["LinkOwnersTable"]
    properties = table["Properties"]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert properties["DeletionProtectionEnabled"] is True
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["KeySchema"] == [{"AttributeName": "link_id", "KeyType": "HASH"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    retention = template["Parameters"]["LinkOwnerRetentionDays"]
    assert (retention["Default"], retention["MinValue"], retention["MaxValue"]) == (400, 1, 3650)
    variables = function["Environment"]["Variables"]
    assert variables["LINK_OWNERS_TABLE_NAME"] == {"Ref": "LinkOwnersTable"}
    assert variables["LINK_OWNER_RETENTION_DAYS"] == {"Ref": "LinkOwnerRetentionDays"}


def test_function_runtime_and_timeout(function: dict[str, Any]) -> None:
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    # The FunctionTimeoutSeconds parameter (which the local runner resolves to its default, or to
    # LAMBDA_TIMEOUT_SECONDS); at most below the gateway's limit, so that a slow upstream ends in the
    # function's answer, not a gateway 503.
    assert function["Timeout"] == {"Ref": "FunctionTimeoutSeconds"}
    parameter = load_template(TEMPLATE_PATH)["Parameters"]["FunctionTimeoutSeconds"]
    assert parameter["MaxValue"] < API_GATEWAY_INTEGRATION_LIMIT_SECONDS


def test_function_is_built_with_the_makefiles(template: dict[str, Any], function: dict[str, Any]) -> None:
    resources = template["Resources"]
    assert function["CodeUri"] == "functions/"
    assert function["Handler"] == "payout_links.app.lambda_handler"
    assert resources["PayoutLinksFunction"]["Metadata"]["BuildMethod"] == "makefile"
    assert function["Layers"] == [{"Ref": "DependenciesLayer"}]
    assert resources["DependenciesLayer"]["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}


def test_literal_settings_the_local_runner_reads(function: dict[str, Any]) -> None:
    variables = function["Environment"]["Variables"]
    for name in LITERAL_VARIABLES:
        value = variables[name]
        assert isinstance(value, str), f"{name} must be a literal string, not {value!r}"
        assert value.isdigit(), f"{name}={value!r}"
    assert variables["IDEMPOTENCY_TABLE_NAME"] == {"Ref": "IdempotencyTable"}
    assert variables["PAYOUT_API_SECRET_ID"] == SECRET_IN_USE["PayoutApiCredentialsSecret"]
    assert variables["PARTNER_WEBHOOK_SECRETS_ID"] == SECRET_IN_USE["PartnerWebhookSecretsSecret"]


def test_routes_and_who_may_call_them(template: dict[str, Any], function: dict[str, Any]) -> None:
    api = template["Resources"]["HttpApi"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "JwtAuthorizer"
    assert api["Auth"]["Authorizers"] == {
        "JwtAuthorizer": {
            "IdentitySource": "$request.header.Authorization",
            "JwtConfiguration": {"issuer": {"Ref": "JwtIssuer"}, "audience": {"Ref": "JwtAudience"}},
        }
    }
    assert template["Parameters"]["RequiredScope"]["Default"] == "payouts:write"
    assert template["Parameters"]["ReadScope"]["Default"] == "payouts:read"
    common = {"ApiId": {"Ref": "HttpApi"}, "PayloadFormatVersion": "2.0"}
    no_jwt = {"Authorizer": "NONE"}
    assert function["Events"] == {
        "CreatePayoutLink": {
            "Type": "HttpApi",
            "Properties": {
                **common,
                "Method": "POST",
                "Path": "/payout-links",
                "Auth": {"Authorizer": "JwtAuthorizer", "AuthorizationScopes": [{"Ref": "RequiredScope"}]},
            },
        },
        # A frontend lists and reads with either scope, and cancels only with the one that creates.
        "ListPayoutLinks": {
            "Type": "HttpApi",
            "Properties": {
                **common,
                "Method": "GET",
                "Path": "/payout-links",
                "Auth": {
                    "Authorizer": "JwtAuthorizer",
                    "AuthorizationScopes": [{"Ref": "ReadScope"}, {"Ref": "RequiredScope"}],
                },
            },
        },
        "ReadPayoutLink": {
            "Type": "HttpApi",
            "Properties": {
                **common,
                "Method": "GET",
                "Path": "/payout-links/{id}",
                "Auth": {
                    "Authorizer": "JwtAuthorizer",
                    "AuthorizationScopes": [{"Ref": "ReadScope"}, {"Ref": "RequiredScope"}],
                },
            },
        },
        "CancelPayoutLink": {
            "Type": "HttpApi",
            "Properties": {
                **common,
                "Method": "DELETE",
                "Path": "/payout-links/{id}",
                "Auth": {"Authorizer": "JwtAuthorizer", "AuthorizationScopes": [{"Ref": "RequiredScope"}]},
            },
        },
        # Partners sign their requests instead: no JWT, and the function verifies the signature.
        "PartnerWebhook": {
            "Type": "HttpApi",
            "Properties": {**common, "Method": "POST", "Path": "/webhooks/{partner}/payout-links", "Auth": no_jwt},
        },
        # Public, and answered only where EnableApiDocs is true.
        "OpenApiDocument": {
            "Type": "HttpApi",
            "Properties": {**common, "Method": "GET", "Path": "/openapi.json", "Auth": no_jwt},
        },
        "ApiDocs": {"Type": "HttpApi", "Properties": {**common, "Method": "GET", "Path": "/docs", "Auth": no_jwt}},
    }


def test_api_docs_are_off_unless_a_parameter_turns_them_on(template: dict[str, Any], function: dict[str, Any]) -> None:
    parameter = template["Parameters"]["EnableApiDocs"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("false", ["true", "false"])
    assert function["Environment"]["Variables"]["API_DOCS_ENABLED"] == {"Ref": "EnableApiDocs"}
    assert template["Outputs"]["ApiDocsUrl"]["Condition"] == "ApiDocsEnabled"


def test_reserved_concurrency_is_a_parameter_and_zero_leaves_it_unreserved(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    parameter = template["Parameters"]["ReservedConcurrency"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 0, 0)
    assert template["Conditions"]["ReserveConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, "0"]}]
    }
    assert function["ReservedConcurrentExecutions"] == {
        "Fn::If": ["ReserveConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }


@pytest.mark.parametrize("secret", SECRET_IN_USE)
def test_each_secret_is_created_or_taken_from_an_existing_arn(template: dict[str, Any], secret: str) -> None:
    parameter_name = f"Existing{secret}Arn"
    parameter = template["Parameters"][parameter_name]
    assert parameter["Default"] == ""
    assert re.fullmatch(parameter["AllowedPattern"], "")
    assert re.fullmatch(parameter["AllowedPattern"], "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-AbC123")
    # A name never holds a colon (Secrets Manager allows none), so that the name is field 6 of the ARN.
    assert not re.fullmatch(parameter["AllowedPattern"], "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a:b")
    assert not re.fullmatch(parameter["AllowedPattern"], "arn:aws:kms:eu-west-1:123456789012:key/1234abcd")
    condition = f"Create{secret}"
    assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": parameter_name}, ""]}
    assert template["Resources"][secret]["Condition"] == condition
    assert template["Outputs"][f"{secret}Arn"]["Value"] == SECRET_IN_USE[secret]


def test_the_webhook_route_is_throttled_on_its_own(template: dict[str, Any]) -> None:
    api = template["Resources"]["HttpApi"]["Properties"]
    webhook = api["RouteSettings"]["POST /webhooks/{partner}/payout-links"]
    default = api["DefaultRouteSettings"]
    for settings in (webhook, default):
        assert settings["ThrottlingBurstLimit"] > 0 and settings["ThrottlingRateLimit"] > 0
    assert webhook["ThrottlingRateLimit"] < default["ThrottlingRateLimit"]


# What the CORS configuration allows besides the origins (the CorsAllowedOrigins parameter).
CORS_ALLOWS = {
    "allowMethods": ["GET", "POST", "DELETE", "OPTIONS"],
    "allowHeaders": list(CORS_ALLOW_HEADERS),
    "exposeHeaders": ["idempotent-replayed", "retry-after", "apigw-requestid"],
    "maxAge": 600,
}


def test_cors_comes_from_a_parameter_and_allows_what_browsers_need(template: dict[str, Any]) -> None:
    """In the OpenAPI extension, not in CorsConfiguration: there the SAM translator would inline the parameter
    (see test_the_deployed_api_allows_each_origin_of_the_parameter)."""
    api = template["Resources"]["HttpApi"]["Properties"]
    assert "CorsConfiguration" not in api
    cors = api["DefinitionBody"]["x-amazon-apigateway-cors"]
    assert cors == {"allowOrigins": {"Ref": "CorsAllowedOrigins"}, **CORS_ALLOWS}
    assert template["Parameters"]["CorsAllowedOrigins"]["Type"] == "CommaDelimitedList"
    assert "*" not in template["Parameters"]["CorsAllowedOrigins"]["Default"]
    assert "allowCredentials" not in cors  # tokens travel in a header, never in cookies
    # Every route's method may be sent by a browser: a route added with another method fails here.
    routed = {
        event["Properties"]["Method"].upper()
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    }
    assert routed and routed | {"OPTIONS"} <= set(cors["allowMethods"]), routed


def test_access_logs_never_carry_headers_or_bodies(template: dict[str, Any]) -> None:
    settings = template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": "HttpApiAccessLogGroup.Arn"}
    assert "$context.requestId" in settings["Format"]
    for leaky in ("$request.header", "$input", "$context.authorizer.claims", "$context.identity.user"):
        assert leaky not in settings["Format"]


def test_access_logs_lead_from_a_request_id_to_its_invocation(template: dict[str, Any]) -> None:
    """From the id a user quotes (`requestId`, the `apigw-requestid` header) to the function's invocation: its
    request id (`integrationRequestId`, the `RequestId` of Lambda's `START`, `REPORT` and `Task timed out` lines),
    the status the function answered with, and Lambda's own status (a throttle, a crash)."""
    fields = json.loads(template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]["Format"])
    assert fields["requestId"] == "$context.requestId"
    assert fields["integrationRequestId"] == "$context.integration.requestId"
    assert fields["integrationStatus"] == "$context.integration.status"
    assert fields["lambdaStatus"] == "$context.integration.integrationStatus"


def test_iam_grants_only_item_access_and_the_two_secrets(function: dict[str, Any]) -> None:
    """Item actions on the idempotency table; on the owners table, GetItem, Query on its owner-links index alone
    (a caller's list) and a PutItem allowed only inside a transaction (the one that completes a create): an owner
    record is never updated or deleted, and the table itself is never queried or scanned."""
    statements: list[dict[str, Any]] = []
    for policy in function["Policies"]:
        # Inline documents only: a managed policy name or a SAM policy template
        # (DynamoDBCrudPolicy and friends) would grant more than this.
        assert isinstance(policy, dict), policy
        assert set(policy) <= {"Version", "Statement"}, policy
        # A statement under a condition counts as granted (its own test says when it is).
        statements.extend(
            statement["Fn::If"][1] if "Fn::If" in statement else statement for statement in policy["Statement"]
        )

    resources_by_action: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert "*" not in action, action
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            resources_by_action.setdefault(action, []).extend(resources)

    assert set(resources_by_action) == ITEM_ACTIONS | SECRET_ACTIONS | {"kms:Decrypt", "dynamodb:Query"}
    assert resources_by_action["kms:Decrypt"] == [{"Ref": "SecretsKmsKeyArn"}]
    assert resources_by_action["dynamodb:Query"] == [{"Fn::Sub": "${LinkOwnersTable.Arn}/index/owner-links"}]
    owners = {"Fn::GetAtt": "LinkOwnersTable.Arn"}
    for action in ITEM_ACTIONS:
        granted = [{"Fn::GetAtt": "IdempotencyTable.Arn"}]
        if action in {"dynamodb:GetItem", "dynamodb:PutItem"}:
            granted.append(owners)
        assert resources_by_action[action] == granted, action
    on_owners = {statement["Action"][0]: statement for statement in statements if statement["Resource"] == owners}
    assert {name: len(statement["Action"]) for name, statement in on_owners.items()} == {
        "dynamodb:GetItem": 1,
        "dynamodb:PutItem": 1,
    }
    assert "Condition" not in on_owners["dynamodb:GetItem"]
    # Not ForAllValues, which holds for a request without the key: a PutItem outside any transaction.
    assert on_owners["dynamodb:PutItem"]["Condition"] == {
        "StringEquals": {"dynamodb:EnclosingOperation": "TransactWriteItems"}
    }
    for action in SECRET_ACTIONS:
        assert resources_by_action[action] == list(SECRET_IN_USE.values()), action


# --- the settler ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settler(template: dict[str, Any]) -> dict[str, Any]:
    """The settler's properties, with Globals.Function filled in where it sets nothing."""
    resource = template["Resources"]["SettlerFunction"]
    assert resource["Type"] == "AWS::Serverless::Function"
    return {**template["Globals"]["Function"], **resource["Properties"]}


def test_the_settler_runs_once_a_minute_one_run_at_a_time_and_a_failed_run_is_not_retried(
    template: dict[str, Any], settler: dict[str, Any]
) -> None:
    """One run at a time (two runs would race for the same due intents, and double the pace at Dots after an
    outage); a failed run is never retried by Lambda, and a tick that could not start within a minute is dropped:
    the next run finds the same due intents."""
    assert settler["Events"] == {
        "EveryMinute": {
            "Type": "Schedule",
            "Properties": {"Schedule": "rate(1 minute)", "Description": "Settle the intents whose outcome is unknown."},
        }
    }
    assert settler["ReservedConcurrentExecutions"] == 1
    assert settler["EventInvokeConfig"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
    # A run ends before the next tick is due, so the one execution is free for it.
    assert isinstance(settler["Timeout"], int) and settler["Timeout"] <= 60
    assert (settler["Handler"], settler["CodeUri"]) == ("payout_links.settler.lambda_handler", "functions/")
    assert template["Resources"]["SettlerFunction"]["Metadata"]["BuildMethod"] == "makefile"
    assert settler["Layers"] == [{"Ref": "DependenciesLayer"}]
    assert "AutoPublishAlias" not in settler and "SnapStart" not in settler  # it always runs $LATEST


def test_the_settler_is_configured_like_the_api_function_where_they_share_a_record(
    template: dict[str, Any], function: dict[str, Any], settler: dict[str, Any]
) -> None:
    """Both functions read every setting that has no default, from the same resources; both set `settle_at` from
    the same SettleAfterSeconds (a create that drops its lock, and the settler that drops it again); the settler
    emits its metrics in the namespace and service the alarms read (Globals)."""
    required = {name.upper() for name, field in Settings.model_fields.items() if field.is_required()}
    api, own = function["Environment"]["Variables"], settler["Environment"]["Variables"]
    assert required <= api.keys() and required <= own.keys(), required - own.keys()
    shared = (
        "IDEMPOTENCY_TABLE_NAME",
        "LINK_OWNERS_TABLE_NAME",
        "LINK_OWNER_RETENTION_DAYS",
        "PAYOUT_API_SECRET_ID",
        "PAYOUT_API_BASE_URL",
        "PAYOUT_API_TIMEOUT_SECONDS",
        "IDEMPOTENCY_TTL_SECONDS",
        "CREDENTIALS_MAX_AGE_SECONDS",
        "SETTLE_AFTER_SECONDS",
    )
    assert {name: own[name] for name in shared} == {name: api[name] for name in shared}
    assert api["SETTLE_AFTER_SECONDS"] == {"Ref": "SettleAfterSeconds"}
    assert own["SETTLE_MAX_RESENDS_PER_RUN"] == {"Ref": "SettleMaxResendsPerRun"}
    # One attempt per intent and run: a failed resend waits for a later run, backing off.
    assert own["PAYOUT_API_MAX_ATTEMPTS"] == "1" and own["SETTLE_CONCURRENCY"].isdigit()
    assert not {name for name in own if name.startswith("POWERTOOLS_")}, "the settler's come from Globals"
    # The parameters' defaults are the settings' own (what make run and the tests use), within their bounds.
    for parameter_name, setting in (
        ("SettleAfterSeconds", "settle_after_seconds"),
        ("SettleMaxResendsPerRun", "settle_max_resends_per_run"),
    ):
        parameter = template["Parameters"][parameter_name]
        field = Settings.model_fields[setting]
        assert parameter["Default"] == field.default, parameter_name
        Settings.model_validate({**_SETTINGS_REQUIRED, setting: parameter["MinValue"]})
        Settings.model_validate({**_SETTINGS_REQUIRED, setting: parameter["MaxValue"]})


_SETTINGS_REQUIRED = {
    "idempotency_table_name": "t",
    "link_owners_table_name": "o",
    "payout_api_secret_id": "s",
    "payout_api_base_url": "https://api.example.test",
}


def _granted(properties: dict[str, Any]) -> dict[str, list[tuple[Any, Any]]]:
    """Each action a function's inline policies allow, with the (resource, condition) pairs it is allowed on; a
    statement under a template condition counts as granted."""
    granted: dict[str, list[tuple[Any, Any]]] = {}
    for policy in properties["Policies"]:
        assert isinstance(policy, dict) and set(policy) <= {"Version", "Statement"}, policy
        for statement in policy["Statement"]:
            statement = statement["Fn::If"][1] if "Fn::If" in statement else statement
            assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for action in statement["Action"]:
                assert "*" not in action, action
                granted.setdefault(action, []).extend((resource, statement.get("Condition")) for resource in resources)
    return granted


def test_the_settler_may_query_only_the_settle_queue_index_and_reads_no_item_by_key(settler: dict[str, Any]) -> None:
    """What settling needs and nothing more: the index's query (never the table's: a Query or Scan of the table
    would read every record and payee), updates and deletes of records and the callers' counters, a link's owner
    written only inside the transaction that completes an intent, and the Dots credentials, never the partners'."""
    table = {"Fn::GetAtt": "IdempotencyTable.Arn"}
    in_transactions = {"StringEquals": {"dynamodb:EnclosingOperation": "TransactWriteItems"}}
    assert _granted(settler) == {
        "dynamodb:Query": [({"Fn::Sub": f"${{IdempotencyTable.Arn}}/index/{store.SETTLE_INDEX}"}, None)],
        "dynamodb:UpdateItem": [(table, None)],
        "dynamodb:DeleteItem": [(table, None)],
        "dynamodb:PutItem": [({"Fn::GetAtt": "LinkOwnersTable.Arn"}, in_transactions)],
        "secretsmanager:GetSecretValue": [(SECRET_IN_USE["PayoutApiCredentialsSecret"], None)],
        "kms:Decrypt": [
            (
                {"Ref": "SecretsKmsKeyArn"},
                {
                    "StringEquals": {
                        "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"},
                        "kms:EncryptionContext:SecretARN": [SECRET_IN_USE["PayoutApiCredentialsSecret"]],
                    }
                },
            )
        ],
    }


def test_the_api_function_finds_intents_by_key_alone(function: dict[str, Any]) -> None:
    """The API function finds an intent by its key alone: no Scan anywhere, and its one Query is of the owners'
    owner-links index (a caller's list), never of the idempotency table or its settle-queue index."""
    granted = _granted(function)
    assert "dynamodb:Scan" not in granted
    assert granted["dynamodb:Query"] == [({"Fn::Sub": "${LinkOwnersTable.Arn}/index/owner-links"}, None)]


def test_each_function_logs_to_a_log_group_of_the_stack_kept_30_days(template: dict[str, Any]) -> None:
    """Made by the stack rather than by Lambda's first log line, so that its retention is set and it goes with
    the stack; named by CloudFormation, the outputs give its name."""
    for function in ("PayoutLinksFunction", "SettlerFunction"):
        group = template["Resources"][f"{function}LogGroup"]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"] == {"RetentionInDays": 30}
        assert template["Resources"][function]["Properties"]["LoggingConfig"] == {
            "LogGroup": {"Ref": f"{function}LogGroup"}
        }
        assert template["Outputs"][f"{function}LogGroupName"]["Value"] == {"Ref": f"{function}LogGroup"}


# --- the AWS tools -------------------------------------------------------------------------------


def _tool(name: str) -> Path:
    path = TOOLS_BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{name} is missing from {TOOLS_BIN}: run `make tools` to create the tools venv "
            "(or set TOOLS_VENV to an existing one)",
            pytrace=False,
        )
    return path


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        SAM_CLI_TELEMETRY="0",
        # As `make build` runs sam: the tools venv first, then the pinned uv, which the layer's Makefile installs
        # with.
        PATH=os.pathsep.join([str(TOOLS_BIN), str(UV_BIN), env.get("PATH", "")]),
    )
    return env


def _run_tool(
    name: str, *args: str | Path, cwd: Path = REPO_ROOT, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    command = [str(_tool(name)), *map(str, args)]
    result = subprocess.run(
        command, cwd=cwd, env=_tool_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"`{' '.join([name, *map(str, args)])}` exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    return result


def test_cfn_lint() -> None:
    _run_tool("cfn-lint", TEMPLATE_PATH)


def test_checkov_finds_no_failed_check() -> None:
    """Each check that does not fit is skipped in the template, beside the resource, with its reason."""
    checkov = CHECKOV_BIN / "checkov"
    if not os.access(checkov, os.X_OK):
        pytest.fail(f"checkov is missing from {CHECKOV_BIN}: run `make checkov`", pytrace=False)
    # No network: --skip-download keeps it off the vendor's platform (the checks ship with the package), and
    # CKV_SKIP_PACKAGE_UPDATE_CHECK off the package index.
    result = subprocess.run(
        [str(checkov), "-f", str(TEMPLATE_PATH), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        cwd=REPO_ROOT,
        env={**_tool_env(), "LOG_LEVEL": "WARNING", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    summary, results = report["summary"], report["results"]
    failed = [f"{check['check_id']} {check['resource']}: {check['check_name']}" for check in results["failed_checks"]]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert result.returncode == 0, result.stderr
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0
    skipped = results["skipped_checks"]
    print(f"checkov: {summary['passed']} passed, {len(skipped)} skipped")
    for check in skipped:
        assert len(check["check_result"]["suppress_comment"]) > 20, check["check_id"]  # a reason, not a shrug


def test_sam_validate(tmp_path: Path) -> None:
    # samconfig.toml turns linting on for `sam validate`; an empty config file
    # keeps this run to SAM's own translation of the template.
    no_config = tmp_path / "samconfig.toml"
    no_config.touch()
    _run_tool("sam", "validate", "--template-file", TEMPLATE_PATH, "--config-file", no_config)


def test_sam_validate_lint() -> None:
    _run_tool("sam", "validate", "--lint", "--template-file", TEMPLATE_PATH)


def _tree_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def _sam_build(tmp_path: Path, name: str) -> Path:
    build_dir = tmp_path / name
    # Run from tmp_path: a build keeps a .aws-sam directory in the working
    # directory, which must not land in the work tree.
    _run_tool("sam", "build", "--template-file", TEMPLATE_PATH, "--build-dir", build_dir, cwd=tmp_path, timeout=600)
    return build_dir


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# CPython 3.13's bytecode magic number, then the flags of a hash-based pyc whose source is never checked (PEP 552).
MAGIC_313 = (3571).to_bytes(2, "little") + b"\r\n"
UNCHECKED_HASH_FLAGS = (1).to_bytes(4, "little")


def test_sam_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_dir = _sam_build(tmp_path, "build")

    layer = build_dir / "DependenciesLayer" / "python"
    function_dir = build_dir / "PayoutLinksFunction"
    with capsys.disabled():  # shown in every run, not only when the test fails
        print(f"\nbuilt sizes (unzipped): function {_tree_size(function_dir)} B, layer {_tree_size(layer.parent)} B")

    # The layer holds Linux arm64 CPython 3.13 wheels, whatever machine built it.
    for package in LAYER_PACKAGES:
        assert (layer / package).is_dir(), f"{package} is missing from the layer"
    extensions = [path.name for path in (layer / "pydantic_core").glob("_pydantic_core*.so")]
    assert len(extensions) == 1, extensions
    assert "cpython-313" in extensions[0], extensions[0]
    assert "aarch64" in extensions[0], extensions[0]
    (wheel_metadata,) = layer.glob("pydantic_core-*.dist-info/WHEEL")
    tags = [
        line.removeprefix("Tag:").strip() for line in wheel_metadata.read_text().splitlines() if line.startswith("Tag:")
    ]
    assert tags, wheel_metadata
    for tag in tags:
        assert tag.startswith("cp313-"), tag
        assert "aarch64" in tag, tag

    # Nothing the runtime already provides.
    for package in RUNTIME_PROVIDED_PACKAGES:
        assert not [path for path in layer.rglob(package) if path.is_dir()], f"{package} is in the layer"
    # Bytecode for every module, for CPython 3.13, hash-based and never checked against its source, and nothing
    # else: Lambda's /opt and /var/task are read-only, so what is not shipped is compiled on every cold start.
    for root in (layer, function_dir):
        sources = list(root.rglob("*.py"))
        compiled = list(root.rglob("*.pyc"))
        assert sources, root
        assert {path.parent / "__pycache__" / f"{path.stem}.cpython-313.pyc" for path in sources} == set(compiled)
        for path in compiled:
            header = path.read_bytes()[:8]
            assert header[:4] == MAGIC_313, path
            assert header[4:8] == UNCHECKED_HASH_FLAGS, path

    # Exactly the locked packages, at their locked versions, and each RECORD true to what the layer holds.
    assert _installed(layer) == locked_layer_packages()
    assert not (layer / "bin").exists()
    assert _record_problems(layer) == []

    assert (function_dir / "payout_links" / "app.py").is_file()
    # The settler ships the same package, built by the same recipe: only its handler differs.
    assert _tree_digest(build_dir / "SettlerFunction") == _tree_digest(function_dir)
    assert (function_dir / "payout_links" / "settler.py").is_file()
    # Served at /openapi.json where the docs are enabled.
    assert (function_dir / "payout_links" / "openapi.json").read_bytes() == (REPO_ROOT / "openapi.json").read_bytes()


def _installed(layer: Path) -> dict[str, str]:
    """Each distribution in the layer, by normalized name, with its version, from its METADATA."""
    installed = {}
    for metadata in layer.glob("*.dist-info/METADATA"):
        headers = metadata.read_text().split("\n\n")[0].splitlines()
        fields = dict(line.split(": ", 1) for line in headers if ": " in line)
        installed[canonical_name(fields["Name"])] = fields["Version"]
    return installed


def _record_problems(layer: Path) -> list[str]:
    """Every file each RECORD lists, with a wrong hash or size or missing; and every file no RECORD lists."""
    problems, listed = [], set()
    for record in sorted(layer.glob("*.dist-info/RECORD")):
        for name, recorded_hash, size in csv.reader(io.StringIO(record.read_text())):
            listed.add(name)
            path = layer / name
            if name == record.relative_to(layer).as_posix():
                continue
            if not path.is_file():
                problems.append(f"{record.parent.name} lists {name}, which is missing")
                continue
            data = path.read_bytes()
            actual = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            if (recorded_hash, size) != (actual, str(len(data))):
                problems.append(f"{record.parent.name} lists {name} with another hash or size")
    files = {path.relative_to(layer).as_posix() for path in layer.rglob("*") if path.is_file()}
    problems += [f"{name} is in no RECORD" for name in sorted(files - listed)]
    return problems


def test_sam_build_is_reproducible(tmp_path: Path) -> None:
    """Two builds of one commit ship the same bytes: the same files, bytecode included (no timestamps, and the
    paths recorded in it are the ones the code has in Lambda, not the build's)."""
    first, second = _sam_build(tmp_path, "first"), _sam_build(tmp_path, "second")

    assert _tree_digest(first) == _tree_digest(second)
    compiled = next((first / "PayoutLinksFunction").rglob("app.cpython-313.pyc")).read_bytes()
    assert b"/var/task/payout_links/app.py" in compiled and str(tmp_path).encode() not in compiled


# --- what CloudFormation deploys: the template as the SAM translator makes it --------------------------------


REQUIRED_PARAMETERS = {"JwtIssuer": "https://issuer.example.test", "JwtAudience": "payout-link-proxy"}


@functools.cache
def _translation(template_path: Path, values: str) -> str:
    """The SAM translator's output for a template file, as text; one run per file and set of values."""
    return _run_tool("python", Path(__file__).with_name("sam_translate.py"), template_path, values).stdout


def _transformed(**parameters: str) -> dict[str, Any]:
    """The whole template CloudFormation gets from the SAM translator, given these parameter values (as text, the
    way a deploy passes them) and the template's defaults for the others. Pseudo parameters (`AWS::Region`,
    `AWS::Partition`) may be given too."""
    values = json.dumps({**REQUIRED_PARAMETERS, **parameters}, sort_keys=True)
    return json.loads(_translation(TEMPLATE_PATH, values))


def _translated(**parameters: str) -> dict[str, Any]:
    return _transformed(**parameters)["Resources"]


def _translated_edit(edit: Callable[[dict[str, Any]], None], directory: Path) -> dict[str, Any]:
    """The resources the SAM translator makes of template.yaml edited by `edit` (which changes a copy of the
    template as load_template reads it, intrinsics as `Fn::` mappings), with the parameters' defaults."""
    template = copy.deepcopy(load_template(TEMPLATE_PATH))
    edit(template)
    edited = directory / "template.json"
    edited.write_text(json.dumps(template))
    return json.loads(_translation(edited, json.dumps(REQUIRED_PARAMETERS)))["Resources"]


def _alias_version(resources: dict[str, Any], function: str = "PayoutLinksFunction") -> str:
    """The logical id of the AWS::Lambda::Version that the function's alias points to."""
    (alias,) = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::Alias" and resource["Properties"]["FunctionName"] == {"Ref": function}
    ]
    version, attribute = alias["FunctionVersion"]["Fn::GetAtt"]
    assert attribute == "Version" and resources[version]["Type"] == "AWS::Lambda::Version"
    return str(version)


# The pseudo parameters sam_translate.py gives the translator, as CloudFormation would resolve them; a test may
# give others (`AWS::Region`, `AWS::Partition`) with the parameters.
PSEUDO_PARAMETERS = {
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "payout-link-proxy-dev",
}


def _as_cloudformation_resolves(value: Any, template: dict[str, Any], parameters: dict[str, str]) -> Any:
    """A value of the transformed template as CloudFormation resolves it at deploy time, for the intrinsics the
    tests here meet: `Ref` to a parameter (the value given, else the default; a CommaDelimitedList's becomes the
    list of its items, each space-trimmed), to a pseudo parameter (given, else PSEUDO_PARAMETERS) or to a resource
    whose stand-in value is given under its logical id; `Fn::Sub`, `Fn::Split`, `Fn::Join`, `Fn::Select`, and
    `Fn::If` with its condition evaluated the same way. Any other intrinsic fails the test."""
    if isinstance(value, list):
        return [_as_cloudformation_resolves(item, template, parameters) for item in value]
    if not isinstance(value, dict):
        return value
    if list(value) == ["Ref"]:
        name = value["Ref"]
        if name in template["Parameters"]:
            declared = template["Parameters"][name]
            text = str(parameters.get(name, declared.get("Default")))
            return [item.strip() for item in text.split(",")] if declared["Type"] == "CommaDelimitedList" else text
        known = {**PSEUDO_PARAMETERS, **parameters}
        assert name in known, f"not resolved by this test: {value}"
        return known[name]
    if list(value) == ["Fn::Sub"]:
        text, variables = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        resolved = {name: _as_cloudformation_resolves(item, template, parameters) for name, item in variables.items()}

        def substituted(match: re.Match[str]) -> str:
            name = match[1]
            if name.startswith("!"):
                return f"${{{name[1:]}}}"
            return str(
                resolved[name] if name in resolved else _as_cloudformation_resolves({"Ref": name}, template, parameters)
            )

        return re.sub(r"\$\{([^}]+)\}", substituted, text)
    if list(value) == ["Fn::Split"]:
        delimiter, source = _as_cloudformation_resolves(value["Fn::Split"], template, parameters)
        return source.split(delimiter)
    if list(value) == ["Fn::Join"]:
        delimiter, items = _as_cloudformation_resolves(value["Fn::Join"], template, parameters)
        return delimiter.join(items)
    if list(value) == ["Fn::Select"]:
        index, items = _as_cloudformation_resolves(value["Fn::Select"], template, parameters)
        assert int(index) < len(items), f"Fn::Select of index {index} in {items}"
        return items[int(index)]
    if list(value) == ["Fn::If"]:
        condition, when_true, when_false = value["Fn::If"]
        chosen = when_true if _holds({"Condition": condition}, template, parameters) else when_false
        return _as_cloudformation_resolves(chosen, template, parameters)
    intrinsics = [key for key in value if key == "Ref" or key.startswith("Fn::")]
    assert not intrinsics, f"not resolved by this test: {value}"
    return {key: _as_cloudformation_resolves(item, template, parameters) for key, item in value.items()}


def _holds(condition: dict[str, Any], template: dict[str, Any], parameters: dict[str, str]) -> bool:
    """A condition (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, or `Condition` naming one of the template's)
    as CloudFormation evaluates it, with _as_cloudformation_resolves's values."""
    ((function, arguments),) = condition.items()
    if function == "Condition":
        return _holds(template["Conditions"][arguments], template, parameters)
    if function == "Fn::Equals":
        left, right = (str(_as_cloudformation_resolves(item, template, parameters)) for item in arguments)
        return left == right
    results = [_holds(argument, template, parameters) for argument in arguments]
    assert function in {"Fn::Not", "Fn::And", "Fn::Or"}, function
    return not results[0] if function == "Fn::Not" else all(results) if function == "Fn::And" else any(results)


def _deployed_cors(**parameters: str) -> dict[str, Any]:
    """The CORS configuration of the AWS::ApiGatewayV2::Api that CloudFormation creates."""
    transformed = _transformed(**parameters)
    (api,) = [
        resource for resource in transformed["Resources"].values() if resource["Type"] == "AWS::ApiGatewayV2::Api"
    ]
    # API Gateway takes it from the OpenAPI body; SAM never sets the Api's own CorsConfiguration.
    assert "CorsConfiguration" not in api["Properties"]
    cors = api["Properties"]["Body"]["x-amazon-apigateway-cors"]
    return _as_cloudformation_resolves(cors, transformed, {**REQUIRED_PARAMETERS, **parameters})


@pytest.mark.parametrize(
    "origins",
    [
        ["https://app.example.test"],
        ["https://app.example.test", "https://admin.example.test", "http://localhost:5173"],
    ],
    ids=["one-origin", "three-origins"],
)
def test_the_deployed_api_allows_each_origin_of_the_parameter(origins: list[str]) -> None:
    """Whatever the number of origins, API Gateway gets them as a list, beside the rest of the CORS settings.
    With CorsConfiguration.AllowOrigins: !Ref, the translator inlined the parameter's text: two origins became
    the one origin "a,b", which no browser sends, and every preflight failed."""
    assert _deployed_cors(CorsAllowedOrigins=",".join(origins)) == {"allowOrigins": origins, **CORS_ALLOWS}


def test_the_local_gateway_answers_preflights_with_the_deployed_cors() -> None:
    """With the parameter's default, the local gateway's CORS is the deployed API's, setting for setting."""
    deployed = _deployed_cors()
    local = Cors.from_template(load_template(TEMPLATE_PATH))

    assert local is not None
    assert local == Cors(
        allow_origins=tuple(deployed["allowOrigins"]),
        allow_methods=tuple(deployed["allowMethods"]),
        allow_headers=tuple(deployed["allowHeaders"]),
        expose_headers=tuple(deployed["exposeHeaders"]),
        max_age=deployed["maxAge"],
    )


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_snapstart_is_a_parameter_and_the_api_calls_the_published_alias(enabled: str) -> None:
    resources = _translated(EnableSnapStart=enabled)
    template = load_template(TEMPLATE_PATH)

    assert template["Parameters"]["EnableSnapStart"]["Default"] == "false"
    function = resources["PayoutLinksFunction"]["Properties"]
    assert function["SnapStart"] == {"ApplyOn": {"Fn::If": ["SnapStartEnabled", "PublishedVersions", "None"]}}
    applied = _as_cloudformation_resolves(
        function["SnapStart"],
        _transformed(EnableSnapStart=enabled),
        {**REQUIRED_PARAMETERS, "EnableSnapStart": enabled},
    )
    assert applied == {"ApplyOn": "PublishedVersions" if enabled == "true" else "None"}
    (alias,) = [name for name, resource in resources.items() if resource["Type"] == "AWS::Lambda::Alias"]
    assert resources[alias]["Properties"]["Name"] == "live"
    # Every route invokes the alias (the published version SnapStart snapshots), and may only invoke that.
    paths = resources["HttpApi"]["Properties"]["Body"]["paths"]
    integrations = [
        operation["x-amazon-apigateway-integration"] for item in paths.values() for operation in item.values()
    ]
    assert len(integrations) == 7
    for integration in integrations:
        assert f"${{{alias}}}/invocations" in integration["uri"]["Fn::Sub"]
    # The routes' permissions name the alias; the one other permission is the settler's schedule's, which names
    # the settler (it has no alias, nor SnapStart).
    permissions = [resource for resource in resources.values() if resource["Type"] == "AWS::Lambda::Permission"]
    by_principal: dict[str, list[Any]] = {}
    for permission in permissions:
        by_principal.setdefault(permission["Properties"]["Principal"], []).append(permission["Properties"])
    assert set(by_principal) == {"apigateway.amazonaws.com", "events.amazonaws.com"}
    assert all(permission["FunctionName"] == {"Ref": alias} for permission in by_principal["apigateway.amazonaws.com"])
    (schedule,) = by_principal["events.amazonaws.com"]
    assert schedule["FunctionName"] == {"Ref": "SettlerFunction"}
    assert "SnapStart" not in resources["SettlerFunction"]["Properties"]


def _references(value: Any) -> set[str]:
    """The names a value refers to: by `Ref`, `Fn::GetAtt`, or `${Name}` and `${Name.Attribute}` in `Fn::Sub`."""
    found: set[str] = set()
    if isinstance(value, dict):
        if isinstance(value.get("Ref"), str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else target.split(".")[0])
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            found |= {name.split(".")[0] for name in re.findall(r"\$\{([^!}][^}]*)\}", text)}
        for item in value.values():
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def _created_before(resources: dict[str, Any], name: str) -> set[str]:
    """The resources CloudFormation creates before `name`: those it refers to or names in DependsOn, theirs, and
    so on."""
    before: set[str] = set()
    waiting = [name]
    while waiting:
        resource = resources[waiting.pop()]
        depends_on = resource.get("DependsOn", [])
        named = _references(resource.get("Properties", {})) | set(
            [depends_on] if isinstance(depends_on, str) else depends_on
        )
        new = (named & set(resources)) - before
        before |= new
        waiting += new
    return before


def test_each_function_logs_to_its_own_log_group_made_before_any_of_its_versions() -> None:
    """Lambda logs to /aws/lambda/<function> unless LoggingConfig names a group, and creates that group itself at
    the first line. A stack's log group named after its function could only be made after the function, while
    SnapStart runs the function's initialization, which logs, when a version is published: Lambda could create
    the group first, and then the stack's failed as already existing, or never had its retention set. Each
    function names its own group, which CloudFormation therefore makes before it and any of its versions."""
    resources = _translated(EnableSnapStart="true")
    functions = {name: resource for name, resource in resources.items() if resource["Type"] == "AWS::Lambda::Function"}
    versions = [name for name, resource in resources.items() if resource["Type"] == "AWS::Lambda::Version"]

    assert set(functions) == {"PayoutLinksFunction", "SettlerFunction"} and versions
    for name, function in functions.items():
        group = f"{name}LogGroup"
        assert resources[group]["Type"] == "AWS::Logs::LogGroup"
        assert function["Properties"].get("LoggingConfig") == {"LogGroup": {"Ref": group}}, name
        assert group in _created_before(resources, name) and name not in _created_before(resources, group), name
    for version in versions:
        function = resources[version]["Properties"]["FunctionName"]["Ref"]
        assert f"{function}LogGroup" in _created_before(resources, version), version


@pytest.mark.parametrize(("function", "secrets_read"), [("PayoutLinksFunction", 2), ("SettlerFunction", 1)])
def test_the_secrets_key_decrypts_only_the_secrets_the_function_reads_and_only_through_secrets_manager(
    function: str, secrets_read: int
) -> None:
    """Secrets Manager decrypts a secret's value with its KMS key on the function's behalf, naming the secret's ARN
    in the encryption context (`SecretARN`): the grant holds for the secrets the function reads (both; the
    settler, the Dots credentials) and for nothing else the key protects, and only through Secrets Manager."""
    deployment = DEPLOYMENTS["prod-every-option"]
    values = {**REQUIRED_PARAMETERS, **deployment}
    transformed = _transformed(**deployment)
    statements = {}
    for policy in transformed["Resources"][f"{function}Role"]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            statements[statement["Sid"] if "Sid" in statement else statement["Fn::If"][1]["Sid"]] = statement

    read = _as_cloudformation_resolves(statements["Secrets"]["Resource"], transformed, values)
    decrypt = _as_cloudformation_resolves(statements["DecryptSecrets"], transformed, values)

    assert len(read) == secrets_read and set(read) <= set(deployment.values())
    assert (decrypt["Action"], decrypt["Resource"]) == (["kms:Decrypt"], deployment["SecretsKmsKeyArn"])
    assert decrypt["Condition"] == {
        "StringEquals": {
            "kms:ViaService": "secretsmanager.us-east-1.amazonaws.com",
            "kms:EncryptionContext:SecretARN": read,
        }
    }


# Where Lambda offers SnapStart for Python: the commercial regions (partition `aws`) but Asia Pacific (Taipei) and
# Asia Pacific (New Zealand), as the Lambda Developer Guide lists them in December 2026; not China's (aws-cn).
SNAPSTART_REGIONS = [
    ("us-east-1", "aws", True),
    ("eu-central-1", "aws", True),
    ("ap-east-2", "aws", False),
    ("ap-southeast-6", "aws", False),
    ("cn-north-1", "aws-cn", False),
]


@pytest.mark.parametrize(("region", "partition", "offered"), SNAPSTART_REGIONS)
def test_snapstart_is_on_only_where_lambda_offers_it_for_python(region: str, partition: str, offered: bool) -> None:
    """SnapStart is not offered in every region: there, EnableSnapStart=true leaves it off instead of failing the
    deploy at the function."""
    parameters = {"EnableSnapStart": "true", "AWS::Region": region, "AWS::Partition": partition}
    transformed = _transformed(**parameters)
    snapstart = transformed["Resources"]["PayoutLinksFunction"]["Properties"]["SnapStart"]

    applied = _as_cloudformation_resolves(snapstart, transformed, {**REQUIRED_PARAMETERS, **parameters})

    assert applied == {"ApplyOn": "PublishedVersions" if offered else "None"}, region


def test_sam_makes_the_settlers_schedule_an_eventbridge_rule_that_may_invoke_only_the_settler() -> None:
    resources = _translated()

    (rule_name,) = [name for name, resource in resources.items() if resource["Type"] == "AWS::Events::Rule"]
    rule = resources[rule_name]["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule.get("State", "ENABLED") == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["SettlerFunction", "Arn"]} and "Input" not in target
    (permission,) = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::Permission"
        and resource["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert permission["FunctionName"] == {"Ref": "SettlerFunction"}
    assert permission["SourceArn"] == {"Fn::GetAtt": [rule_name, "Arn"]}
    (invoke_config,) = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::EventInvokeConfig"
    ]
    assert invoke_config["FunctionName"] == {"Ref": "SettlerFunction"} and invoke_config["Qualifier"] == "$LATEST"
    assert (invoke_config["MaximumRetryAttempts"], invoke_config["MaximumEventAgeInSeconds"]) == (0, 60)
    assert resources["SettlerFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1


# Two realistic deployments: a dev stack on the defaults, and a production one with every option taken. (SnapStart
# on or off changes no resource, only the condition's value; both are covered here all the same.)
DEPLOYMENTS = {
    "dev-defaults": {},
    "prod-every-option": {
        "Stage": "prod",
        "JwtAudience": "payout-link-proxy,payout-link-proxy-admin",
        "CorsAllowedOrigins": "https://app.example.test,https://admin.example.test,https://ops.example.test",
        "EnableSnapStart": "true",
        "EnableApiDocs": "true",
        "ReservedConcurrency": "100",
        "ExistingPayoutApiCredentialsSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dots-AbC123",
        "ExistingPartnerWebhookSecretsSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hooks-AbC123",
        "SecretsKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "AlarmEmail": "oncall@example.test",
    },
}
# Findings of cfn-lint on the transformed template that are accepted, by rule id: where they occur (a glob over
# the finding's path) and why. Each must still occur, so that a fixed one leaves this list.
JUSTIFIED_LINT_FINDINGS = {
    "W1020": (
        "Resources/DependenciesLayer*/Properties/LayerName/Fn::Sub",
        "SAM inlines Stage into the layer's LayerName !Sub, leaving no variable; template.yaml's !Sub has one",
    ),
}


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_cfn_lint_of_what_cloudformation_deploys(
    deployment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cfn-lint on the template as the SAM translator makes it (test_cfn_lint only sees the SAM template): no
    error, and every warning or informational finding is one of JUSTIFIED_LINT_FINDINGS, each of which occurs."""
    transformed = tmp_path / "transformed.json"
    transformed.write_text(json.dumps(_transformed(**DEPLOYMENTS[deployment])))
    result = subprocess.run(
        [str(_tool("cfn-lint")), str(transformed), "--format", "json", "--include-checks", "I"],
        cwd=REPO_ROOT,
        env=_tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # cfn-lint's exit code is a bit set: 2 errors, 4 warnings, 8 informational found; 1, it failed to run.
    assert result.returncode % 2 == 0 and result.stdout, result.stderr
    findings = json.loads(result.stdout)
    by_level = {level: [f for f in findings if f["Level"] == level] for level in ("Error", "Warning", "Informational")}
    with capsys.disabled():
        print(
            f"\ncfn-lint of the transformed template ({deployment}): {len(by_level['Error'])} errors, "
            f"{len(by_level['Warning'])} warnings, {len(by_level['Informational'])} informational: "
            + (", ".join(sorted({f["Rule"]["Id"] for f in findings})) or "none")
        )

    def described(finding: dict[str, Any]) -> str:
        return f"{finding['Rule']['Id']} at {'/'.join(map(str, finding['Location']['Path']))}: {finding['Message']}"

    assert not by_level["Error"], "\n".join(map(described, by_level["Error"]))
    unjustified = [
        finding
        for finding in findings
        if finding["Rule"]["Id"] not in JUSTIFIED_LINT_FINDINGS
        or not fnmatch.fnmatchcase(
            "/".join(map(str, finding["Location"]["Path"])), JUSTIFIED_LINT_FINDINGS[finding["Rule"]["Id"]][0]
        )
    ]
    assert not unjustified, "fix these, or justify them in JUSTIFIED_LINT_FINDINGS:\n" + "\n".join(
        map(described, unjustified)
    )
    gone = set(JUSTIFIED_LINT_FINDINGS) - {finding["Rule"]["Id"] for finding in findings}
    assert not gone, f"no longer found, remove from JUSTIFIED_LINT_FINDINGS: {sorted(gone)}"


PATH_TEMPLATE = re.compile(r"\{([^}+]+)\+?\}")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace", "x-amazon-apigateway-any-method"}


def test_the_generated_openapi_has_none_of_the_constructs_reported_to_fail_under_fail_on_warnings() -> None:
    """FailOnWarnings stays on (a warning otherwise drops part of the API silently), so the body SAM generates
    must import without a warning. The constructs SAM users reported failing under the flag: a path without its
    leading "/" (the `$default` route or stage, SAM issue 2297: "Resource $default should start with /") and a
    `servers` entry without a `url` (what DisableExecuteApiEndpoint generates, SAM issue 2424). And, from the
    OpenAPI parser those messages come from, every `{name}` in a path declared as a path parameter of each of
    its operations, and none declared that the path lacks."""
    resources = _translated()
    (api,) = [resource for resource in resources.values() if resource["Type"] == "AWS::ApiGatewayV2::Api"]
    body = api["Properties"]["Body"]

    assert api["Properties"]["FailOnWarnings"] is True
    assert body["openapi"].startswith("3.0")
    assert all(server.get("url") for server in body.get("servers", [])), body["servers"]
    assert "x-amazon-apigateway-endpoint-configuration" not in json.dumps(body)
    assert body["paths"]
    for path, item in body["paths"].items():
        assert path.startswith("/"), path
        in_path = set(PATH_TEMPLATE.findall(path))
        operations = {method: operation for method, operation in item.items() if method in HTTP_METHODS}
        assert operations and set(item) == set(operations), (path, set(item) - set(operations))
        for method, operation in operations.items():
            declared = [parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "path"]
            assert sorted(declared) == sorted(in_path), (method, path, declared)


def _parameters_in(value: Any, parameters: set[str]) -> set[str]:
    """The template parameters a value refers to: by `Ref`, or by name inside an `Fn::Sub` string."""
    found: set[str] = set()
    if isinstance(value, dict):
        if value.get("Ref") in parameters:
            found.add(value["Ref"])
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            found |= set(re.findall(r"\$\{(\w+)\}", text)) & parameters
        for item in value.values():
            found |= _parameters_in(item, parameters)
    elif isinstance(value, list):
        for item in value:
            found |= _parameters_in(item, parameters)
    return found


def test_every_deploy_time_value_of_the_function_publishes_a_new_version(template: dict[str, Any]) -> None:
    """SAM names a version after the function's properties as written, a parameter by its name and not its
    value, so a deploy that changes only a parameter or the layer would leave the alias on the old version, with
    the old limits. The version's description carries every parameter the function's configuration reads, and
    the layer's version, so that any such change publishes anew."""
    parameters = set(template["Parameters"])
    properties = template["Resources"]["PayoutLinksFunction"]["Properties"]
    configuration = {
        "global environment": template["Globals"]["Function"]["Environment"],
        "environment": properties["Environment"],
        "snapstart": properties["SnapStart"],
    }
    read = set().union(*(_parameters_in(value, parameters) for value in configuration.values()))
    description = properties["VersionDescription"]

    assert read and read <= _parameters_in(description, parameters), read - _parameters_in(description, parameters)
    layer_version = {"Fn::Select": [7, {"Fn::Split": [":", {"Ref": "DependenciesLayer"}]}]}
    assert description["Fn::Sub"][1]["LayerVersion"] == layer_version
    assert properties["VersionDeletionPolicy"] == "Delete"


# Shapes of a valid value, stretched to a String parameter's MaxLength, tried in turn until its AllowedPattern
# takes one. An ARN's region is one character, the shortest a region can be, so that the rest of its length goes
# to the resource's name.
LONG_VALUE_SHAPES = (
    "arn:aws:secretsmanager:x:123456789012:secret:",
    "arn:aws:kms:x:123456789012:key/",
    "https://",
    "a@b.",
    "",
)


def _longest_values(template: dict[str, Any]) -> dict[str, str]:
    """Every parameter but the lists at its longest, as the text a deploy passes: the longest of its
    AllowedValues; a Number's bound with the more digits (written as digits, without leading zeros); a String
    stretched to its MaxLength in the first of LONG_VALUE_SHAPES that its AllowedPattern takes."""
    longest = {}
    for name, declared in template["Parameters"].items():
        if "AllowedValues" in declared:
            longest[name] = max(map(str, declared["AllowedValues"]), key=len)
        elif declared["Type"] == "Number":
            assert {"MinValue", "MaxValue"} <= set(declared), f"{name} is unbounded"
            longest[name] = max(str(declared["MinValue"]), str(declared["MaxValue"]), key=len)
        elif declared["Type"] == "String":
            assert "MaxLength" in declared, f"{name} is unbounded"
            stretched = [shape.ljust(int(declared["MaxLength"]), "a") for shape in LONG_VALUE_SHAPES]
            fitting = [value for value in stretched if re.fullmatch(declared.get("AllowedPattern", ".*"), value)]
            assert fitting, f"{name}: no shape of LONG_VALUE_SHAPES fits {declared['AllowedPattern']}"
            longest[name] = fitting[0]
    return longest


# A layer's versions are numbered from 1 per name (one name per stage): five digits is a hundred thousand deploys
# of new dependencies.
LAYER_VERSION_DIGITS = 5


def test_the_version_description_fits_in_256_characters_with_every_parameter_at_its_longest() -> None:
    """Lambda refuses a version description over 256 characters, and then the deploy fails halfway. With every
    parameter at its longest (_longest_values: both secrets existing ones, their ARNs as long as allowed and their
    region as short as can be, so that their names are at their longest), it fits."""
    transformed = _transformed()
    resources = transformed["Resources"]
    longest = _longest_values(transformed)
    (version,) = [name for name, resource in resources.items() if resource["Type"] == "AWS::Lambda::Version"]
    (layer,) = [name for name, resource in resources.items() if resource["Type"] == "AWS::Lambda::LayerVersion"]
    layer_arn = f"arn:aws:lambda:x:123456789012:layer:payout-link-proxy-{longest['Stage']}-dependencies:"
    values = {**REQUIRED_PARAMETERS, **longest, layer: layer_arn + "9" * LAYER_VERSION_DIGITS}

    description = _as_cloudformation_resolves(resources[version]["Properties"]["Description"], transformed, values)

    for secret in SECRET_IN_USE:  # the existing secrets' names, not "stack"
        assert longest[f"Existing{secret}Arn"].split(":")[6] in description.split("|")
    assert len(description) <= 256, f"{len(description)} characters: {description}"


def test_every_parameter_is_bounded(template: dict[str, Any]) -> None:
    """A value the stack cannot take is refused before anything is deployed, not halfway: every Number parameter
    has both bounds, every String one its allowed values, or a length and a pattern; each default within them."""
    for name, declared in template["Parameters"].items():
        if declared["Type"] == "Number":
            assert {"MinValue", "MaxValue"} <= set(declared), name
            assert declared["MinValue"] <= declared["Default"] <= declared["MaxValue"], name
        elif declared["Type"] == "String":
            assert "AllowedValues" in declared or {"MaxLength", "AllowedPattern"} <= set(declared), name
            if "Default" in declared and "AllowedPattern" in declared:
                assert re.fullmatch(declared["AllowedPattern"], declared["Default"]), name
                assert len(declared["Default"]) <= declared["MaxLength"], name
        else:
            assert declared["Type"] == "CommaDelimitedList", name


def test_each_number_the_functions_read_is_bounded_within_what_their_settings_accept(template: dict[str, Any]) -> None:
    """The settings (settings.py) refuse a value out of their bounds on the first request, a 500 for every caller:
    a Number parameter a function reads must stay within them from its MinValue to its MaxValue."""
    globals_ = template["Globals"]["Function"]["Environment"]["Variables"]
    read = {}
    for function in ("PayoutLinksFunction", "SettlerFunction"):
        variables = {**globals_, **template["Resources"][function]["Properties"]["Environment"]["Variables"]}
        for variable, value in variables.items():
            parameter = template["Parameters"].get(value.get("Ref") if isinstance(value, dict) else None)
            if parameter is not None and parameter["Type"] == "Number":
                read[variable.lower()] = parameter
    assert len(read) >= 7, sorted(read)
    for setting, parameter in read.items():
        assert setting in Settings.model_fields, setting
        for bound in ("MinValue", "MaxValue"):
            assert bound in parameter, (setting, bound)
            Settings.model_validate({**_SETTINGS_REQUIRED, setting: str(parameter[bound])})


def _selects_of_splits(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, int, str, Any]]:
    """Every `Fn::Select` of an `Fn::Split` in a value: where it is, its index, the delimiter and what is split."""
    found = []
    if isinstance(value, dict):
        select = value.get("Fn::Select")
        if isinstance(select, list) and isinstance(select[1], dict) and list(select[1]) == ["Fn::Split"]:
            delimiter, source = select[1]["Fn::Split"]
            found.append(("/".join(path), int(select[0]), delimiter, source))
        for key, item in value.items():
            found += _selects_of_splits(item, (*path, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found += _selects_of_splits(item, (*path, str(position)))
    return found


def test_no_select_reads_past_the_end_of_what_a_parameter_splits_into() -> None:
    """CloudFormation resolves an `Fn::Select` in both branches of an `Fn::If`, the unused one too, and fails the
    deploy on an index past the end of its list ("Fn::Select cannot select nonexistent value"). Each Select of a
    Split of a parameter must find its index with the parameter at its default (an empty secret ARN: the stack
    creates the secret, and the name Selected from the ARN is not used), at a value given in a deploy and at its
    longest (_longest_values)."""
    transformed = _transformed()
    resources, parameters = transformed["Resources"], set(transformed["Parameters"])
    cases = {"default": {}, "given": DEPLOYMENTS["prod-every-option"], "longest": _longest_values(transformed)}
    checked = []
    for path, index, delimiter, source in _selects_of_splits(resources):
        named = _parameters_in(source, parameters)
        if not named:
            # A layer version's ARN, which always has its eight fields.
            assert resources[source["Ref"]]["Type"] == "AWS::Lambda::LayerVersion", path
            continue
        for case, values in cases.items():
            fields = _as_cloudformation_resolves(source, transformed, {**REQUIRED_PARAMETERS, **values}).split(
                delimiter
            )
            assert index < len(fields), f"{path}: {sorted(named)} ({case}) splits into {fields}"
            if case != "default":  # the same field as the value's own
                (name,) = named
                assert fields[index] == values[name].split(delimiter)[index], path
        checked.append(path)
    assert len(checked) == 2, checked


def test_a_failed_first_deploy_deletes_what_it_created_unless_deletion_protection_keeps_it() -> None:
    """A resource kept on stack deletion (DeletionPolicy Retain) was kept too when the deploy that created it
    failed and rolled back, leaving an empty table behind at every failed first deploy. RetainExceptOnCreate keeps
    it on every later deletion and lets that rollback delete it. Not on a table with deletion protection: DynamoDB
    refuses to delete it whoever asks, so that rollback would fail (ROLLBACK_FAILED) instead; such a table stays
    Retain, left behind by a failed first deploy (its name is CloudFormation's, so a retry does not collide)."""
    resources = _translated()
    kept = {
        name: (
            resource["DeletionPolicy"],
            resource.get("UpdateReplacePolicy"),
            resource["Properties"].get("DeletionProtectionEnabled", False),
        )
        for name, resource in resources.items()
        if resource.get("DeletionPolicy", "Delete") != "Delete"
    }

    assert kept == {
        "IdempotencyTable": ("RetainExceptOnCreate", "Retain", False),
        "LinkOwnersTable": ("Retain", "Retain", True),
    }
    for name, (deletion, _, protected) in kept.items():
        assert deletion == ("Retain" if protected else "RetainExceptOnCreate"), name
        assert "TableName" not in resources[name]["Properties"], f"{name}: a retried first deploy would collide"


# Edits of the API function in the template that change what its alias runs, each written literally (a
# parameter's value reaches the alias through the version's description instead).
FUNCTION_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "Timeout": lambda properties: properties.update(Timeout=19),
    "Handler": lambda properties: properties.update(Handler="payout_links.app.other_handler"),
    "MemorySize": lambda properties: properties.update(MemorySize=1024),
    "literal variable": lambda properties: properties["Environment"]["Variables"].update(MAX_BODY_BYTES="32768"),
}


@pytest.mark.parametrize("edit", FUNCTION_EDITS)
def test_an_edit_of_the_function_in_the_template_moves_the_alias_to_a_new_version(edit: str, tmp_path: Path) -> None:
    """SAM names the version the alias points to after a hash of the function; unless told to hash every property
    (AutoPublishAliasAllProperties), it hashes the code, the environment and the memory size only, so that a
    deploy changing the timeout or the handler alone updated $LATEST and left the alias on the old version."""
    before = _alias_version(_translated())
    after = _alias_version(
        _translated_edit(
            lambda edited: FUNCTION_EDITS[edit](edited["Resources"]["PayoutLinksFunction"]["Properties"]), tmp_path
        )
    )

    assert after != before, f"the alias stays on {before} after an edit of {edit}"


def test_every_function_with_an_alias_names_its_versions_after_all_its_properties(template: dict[str, Any]) -> None:
    aliased = {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function" and "AutoPublishAlias" in resource["Properties"]
    }
    assert aliased and {name: p.get("AutoPublishAliasAllProperties") for name, p in aliased.items()} == dict.fromkeys(
        aliased, True
    )


def test_secrets_under_a_customer_managed_key_can_be_decrypted_only_through_secrets_manager(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    """Without kms:Decrypt on the key of an existing secret, every request is a 503; with it, only Secrets
    Manager may use the key on the function's behalf, for the two secrets, and only when a key is named."""
    parameter = template["Parameters"]["SecretsKmsKeyArn"]
    assert parameter["Default"] == ""
    assert re.fullmatch(parameter["AllowedPattern"], "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd")
    assert not re.fullmatch(parameter["AllowedPattern"], "alias/my-key")
    assert template["Conditions"]["DecryptSecretsWithKmsKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SecretsKmsKeyArn"}, ""]}]
    }
    (conditional,) = [
        statement for policy in function["Policies"] for statement in policy["Statement"] if "Fn::If" in statement
    ]
    condition, statement, otherwise = conditional["Fn::If"]
    assert (condition, otherwise) == ("DecryptSecretsWithKmsKey", {"Ref": "AWS::NoValue"})
    assert statement["Action"] == ["kms:Decrypt"] and statement["Resource"] == {"Ref": "SecretsKmsKeyArn"}
    assert statement["Condition"] == {
        "StringEquals": {
            "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"},
            "kms:EncryptionContext:SecretARN": list(SECRET_IN_USE.values()),
        }
    }
