"""List the stranded intents: creates whose outcome was still unknown when their record would have expired, which
the settler no longer resends and an operator settles by hand (docs/operations.md, `stranded-intents`).

    scripts/stranded.py [--table T]

`make stranded` runs it. It reads the `stranded` partition of the idempotency table's settle-queue index (`--table`,
or IDEMPOTENCY_TABLE_NAME), never the table itself, and prints each intent as JSON: its record id, its caller and the
caller's idempotency key, when it was first attempted and how long ago, how many times the settler resent it, when
its record expires, and its upstream key: the idempotency key Dots knows the intent by (payout_links.intent), to
look the link up at Dots. Never the request: it holds the payee's contact details, which the command does not
read.

AWS_ENDPOINT_URL points the command at another endpoint, such as the moto server `make run` prints; there, when
no AWS credentials or region are configured, it uses placeholders (moto accepts any).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payout_links.intent import upstream_key
from payout_links.store import SETTLE_INDEX, STRANDED, A
from scripts.caller_limits import dynamodb_client

# What is read of each record: enough to name it and find its link at Dots. The intent attribute holds the request
# too (the payee's details): read with the caller and key, never printed.
READ = (A.ID, A.INTENT, A.VALIDATION, A.ATTEMPTS, A.EXPIRY)


def main(argv: Sequence[str] | None = None, *, dynamodb: Any = None, now: float | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stranded", description="List the stranded intents (payout_links.store).")
    parser.add_argument("--table", help="the idempotency table (default: $IDEMPOTENCY_TABLE_NAME)")
    args = parser.parse_args(argv)
    table = args.table or os.environ.get("IDEMPOTENCY_TABLE_NAME")
    if not table:
        print("stranded: name the table with --table or IDEMPOTENCY_TABLE_NAME", file=sys.stderr)
        return 2
    try:
        items = stranded_items(dynamodb or dynamodb_client(), table)
    except (ClientError, BotoCoreError) as exc:
        print(f"stranded: {exc}", file=sys.stderr)
        return 1
    now = time.time() if now is None else now
    intents = sorted((describe(item, now) for item in items), key=lambda intent: intent["first_attempt"] or "")
    print(json.dumps({"count": len(intents), "stranded": intents}, indent=2, sort_keys=True))
    return 0


def stranded_items(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item of the index's stranded partition, page after page, with the attributes of READ alone."""
    names = {f"#a{index}": name for index, name in enumerate(READ)}
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": SETTLE_INDEX,
        "KeyConditionExpression": "#queue = :stranded",
        "ProjectionExpression": ", ".join(names),
        "ExpressionAttributeNames": {**names, "#queue": A.QUEUE},
        "ExpressionAttributeValues": {":stranded": {"S": STRANDED}},
    }
    items: list[dict[str, Any]] = []
    while True:
        answer = client.query(**request)
        items.extend(answer.get("Items", []))
        if "LastEvaluatedKey" not in answer:
            return items
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def describe(item: dict[str, Any], now: float) -> dict[str, Any]:
    unsettled = json.loads(item.get(A.INTENT, {}).get("S", "{}"))
    caller, key, since = unsettled.get("caller"), unsettled.get("key"), unsettled.get("since")
    validation = item.get(A.VALIDATION, {}).get("S")
    expires = _number(item, A.EXPIRY)
    return {
        "record_id": item[A.ID]["S"],
        "caller": caller,
        "idempotency_key": key,
        # What Dots knows the intent by: every attempt, the settler's included, sent it.
        "upstream_key": upstream_key(caller, key, validation) if caller and key and validation else None,
        "first_attempt": _timestamp(since),
        "age_seconds": None if since is None else max(0, int(now - since)),
        "settle_attempts": _number(item, A.ATTEMPTS) or 0,
        # When DynamoDB's TTL deletes the record, and with it the last trace of the intent in the proxy.
        "record_expires": _timestamp(expires),
    }


def _number(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return None if value is None else int(value)


def _timestamp(seconds: int | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


if __name__ == "__main__":
    sys.exit(main())
