"""The sample events in events/, invoked through the handler as `sam local invoke -e` would: each must stay a
request API Gateway sends for a route of template.yaml, and get the answer events/README.md promises."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from local_stack.core.aws_resources import ensure_table
from local_stack.core.gateway import routes_from_template
from local_stack.core.lambda_worker import LocalLambdaContext
from local_stack.core.template import load_template
from local_stack.stack import FUNCTION, TEMPLATE_PATH
from payout_links.credentials import decode_webhook_secret
from payout_links.webhooks import verify
from tests.support import PARTNER_SECRET, ROOT, HttpResult, http_result

pytestmark = pytest.mark.integration

EVENTS = ROOT / "events"
EVENT_FILES = (
    "create-payout-link.json",
    "replay-payout-link.json",
    "validation-error.json",
    "partner-webhook.json",
    "read-payout-link.json",
    "cancel-payout-link.json",
)
# The id the read and cancel events name: a link no one made, until a test puts the created link's id in its place.
SAMPLE_LINK_ID = "7d2c4e9a-1b3f-4a5c-8d6e-9f0a1b2c3d4e"


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def invoke(event: dict[str, Any]) -> HttpResult:
    from payout_links.app import lambda_handler

    return http_result(lambda_handler(event, LocalLambdaContext(20.0, event["requestContext"]["requestId"])), event)


@pytest.fixture
def function_with_a_new_table(function, aws_clients) -> Iterator[Any]:
    """The events carry fixed idempotency keys: a table of their own makes each key new again in every test."""
    dynamodb, _ = aws_clients
    table = f"events-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, load_template(TEMPLATE_PATH), "IdempotencyTable", table)
    function.set_env(IDEMPOTENCY_TABLE_NAME=table)
    yield function
    dynamodb.delete_table(TableName=table)


def test_events_has_one_file_per_case():
    assert sorted(path.name for path in EVENTS.glob("*.json")) == sorted(EVENT_FILES)


@pytest.mark.parametrize("name", EVENT_FILES)
def test_each_event_is_a_payload_2_0_event_for_a_template_route(name):
    event = load(name)

    assert event["version"] == "2.0"
    context = event["requestContext"]
    assert event["routeKey"] == context["routeKey"]
    assert context["http"]["path"] == event["rawPath"] and context["stage"] == "$default"
    routes = routes_from_template(load_template(TEMPLATE_PATH), FUNCTION)
    (route,) = [route for route in routes if route.route_key == event["routeKey"]]
    assert route.match(context["http"]["method"], event["rawPath"]) == event.get("pathParameters", {})
    # Claims reach the function only on routes behind the JWT authorizer, as the authorizer leaves them.
    assert ("authorizer" in context) == route.jwt_protected


def test_the_create_event_creates_a_link(function_with_a_new_table, upstream):
    result = invoke(load("create-payout-link.json"))

    assert result.status == 201 and "idempotent-replayed" not in result.headers
    assert result.json()["amount"] == 2500
    assert upstream.stats()["links_created"] == 1


def test_the_replay_event_is_the_same_intent_and_replays_the_create(function_with_a_new_table, upstream):
    created = invoke(load("create-payout-link.json"))
    replayed = invoke(load("replay-payout-link.json"))

    assert (replayed.status, replayed.headers["idempotent-replayed"]) == (201, "true")
    assert replayed.body == created.body
    assert upstream.stats()["links_created"] == 1


def test_the_validation_event_is_refused_with_a_pointer_per_field(function_with_a_new_table, upstream):
    result = invoke(load("validation-error.json"))

    assert result.status == 422 and result.is_problem()
    assert {error["pointer"] for error in result.json()["errors"]} == {"#/amount", "#/payee/phone_number", "#/currency"}
    assert upstream.stats()["requests"] == 0


def test_the_partner_event_creates_a_link_once_signed_again(function_with_a_new_table, upstream):
    """The committed signature is genuine (the tests' acme secret) but far older than the 5-minute tolerance, so
    it is refused; signed again now with the same secret, the event goes through."""
    event = load("partner-webhook.json")
    headers = event["headers"]
    signed_at = int(headers["webhook-timestamp"])
    assert verify(event["body"].encode(), headers, [decode_webhook_secret(PARTNER_SECRET)], now=signed_at)
    assert invoke(event).status == 401

    now = datetime.now(UTC)
    fresh = {
        **headers,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(PARTNER_SECRET).sign(headers["webhook-id"], now, event["body"]),
    }
    result = invoke({**event, "headers": fresh})

    assert result.status == 201
    assert result.json()["amount"] == 2500
    assert upstream.stats()["links_created"] == 1


def for_link(event: dict[str, Any], link_id: str) -> dict[str, Any]:
    """The event, naming `link_id` instead of the sample id wherever the id appears."""
    return json.loads(json.dumps(event).replace(SAMPLE_LINK_ID, link_id))


@pytest.mark.parametrize("name", ["read-payout-link.json", "cancel-payout-link.json"])
def test_the_lifecycle_events_name_a_link_no_one_made(function_with_a_new_table, upstream, name):
    result = invoke(load(name))

    assert result.status == 404 and result.is_problem()
    assert upstream.stats()["requests"] == 0


def test_the_read_and_cancel_events_act_on_the_link_the_create_event_made(function_with_a_new_table, upstream):
    link = invoke(load("create-payout-link.json")).json()
    upstream.set_status(link["id"], "delivered")

    read = invoke(for_link(load("read-payout-link.json"), link["id"]))
    canceled = invoke(for_link(load("cancel-payout-link.json"), link["id"]))

    assert (read.status, read.json()["status"], read.headers["cache-control"]) == (200, "delivered", "no-store")
    assert (canceled.status, canceled.json()["status"]) == (200, "canceled")
    assert upstream.link(link["id"])["status"] == "canceled"
