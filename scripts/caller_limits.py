"""Set, show and remove a caller's own limits (overrides of the function's defaults), without a redeploy.

    scripts/caller_limits.py set --caller C [--daily-amount-cents N|default] [--hourly-links N|default]
    scripts/caller_limits.py show [--caller C]
    scripts/caller_limits.py remove --caller C

`make limits ARGS="..."` runs it. A caller is named as the function names it: `user:<sub>`, `client:<client_id>` or
`partner:<name>`. A limit of 0 turns it off for that caller; `default` drops the override of that one limit, and
`remove` the caller's whole override. `show --caller C` also shows what C has used of its current windows.

The overrides are one item of the idempotency table (`--table`, or IDEMPOTENCY_TABLE_NAME), `limits#overrides`, a
map of caller to limits (payout_links.limits). Each edit is an update expression on that caller's entry of the map,
never a read and a write back of the whole item, so two edits at once never undo each other. Running containers
apply a change once their copy of the item is older than LIMIT_OVERRIDES_MAX_AGE_SECONDS (60 s).

AWS_ENDPOINT_URL points the command at another endpoint, such as the moto server `make run` prints; there, when
no AWS credentials or region are configured, it uses placeholders (moto accepts any).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from payout_links.limits import (
    DAILY_FIELD,
    HOURLY_FIELD,
    KEY_ATTR,
    OVERRIDES_ATTR,
    OVERRIDES_ID,
    caller_hash,
    current_counters,
    parse_overrides,
)

CALLER = re.compile(r"(user|client|partner):\S.*")
LOCAL_REGION = "us-east-1"  # the local stack's
# Each option, the field of the override it sets.
FIELDS = {"daily_amount_cents": DAILY_FIELD, "hourly_links": HOURLY_FIELD}
DEFAULT = "default"
_EMPTY_MAP = {"M": {}}


def main(argv: Sequence[str] | None = None, *, dynamodb: Any = None) -> int:
    arguments = parser()
    args = arguments.parse_args(argv)
    if args.command == "set" and args.daily_amount_cents is None and args.hourly_links is None:
        arguments.error("set: give --daily-amount-cents, --hourly-links or both")
    table = args.table or os.environ.get("IDEMPOTENCY_TABLE_NAME")
    if not table:
        print("caller_limits: name the table with --table or IDEMPOTENCY_TABLE_NAME", file=sys.stderr)
        return 2
    try:
        client = dynamodb or dynamodb_client()
        if args.command == "set":
            result = set_override(client, table, args.caller, {FIELDS[name]: getattr(args, name) for name in FIELDS})
        elif args.command == "remove":
            result = remove_override(client, table, args.caller)
        else:
            result = show(client, table, args.caller)
    except (ClientError, BotoCoreError) as exc:
        print(f"caller_limits: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caller_limits", description="Set, show and remove a caller's own limits (payout_links.limits)."
    )
    parser.add_argument("--table", help="the idempotency table (default: $IDEMPOTENCY_TABLE_NAME)")
    commands = parser.add_subparsers(dest="command", required=True)

    set_command = commands.add_parser("set", help="set one or both of a caller's limits (0: off)")
    set_command.add_argument("--caller", type=caller, required=True)
    set_command.add_argument("--daily-amount-cents", type=limit, help="cents per UTC day; 0: off; default: drop")
    set_command.add_argument("--hourly-links", type=limit, help="links per UTC hour; 0: off; default: drop")
    set_command.add_argument("--table", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    show_command = commands.add_parser("show", help="every override, or one caller's and its current usage")
    show_command.add_argument("--caller", type=caller)
    show_command.add_argument("--table", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    remove_command = commands.add_parser("remove", help="drop a caller's override: the defaults apply again")
    remove_command.add_argument("--caller", type=caller, required=True)
    remove_command.add_argument("--table", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    return parser


def caller(value: str) -> str:
    if not CALLER.fullmatch(value):
        raise argparse.ArgumentTypeError("a caller is user:<sub>, client:<client_id> or partner:<name>")
    return value


def limit(value: str) -> int | str:
    if value == DEFAULT:
        return DEFAULT
    if not re.fullmatch(r"[0-9]+", value):
        raise argparse.ArgumentTypeError(f"a limit is a whole number of at least 0 (0: off), or {DEFAULT}")
    return int(value)


def dynamodb_client() -> Any:
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    session = boto3.session.Session()
    if endpoint and session.get_credentials() is None:
        session = boto3.session.Session(
            aws_access_key_id="local-not-a-key",
            aws_secret_access_key="local-not-a-secret",  # noqa: S106 - moto's placeholder
            region_name=session.region_name,
        )
    region = session.region_name or (LOCAL_REGION if endpoint else None)
    return session.client("dynamodb", endpoint_url=endpoint, region_name=region)


def set_override(client: Any, table: str, caller: str, fields: dict[str, int | str | None]) -> dict[str, Any]:
    """Set (or, for `default`, drop) the given fields of the caller's override, leaving its other field alone."""
    key = {KEY_ATTR: {"S": OVERRIDES_ID}}
    names = {"#callers": OVERRIDES_ATTR, "#caller": caller}
    # The map, then the caller's entry, each made only if missing; then the fields, in the entry alone.
    client.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #callers = if_not_exists(#callers, :empty)",
        ExpressionAttributeNames={"#callers": OVERRIDES_ATTR},
        ExpressionAttributeValues={":empty": _EMPTY_MAP},
    )
    client.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #callers.#caller = if_not_exists(#callers.#caller, :empty)",
        ExpressionAttributeNames=dict(names),
        ExpressionAttributeValues={":empty": _EMPTY_MAP},
    )
    sets, removes, values = [], [], {}
    for index, (field, value) in enumerate(fields.items()):
        if value is None:
            continue
        names[f"#f{index}"] = field
        if value == DEFAULT:
            removes.append(f"#callers.#caller.#f{index}")
        else:
            sets.append(f"#callers.#caller.#f{index} = :v{index}")
            values[f":v{index}"] = {"N": str(value)}
    expression = " ".join(
        clause for clause in (sets and "SET " + ", ".join(sets), removes and "REMOVE " + ", ".join(removes)) if clause
    )
    answer = client.update_item(
        TableName=table,
        Key=key,
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        **({"ExpressionAttributeValues": values} if values else {}),
        ReturnValues="ALL_NEW",
    )
    return {"caller": caller, "override": parse_overrides(answer["Attributes"]).get(caller, {})}


