"""The local stack's core runs a template's scheduled functions (local_stack/core/schedules.py) as EventBridge would:
here a made-up template, with a handler whose every run does what a file in a temporary directory says next (answer,
raise, crash, sleep), and nothing of this project's but the settler's schedule read from template.yaml."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
import pytest

from local_stack.core.api import LocalApi
from local_stack.core.control import LocalControl
from local_stack.core.schedules import (
    LocalSchedules,
    Schedule,
    schedule_period,
    scheduled_event,
    schedules_from_template,
)
from local_stack.core.template import function_settings, load_template
from local_stack.stack import TEMPLATE_PATH
from tests.support import wait_until

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Often:
    Type: String
    Default: rate(2 minutes)
  NightlyState:
    Type: String
    Default: ENABLED
Globals:
  Function:
    Timeout: 60
    CodeUri: src/
    Environment:
      Variables:
        LEVEL: info
        JOBS_DIR: unset
Resources:
  Notes:
    Type: AWS::DynamoDB::Table
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: jobs.run
      Timeout: 2
      MemorySize: 256
      Environment:
        Variables:
          JOB: tick
          NOTES_TABLE: !Ref Notes
      Events:
        Often:
          Type: Schedule
          Properties:
            Schedule: !Ref Often
  LongFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: jobs.run
      Environment:
        Variables:
          JOB: long
      Events:
        Daily:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 day)
            Name: long-daily
  NightlyFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: jobs.run
      Environment:
        Variables:
          JOB: nightly
      Events:
        Nightly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 3 * * ? *)
            State: !Ref NightlyState
        Weekly:
          Type: Schedule
          Properties:
            Schedule: rate(7 days)
            Enabled: false
            Input: '{"job": "weekly"}'
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: jobs.api
      Events:
        Slow:
          Type: HttpApi
          Properties:
            Path: /slow
            Method: GET
"""

# Each run takes the first line of {JOBS_DIR}/{JOB}.next: "raise", "crash", "sleep N", or nothing (answer at once).
HANDLER = """\
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def run(event, context):
    jobs = Path(os.environ["JOBS_DIR"])
    plan = jobs / (os.environ["JOB"] + ".next")
    lines = plan.read_text().splitlines() if plan.exists() else []
    step = lines.pop(0) if lines else ""
    plan.write_text("".join(line + "\\n" for line in lines))
    if step == "raise":
        raise RuntimeError("asked to")
    if step == "crash":
        os._exit(1)
    if step.startswith("sleep"):
        (jobs / (os.environ["JOB"] + ".sleeping")).write_text(str(os.getpid()))
        time.sleep(float(step.split()[1]))
    return {
        "event": event,
        "pid": os.getpid(),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": {name: os.environ.get(name) for name in ("LEVEL", "JOB", "NOTES_TABLE", "EXTRA")},
    }


def api(event, context):
    (Path(os.environ["JOBS_DIR"]) / "api.sleeping").write_text(str(os.getpid()))
    time.sleep(30)
    return {"statusCode": 200, "body": "late"}
"""


@pytest.fixture
def template_path(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "jobs.py").write_text(HANDLER, encoding="utf-8")
    (tmp_path / "jobs").mkdir()
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE, encoding="utf-8")
    return path


@pytest.fixture
def log(tmp_path: Path) -> Iterator[IO[str]]:
    """Where the functions' logs and the runs' lines go: a file, as a process's stderr must be."""
    with (tmp_path / "functions.log").open("w+") as stream:
        yield stream


def lines_of(log: IO[str]) -> list[dict]:
    """The runs' lines written to `log` so far."""
    log.flush()
    text = Path(log.name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"local_schedule"')]


def plan(template_path: Path, job: str, *steps: str) -> None:
    (template_path.parent / "jobs" / f"{job}.next").write_text("".join(f"{step}\n" for step in steps))


def schedules_of(template_path: Path, *functions: str) -> LocalSchedules:
    """The template's scheduled functions, their jobs directory set: the caller's say over their variables."""
    schedules = LocalSchedules(template_path, physical_names={"Notes": "local-notes"}, functions=functions or None)
    for function in schedules.functions.values():
        function.environment["JOBS_DIR"] = str(template_path.parent / "jobs")
    return schedules


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- reading the template (unit) ----------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43200),
        ("rate(1 day)", 86400),
        ("rate(7 days)", 604800),
        (" rate( 2  minutes ) ", 120),
    ],
)
def test_a_rate_is_its_period_unless_a_period_is_given(expression: str, seconds: int) -> None:
    assert schedule_period(expression) == seconds
    assert schedule_period(expression, 0.25) == 0.25


