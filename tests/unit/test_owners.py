"""The ownership check: who may see a link, decided from its owner record, and what the check costs; the owner
record a create writes; and a caller's list of its own links, with the cursor that pages through it."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from payout_links import owners as owners_module
from payout_links.owners import (
    SORTABLE_CREATED,
    LinkOwners,
    decode_cursor,
    encode_cursor,
    sortable_created,
)
from payout_links.problems import LINK_NOT_FOUND, DependencyUnavailable, InvalidCursor, LinkNotFound, NotFound

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
        page: dict[str, Any] | None = None,
    ) -> None:
        self.items = items or {}
        self.error = error
        self.page = page or {"Items": []}  # what a query answers
        self.calls: list[dict[str, Any]] = []

    def get_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        if self.error:
            raise self.error
        item = self.items.get(request["Key"]["link_id"]["S"])
        return {"Item": item} if item else {}

    def query(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        if self.error:
            raise self.error
        return self.page


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
    assert put["ConditionExpression"] == (
        "attribute_not_exists(#link_id) OR (#owner = :owner AND (#key = :key OR attribute_not_exists(#key)))"
    )
    assert put["ExpressionAttributeValues"] == {":owner": {"S": "user:ada"}, ":key": {"S": "key-1"}}


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


# -- a caller's list: one query in the caller's partition ---------------------------------------------------------


def owner_item(link_id: str, created: str, *, expires_in: int = 3600, **extra: Any) -> dict[str, Any]:
    """An owner record as the index's query answers it (the projection the list asks for)."""
    return {
        "link_id": {"S": link_id},
        "created": {"S": created},
        "amount": {"N": "2500"},
        "idempotency_key": {"S": f"key-{link_id}"},
        "link": {"S": f"https://pay.test/{link_id}"},
        "expires_at": {"N": str(int(time.time()) + expires_in)},
        **extra,
    }


def last_key(link_id: str, created: str, owner: str = "user:ada") -> dict[str, Any]:
    return {"link_id": {"S": link_id}, "owner": {"S": owner}, "created": {"S": created}}


def test_a_page_is_one_newest_first_query_on_the_index_in_the_callers_partition():
    table = RecordingTable(page={"Items": [owner_item("b", "2026-12-07T02:00:00.002Z")]})

    items, next_cursor = owners(table).list_links("user:ada", limit=7, cursor=None)

    (call,) = table.calls
    assert call["TableName"] == TABLE and call["IndexName"] == "owner-links"
    assert call["ScanIndexForward"] is False and call["Limit"] == 7
    assert call["KeyConditionExpression"] == "#owner = :owner"
    assert call["ExpressionAttributeNames"]["#owner"] == "owner"
    assert call["ExpressionAttributeValues"] == {":owner": {"S": "user:ada"}}
    assert "ExclusiveStartKey" not in call
    assert items == [
        {
            "id": "b",
            "amount": 2500,
            "created": "2026-12-07T02:00:00.002Z",
            "idempotency_key": "key-b",
            "link": "https://pay.test/b",
        }
    ]
    assert next_cursor is None  # no LastEvaluatedKey: the last page


def test_a_record_without_a_url_or_an_amount_lists_them_as_null():
    item = owner_item("b", "2026-12-07T02:00:00.002Z")
    del item["link"], item["amount"]

    (listed,), _ = owners(RecordingTable(page={"Items": [item]})).list_links("user:ada", limit=20, cursor=None)

    assert listed["link"] is None and listed["amount"] is None


def test_expired_records_are_left_out_before_the_ttl_deletes_them():
    page = {
        "Items": [
            owner_item("c", "2026-12-07T02:00:00.003Z"),
            owner_item("b", "2026-12-07T02:00:00.002Z", expires_in=-1),
            owner_item("a", "2026-12-07T02:00:00.001Z"),
        ]
    }

    items, _ = owners(RecordingTable(page=page)).list_links("user:ada", limit=3, cursor=None)

    assert [item["id"] for item in items] == ["c", "a"]


def test_the_next_page_starts_after_the_last_key_in_the_callers_partition_only():
    first = RecordingTable(page={"Items": [], "LastEvaluatedKey": last_key("b", "2026-12-07T02:00:00.002Z")})
    _, next_cursor = owners(first).list_links("user:ada", limit=1, cursor=None)
    assert next_cursor is not None and set(next_cursor) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )

    second = RecordingTable()
    owners(second).list_links("user:ada", limit=1, cursor=next_cursor)

    (call,) = second.calls
    assert call["ExclusiveStartKey"] == last_key("b", "2026-12-07T02:00:00.002Z")
    assert call["ExpressionAttributeValues"] == {":owner": {"S": "user:ada"}}


