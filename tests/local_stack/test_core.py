"""The local stack's core (local_stack/core/) serves any function of any SAM template: here a made-up template with
two functions and a trivial handler module, written to a temporary directory, and nothing of this project's."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from local_stack.core.api import LocalApi
from local_stack.core.gateway import Cors, Route, routes_from_template
from local_stack.core.template import function_settings, load_template
from local_stack.issuer import LocalIssuer
from tests.support import ROOT

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
Globals:
  Function:
    Timeout: 7
    Environment:
      Variables:
        LEVEL: info
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration:
        AllowOrigins: [https://app.example.test]
        AllowMethods: [GET]
  Notes:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: echo.handle
      MemorySize: 256
      Environment:
        Variables:
          GREETING: !Ref Greeting
          NOTES_TABLE: !Ref Notes
      Events:
        Echo:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Path: /echo/{name}
            Method: get
  OtherFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: echo.other
      Events:
        Other:
          Type: HttpApi
          Properties:
            Path: /other
            Method: GET
"""

HANDLER = """\
import json
import os


def handle(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(
            {
                "route": event["routeKey"],
                "name": event["pathParameters"]["name"],
                "query": event.get("queryStringParameters"),
                "greeting": os.environ["GREETING"],
                "level": os.environ["LEVEL"],
                "notes_table": os.environ["NOTES_TABLE"],
                "function_name": context.function_name,
                "memory": context.memory_limit_in_mb,
                "remaining_ms": context.get_remaining_time_in_millis(),
            }
        ),
    }


def shout(event, context):
    return {"statusCode": 201, "body": event["pathParameters"]["name"].upper()}


def other(event, context):
    return {"statusCode": 200, "body": "other"}
"""


@pytest.fixture
def template_path(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "echo.py").write_text(HANDLER, encoding="utf-8")
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE, encoding="utf-8")
    return path


@pytest.mark.e2e  # starts function processes behind the gateway
def test_the_core_serves_a_templates_function_through_its_gateway(template_path: Path) -> None:
    api = LocalApi(template_path, "EchoFunction", physical_names={"Notes": "local-notes"})
    assert api.environment == {"LEVEL": "info", "GREETING": "hello", "NOTES_TABLE": "local-notes"}
    api.environment["GREETING"] = "hi"  # the caller's say over the function's variables

    with api.start(), httpx.Client(base_url=api.url, timeout=30) as http:
        answer = http.get("/echo/ada", params={"loud": "no"}, headers={"origin": "https://app.example.test"})
        other = http.get("/other")
        preflight = http.options(
            "/echo/ada", headers={"origin": "https://app.example.test", "access-control-request-method": "GET"}
        )
        assert len(api.pids) == 1

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body.pop("remaining_ms") in range(1, 7001)  # the template's Globals timeout
    assert body == {
        "route": "GET /echo/{name}",
        "name": "ada",
        "query": {"loud": "no"},
        "greeting": "hi",
        "level": "info",
        "notes_table": "local-notes",
        "function_name": "EchoFunction",
        "memory": 256,
    }
    assert answer.headers["access-control-allow-origin"] == "https://app.example.test"
    assert answer.headers["apigw-requestid"]
    # Only the function's own routes: another function's is not served by this one.
    assert other.status_code == 404
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-methods"] == "GET"
    assert api.pids == []  # stopped


@pytest.mark.e2e  # starts function processes behind the gateway
def test_the_handler_and_the_function_name_are_the_callers_to_choose(template_path: Path) -> None:
    api = LocalApi(template_path, "EchoFunction", handler="echo.shout", physical_names={"Notes": "n"})

    with api.start(function_name="echo-local", timeout_seconds=2), httpx.Client(timeout=30) as http:
        answer = http.get(f"{api.url}/echo/ada")

    assert (answer.status_code, answer.text) == (201, "ADA")


@pytest.mark.e2e  # starts function processes behind the gateway
def test_a_function_on_the_implicit_api_is_served_without_cors(template_path: Path) -> None:
    with LocalApi(template_path, "OtherFunction") as api, httpx.Client(timeout=30) as http:
        answer = http.get(f"{api.url}/other", headers={"origin": "https://app.example.test"})

    assert (answer.status_code, answer.text) == (200, "other")
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.unit
def test_routes_are_read_per_function_with_their_api(template_path: Path) -> None:
    template = load_template(template_path)

    assert routes_from_template(template, "EchoFunction") == [Route("GET", "/echo/{name}", jwt_protected=False)]
    assert routes_from_template(template, "EchoFunction")[0].api == "Api"
    assert routes_from_template(template, "OtherFunction")[0].api is None
    assert [route.route_key for route in routes_from_template(template)] == ["GET /echo/{name}", "GET /other"]
    assert Cors.from_template(template, api="Api") == Cors(("https://app.example.test",), ("GET",))