@pytest.mark.unit
@pytest.mark.parametrize(
    "expression",
    [
        "rate(0 minutes)",
        "rate(-1 minutes)",
        "rate(1.5 hours)",
        "rate(5 seconds)",
        "rate(5 fortnights)",
        "rate(minutes)",
        "every 5 minutes",
        "at(2030-01-01T00:00:00)",
        "",
    ],
)
def test_what_is_not_a_schedule_expression_is_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        schedule_period(expression)
    with pytest.raises(ValueError, match="rate"):
        schedule_period(expression, 1.0)  # a period does not make a typo acceptable


@pytest.mark.unit
def test_cron_is_refused_clearly_unless_a_period_is_given() -> None:
    with pytest.raises(ValueError, match=r"cron\(0 3 \* \* \? \*\): cron schedules are not run locally"):
        schedule_period("cron(0 3 * * ? *)")

    assert schedule_period("cron(0 3 * * ? *)", 5.0) == 5.0


@pytest.mark.unit
def test_schedule_events_are_read_per_function_with_their_values_resolved(template_path: Path) -> None:
    template = load_template(template_path)

    assert schedules_from_template(template) == [
        Schedule("TickFunction", "Often", "Schedule", "rate(2 minutes)"),
        Schedule("LongFunction", "Daily", "ScheduleV2", "rate(1 day)", name="long-daily"),
        Schedule("NightlyFunction", "Nightly", "ScheduleV2", "cron(0 3 * * ? *)"),
        Schedule("NightlyFunction", "Weekly", "Schedule", "rate(7 days)", enabled=False, input={"job": "weekly"}),
    ]
    assert schedules_from_template(template, "ApiFunction") == []  # HttpApi events are the gateway's


@pytest.mark.unit
def test_the_projects_settler_runs_every_minute_by_default() -> None:
    """template.yaml's SettlerFunction, as the local stack reads it: its schedule's rate is its local period."""
    template = load_template(TEMPLATE_PATH)

    (settler,) = schedules_from_template(template, "SettlerFunction")
    settings = function_settings(
        template,
        "SettlerFunction",
        {"IdempotencyTable": "t", "LinkOwnersTable": "o", "PayoutApiCredentialsSecret": "s"},
    )

    assert (settler.kind, settler.expression, settler.enabled) == ("Schedule", "rate(1 minute)", True)
    assert schedule_period(settler.expression) == 60
    assert (settings.handler, settings.timeout_seconds) == ("payout_links.settler.lambda_handler", 60.0)


@pytest.mark.unit
def test_a_run_gets_eventbridges_scheduled_event_or_the_events_input() -> None:
    rule = Schedule("TickFunction", "Often", "Schedule", "rate(1 minute)")
    schedule_v2 = Schedule("LongFunction", "Daily", "ScheduleV2", "rate(1 day)")
    at = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

    event = scheduled_event(rule, region="eu-west-1", name="tick-Often", now=at)
    again = scheduled_event(rule, region="eu-west-1", name="tick-Often", now=at)

    assert event.pop("id") != again.pop("id")
    assert event == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2030-01-02T03:04:05Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/tick-Often"],
        "detail": {},
    }
    assert scheduled_event(schedule_v2, region="us-east-1", name="daily", now=at)["resources"] == [
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/daily"
    ]
    with_input = Schedule("F", "E", "Schedule", "rate(1 day)", input={"job": "weekly"})
    assert scheduled_event(with_input, region="us-east-1", name="x") == {"job": "weekly"}


@pytest.mark.unit
def test_periods_are_the_templates_rates_or_the_one_given(template_path: Path) -> None:
    """Nothing runs here: the first tick is a period away, and the environments start with the first run."""
    with schedules_of(template_path, "TickFunction", "LongFunction").start() as schedules:
        by_default = dict(schedules.periods)
    with schedules_of(template_path).start(period_seconds=3600) as schedules:
        given = dict(schedules.periods)
    with schedules_of(template_path).start(period_seconds=0) as schedules:
        on_demand_only = dict(schedules.periods)

    assert by_default == {("TickFunction", "Often"): 120.0, ("LongFunction", "Daily"): 86400.0}
    assert given == {
        ("TickFunction", "Often"): 3600,
        ("LongFunction", "Daily"): 3600,
        ("NightlyFunction", "Nightly"): 3600,  # cron, run every period locally since one was given
        ("NightlyFunction", "Weekly"): None,  # disabled: no timer
    }
    assert set(on_demand_only.values()) == {None}


@pytest.mark.unit
def test_a_cron_schedule_without_a_period_is_refused_before_anything_starts(template_path: Path) -> None:
    schedules = schedules_of(template_path)

    with pytest.raises(ValueError, match=r"NightlyFunction\.Nightly: cron\(0 3 \* \* \? \*\): cron schedules are not"):
        schedules.start()
    assert schedules.pids == {}