def test_another_callers_cursor_is_refused_without_a_query():
    table = RecordingTable(page={"Items": [], "LastEvaluatedKey": last_key("b", "2026-12-07T02:00:00.002Z")})
    _, adas = owners(table).list_links("user:ada", limit=1, cursor=None)
    assert adas is not None

    for stranger in ("user:bob", "client:ada", "partner:ada", "user:ada "):
        bobs = RecordingTable()
        with pytest.raises(InvalidCursor):
            owners(bobs).list_links(stranger, limit=1, cursor=adas)
        assert bobs.calls == []


def test_an_unreadable_index_is_a_503():
    failure = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query")

    with pytest.raises(DependencyUnavailable):
        owners(RecordingTable(error=failure)).list_links("user:ada", limit=20, cursor=None)


# -- cursors ---------------------------------------------------------------------------------------------------


CREATED = "2026-12-07T02:40:56.895Z"


def encoded(value: Any) -> str:
    """Any JSON value as a cursor would carry it: url-safe base64 without padding."""
    text = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def fields_of(cursor: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


@pytest.mark.parametrize("link_id", [LINK, "pl:7f3a", "lïnk ✓", "a" * 2048])
def test_a_cursor_gives_back_the_key_it_was_made_from_to_its_caller(link_id):
    cursor = encode_cursor("user:ada", link_id, CREATED)

    assert decode_cursor("user:ada", cursor) == (link_id, CREATED)
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor


def test_a_cursor_names_neither_its_caller_nor_anything_but_the_key():
    cursor = encode_cursor("user:ada", LINK, CREATED)

    assert fields_of(cursor).keys() == {"id", "created", "check"}
    assert "ada" not in base64.urlsafe_b64decode(cursor + "==").decode()


def check(link_id: str, caller: str = "user:ada") -> str:
    """The check a cursor for `link_id` and `caller` carries, however the id could be sent."""
    return owners_module._cursor_check(caller, link_id, CREATED)


def tampered() -> dict[str, str]:
    good = fields_of(encode_cursor("user:ada", LINK, CREATED))
    return {
        "empty": "",
        "not base64": "not base64!",
        "padding": encode_cursor("user:ada", LINK, CREATED) + "==",
        "standard base64 alphabet": base64.b64encode(json.dumps(good).encode() + b"\xfb\xff").decode(),
        "one character cut": encode_cursor("user:ada", LINK, CREATED)[:-1],
        "a base64 length that cannot be": "abcde",
        "not UTF-8": encoded(b"\xff\xfe{}"),
        "not JSON": encoded(b"{id: 1}"),
        "a list": encoded([LINK, CREATED, good["check"]]),
        "a string": encoded("cursor"),
        "null": encoded(None),
        "a key missing": encoded({"id": LINK, "created": CREATED}),
        "a key more": encoded({**good, "owner": "user:ada"}),
        "id a number": encoded({**good, "id": 42}),
        "id null": encoded({**good, "id": None}),
        "id empty": encoded({**good, "id": ""}),
        "created a number": encoded({**good, "created": 1796611256}),
        "check a list": encoded({**good, "check": [good["check"]]}),
        "check upper case": encoded({**good, "check": good["check"].upper()}),
        "check not ASCII": encoded({**good, "check": "é" * 32}),
        "id changed": encoded({**good, "id": LINK[:-1] + "c"}),
        "created changed": encoded({**good, "created": "2026-12-07T02:40:56.896Z"}),
        "created not sortable": encoded({**good, "created": "2026-12-07T02:40:56Z"}),
        "check changed": encoded({**good, "check": "0" * 32}),
        # Checked as if it were genuine: an id no DynamoDB key can hold never reaches a query.
        "id a lone surrogate": encoded({"id": "\ud800", "created": CREATED, "check": check("\ud800")}),
        "id too long": encode_cursor("user:ada", "a" * 2049, CREATED),
        "too long": "A" * 16_385,
        "another caller's": encode_cursor("user:bob", LINK, CREATED),
        "the same name as a partner": encode_cursor("partner:ada", LINK, CREATED),
    }


@pytest.mark.parametrize(("case", "cursor"), tampered().items(), ids=list(tampered()))
def test_a_tampered_or_foreign_cursor_is_one_invalid_cursor_problem(case, cursor):
    with pytest.raises(InvalidCursor) as refused:
        decode_cursor("user:ada", cursor)

    problem = refused.value.to_dict()
    assert (problem["status"], problem["type"]) == (400, "urn:payout-link-proxy:problem:invalid-cursor")
    assert problem["detail"] == InvalidCursor(refused.value.detail).detail
    assert refused.value.metric == "ValidationRejected"
