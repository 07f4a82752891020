"""Reading and canceling a payout link, for its owner only: the function against moto (over HTTP, with the real
boto3 client) and the Dots emulator (a real HTTP server)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support import emitted_metrics, function_logs, payout_body, token, token_claims

pytestmark = pytest.mark.integration

NOT_FOUND_TYPE = "urn:payout-link-proxy:problem:not-found"


def headers_for(sub: str | None = "user-1", **claims: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token(sub, **claims)}"}


def created(function, **create) -> dict:
    answer = function.create(**create)
    assert answer.status == 201, answer.body
    return answer.json()


def read(function, link_id: str, sub: str | None = "user-1", **claims: str):
    return function.request("GET", f"/payout-links/{link_id}", headers=headers_for(sub, **claims))


def cancel(function, link_id: str, sub: str | None = "user-1", **claims: str):
    return function.request("DELETE", f"/payout-links/{link_id}", headers=headers_for(sub, **claims))


def lifecycle_calls(upstream) -> tuple[int, int]:
    stats = upstream.stats()
    return stats["reads"], stats["cancels"]


# -- reading ------------------------------------------------------------------------------------------------


def test_the_owner_reads_the_link_as_the_upstream_has_it_now(function, upstream):
    link = created(function)
    upstream.set_status(link["id"], "delivered")

    answer = read(function, link["id"])

    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json() == {**link, "status": "delivered"}
    assert lifecycle_calls(upstream) == (1, 0)


def test_a_machine_token_and_a_user_of_the_same_name_never_see_each_others_links(function, upstream):
    machine = {"authorization": f"Bearer {token(None, client_id='svc-1')}"}
    machines = created(function, sub=None, headers=machine)
    users = created(function, sub="svc-1")

    assert read(function, machines["id"], None, client_id="svc-1").status == 200
    assert read(function, users["id"], "svc-1").status == 200
    assert lifecycle_calls(upstream) == (2, 0)
    for refused in (
        read(function, machines["id"], "svc-1"),
        cancel(function, machines["id"], "svc-1"),
        read(function, users["id"], None, client_id="svc-1"),
        cancel(function, users["id"], None, client_id="svc-1"),
    ):
        assert refused.status == 404 and refused.json()["type"] == NOT_FOUND_TYPE
    assert lifecycle_calls(upstream) == (2, 0)
    assert upstream.link(machines["id"])["status"] == upstream.link(users["id"])["status"] == "created"


@pytest.mark.parametrize("action", [read, cancel])
def test_another_caller_gets_404_and_the_upstream_is_not_asked(function, upstream, action):
    link = created(function)

    answer = action(function, link["id"], "user-2")

    assert answer.status == 404 and answer.is_problem()
    assert answer.json()["type"] == NOT_FOUND_TYPE
    assert lifecycle_calls(upstream) == (0, 0)
    assert upstream.link(link["id"])["status"] == "created"


@pytest.mark.parametrize("action", [read, cancel])
def test_a_partner_made_link_is_invisible_to_every_frontend(function, upstream, action):
    made = function.webhook()
    assert made.status == 201

    for sub in ("user-1", "acme", "partner:acme"):
        assert action(function, made.json()["id"], sub).status == 404
    assert action(function, made.json()["id"], None, client_id="acme").status == 404
    assert lifecycle_calls(upstream) == (0, 0)


def test_every_id_a_caller_may_not_see_gets_the_same_answer(function, upstream):
    """Another caller's link, a partner's, one made at Dots without the proxy, an unknown id and malformed ones:
    the same 404, byte for byte, and not one call to the upstream."""
    mine = created(function, sub="user-2")["id"]
    partners = function.webhook().json()["id"]
    outside = upstream.seed_link()["id"]
    ids = [mine, partners, outside, str(uuid.uuid4()), "not-a-link", "a" * 129, "..", "%2e%2e", "li%20nk", "é", "a.b"]
    before = upstream.stats()["requests"]

    answers = [action(function, link_id) for link_id in ids for action in (read, cancel)]

    assert all(answer.is_problem() for answer in answers)
    assert {(answer.status, answer.headers["content-type"], answer.body_but_request_id()) for answer in answers} == {
        (404, "application/problem+json", answers[0].body_but_request_id())
    }
    assert json.loads(answers[0].body)["title"] == "Not found"
    assert upstream.stats()["requests"] == before


def test_a_link_whose_create_outcome_is_unknown_is_not_readable_until_the_create_is_retried(function, upstream):
    """The upstream made the link but its answer was lost: the key stays bound and no owner is recorded yet, so
    the link is a 404 even to its maker. The retry of the create gets the same link and records its owner."""
    key = str(uuid.uuid4())
    function.set_env(PAYOUT_API_MAX_ATTEMPTS="1")
    upstream.inject({"after_create": True, "drop": True})

    lost = function.create(key=key)
    assert lost.status in (502, 504), lost.body
    (link_id,) = upstream.stats()["links"].values()
    assert read(function, link_id).status == 404

    retried = function.create(key=key)
    assert retried.status == 201 and retried.json()["id"] == link_id
    assert read(function, link_id).status == 200


def test_the_owner_record_outlives_the_idempotency_record(function, upstream, aws_resources, aws_clients):
    dynamodb, _ = aws_clients
    link = created(function)
    items = dynamodb.scan(TableName=aws_resources["table"])["Items"]
    for item in items:
        dynamodb.delete_item(TableName=aws_resources["table"], Key={"id": item["id"]})

    assert read(function, link["id"]).status == 200
    owner = dynamodb.get_item(TableName=aws_resources["owners_table"], Key={"link_id": {"S": link["id"]}})["Item"]
    assert owner["owner"] == {"S": "user:user-1"}
    retention = int(owner["expires_at"]["N"]) - int(owner["created_at"]["N"])
    assert retention == 400 * 86_400


def test_an_expired_owner_record_hides_the_link_before_the_ttl_deletes_it(
    function, upstream, aws_resources, aws_clients
):
    dynamodb, _ = aws_clients
    link = created(function)
    dynamodb.update_item(
        TableName=aws_resources["owners_table"],
        Key={"link_id": {"S": link["id"]}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": "1000"}},
    )

    assert read(function, link["id"]).status == 404
    assert lifecycle_calls(upstream) == (0, 0)


# -- canceling ----------------------------------------------------------------------------------------------


def test_cancel_then_cancel_again(function, upstream):
    link = created(function)

    first = cancel(function, link["id"])
    again = cancel(function, link["id"])

    assert first.status == again.status == 200
    assert first.headers["cache-control"] == "no-store"
    assert first.json() == again.json() == {**link, "status": "canceled"}
    assert upstream.link(link["id"])["status"] == "canceled"
    # The second DELETE was refused by the upstream; the link's state, read once more, says it is canceled.
    assert lifecycle_calls(upstream) == (1, 2)


@pytest.mark.parametrize("status", ["claimed", "reversed", "expired"])
def test_a_link_past_canceling_is_409_not_cancelable(function, upstream, status):
    link = created(function)
    before = upstream.set_status(link["id"], status)

    answer = cancel(function, link["id"])

    assert answer.status == 409 and answer.is_problem()
    assert answer.json()["type"] == "urn:payout-link-proxy:problem:not-cancelable"
    assert status in answer.json()["detail"]
    assert "retry-after" not in answer.headers
    assert upstream.link(link["id"]) == before  # as it was: status, claimed user, everything


def test_the_owners_table_unavailable_is_a_503_and_the_upstream_is_not_asked(function, upstream):
    link = created(function)
    function.set_env(LINK_OWNERS_TABLE_NAME="no-such-table")

    answer = read(function, link["id"])

    assert answer.status == 503 and answer.is_problem() and "retry-after" in answer.headers
    assert lifecycle_calls(upstream) == (0, 0)


def test_no_token_is_401(function, upstream):
    link = created(function)

    answer = function.request("GET", f"/payout-links/{link['id']}")

    assert answer.status == 401 and answer.is_problem()


# -- what operators see ----------------------------------------------------------------------------------------


def test_reads_cancels_and_refusals_are_counted_without_a_caller_dimension(function, upstream):
    link = created(function)

    with emitted_metrics() as documents:
        read(function, link["id"])
        cancel(function, link["id"])
        read(function, link["id"], "user-2")

    counted = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                counted[metric["Name"]] = directive["Dimensions"]
    assert {"PayoutLinkRead", "PayoutLinkCanceled", "LinkOwnershipRefused"} <= counted.keys()
    for name in ("PayoutLinkRead", "PayoutLinkCanceled", "LinkOwnershipRefused"):
        assert counted[name] == [["service"]], name


def test_a_refusal_is_logged_with_its_reason_and_without_the_id(function, upstream):
    link = created(function)
    probe = "probe-" + uuid.uuid4().hex

    with function_logs() as logs:
        read(function, link["id"], "user-2")
        read(function, probe)

    refusals = [json.loads(line) for line in logs.getvalue().splitlines() if "ownership refused" in line]
    assert [entry["refusal"] for entry in refusals] == ["other-owner", "no-owner-record"]
    assert probe not in logs.getvalue()


def test_creates_still_make_no_lifecycle_call(function, upstream):
    created(function, body=payout_body(amount=1234))
    function.webhook()

    stats = upstream.stats()
    assert (stats["creates"], stats["reads"], stats["cancels"]) == (2, 0, 0)


def test_a_read_only_token_reads_in_the_function_too(function, upstream):
    """Scopes are the gateway's to check (tests/e2e covers the 403); the function serves any caller its own."""
    link = created(function)

    assert read(function, link["id"], "user-1", scope="payouts:read").status == 200


