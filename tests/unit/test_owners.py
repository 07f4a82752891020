"""The ownership check: who may see a link, decided from its owner record, and what the check costs; and the
owner record a create writes."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from payout_links.owners import (
    LINK_NOT_FOUND,
    SORTABLE_CREATED,
    LinkNotFound,
    LinkOwners,
    sortable_created,
)
from payout_links.problems import DependencyUnavailable, NotFound

pytestmark = pytest.mark.unit

TABLE = "link-owners"
LINK = "3f2b8c1e-5a4d-4e8f-9b7a-1c2d3e4f5a6b"


class RecordingTable:
    """Stands in for the DynamoDB client: holds owner records, counts the calls, or fails every call."""

    def __init__(
        self,
        items: dict[str, dict[str, Any]] | None = None,
        *,
        error: Exception | None = None,
    ) -> None:
        self.items = items or {}
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def get_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        if self.error:
            raise self.error
        item = self.items.get(request["Key"]["link_id"]["S"])
        return {"Item": item} if item else {}


def record(owner: str, *, expires_in: int = 3600) -> dict[str, Any]:
    return {"owner": {"S": owner}, "expires_at": {"N": str(int(time.time()) + expires_in)}}


def owners(table: RecordingTable) -> LinkOwners:
    return LinkOwners(dynamodb_client=table, table_name=TABLE, retention_seconds=86_400)


def test_the_owner_passes_with_one_consistent_read():
    table = RecordingTable({LINK: record("user:ada")})

    owners(table).require_owner("user:ada", LINK)

    (call,) = table.calls
    assert call["TableName"] == TABLE and call["Key"] == {"link_id": {"S": LINK}}
    assert call["ConsistentRead"] is True


@pytest.mark.parametrize(
    "caller",
    ["user:bob", "client:ada", "user:ada ", "USER:ada", "partner:ada", "ada", "user:", "user:adam"],
)
def test_anyone_else_is_refused(caller):
    with pytest.raises(LinkNotFound):
        owners(RecordingTable({LINK: record("user:ada")})).require_owner(caller, LINK)


def test_a_partners_link_is_refused_to_a_frontend_of_the_same_name():
    table = RecordingTable({LINK: record("partner:acme")})

    for caller in ("user:acme", "client:acme", "user:partner:acme"):
        with pytest.raises(LinkNotFound):
            owners(table).require_owner(caller, LINK)


def test_an_id_without_a_record_is_refused():
    with pytest.raises(LinkNotFound):
        owners(RecordingTable()).require_owner("user:ada", LINK)


def test_an_expired_record_is_refused_before_the_ttl_deletes_it():
    table = RecordingTable({LINK: record("user:ada", expires_in=-1)})

    with pytest.raises(LinkNotFound):
        owners(table).require_owner("user:ada", LINK)


@pytest.mark.parametrize(
    "link_id", ["", ".", "..", "a/b", "a b", "%2e%2e", "é", "a" * 129, "a\n", "a\x00", "a?b", "a#b", "a:b", "a%20"]
)
def test_a_malformed_id_is_refused_without_a_call(link_id):
    table = RecordingTable({link_id: record("user:ada")})

    with pytest.raises(LinkNotFound):
        owners(table).require_owner("user:ada", link_id)
    assert table.calls == []


def test_every_refusal_is_the_same_problem():
    refusals = []
    for table, caller, link_id in (
        (RecordingTable({LINK: record("user:ada")}), "user:bob", LINK),
        (RecordingTable(), "user:ada", LINK),
        (RecordingTable(), "user:ada", "../x"),
    ):
        with pytest.raises(LinkNotFound) as refused:
            owners(table).require_owner(caller, link_id)
        refusals.append(refused.value.to_dict())

    assert refusals == [refusals[0]] * 3
    assert refusals[0] == NotFound(LINK_NOT_FOUND).to_dict()


def test_an_unreadable_table_is_a_503_not_a_404():
    failure = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "GetItem")

    with pytest.raises(DependencyUnavailable):
        owners(RecordingTable(error=failure)).require_owner("user:ada", LINK)


def created_link(**fields: Any) -> dict[str, Any]:
    """The parts of a normalized link that an owner record keeps."""
    return {"id": LINK, "created": "2026-12-07T02:40:56.895Z", "amount": 2500, "link": "https://pay.test/x", **fields}


def test_the_record_is_written_once_and_never_handed_to_another_owner():
    put = owners(RecordingTable()).put(created_link(), "user:ada", "key-1")["Put"]

    assert put["TableName"] == TABLE
    assert put["Item"]["link_id"] == {"S": LINK} and put["Item"]["owner"] == {"S": "user:ada"}
    assert int(put["Item"]["expires_at"]["N"]) - int(put["Item"]["created_at"]["N"]) == 86_400
    assert put["ConditionExpression"] == "attribute_not_exists(#link_id) OR #owner = :owner"
    assert put["ExpressionAttributeValues"] == {":owner": {"S": "user:ada"}}


@pytest.mark.parametrize("link_id", [LINK, "42", "pl_7f3a", "pl.7f3a", "a~b", "...", "a" * 128])
def test_every_unreserved_id_is_looked_up(link_id):
    table = RecordingTable({link_id: record("user:ada")})

    owners(table).require_owner("user:ada", link_id)
    assert len(table.calls) == 1


# -- the owner record keeps what a list shows ---------------------------------------------------------------------


def test_the_record_keeps_what_a_list_shows():
    before = time.time()
    item = owners(RecordingTable()).put(created_link(), "user:ada", "0f8fad5b-d9cb-469f-a165-70867728950e")["Put"][
        "Item"
    ]

    assert item["created"] == {"S": "2026-12-07T02:40:56.895Z"}
    assert item["amount"] == {"N": "2500"}
    assert item["idempotency_key"] == {"S": "0f8fad5b-d9cb-469f-a165-70867728950e"}
    assert item["link"] == {"S": "https://pay.test/x"}
    assert int(before) <= int(item["created_at"]["N"]) <= time.time()
    assert set(item) == {"link_id", "owner", "created_at", "expires_at", "created", "amount", "idempotency_key", "link"}


def test_a_link_without_a_url_or_an_amount_is_recorded_without_them():
    item = owners(RecordingTable()).put(created_link(link=None, amount=None), "user:ada", "k")["Put"]["Item"]

    assert "link" not in item and "amount" not in item
    assert item["idempotency_key"] == {"S": "k"} and item["created"] == {"S": "2026-12-07T02:40:56.895Z"}


@pytest.mark.parametrize("created", [None, "", "yesterday", 1796610861, "2026-12-07T02:40:56"])
def test_a_link_without_a_readable_zoned_created_is_recorded_at_the_recording_time(created):
    before = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    recorded = owners(RecordingTable()).put(created_link(created=created), "user:ada", "k")["Put"]["Item"]["created"]

    after = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert SORTABLE_CREATED.fullmatch(recorded["S"])
    assert before <= recorded["S"] <= after


@pytest.mark.parametrize(
    ("created", "sortable"),
    [
        ("2026-12-07T02:40:56.895Z", "2026-12-07T02:40:56.895Z"),
        ("2026-12-07T02:40:56Z", "2026-12-07T02:40:56.000Z"),
        ("2026-12-07T03:40:56.895123+01:00", "2026-12-07T02:40:56.895Z"),
        ("0999-01-01T00:00:00.000Z", "0999-01-01T00:00:00.000Z"),
    ],
)
def test_created_is_kept_fixed_width_in_utc_so_that_string_order_is_time_order(created, sortable):
    assert sortable_created(created, 0) == sortable
    assert sortable_created(None, 1796611256.8951) == "2026-12-07T02:40:56.895Z"
