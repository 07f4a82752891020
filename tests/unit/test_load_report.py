"""`make load`'s verdict and report (bench/load_report.py), built from raw results it did not measure: a run of a few
requests, as the driver would record it, where every check holds, and the same run with things gone wrong."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.support import bench_modules

pytestmark = pytest.mark.unit

load_plan, load_report = bench_modules("load_plan", "load_report")
Planned, LinkOp, Kind = load_plan.Planned, load_plan.LinkOp, load_plan.Kind
Result, OpResult, Batch, Run = load_report.Result, load_report.OpResult, load_report.Batch, load_report.Run

PROBLEM = "urn:payout-link-proxy:problem:"
A = Planned("user-1", "key-a", 1000, "new")
B = Planned("user-2", "key-b", 2000, "new")
C = Planned("user-3", "key-c", 3000, "new")  # its first request meets an ambiguous failure
A_AGAIN, A_OTHER = Planned("user-1", "key-a", 1000, "same-body"), Planned("user-1", "key-a", 1001, "other-body")
C_AGAIN, C_OTHER = Planned("user-3", "key-c", 3000, "same-body"), Planned("user-3", "key-c", 3001, "other-body")
CANCELED_B = {"id": "link-b", "status": "canceled"}
UNSENT = LinkOp("stranger cancel", ("user-9", "key-z"), "user-1")  # its target made no link
FIVE_HUNDRED = Kind("500 after create", {"status": 500, "after_create": True}, 502, "retry")


def run(**changes: Any) -> Any:
    """Three intents, one of them ambiguous (a 502 in phase 1, then recovered), an owner's read, an owner's cancel
    and a stranger's read: everything as it must be, but for `changes`."""
    fields: dict[str, Any] = {
        "clients": 4,
        "containers": 2,
        "planned": [A, B, A_AGAIN, C, A_OTHER, C_AGAIN, C_OTHER],
        "ambiguous": {C.intent: FIVE_HUNDRED},
        "batches": [Batch(FIVE_HUNDRED, [Result(C, "ambiguous", 502, 900.0, None, None)], 3, 3, {"up-c": "link-c"})],
        "phase1_seconds": 1.25,
        "load": [
            Result(A, "new", 201, 10.0, "link-a", 1000),
            Result(B, "new", 201, 20.0, "link-b", 2000),
            Result(A_AGAIN, "same-body", 409, 30.0, None, None),
            Result(A_OTHER, "other-body", 422, 40.0, None, None),
            Result(C_OTHER, "retry other-body", 422, 50.0, None, None),
            Result(C_AGAIN, "retry same-body", 201, 60.0, "link-c", 3000),
        ],
        "ops": [
            OpResult(LinkOp("read", A.intent, "user-1"), "GET", 200, 5.0, "link-a", {"id": "link-a"}),
            OpResult(
                LinkOp("cancel", B.intent, "user-2"),
                "DELETE",
                200,
                7.0,
                "link-b",
                {"id": "link-b", "status": "canceled"},
            ),
            OpResult(
                LinkOp("stranger read", A.intent, "user-3"), "GET", 404, 3.0, "link-a", {"type": f"{PROBLEM}not-found"}
            ),
        ],
        "final": {"link-a": "created", "link-b": "canceled"},
        "phase2_seconds": 0.5,
        "emulator": {
            "links": {"up-a": "link-a", "up-b": "link-b", "up-c": "link-c"},
            "links_created": 3,
            "reads": 1,
            "cancels": 1,
        },
        "log_path": Path("stack.log"),
    }
    return Run(**{**fields, **changes})


# What `make load` has always printed for such a run (the empty answers of a kind end in the padding's spaces).
REPORT = [
    "load: 10 requests, 4 clients, 2 function processes",
    "  phase 1 (ambiguous)         1 requests in 1.25 s, one kind at a time",
    "  phase 2 (load)              9 requests in 0.50 s (18 requests/s)",
    "  latency p50              20.0 ms   (phase 2)",
    "  latency p95              60.0 ms",
    "  latency p99              60.0 ms",
    "  latency mean             25.0 ms",
    "  statuses             200: 2, 201: 3, 404: 1, 409: 1, 422: 2, 502: 1",
    "    new                201: 2",
    "    same-body          409: 1",
    "    other-body         422: 1",
    "    ambiguous          502: 1",
    "    retry other-body   422: 1",
    "    retry same-body    201: 1",
    "  intended 5xx         502: 1",
    "  ambiguous injected          1   recovered 1",
    "    500 after create       1 intents,   3 faults,   3 upstream requests,   1 links",
    "  reads and cancels           3   (phase 2, of links made earlier in the run)",
    "    read               GET 200: 1",
    "    cancel             DELETE 200: 1",
    "    cancel twice       ",
    "    claimed cancel     ",
    "    stranger read      GET 404: 1",
    "    stranger cancel    ",
    "  Dots reads, cancels         1, 1   (the owners' calls make 1, 1)",
    "  links created               3",
    "  intents with a 201          3",
    "  distinct intents            3",
    "OK: one link per intent, ambiguous failures recovered, no 5xx but the intended ones; owners read and cancel "
    "their own links, strangers get 404 and never reach Dots",
]