# -- hostile callers and a failing store ------------------------------------------------------------------------


def test_a_token_with_an_empty_subject_never_passes_for_the_machine_client_beside_it(function, upstream):
    machine = {"authorization": f"Bearer {token(None, client_id='svc-1')}"}
    link = created(function, sub=None, headers=machine)

    answer = read(function, link["id"], "", client_id="svc-1")

    assert answer.status == 401 and answer.is_problem()
    assert lifecycle_calls(upstream) == (0, 0)


@pytest.mark.parametrize("subject", [None, False, 0, [], {}], ids=["null", "false", "0", "[]", "{}"])
def test_two_clients_whose_tokens_carry_a_subject_that_names_no_one_are_not_one_caller(function, upstream, subject):
    """API Gateway hands claims over as strings (`null`, `false`, `0`, `[]`, `{}`): two machine clients whose
    tokens carry such a `sub` would both be `user:null` (or `user:false`...), one reading and canceling the other's
    links and replaying its keys. Such a subject names no one: both are refused, never taken for their client_id."""
    client_a = {"authorization": f"Bearer {token_claims({'sub': subject, 'client_id': 'client-A'})}"}
    client_b = {"authorization": f"Bearer {token_claims({'sub': subject, 'client_id': 'client-B'})}"}

    made = function.create(sub=None, headers=client_a)
    read_by_b = function.request("GET", f"/payout-links/{made.json().get('id', 'pl_none')}", headers=client_b)

    assert read_by_b.status != 200  # B never reads A's link
    assert (made.status, read_by_b.status) == (401, 401) and made.is_problem() and read_by_b.is_problem()
    assert upstream.stats()["links_created"] == 0