@pytest.mark.unit
def test_function_settings_merge_the_globals_and_default_what_lambda_defaults(template_path: Path) -> None:
    template = load_template(template_path)

    echo = function_settings(template, "EchoFunction", {"Notes": "local-notes"})
    other = function_settings(template, "OtherFunction")

    assert (echo.handler, echo.code_uri, echo.timeout_seconds, echo.memory_mb) == ("echo.handle", "src/", 7.0, 256)
    assert (other.environment, other.memory_mb) == ({"LEVEL": "info"}, 128)
    with pytest.raises(ValueError, match="no AWS::Serverless::Function 'Notes'"):
        function_settings(template, "Notes")
    with pytest.raises(ValueError, match="NOTES_TABLE: cannot resolve"):
        function_settings(template, "EchoFunction")  # a resource without a local name


# What only this project's wiring may know: its function, resources, variables, upstream and the repository's layout.
PROJECT_WORDS = re.compile(
    r"payout|dots|partner|idempotency|owner|whsec|demo|settle|LOCAL_(?:CONCURRENCY|INTEGRATION|SCHEDULE_SECONDS|CONTROL_PORT)",
    re.I,
)


@pytest.mark.unit
def test_the_core_knows_nothing_of_this_project() -> None:
    sources = sorted((ROOT / "local_stack" / "core").glob("*.py"))
    assert len(sources) >= 7

    for source in sources:
        text = source.read_text(encoding="utf-8")
        assert PROJECT_WORDS.findall(text) == [], source.name
        imported = re.findall(r"^\s*(?:from|import) (local_stack[\w.]*)", text, re.MULTILINE)
        assert all(name.startswith("local_stack.core") for name in imported), (source.name, imported)


@pytest.mark.unit
def test_the_projects_wiring_runs_its_function_from_its_code_uri() -> None:
    """`make run` imports the template's handler from the template's CodeUri, as Lambda does."""
    from local_stack.stack import FUNCTION, LOCAL_NAMES, TEMPLATE_PATH

    settings = function_settings(load_template(TEMPLATE_PATH), FUNCTION, LOCAL_NAMES)

    assert settings.handler == "payout_links.app.lambda_handler"
    assert (TEMPLATE_PATH.parent / settings.code_uri / "payout_links" / "app.py").is_file()


SCOPED_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration: {issuer: https://issuer.test, audience: [notes]}
  ShoutFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: echo.shout
      Events:
        Shout:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Path: /shout/{name}
            Method: post
            Auth:
              AuthorizationScopes: [notes:write]
"""


SHOUT_COUNTING = """\
from pathlib import Path


def shout(event, context):
    with (Path(__file__).parent / "invocations.log").open("a") as log:
        log.write(event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] + "\\n")
    return {"statusCode": 201, "body": event["pathParameters"]["name"].upper()}
"""


@pytest.mark.e2e  # starts a function process behind the gateway
def test_the_apis_jwt_authorizer_refuses_bad_tokens_and_missing_scopes_before_the_function_runs(
    tmp_path: Path, issuer: LocalIssuer
) -> None:
    """The authorizer's issuer is given (the template's is not one this machine can reach); its audience is the
    template's. Only an accepted token with the route's scope reaches the function."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "echo.py").write_text(SHOUT_COUNTING, encoding="utf-8")
    (tmp_path / "template.yaml").write_text(SCOPED_TEMPLATE, encoding="utf-8")

    def bearer(**claims: object) -> dict[str, str]:
        return {"authorization": "Bearer " + issuer.mint({"sub": "ada", "aud": "notes", **claims})}

    with (
        LocalApi(tmp_path / "template.yaml", "ShoutFunction").start(jwt_issuer=issuer.url) as api,
        httpx.Client(base_url=api.url) as http,
    ):
        missing = http.post("/shout/ada")
        other_audience = http.post("/shout/ada", headers=bearer(aud="payout-link-proxy", scope="notes:write"))
        refused = http.post("/shout/ada", headers=bearer(scope="notes:read"))
        served = http.post("/shout/ada", headers=bearer(scope="notes:read notes:write"))

    assert (missing.status_code, missing.json(), missing.headers["www-authenticate"]) == (
        401,
        {"message": "Unauthorized"},
        "Bearer",
    )
    assert (other_audience.status_code, other_audience.headers["www-authenticate"]) == (
        401,
        'Bearer scope="" error="invalid_token" error_description="the token does not have a valid audience"',
    )
    assert (refused.status_code, refused.json()) == (403, {"message": "Forbidden"})
    assert (served.status_code, served.text) == (201, "ADA")
    assert (tmp_path / "src" / "invocations.log").read_text().splitlines() == ["ada"]  # the one served


@pytest.mark.unit
def test_routes_behind_a_jwt_authorizer_cannot_be_served_without_one(tmp_path: Path) -> None:
    """There is no switch that turns the check off: an authorizer whose issuer does not resolve must be given."""
    (tmp_path / "src").mkdir()
    (tmp_path / "template.yaml").write_text(
        SCOPED_TEMPLATE.replace("issuer: https://issuer.test", "issuer: !Ref Issuer").replace(
            "Resources:", "Parameters:\n  Issuer:\n    Type: String\nResources:", 1
        ),
        encoding="utf-8",
    )

    with pytest.raises(ValueError, match="issuer"):
        LocalApi(tmp_path / "template.yaml", "ShoutFunction").start()
