"""The time budget (budget.py) at every timeout the template allows: the arithmetic that makes a short timeout
work, checked where it is declared."""

from __future__ import annotations

import pytest

from local_stack.core.template import function_settings, load_template
from local_stack.stack import LOCAL_NAMES, TEMPLATE_PATH
from payout_links.budget import (
    ANSWER_SECONDS,
    MIN_FUNCTION_TIMEOUT_SECONDS,
    MIN_UPSTREAM_SECONDS,
    TimeBudget,
)

pytestmark = pytest.mark.unit

# Every whole timeout the API function may be deployed with, and the settler's.
ALLOWED = [*range(MIN_FUNCTION_TIMEOUT_SECONDS, 30), 60]


def test_the_shortest_workable_timeout_is_five_seconds_and_the_template_refuses_less() -> None:
    parameter = load_template(TEMPLATE_PATH)["Parameters"]["FunctionTimeoutSeconds"]

    assert MIN_FUNCTION_TIMEOUT_SECONDS == 5
    assert parameter["MinValue"] == MIN_FUNCTION_TIMEOUT_SECONDS
    assert parameter["MaxValue"] < 30  # under API Gateway's integration timeout
    assert TimeBudget.for_timeout(MIN_FUNCTION_TIMEOUT_SECONDS - 1).worst_case_upstream_seconds < MIN_UPSTREAM_SECONDS


@pytest.mark.parametrize("seconds", ALLOWED)
def test_every_allowed_timeout_leaves_dots_time_when_every_aws_call_is_at_its_worst(seconds: int) -> None:
    budget = TimeBudget.for_timeout(seconds)
    worst_aws_call = budget.aws_attempts * (budget.aws_connect_timeout + budget.aws_read_timeout) + (
        1.0 if budget.aws_attempts > 1 else 0.0  # botocore's longest sleep before retrying a throttled call
    )

    assert worst_aws_call <= budget.aws_call + 1e-9
    assert budget.response_reserve == budget.aws_call + ANSWER_SECONDS
    # lock write, secret read, Dots, completion write, answer: in order, within the timeout
    assert 2 * budget.aws_call + MIN_UPSTREAM_SECONDS + budget.response_reserve <= seconds


def test_the_default_timeout_keeps_the_budget_it_always_had() -> None:
    budget = TimeBudget.for_timeout(20)

    assert (budget.aws_connect_timeout, budget.aws_read_timeout, budget.aws_attempts) == (0.5, 1.0, 2)
    assert budget.response_reserve == 4.5


def test_a_six_second_function_gives_dots_most_of_its_time() -> None:
    budget = TimeBudget.for_timeout(6)

    assert budget.aws_attempts == 1
    assert budget.response_reserve == pytest.approx(1.7)
    assert budget.worst_case_upstream_seconds == pytest.approx(1.9)


@pytest.mark.parametrize("function", ["PayoutLinksFunction", "SettlerFunction"])
def test_each_functions_budget_follows_its_own_timeout(function: str) -> None:
    settings = function_settings(load_template(TEMPLATE_PATH), function, LOCAL_NAMES)

    assert float(settings.environment["FUNCTION_TIMEOUT_SECONDS"]) == settings.timeout_seconds