@pytest.mark.unit
def test_a_function_without_schedule_events_is_refused(template_path: Path) -> None:
    with pytest.raises(ValueError, match="ApiFunction has no Schedule or ScheduleV2 event"):
        LocalSchedules(template_path, functions=["ApiFunction"])


# -- running them (they start processes: e2e) -----------------------------------------------------------------------


def runs(schedules: LocalSchedules, *outcomes: str, trigger: str | None = None) -> list:
    return [
        run
        for run in list(schedules.runs)
        if run.outcome in (outcomes or (run.outcome,)) and trigger in (None, run.trigger)
    ]


@pytest.mark.e2e  # starts a function process
def test_timers_fire_every_period_with_a_fresh_context_the_templates_settings_and_a_scheduled_event(
    template_path: Path, log: IO[str]
) -> None:
    schedules = schedules_of(template_path, "TickFunction")
    schedules.functions["TickFunction"].environment["LEVEL"] = "debug"
    started = time.monotonic()

    with schedules.start(period_seconds=0.4, function_names={"TickFunction": "tick-local"}, log=log):
        wait_until(lambda: len(runs(schedules, "succeeded")) >= 3, timeout=30)
    ticks = [run for run in schedules.runs if run.trigger == "timer"]
    succeeded = runs(schedules, "succeeded")

    # A tick each period from the start, never early (a tick may be skipped while the cold start runs).
    moments = [started] + [run.started for run in ticks]
    assert all(later - earlier >= 0.35 for earlier, later in itertools.pairwise(moments)), moments
    assert ticks[2].started - started < 0.4 * 3 + 2.0
    first = succeeded[0].result
    assert first["event"]["detail-type"] == "Scheduled Event" and first["event"]["source"] == "aws.events"
    assert first["event"]["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/tick-local-Often"]
    assert (first["function_name"], first["memory"]) == ("tick-local", 256)
    assert first["env"] == {"LEVEL": "debug", "JOB": "tick", "NOTES_TABLE": "local-notes", "EXTRA": None}
    assert all(1000 < run.result["remaining_ms"] <= 2000 for run in succeeded)  # each run's own Timeout of 2 s
    assert len({run.result["pid"] for run in succeeded}) == 1  # one warm environment
    assert len({run.result["event"]["id"] for run in succeeded}) == len(succeeded)
    assert [(line["outcome"], line.get("request_id")) for line in lines_of(log)] == [
        (run.outcome, run.request_id) for run in ticks
    ]


@pytest.mark.e2e  # starts a function process
def test_a_tick_while_a_run_is_going_is_skipped(template_path: Path, log: IO[str]) -> None:
    plan(template_path, "tick", "sleep 1.2")
    schedules = schedules_of(template_path, "TickFunction")

    with schedules.start(period_seconds=0.25, log=log):
        wait_until(lambda: len(runs(schedules, "succeeded")) >= 2, timeout=30)
    slow = runs(schedules, "succeeded")[0]
    skipped = runs(schedules, "skipped")

    assert slow.seconds >= 1.2
    # Every tick during the slow run was skipped: a reserved concurrency of 1, never two runs at once.
    assert len([run for run in skipped if slow.started < run.started < slow.started + slow.seconds]) >= 3
    done = runs(schedules, "succeeded", "failed")
    for earlier, later in itertools.pairwise(done):
        assert later.started >= earlier.started + earlier.seconds


@pytest.mark.e2e  # starts function processes
def test_a_failed_run_is_logged_and_the_next_tick_runs_all_the_same(template_path: Path, log: IO[str]) -> None:
    """Raised, crashed, overran its 2 s Timeout: each is one failed run; the environment is replaced when it died."""
    plan(template_path, "tick", "raise", "crash", "sleep 10")
    schedules = schedules_of(template_path, "TickFunction")

    with schedules.start(period_seconds=0.3, log=log):
        wait_until(lambda: len(runs(schedules, "succeeded")) >= 1, timeout=60)
    done = runs(schedules, "succeeded", "failed")

    assert [run.outcome for run in done[:4]] == ["failed", "failed", "failed", "succeeded"]
    raised, crashed, overran, _ = done[:4]
    assert raised.error == "the function raised RuntimeError"
    assert crashed.error == overran.error == "the execution environment timed out or crashed"
    assert 2.0 <= overran.seconds < 5
    assert all(run.trigger == "timer" for run in done)
    failures = [line for line in lines_of(log) if line["outcome"] == "failed"]
    assert [line["error"] for line in failures[:3]] == [raised.error, crashed.error, overran.error]


