"""Concurrent duplicates across processes: each process is a Lambda container with its own clients and caches;
they share only the moto server and the upstream, as containers share DynamoDB and Dots."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from payout_links.problems import PROBLEM_TYPE_PREFIX
from tests.support import create_event, http_result, new_key

pytestmark = pytest.mark.faults

CONTAINERS = 8
REQUESTS = 50
HOLD_SECONDS = 1.0
IN_PROGRESS = PROBLEM_TYPE_PREFIX + "request-in-progress"


def test_fifty_identical_requests_across_eight_containers_make_one_link(container_pool, upstream):
    pool = container_pool(CONTAINERS)
    assert len(set(pool.pids)) == CONTAINERS
    event = create_event(key=new_key())
    # The first creation stays in flight while the duplicates arrive (the function waits up to 8 s for it).
    upstream.inject({"delay_seconds": HOLD_SECONDS})

    with ThreadPoolExecutor(max_workers=REQUESTS) as callers:
        answers = callers.map(lambda n: pool.invoke(event, f"dup-{n}"), range(REQUESTS))
        results = [http_result(answer, event) for answer in answers]

    statuses = [result.status for result in results]
    assert set(statuses) <= {201, 409}, statuses
    created = [result for result in results if result.status == 201]
    fresh = [result for result in created if "idempotent-replayed" not in result.headers]
    assert len(fresh) == 1  # exactly one request made the link; every other 201 is a replay of it
    assert {result.body for result in created} == {fresh[0].body}
    in_progress = [result for result in results if result.status == 409]
    # The requests overlapped: some found the first one's lock held. Served one after another, none would.
    assert in_progress, "no request overlapped another"
    assert all(result.is_problem() and int(result.headers["retry-after"]) >= 1 for result in in_progress)
    assert {result.json()["type"] for result in in_progress} == {IN_PROGRESS}
    # And once the link is made, the same request is replayed by whichever container gets it.
    later = http_result(pool.invoke(event, "later"), event)
    assert later.status == 201 and later.headers["idempotent-replayed"] == "true"
    assert later.body == fresh[0].body
    assert upstream.stats()["creates"] == 1
    assert upstream.stats()["links_created"] == 1
