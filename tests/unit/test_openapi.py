"""openapi.json: generated from the models, committed, current, valid, and true to what the function answers."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate

from local_stack.core.gateway import routes_from_template
from local_stack.core.template import load_template
from local_stack.stack import FUNCTION, TEMPLATE_PATH, StackConfig
from payout_links import api_docs, problems
from payout_links.models import ProblemDetails, parse_create_request, parse_partner_event
from payout_links.problems import FieldError
from payout_links.store import KeyState
from scripts.openapi import CREATE_PROBLEMS, OUTPUTS, build_document, problem_classes, render
from tests.support import ROOT

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("path", OUTPUTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_committed_document_is_current(path):
    assert path.read_text(encoding="utf-8") == render(), (
        f"{path.relative_to(ROOT)} is stale: run `make openapi` and commit the result"
    )


def test_the_function_packages_a_generated_copy():
    """`sam build` copies only functions/: the function serves a copy kept current beside its code."""
    assert api_docs.DOCUMENT_PATH in OUTPUTS
    assert api_docs.DOCUMENT_PATH.is_relative_to(ROOT / "functions")


def test_the_document_is_valid_openapi_3_1():
    document = build_document()

    validate(document)
    assert document["openapi"].startswith("3.1.")


def test_every_route_of_the_template_is_described_and_nothing_else():
    document = build_document()

    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert described == {
        (route.method, route.path) for route in routes_from_template(load_template(TEMPLATE_PATH), FUNCTION)
    }


def test_the_frontend_route_needs_the_bearer_token_and_the_others_do_not():
    paths = build_document()["paths"]

    assert paths["/payout-links"]["post"]["security"] == [{"bearerJwt": []}]
    for path, method in (("/webhooks/{partner}/payout-links", "post"), ("/openapi.json", "get"), ("/docs", "get")):
        assert paths[path][method]["security"] == [], path


def test_the_webhook_route_declares_the_signature_headers():
    operation = build_document()["paths"]["/webhooks/{partner}/payout-links"]["post"]

    required = {parameter["name"] for parameter in operation["parameters"] if parameter["required"]}
    assert required == {"partner", "webhook-id", "webhook-timestamp", "webhook-signature"}


def test_every_problem_a_create_can_raise_is_declared_with_problem_json():
    """A new Problem class with a new status fails here until the generator declares it."""
    statuses = {problem.status for problem in problem_classes()} - {problems.NotFound.status}
    assert set(CREATE_PROBLEMS) == statuses
    document = build_document()
    for path in ("/payout-links", "/webhooks/{partner}/payout-links"):
        responses = document["paths"][path]["post"]["responses"]
        for status in statuses:
            response = _resolve(document, responses[str(status)])
            assert "application/problem+json" in response["content"], (path, status)


def test_retry_after_is_declared_where_the_function_always_sends_it():
    document = build_document()
    responses = document["paths"]["/payout-links"]["post"]["responses"]

    for status in (409, 503):
        assert _resolve(document, responses[str(status)])["headers"]["Retry-After"]["required"] is True
    assert _resolve(document, responses["429"])["headers"]["Retry-After"]["required"] is False  # not API Gateway's


@pytest.mark.parametrize(
    ("schema", "parse"),
    [("CreatePayoutLinkRequest", parse_create_request), ("PartnerEvent", parse_partner_event)],
)
def test_the_documented_request_examples_are_accepted(schema, parse):
    examples = build_document()["components"]["schemas"][schema]["examples"]

    assert examples
    for example in examples:
        parse(json.dumps(example), max_amount_cents=1_000_000)


@pytest.mark.parametrize("problem_class", problem_classes(), ids=lambda cls: cls.__name__)
def test_every_problem_body_matches_the_documented_schema(problem_class):
    if problem_class is problems.LimitExceeded:
        problem = problem_class("The caller's limit.", limit=problems.Limit.DAILY_AMOUNT, retry_after=60)
    else:
        problem = problem_class("Something about the request.", errors=(FieldError("#/amount", "too large"),))

    ProblemDetails.model_validate(problem.to_dict())


@pytest.mark.parametrize("state", list(KeyState), ids=str)
def test_a_problem_that_says_where_its_key_stands_matches_the_documented_schema(state):
    problem = problems.UpstreamFailed("Dots failed.").bound_to(state)

    ProblemDetails.model_validate(problem.to_dict("Xyz1AbCdIAMEYqy="))


def test_the_documented_key_states_are_the_stores():
    schema = build_document()["components"]["schemas"]["ProblemDetails"]["properties"]["key_state"]

    (states,) = [option for option in schema["anyOf"] if option.get("type") == "string"]
    assert states["enum"] == [state.value for state in KeyState]
    assert "same key and the same body" in schema["description"]


def test_the_new_problem_types_are_declared_with_their_status():
    responses = build_document()["components"]["responses"]

    assert "`upstream-link-conflict`" in responses["502"]["description"]


def _resolve(document: dict, item: dict) -> dict:
    if "$ref" not in item:
        return item
    node = document
    for part in item["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_problem_type_is_an_enum_of_every_type_problems_py_defines():
    """A generated client gets the list of problem types, not a string: every kind of problem problems.py defines
    (a refinement without a slug of its own is its parent's kind) and nothing else."""
    defined = {
        problems.PROBLEM_TYPE_PREFIX + kind.slug
        for kind in vars(problems).values()
        if isinstance(kind, type) and issubclass(kind, problems.Problem)
    }
    schema = build_document()["components"]["schemas"]["ProblemDetails"]["properties"]["type"]

    assert set(schema["enum"]) == defined and len(schema["enum"]) == len(defined)
    assert schema["type"] == "string" and "pattern" not in schema
    assert set(schema["examples"]) <= defined


def test_the_document_names_where_the_api_answers():
    """First the API that serves the document (relative: what the OpenAPI default is, so the /docs page keeps calling
    its own stack), then make run's at its default port, then a deployed stack as the template's ApiUrl output."""
    servers = build_document()["servers"]
    relative, local, deployed = servers

    assert relative["url"] == "/"
    assert local["url"] == f"http://127.0.0.1:{StackConfig.from_env({}).port}"
    api_url = load_template(TEMPLATE_PATH)["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]
    templated = api_url.replace("${HttpApi}", "{apiId}").replace("${AWS::Region}", "{region}")
    assert deployed["url"] == templated.replace("${AWS::URLSuffix}", "amazonaws.com").rstrip("/")
    for server in servers:
        variables = set(re.findall(r"\{(\w+)\}", server["url"]))
        assert variables == set(server.get("variables", {})), server
        assert all(server["variables"][name]["default"] for name in variables), server
        assert server["description"]
