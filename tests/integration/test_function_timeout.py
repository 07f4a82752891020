"""The function's timeout as the template sets it (FunctionTimeoutSeconds, read as FUNCTION_TIMEOUT_SECONDS): a cold
container at 6 s creates a link, and one started below the budget's 5 s minimum says so once, at its start."""

from __future__ import annotations

import json

import pytest

from tests.support import function_logs, new_key

pytestmark = pytest.mark.integration


def error_lines(logs) -> list[dict]:
    return [entry for entry in map(json.loads, logs.getvalue().splitlines()) if entry["level"] == "ERROR"]


def test_a_cold_six_second_function_creates_a_link(function, upstream):
    function.set_env(FUNCTION_TIMEOUT_SECONDS="6")

    created = function.create(key=new_key(), timeout_seconds=6)

    assert created.status == 201, created.json()
    assert len(upstream.links()) == 1


def test_a_timeout_below_the_minimum_is_one_error_line_at_the_containers_start(function, upstream):
    function.set_env(FUNCTION_TIMEOUT_SECONDS="4")

    with function_logs() as first:
        created = function.create(key=new_key(), timeout_seconds=4)
    with function_logs() as second:
        again = function.create(key=new_key(), timeout_seconds=4)

    (line,) = error_lines(first)
    assert "timeout (4 s) is below the 5 s" in line["message"]
    assert error_lines(second) == []
    # A warning, not a refusal: with AWS answering as it usually does, the create still reaches Dots.
    assert (created.status, again.status) == (201, 201)