def remove_override(client: Any, table: str, caller: str) -> dict[str, Any]:
    try:
        client.update_item(
            TableName=table,
            Key={KEY_ATTR: {"S": OVERRIDES_ID}},
            UpdateExpression="REMOVE #callers.#caller",
            ConditionExpression="attribute_exists(#callers.#caller)",
            ExpressionAttributeNames={"#callers": OVERRIDES_ATTR, "#caller": caller},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return {"caller": caller, "removed": False}  # there was none: the defaults apply already
    return {"caller": caller, "removed": True}


def show(client: Any, table: str, caller: str | None, *, now: float | None = None) -> dict[str, Any]:
    item = client.get_item(TableName=table, Key={KEY_ATTR: {"S": OVERRIDES_ID}}, ConsistentRead=True).get("Item")
    overrides = parse_overrides(item)
    if caller is None:
        return {"overrides": overrides, "absent": "the function's default applies"}
    now = time.time() if now is None else now
    usage = {}
    for limit, counter in current_counters(caller, now).items():
        found = client.get_item(TableName=table, Key={KEY_ATTR: {"S": counter.id}}, ConsistentRead=True).get("Item")
        usage[limit.value] = {
            counter.total_attr: int(found[counter.total_attr]["N"]) if found and counter.total_attr in found else 0,
            "window_ends": datetime.fromtimestamp(counter.window_end, UTC).isoformat().replace("+00:00", "Z"),
            "counter": counter.id,
        }
    return {
        "caller": caller,
        "caller_hash": caller_hash(caller),
        "override": overrides.get(caller),  # null: the defaults apply
        "usage": usage,
    }


if __name__ == "__main__":
    sys.exit(main())
