"""A create keeps back, from the function's time, the reserve to record the upstream's outcome and answer
(budget.py, service.py): the upstream's deadline ends that much before the function does, so that a Dots that never
answers still leaves the time to write what happened and to answer before Lambda stops the function."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from payout_links.budget import TimeBudget
from payout_links.intent import Intent
from payout_links.models import parse_create_request
from payout_links.outcomes import CreateFailed, Outcome
from payout_links.problems import UpstreamTimedOut
from payout_links.service import PayoutLinkService
from payout_links.store import KeyState, Lock
from tests.support import payout_body

pytestmark = pytest.mark.unit

FUNCTION_SECONDS = 20.0
# At the template's default timeout: one AWS call at its worst is 4 s, and answering takes half a second.
WRITE_SECONDS, ANSWER_SECONDS = 4.0, 0.5


class Context:
    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


class Upstream:
    """A Dots that never answers in time: it records the deadline it was given."""

    attempt_timeout = 3.0

    def __init__(self) -> None:
        self.deadlines: list[float] = []

    def create_payout_link(self, payload: dict[str, Any], *, deadline: float) -> dict[str, Any]:
        self.deadlines.append(deadline)
        raise CreateFailed(UpstreamTimedOut("no answer in time"), Outcome.UNKNOWN)


class Intents:
    def __init__(self) -> None:
        self.dropped: list[Lock] = []

    def lock(self, intent: Intent, *, lock_seconds: float) -> Lock:
        return Lock(intent, "token", inherited=False, expires_at=int(time.time()) + 86_400, since=int(time.time()))

    def mark_unknown(self, lock: Lock, **_: Any) -> KeyState:
        self.dropped.append(lock)
        return KeyState.BOUND

    def release(self, lock: Lock) -> KeyState:
        return KeyState.RELEASED


def test_the_upstream_deadline_leaves_the_reserve_to_record_the_outcome_and_answer() -> None:
    budget = TimeBudget.for_timeout(FUNCTION_SECONDS)
    assert budget.aws_call == WRITE_SECONDS
    upstream, intents = Upstream(), Intents()
    service = PayoutLinkService(payout_api=upstream, owners=None, intents=intents, budget=budget)  # type: ignore[arg-type]
    request = parse_create_request(json.dumps(payout_body()), max_amount_cents=1_000_000)

    started = time.monotonic()
    with pytest.raises(CreateFailed) as failed:
        service.create_once("user:ada", "key-1", request, context=Context(FUNCTION_SECONDS))  # type: ignore[arg-type]

    (deadline,) = upstream.deadlines
    function_ends = started + FUNCTION_SECONDS
    assert function_ends - deadline >= WRITE_SECONDS + ANSWER_SECONDS, "the upstream may use the time to record"
    assert function_ends - deadline < WRITE_SECONDS + ANSWER_SECONDS + 1.0, "the upstream gets the rest of the time"
    # ...and that write happens: the key stays bound, the settler finds the intent.
    assert len(intents.dropped) == 1 and failed.value.problem.key_state == KeyState.BOUND