@pytest.mark.e2e  # starts a function process
def test_run_now_runs_at_once_and_waits_for_the_run_under_way(template_path: Path, log: IO[str]) -> None:
    schedules = schedules_of(template_path, "TickFunction", "NightlyFunction")

    with schedules.start(period_seconds=0, log=log):  # 0: no timers, runs on demand only
        first = schedules.run_now("TickFunction")
        plan(template_path, "tick", "sleep 1")
        under_way = threading.Thread(target=schedules.run_now, args=("TickFunction",))
        under_way.start()
        wait_until(lambda: schedules.running("TickFunction"), timeout=10)
        after = schedules.run_now("TickFunction")
        under_way.join()
        weekly = schedules.run_now("NightlyFunction", event="Weekly")  # disabled: no timer, runs on demand
        with pytest.raises(KeyError, match="no scheduled function 'ApiFunction'"):
            schedules.run_now("ApiFunction")

    slow, _ = [run for run in schedules.runs if run.function == "TickFunction"][1:]
    assert first.outcome == after.outcome == "succeeded" and first.trigger == "manual"
    assert first.result["event"]["detail-type"] == "Scheduled Event"
    assert after.started >= slow.started + slow.seconds  # waited, then ran: never two at once
    assert weekly.result["event"] == {"job": "weekly"}  # the event's Input
    assert [run.trigger for run in schedules.runs] == ["manual"] * 4


@pytest.mark.e2e  # starts function processes behind the gateway, and a scheduled one
def test_stop_ends_the_timers_and_every_environment_within_5_s_whatever_they_are_doing(
    template_path: Path, log: IO[str]
) -> None:
    """A scheduled run sleeping 30 s (of its 60 s Timeout) and an API request sleeping as long, both under way."""
    jobs = template_path.parent / "jobs"
    plan(template_path, "long", "sleep 30")
    schedules = schedules_of(template_path, "LongFunction")
    api = LocalApi(template_path, "ApiFunction")
    api.environment["JOBS_DIR"] = str(jobs)
    api.start()
    schedules.start(period_seconds=0.2, log=log)
    control = LocalControl(schedules).start()
    answers: list[object] = []

    def call() -> None:
        try:
            answers.append(httpx.get(f"{api.url}/slow", timeout=60).status_code)
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        wait_until(lambda: (jobs / "long.sleeping").exists() and (jobs / "api.sleeping").exists(), timeout=30)
        pids = [*api.pids, *schedules.pids.values()]
        assert httpx.get(f"{control.url}/schedules").json()["LongFunction"]["running"] is True
        began = time.monotonic()
        schedules.stop()
        api.stop()
        control.stop()
        took = time.monotonic() - began
        caller.join(timeout=10)
    finally:
        schedules.stop()
        api.stop()
        control.stop()

    assert took < 5, took
    assert len(pids) == 2 and not any(pid_alive(pid) for pid in pids)
    assert [run.outcome for run in schedules.runs if run.outcome != "skipped"] == ["stopped"]
    count = len(schedules.runs)
    time.sleep(0.5)  # four periods: a timer still going would have ticked
    assert len(schedules.runs) == count
    assert answers and answers[0] != 200


@pytest.mark.e2e  # starts a function process
def test_the_control_api_runs_a_scheduled_function_and_waits_for_its_result(template_path: Path, log: IO[str]) -> None:
    schedules = schedules_of(template_path, "TickFunction").start(period_seconds=0, log=log)
    control = LocalControl(schedules).start()
    try:
        with httpx.Client(base_url=control.url, timeout=30) as http:
            listed = http.get("/schedules").json()
            ran = http.post("/schedules/TickFunction/run")
            plan(template_path, "tick", "raise")
            failed = http.post("/schedules/TickFunction/run")
            unknown = http.post("/schedules/ApiFunction/run")
            no_route = http.get("/schedules/TickFunction")
    finally:
        control.stop()
        schedules.stop()

    assert listed == {
        "TickFunction": {
            "name": "TickFunction",
            "events": {"Often": {"expression": "rate(2 minutes)", "period_seconds": None}},
            "running": False,
            "pid": None,  # no run yet: no environment
        }
    }
    assert ran.status_code == 200
    assert ran.json()["result"]["event"]["detail-type"] == "Scheduled Event"
    assert (ran.json()["outcome"], ran.json()["trigger"]) == ("succeeded", "manual")
    assert failed.status_code == 502
    assert (failed.json()["outcome"], failed.json()["error"]) == ("failed", "the function raised RuntimeError")
    assert unknown.status_code == 404 and "ApiFunction" in unknown.json()["message"]
    assert no_route.status_code == 404
