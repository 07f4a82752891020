"""Listing a frontend's own payout links (GET /payout-links): the function against moto (over HTTP, with the real
boto3 client and the owners table's index as the template declares it) and the Dots emulator.

The moto server lives for the session, so every test lists as callers of its own (`fresh_sub`)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support import emitted_metrics, function_logs, new_key, token

pytestmark = pytest.mark.integration

INVALID_CURSOR_TYPE = "urn:payout-link-proxy:problem:invalid-cursor"


def fresh_sub() -> str:
    return f"lister-{uuid.uuid4().hex[:12]}"


def created(function, sub: str, **create) -> dict:
    answer = function.create(sub=sub, **create)
    assert answer.status == 201, answer.body
    return answer.json()


def listed(function, sub: str | None, *, headers: dict[str, str] | None = None, **query: str):
    auth = {"authorization": f"Bearer {token(sub)}"} if headers is None else headers
    return function.request("GET", "/payout-links", headers=auth, query=query)


def ids(answer) -> list[str]:
    assert answer.status == 200, answer.body
    return [item["id"] for item in answer.json()["items"]]


def test_each_caller_lists_its_own_links_newest_first(function, upstream):
    ada, bob = fresh_sub(), fresh_sub()
    adas = [created(function, ada) for _ in range(3)]
    bobs = created(function, bob)
    before = upstream.stats()["requests"]

    mine, theirs = listed(function, ada), listed(function, bob)

    assert ids(mine) == [link["id"] for link in reversed(adas)]
    assert ids(theirs) == [bobs["id"]]
    assert mine.json()["next_cursor"] is None and theirs.json()["next_cursor"] is None
    assert mine.headers["content-type"] == "application/json"
    assert mine.headers["cache-control"] == "no-store"
    assert upstream.stats()["requests"] == before  # from the owner records alone


def test_an_item_is_what_the_create_answered_with_the_key_it_was_made_with(function, upstream):
    ada = fresh_sub()
    key = "{0F8FAD5B-D9CB-469F-A165-70867728950E}"  # a UUID as a header may spell it: keyed canonically
    link = created(function, ada, key=key)

    (item,) = listed(function, ada).json()["items"]

    assert item == {
        "id": link["id"],
        "amount": link["amount"],
        "created": link["created"],
        "idempotency_key": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "link": link["link"],
    }


def test_pages_of_two_then_one_then_no_cursor(function, upstream):
    ada = fresh_sub()
    links = [created(function, ada)["id"] for _ in range(3)]

    first = listed(function, ada, limit="2")
    second = listed(function, ada, limit="2", cursor=first.json()["next_cursor"])

    assert ids(first) == links[:0:-1] and isinstance(first.json()["next_cursor"], str)
    assert ids(second) == links[:1]
    assert second.json()["next_cursor"] is None


def test_another_callers_cursor_is_400_and_shows_nothing_of_theirs(function, upstream):
    ada, bob = fresh_sub(), fresh_sub()
    adas = [created(function, ada)["id"] for _ in range(3)]
    created(function, bob)
    cursor = listed(function, ada, limit="1").json()["next_cursor"]

    refused = listed(function, bob, limit="1", cursor=cursor)

    assert refused.status == 400 and refused.is_problem()
    assert refused.json()["type"] == INVALID_CURSOR_TYPE
    assert refused.headers["cache-control"] == "no-store"
    assert not [link_id for link_id in adas if link_id in refused.body.decode()]
    assert ids(listed(function, ada, limit="1", cursor=cursor)) == [adas[1]]  # still good for its caller


def test_a_changed_cursor_is_400(function, upstream):
    ada = fresh_sub()
    for _ in range(2):
        created(function, ada)
    cursor = listed(function, ada, limit="1").json()["next_cursor"]

    for changed in (cursor[:-2], cursor + "A", cursor.swapcase(), "null", ""):
        refused = listed(function, ada, cursor=changed)
        assert refused.status == 400 and refused.json()["type"] == INVALID_CURSOR_TYPE, changed


def test_a_partners_links_are_not_listed_to_a_frontend_of_the_same_name(function, upstream, aws_clients, aws_resources):
    made = function.webhook()
    assert made.status == 201
    dynamodb, _ = aws_clients
    recorded = dynamodb.get_item(TableName=aws_resources["owners_table"], Key={"link_id": {"S": made.json()["id"]}})
    assert recorded["Item"]["owner"] == {"S": "partner:acme"}  # recorded, for its partner

    for answer in (
        listed(function, "acme"),
        listed(function, "partner:acme"),
        listed(function, None, headers={"authorization": f"Bearer {token(None, client_id='acme')}"}),
    ):
        assert made.json()["id"] not in ids(answer)


def test_a_machine_token_lists_its_own_links_and_not_the_users_of_the_same_name(function, upstream):
    client = fresh_sub()
    machine = {"authorization": f"Bearer {token(None, client_id=client)}"}
    machines = function.create(sub=None, headers=machine).json()["id"]
    users = created(function, client)["id"]

    assert ids(listed(function, None, headers=machine)) == [machines]
    assert ids(listed(function, client)) == [users]


def test_a_link_whose_create_outcome_is_unknown_is_listed_once_its_create_completes(function, upstream):
    ada = fresh_sub()
    key = new_key()
    function.set_env(PAYOUT_API_MAX_ATTEMPTS="1")
    upstream.inject({"after_create": True, "drop": True})

    lost = function.create(sub=ada, key=key)
    assert lost.status in (502, 504), lost.body
    assert ids(listed(function, ada)) == []

    retried = function.create(sub=ada, key=key)
    assert retried.status == 201
    assert ids(listed(function, ada)) == [retried.json()["id"]]


def test_an_expired_owner_record_is_not_listed_before_the_ttl_deletes_it(
    function, upstream, aws_clients, aws_resources
):
    ada = fresh_sub()
    old, kept = created(function, ada)["id"], created(function, ada)["id"]
    dynamodb, _ = aws_clients
    dynamodb.update_item(
        TableName=aws_resources["owners_table"],
        Key={"link_id": {"S": old}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": "1000"}},
    )

    assert ids(listed(function, ada)) == [kept]


@pytest.mark.parametrize("limit", ["0", "101", "ten", "", "2,3"])
def test_a_limit_out_of_bounds_is_422_pointing_at_it_and_counted(function, upstream, limit):
    with emitted_metrics() as documents:
        refused = listed(function, fresh_sub(), limit=limit)

    assert refused.status == 422 and refused.is_problem()
    assert refused.json()["type"] == "urn:payout-link-proxy:problem:validation-failed"
    assert refused.json()["errors"] == [{"pointer": "#/limit", "detail": "must be an integer from 1 to 100"}]
    assert "ValidationRejected" in json.dumps(documents)


def test_a_read_only_token_lists_too(function, upstream):
    ada = fresh_sub()
    link = created(function, ada)["id"]

    answer = listed(function, ada, headers={"authorization": f"Bearer {token(ada, scope='payouts:read')}"})

    assert ids(answer) == [link]


def test_no_token_is_401(function, upstream):
    answer = function.request("GET", "/payout-links")

    assert answer.status == 401 and answer.is_problem()


def test_the_owners_table_unavailable_is_a_503(function, upstream):
    function.set_env(LINK_OWNERS_TABLE_NAME="no-such-table")

    answer = listed(function, fresh_sub())

    assert answer.status == 503 and answer.is_problem() and "retry-after" in answer.headers


def test_a_list_is_logged_and_counted_without_a_caller_dimension(function, upstream):
    ada = fresh_sub()
    created(function, ada)

    with emitted_metrics() as documents, function_logs() as logs:
        listed(function, ada)

    counted = {
        metric["Name"]: directive["Dimensions"]
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
    assert counted["PayoutLinksListed"] == [["service"]]
    (line,) = [json.loads(line) for line in logs.getvalue().splitlines() if "payout links listed" in line]
    assert (line["caller"], line["listed"], line["last_page"]) == (f"user:{ada}", 1, True)
