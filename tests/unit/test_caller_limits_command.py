"""scripts/caller_limits.py, the operator's command for per-caller limits: what it accepts, and that every change is
an update expression on the one caller's entry of the overrides item. What DynamoDB makes of those expressions is
tested against the moto server in tests/integration/test_limit_counters.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from payout_links.limits import OVERRIDES_ID, caller_hash
from scripts import caller_limits as command

pytestmark = pytest.mark.unit

CALLER = "partner:acme"
KEY = {"id": {"S": OVERRIDES_ID}}


class RecordingTable:
    """Stands in for the DynamoDB client: records each call, answers from `items`, or fails with `error`."""

    def __init__(self, items: dict[str, dict[str, Any]] | None = None, *, error: Exception | None = None) -> None:
        self.items = items or {}
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("get_item", request))
        item = self.items.get(request["Key"]["id"]["S"])
        return {"Item": item} if item else {}

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("update_item", request))
        if self.error:
            raise self.error
        return {"Attributes": self.items.get(OVERRIDES_ID, {})}


def run(*argv: str, table: RecordingTable, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    status = command.main([*argv, "--table", "idempotency"], dynamodb=table)
    out = capsys.readouterr().out
    return status, json.loads(out) if out else None


@pytest.mark.parametrize(
    "argv",
    [
        ["set", "--caller", "acme", "--hourly-links", "1"],  # not a caller the function names
        ["set", "--caller", "user:", "--hourly-links", "1"],
        ["set", "--caller", CALLER, "--hourly-links", "-1"],
        ["set", "--caller", CALLER, "--daily-amount-cents", "2.5"],
        ["set", "--caller", CALLER, "--daily-amount-cents", "ten"],
        ["set", "--caller", CALLER],  # nothing to set
        ["remove"],
    ],
)
def test_what_the_command_refuses_never_reaches_the_table(argv, capsys):
    table = RecordingTable()

    with pytest.raises(SystemExit) as exited:
        command.main([*argv, "--table", "idempotency"], dynamodb=table)

    assert exited.value.code == 2 and table.calls == []
    assert capsys.readouterr().err


def test_the_table_is_the_option_or_the_functions_variable(monkeypatch, capsys):
    monkeypatch.delenv("IDEMPOTENCY_TABLE_NAME", raising=False)
    table = RecordingTable()
    assert command.main(["show"], dynamodb=table) == 2 and table.calls == []
    assert "IDEMPOTENCY_TABLE_NAME" in capsys.readouterr().err

    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", "from-the-environment")
    assert command.main(["show"], dynamodb=table) == 0
    assert table.calls[0][1]["TableName"] == "from-the-environment"


def test_set_edits_the_callers_entry_in_place_and_never_writes_the_whole_item(capsys):
    table = RecordingTable({OVERRIDES_ID: {"callers": {"M": {CALLER: {"M": {"daily_amount_cents": {"N": "500"}}}}}}})

    status, printed = run(
        "set", "--caller", CALLER, "--daily-amount-cents", "500", "--hourly-links", "0", table=table, capsys=capsys
    )

    assert status == 0 and printed == {"caller": CALLER, "override": {"daily_amount_cents": 500}}
    assert [name for name, _ in table.calls] == ["update_item"] * 3
    assert all(request["Key"] == KEY for _, request in table.calls)
    make_map, make_entry, edit = (request for _, request in table.calls)
    # The map and the caller's entry are only ever made when missing, never replaced.
    assert make_map["UpdateExpression"] == "SET #callers = if_not_exists(#callers, :empty)"
    assert make_entry["UpdateExpression"] == "SET #callers.#caller = if_not_exists(#callers.#caller, :empty)"
    assert make_entry["ExpressionAttributeNames"] == {"#callers": "callers", "#caller": CALLER}
    assert edit["UpdateExpression"] == "SET #callers.#caller.#f0 = :v0, #callers.#caller.#f1 = :v1"
    assert edit["ExpressionAttributeNames"] == {
        "#callers": "callers",
        "#caller": CALLER,
        "#f0": "daily_amount_cents",
        "#f1": "hourly_links",
    }
    assert edit["ExpressionAttributeValues"] == {":v0": {"N": "500"}, ":v1": {"N": "0"}}


def test_set_to_default_drops_that_one_field_and_leaves_the_other_alone(capsys):
    table = RecordingTable()

    run("set", "--caller", CALLER, "--hourly-links", "default", table=table, capsys=capsys)

    edit = table.calls[-1][1]
    assert edit["UpdateExpression"] == "REMOVE #callers.#caller.#f1"
    assert edit["ExpressionAttributeNames"]["#f1"] == "hourly_links"
    assert "#f0" not in edit["ExpressionAttributeNames"] and "ExpressionAttributeValues" not in edit


def test_remove_drops_the_callers_entry_alone_and_says_when_there_was_none(capsys):
    removed, printed = run("remove", "--caller", CALLER, table=(table := RecordingTable()), capsys=capsys)
    (request,) = [request for _, request in table.calls]
    assert (removed, printed) == (0, {"caller": CALLER, "removed": True})
    assert request["UpdateExpression"] == "REMOVE #callers.#caller"
    assert request["ConditionExpression"] == "attribute_exists(#callers.#caller)"

    missing = ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem")
    assert run("remove", "--caller", CALLER, table=RecordingTable(error=missing), capsys=capsys) == (
        0,
        {"caller": CALLER, "removed": False},
    )


def test_a_failing_table_is_reported_with_exit_status_1(capsys):
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")

    status = command.main(["remove", "--caller", CALLER, "--table", "t"], dynamodb=RecordingTable(error=throttled))

    assert status == 1 and "ThrottlingException" in capsys.readouterr().err


def test_show_of_a_caller_gives_its_override_and_what_it_used_of_its_current_windows():
    now = datetime(2031, 3, 14, 2, 15, tzinfo=UTC).timestamp()
    day, hour = (f"limits#{caller_hash(CALLER)}#day#2031-03-14", f"limits#{caller_hash(CALLER)}#hour#2031-03-14T02")
    table = RecordingTable(
        {
            OVERRIDES_ID: {"callers": {"M": {CALLER: {"M": {"hourly_links": {"N": "100"}}}}}},
            day: {"amount": {"N": "7500"}},
            hour: {"links": {"N": "3"}},
        }
    )

    shown = command.show(table, "idempotency", CALLER, now=now)

    assert shown == {
        "caller": CALLER,
        "caller_hash": caller_hash(CALLER),
        "override": {"hourly_links": 100},
        "usage": {
            "daily-amount": {"amount": 7500, "window_ends": "2031-03-15T00:00:00Z", "counter": day},
            "hourly-links": {"links": 3, "window_ends": "2031-03-14T03:00:00Z", "counter": hour},
        },
    }
    assert command.show(RecordingTable(), "idempotency", "user:new", now=now)["usage"]["daily-amount"]["amount"] == 0
    assert command.show(RecordingTable(), "idempotency", "user:new", now=now)["override"] is None


def test_show_without_a_caller_lists_every_override():
    table = RecordingTable({OVERRIDES_ID: {"callers": {"M": {CALLER: {"M": {"hourly_links": {"N": "100"}}}}}}})

    assert command.show(table, "idempotency", None)["overrides"] == {CALLER: {"hourly_links": 100}}


def test_the_command_talks_to_the_endpoint_aws_endpoint_url_names(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)

    client = command.dynamodb_client()  # make run's moto needs no credentials nor region of its own

    assert client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert client.meta.region_name == "us-east-1"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert command.dynamodb_client().meta.endpoint_url == "https://dynamodb.eu-west-1.amazonaws.com"
