"""Who a link belongs to, and who may sign for a partner, where a slip would hand money to another caller: a link
recorded for one caller is never recorded again for another who happens to use the same idempotency key (owners.py,
`put`); a partner's secret signs for that partner's name exactly as written, never another spelling of it, which
would be a second caller with limits and links of its own (credentials.py, `keys_for`); a partner's request is
accepted for five minutes either side of its timestamp, and no longer (webhooks.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import PARTNER, frontend_headers, new_key

pytestmark = pytest.mark.integration


def read(function, link_id: str, sub: str):
    return function.request("GET", f"/payout-links/{link_id}", headers=frontend_headers(key=None, sub=sub))


def test_a_link_is_never_recorded_for_a_second_caller_who_used_the_same_key(function, upstream):
    key = new_key()
    theirs = function.create(key=key, sub="user-a")
    assert theirs.status == 201, theirs.body
    their_id = theirs.json()["id"]

    # user-b's create, under the same key string and for the same payout: the upstream answers with user-a's link
    # (everything it echoes matches; only the id says whose link it is).
    upstream.inject({"link_overrides": {"id": their_id}})
    mine = function.create(key=key, sub="user-b")

    assert mine.status == 502 and mine.json()["type"].endswith("upstream-link-conflict"), mine.body
    assert mine.json()["key_state"] == "spent"
    assert read(function, their_id, "user-a").status == 200
    assert read(function, their_id, "user-b").status == 404
    listed = function.request("GET", "/payout-links", headers=frontend_headers(key=None, sub="user-b"))
    assert listed.status == 200 and their_id not in {item["id"] for item in listed.json()["items"]}


@pytest.mark.parametrize("spelling", [PARTNER.upper(), PARTNER.capitalize()])
def test_a_partners_secret_signs_for_its_own_name_only_as_written(function, upstream, spelling):
    answer = function.webhook(partner=spelling)

    assert answer.status == 401 and answer.json()["type"].endswith(":unauthenticated"), answer.body
    assert upstream.stats()["requests"] == 0


# Well clear of both limits: the request is signed here and verified a moment later, longer on a busy machine.
@pytest.mark.parametrize("seconds", [310, 420, 540])
@pytest.mark.parametrize("direction", [-1, 1], ids=["old", "ahead"])
def test_a_partners_request_more_than_five_minutes_from_now_is_refused(function, upstream, seconds, direction):
    at = datetime.now(UTC) + timedelta(seconds=direction * seconds)

    answer = function.webhook(at=at)

    assert answer.status == 401 and answer.json()["type"].endswith(":unauthenticated"), answer.body
    assert upstream.stats()["requests"] == 0


@pytest.mark.parametrize("seconds", [-270, 280])
def test_a_partners_request_within_five_minutes_is_accepted(function, upstream, seconds):
    answer = function.webhook(at=datetime.now(UTC) + timedelta(seconds=seconds))

    assert answer.status == 201, answer.body
