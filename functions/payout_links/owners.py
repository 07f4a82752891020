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
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payout_links.observability import logger
from payout_links.problems import DependencyUnavailable, NotFound

# What a link id may look like in a URL path: one segment of unreserved URL characters (RFC 3986), never `.` or
# `..`, which a client or a proxy would resolve as a path step.
LINK_ID = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._~-]{1,128}")
LINK_NOT_FOUND = "No payout link with this id was created by this caller."

# When a link was created, as the owner records keep it: RFC 3339 in UTC to the millisecond, always this wide, so
# that the index's string order is time order.
SORTABLE_CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


class LinkNotFound(NotFound):
    """The one answer for every link a caller may not see, whatever the reason (which only the logs say)."""

    metric: str | None = "LinkOwnershipRefused"

    def __init__(self) -> None:
        super().__init__(LINK_NOT_FOUND)


class LinkLostUpstream(LinkNotFound):
    """The same answer for a link its caller owns but the upstream no longer knows: not a refused caller, so not
    counted as one (the upstream's 404 is counted with its errors, and logged with the link's id)."""

    metric = None


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
        is new or already names the same owner (a create completed again after its record was lost); a link
        recorded for another owner is never handed over, and the whole transaction fails instead."""
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
                "ConditionExpression": "attribute_not_exists(#link_id) OR #owner = :owner",
                "ExpressionAttributeNames": {"#link_id": self.KEY_ATTR, "#owner": self.OWNER_ATTR},
                "ExpressionAttributeValues": {":owner": {"S": owner}},
            }
        }

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
            logger.error("the link owners table could not be read", extra={"store_error": str(exc)})
            raise DependencyUnavailable("The link owners store is unavailable; retry later.") from None
        if item is None or int(item[self.EXPIRY_ATTR]["N"]) < time.time():  # TTL deletes lag behind
            self._refuse("no-owner-record")
        if item[self.OWNER_ATTR]["S"] != caller:
            self._refuse("other-owner")

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