def test_a_link_id_no_url_can_name_is_still_answered_and_logged(function, upstream):
    upstream.inject({"link_overrides": {"id": "pl:7f3a"}})

    with function_logs() as logs:
        answer = function.create()

    assert answer.status == 201 and answer.json()["id"] == "pl:7f3a"
    assert "the upstream's link id cannot be read or canceled" in logs.getvalue()


def counted_metrics(documents: list[dict]) -> list[str]:
    return [
        metric["Name"]
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    ]


def test_canceling_again_is_not_an_upstream_error(function, upstream):
    link = created(function)
    cancel(function, link["id"])

    with emitted_metrics() as documents:
        assert cancel(function, link["id"]).status == 200

    names = counted_metrics(documents)
    assert "PayoutLinkCanceled" in names
    assert not [name for name in names if name.startswith("UpstreamError")]


def test_a_link_the_upstream_lost_is_a_404_logged_with_its_id_and_not_a_refused_caller(function, upstream):
    link = created(function)
    upstream.inject({"status": 404, "body": {"message": "Payout link not found"}})

    with emitted_metrics() as documents, function_logs() as logs:
        answer = read(function, link["id"])

    unknown = read(function, str(uuid.uuid4()))
    assert answer.status == 404 and answer.body_but_request_id() == unknown.body_but_request_id()
    assert "LinkOwnershipRefused" not in counted_metrics(documents)
    assert "UpstreamErrorRequestRefused" in counted_metrics(documents)
    (lost,) = [json.loads(line) for line in logs.getvalue().splitlines() if "does not know a recorded" in line]
    assert (lost["level"], lost["link_id"]) == ("ERROR", link["id"])
