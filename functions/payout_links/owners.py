"""Who may read or cancel a payout link: the caller that created it through the proxy, and no one else.

Each link the proxy creates gets one owner record in its own DynamoDB table, `{link_id, owner, created_at,
expires_at}` and what a list of the owner's links shows (`created`, `amount`, `idempotency_key`, `link`), where
the owner is the caller scope the create ran as (`user:<sub>`, `client:<client_id>` or `partner:<name>`). The
record is written in the same transaction that completes the create's idempotency record, so a create still
costs two DynamoDB calls, and a link is readable exactly when its create has completed. It is never updated or
deleted by the function, and expires with the table's TTL after the configured retention.

A read or cancel first reads the record (one consistent GetItem). Anything but "this caller owns this id" is the
same `LinkNotFound`, before any call to the upstream: another caller's link, a partner's, a link made at the
upstream without the proxy, a link whose create has not completed (its outcome is unknown), an unknown id and a
malformed one all look alike, so that an id reveals nothing to someone who does not own it.

A list of a caller's links is one Query per page on the table's `owner-links` index (hash `owner`, range
`created`), newest first, for that caller's partition only. The cursor to the next page is the index's
LastEvaluatedKey bound to the caller by a digest (`encode_cursor`, `decode_cursor`): a cursor another caller was
given, or one that was changed, is refused (`InvalidCursor`) before any query. The digest is not a secret and need
not be: the query's owner is always the caller's own, never the cursor's, so a forged cursor can only move within
the forger's own links.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payout_links.aws import error_code
from payout_links.observability import logger
from payout_links.problems import Dependency, DependencyUnavailable, InvalidCursor, LinkNotFound

# What a link id may look like in a URL path: one segment of unreserved URL characters (RFC 3986), never `.` or
# `..`, which a client or a proxy would resolve as a path step.
LINK_ID = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._~-]{1,128}")

OWNER_LINKS_INDEX = "owner-links"
# When a link was created, as the owner records keep it: RFC 3339 in UTC to the millisecond, always this wide, so
# that the index's string order is time order.
SORTABLE_CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
# What a cursor may hold: a link id within DynamoDB's partition key size, and no more characters than a cursor for
# such an id can take (every character JSON-escaped, then base64).
_MAX_KEY_BYTES = 2048
_MAX_CURSOR_CHARS = 16_384
_CURSOR_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+")
_CURSOR_CHECK = re.compile(r"[0-9a-f]{32}")
# Fixed: changing it invalidates every cursor handed out (callers then get 400 and start again).
_CURSOR_CONTEXT = b"payout-link-proxy/list-cursor/v1"
INVALID_CURSOR = "The cursor is not one this caller was given for this list; start again without it."


class LinkOwners:
    """The owner records: written as part of a create's transaction, read before a read or a cancel."""

    KEY_ATTR = "link_id"
    OWNER_ATTR = "owner"
    CREATED_ATTR = "created_at"  # when the record was written (epoch seconds)
    EXPIRY_ATTR = "expires_at"
    # What a list shows. LINK_CREATED_ATTR is the index's range key: the link's own `created`, sortable.
    LINK_CREATED_ATTR = "created"
    AMOUNT_ATTR = "amount"
    KEY_USED_ATTR = "idempotency_key"
    URL_ATTR = "link"

    def __init__(self, *, dynamodb_client: Any, table_name: str, retention_seconds: int) -> None:
        self._client = dynamodb_client
        self._table_name = table_name
        self._retention_seconds = retention_seconds

    def put(self, link: dict[str, Any], owner: str, idempotency_key: str) -> dict[str, Any]:
        """The `Put` of a TransactWriteItems that records `owner` for the created `link` (a normalized link), with
        what a list shows: its `created` (sortable, see `SORTABLE_CREATED`; the recording time when the link has
        none), `amount`, `link` (when there is one) and the caller's `idempotency_key`. It succeeds when the record
        is new or already names the same owner and key (a create completed again after its record was lost); a link
        recorded for another owner, or for another key of the same owner, is never handed over: the whole
        transaction fails instead."""
        now = time.time()
        item: dict[str, Any] = {
            self.KEY_ATTR: {"S": link["id"]},
            self.OWNER_ATTR: {"S": owner},
            self.CREATED_ATTR: {"N": str(int(now))},
            self.EXPIRY_ATTR: {"N": str(int(now) + self._retention_seconds)},
            self.LINK_CREATED_ATTR: {"S": sortable_created(link.get("created"), now)},
            self.KEY_USED_ATTR: {"S": idempotency_key},
        }
        if isinstance(link.get("amount"), int):
            item[self.AMOUNT_ATTR] = {"N": str(link["amount"])}
        if link.get("link") is not None:
            item[self.URL_ATTR] = {"S": link["link"]}
        return {
            "Put": {
                "TableName": self._table_name,
                "Item": item,
                # The same intent completing again (its record lost) may write it again; a record from before
                # owner records kept the key matches its owner alone.
                "ConditionExpression": (
                    "attribute_not_exists(#link_id)"
                    " OR (#owner = :owner AND (#key = :key OR attribute_not_exists(#key)))"
                ),
                "ExpressionAttributeNames": {
                    "#link_id": self.KEY_ATTR,
                    "#owner": self.OWNER_ATTR,
                    "#key": self.KEY_USED_ATTR,
                },
                "ExpressionAttributeValues": {":owner": {"S": owner}, ":key": {"S": idempotency_key}},
            }
        }

    def is_recorded(self, link_id: str) -> bool:
        """Whether the proxy has recorded `link_id` for any caller (one consistent GetItem): a link that is someone's
        is never canceled on another request's behalf. `DependencyUnavailable` when the table cannot be read."""
        try:
            item = self._client.get_item(
                TableName=self._table_name,
                Key={self.KEY_ATTR: {"S": link_id}},
                ConsistentRead=True,
                ProjectionExpression="#link_id",
                ExpressionAttributeNames={"#link_id": self.KEY_ATTR},
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            logger.error("the link owners table could not be read", extra={"store_error": error_code(exc)})
            raise DependencyUnavailable(
                "The link owners store is unavailable; retry later.", dependency=Dependency.DYNAMODB
            ) from None
        return item is not None

    def require_owner(self, caller: str, link_id: str) -> None:
        """Return when `caller` owns `link_id`; raise `LinkNotFound` otherwise (`DependencyUnavailable` when
        the table cannot be read). Costs one GetItem, none for a malformed id."""
        if not LINK_ID.fullmatch(link_id):
            self._refuse("malformed-id")
        try:
            item = self._client.get_item(
                TableName=self._table_name,
                Key={self.KEY_ATTR: {"S": link_id}},
                ConsistentRead=True,  # a link is readable as soon as its create has answered
                ProjectionExpression="#owner, #expires_at",
                ExpressionAttributeNames={"#owner": self.OWNER_ATTR, "#expires_at": self.EXPIRY_ATTR},
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            logger.error("the link owners table could not be read", extra={"store_error": error_code(exc)})
            raise DependencyUnavailable(
                "The link owners store is unavailable; retry later.", dependency=Dependency.DYNAMODB
            ) from None
        if item is None or int(item[self.EXPIRY_ATTR]["N"]) < time.time():  # TTL deletes lag behind
            self._refuse("no-owner-record")
        if item[self.OWNER_ATTR]["S"] != caller:
            self._refuse("other-owner")

    def list_links(self, caller: str, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of `caller`'s links, newest first: at most `limit` items (fewer when some records have expired
        and the TTL has not deleted them yet), and the cursor to the next page, None on the last. One Query on the
        index, in `caller`'s partition only; `InvalidCursor` (before any query) for a cursor `caller` was not
        given, `DependencyUnavailable` when the table cannot be read."""
        request: dict[str, Any] = {
            "TableName": self._table_name,
            "IndexName": OWNER_LINKS_INDEX,
            "KeyConditionExpression": "#owner = :owner",
            "ProjectionExpression": "#link_id, #created, #amount, #key, #link, #expires_at",
            "ExpressionAttributeNames": {
                "#owner": self.OWNER_ATTR,
                "#link_id": self.KEY_ATTR,
                "#created": self.LINK_CREATED_ATTR,
                "#amount": self.AMOUNT_ATTR,
                "#key": self.KEY_USED_ATTR,
                "#link": self.URL_ATTR,
                "#expires_at": self.EXPIRY_ATTR,
            },
            "ExpressionAttributeValues": {":owner": {"S": caller}},
            "ScanIndexForward": False,  # newest first
            "Limit": limit,
        }
        if cursor is not None:
            link_id, created = decode_cursor(caller, cursor)
            request["ExclusiveStartKey"] = {
                self.KEY_ATTR: {"S": link_id},
                self.OWNER_ATTR: {"S": caller},  # the caller's own partition, whatever the cursor says
                self.LINK_CREATED_ATTR: {"S": created},
            }
        try:
            page = self._client.query(**request)
        except (ClientError, BotoCoreError) as exc:
            logger.error("the link owners index could not be read", extra={"store_error": error_code(exc)})
            raise DependencyUnavailable(
                "The link owners store is unavailable; retry later.", dependency=Dependency.DYNAMODB
            ) from None
        now = time.time()
        items = [self._listed(item) for item in page.get("Items", []) if int(item[self.EXPIRY_ATTR]["N"]) >= now]
        last = page.get("LastEvaluatedKey")
        next_cursor = None
        if last is not None:
            next_cursor = encode_cursor(caller, last[self.KEY_ATTR]["S"], last[self.LINK_CREATED_ATTR]["S"])
        return items, next_cursor

    def _listed(self, item: dict[str, Any]) -> dict[str, Any]:
        amount = item.get(self.AMOUNT_ATTR)
        url = item.get(self.URL_ATTR)
        return {
            "id": item[self.KEY_ATTR]["S"],
            "amount": int(amount["N"]) if amount else None,
            "created": item[self.LINK_CREATED_ATTR]["S"],
            "idempotency_key": item[self.KEY_USED_ATTR]["S"],
            "link": url["S"] if url else None,
        }

    @staticmethod
    def _refuse(reason: str) -> None:
        # The reason is for operators (probing for other callers' ids shows here); the caller never sees it.
        logger.info("link ownership refused", extra={"refusal": reason})
        raise LinkNotFound()


def sortable_created(created: object, now: float) -> str:
    """`created` (a normalized link's RFC 3339 UTC time) as the index sorts it, `SORTABLE_CREATED`; the time `now`
    (epoch seconds) in the same form when the link has none, or one that cannot be read."""
    if isinstance(created, str):
        try:
            moment = datetime.fromisoformat(created)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            text = _millisecond_utc(moment)
            if SORTABLE_CREATED.fullmatch(text):  # not "": a time that moving to UTC takes off the calendar
                return text
    return _millisecond_utc(datetime.fromtimestamp(now, tz=UTC))


def _millisecond_utc(moment: datetime) -> str:
    try:
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except OverflowError:
        return ""


def encode_cursor(caller: str, link_id: str, created: str) -> str:
    """The opaque cursor for the page after the record (`link_id`, `created`) of `caller`'s list: url-safe base64,
    without padding, of `{"id", "created", "check"}`, where `check` binds the two to `caller`."""
    body = {"id": link_id, "created": created, "check": _cursor_check(caller, link_id, created)}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def decode_cursor(caller: str, cursor: str) -> tuple[str, str]:
    """The (`link_id`, `created`) a cursor from `encode_cursor` holds, once it is well formed and was made for
    `caller`; `InvalidCursor` otherwise (one answer, whatever is wrong with it)."""
    if not (len(cursor) <= _MAX_CURSOR_CHARS and _CURSOR_CHARACTERS.fullmatch(cursor)):
        raise InvalidCursor(INVALID_CURSOR)
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):  # not base64, not UTF-8, not JSON
        raise InvalidCursor(INVALID_CURSOR) from None
    if not (isinstance(body, dict) and body.keys() == {"id", "created", "check"}):
        raise InvalidCursor(INVALID_CURSOR)
    link_id, created, check = body["id"], body["created"], body["check"]
    if not (
        isinstance(link_id, str)
        and isinstance(created, str)
        and isinstance(check, str)
        and 0 < _utf8_length(link_id) <= _MAX_KEY_BYTES
        and SORTABLE_CREATED.fullmatch(created)
        and _CURSOR_CHECK.fullmatch(check)
        and hmac.compare_digest(check, _cursor_check(caller, link_id, created))
    ):
        raise InvalidCursor(INVALID_CURSOR)
    return link_id, created


def _utf8_length(text: str) -> int:
    """The length of `text` in UTF-8; 0 for a string that has none (a lone surrogate, which JSON can escape)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return 0


def _cursor_check(caller: str, link_id: str, created: str) -> str:
    fields = json.dumps([caller, link_id, created], ensure_ascii=True).encode()
    return hashlib.sha256(_CURSOR_CONTEXT + b"\n" + fields).hexdigest()[:32]