def test_a_run_where_everything_holds_passes_with_its_figures():
    report = load_report.build_report(run())
    assert report.failures == () and report.ok and report.exit_code == 0
    assert (report.requests, report.phase1_requests, report.phase2_requests) == (10, 1, 9)
    assert report.requests_per_second == 18
    assert report.latency == load_report.Latency(p50=20.0, p95=60.0, p99=60.0, mean=25.0)
    assert report.statuses == {200: 2, 201: 3, 404: 1, 409: 1, 422: 2, 502: 1}
    assert sum(report.statuses.values()) == report.requests
    assert report.by_role["new"] == {201: 2} and report.by_role["retry same-body"] == {201: 1}
    assert list(report.by_role) == list(load_report.ROLES)
    assert report.intended_5xx == {502: 1}
    assert (report.ambiguous_injected, report.ambiguous_recovered) == (1, 1)
    assert report.batches == (load_report.BatchFigures("500 after create", 1, 3, 3, 1),)
    assert (report.ops_sent, report.ops_unsent) == (3, 0)
    assert report.by_op["stranger read"] == {("GET", 404): 1} and report.by_op["cancel twice"] == {}
    assert (report.dots_reads, report.dots_cancels, report.owner_reads, report.owner_cancels) == (1, 1, (1, 1), (1, 1))
    assert (report.links_created, report.intents_with_201, report.distinct_intents) == (3, 3, 3)


def test_the_report_prints_as_make_load_always_has():
    assert load_report.format_report(load_report.build_report(run())).split("\n") == REPORT


@pytest.mark.parametrize(
    ("changes", "failures"),
    [
        pytest.param(
            {"emulator": {**run().emulator, "links_created": 4, "links": {**run().emulator["links"], "up-x": "x"}}},
            ["1 links no 201 carries, 0 link ids the emulator did not make", "4 links for 3 intents that got a 201"],
            id="a link no 201 carries",
        ),
        pytest.param(
            {"load": [*run().load, Result(B, "same-body", 201, 70.0, "link-x", 1999)]},
            [
                "a 201 for ('user-2', 'key-b') carries amount 1999, not 2000",
                "1 intents got different link ids",
                "1 link ids the emulator did not make",
            ],
            id="another link and amount for an intent",
        ),
        pytest.param(
            {"load": [*run().load, Result(B, "same-body", 503, 70.0, None, None)]},
            ["1 same-body requests got 503", "1 answers were 5xx besides the intended ones (log: stack.log)"],
            id="a stray 5xx",
        ),
        pytest.param(
            {"load": [*run().load[:-1], Result(C_AGAIN, "retry same-body", 502, 60.0, None, None)]},
            ["1 retry same-body requests got 502", "1 ambiguous intents not recovered"],
            id="an ambiguous intent not recovered",
        ),
        pytest.param(
            {"batches": [dataclasses.replace(run().batches[0], upstream_requests=4)]},
            ["500 after create: 3 faults queued, 4 upstream requests"],
            id="an attempt that met no fault",
        ),
        pytest.param(
            {"emulator": {**run().emulator, "reads": 2}},
            ["Dots saw 2 reads and 1 cancels; the owners' requests make 1 and 1"],
            id="a stranger's read reached Dots",
        ),
        pytest.param(
            {"final": {"link-a": "created", "link-b": "created"}},
            ["1 links answered canceled or claimed are not so at Dots"],
            id="a cancel Dots does not hold",
        ),
        pytest.param(
            {
                "ops": [
                    *run().ops,
                    OpResult(LinkOp("stranger cancel", ("user-9", "key-z"), "user-1"), "DELETE", 0, 0.0, None, None),
                ]
            },
            ["1 stranger cancel requests (DELETE) got no link to act on"],
            id="a call with no link to act on",
        ),
    ],
)
def test_a_run_that_went_wrong_fails_saying_how(changes, failures):
    report = load_report.build_report(run(**changes))
    assert not report.ok and report.exit_code == 1
    for failure in failures:
        assert any(failure in line for line in report.failures), (failure, report.failures)
    text = load_report.format_report(report)
    assert [line.removeprefix("FAIL: ") for line in text.splitlines() if line.startswith("FAIL: ")] == list(
        report.failures
    )
    assert "\nOK:" not in text
