"""The scheduled functions of a SAM template, run on this machine as EventBridge would run them: every
`AWS::Serverless::Function` with `Schedule` or `ScheduleV2` events, each event on a timer of its own, each function
in one execution environment (a `LambdaWorker`, the same kind of process the API's functions run in).

    schedules = LocalSchedules(Path("template.yaml"), physical_names={"Notes": "local-notes"})
    schedules.functions["CleanupFunction"].environment["LEVEL"] = "debug"  # its variables, to adjust before start
    schedules.start(period_seconds=2)  # every event every 2 s instead of its rate (0: only when run by hand)
    run = schedules.run_now("CleanupFunction")  # one run now, waited for: run.outcome, run.result, run.error
    ...
    schedules.stop()

What EventBridge does, and what happens locally instead:
- `rate(N minute|minutes|hour|hours|day|days)` fires every N units, the first time one period after the start;
  `cron(...)` has no local timer: start with a period to run it every so often anyway, or 0 to run it only by hand;
- an event with `Enabled: false` or `State: DISABLED` has no timer;
- the handler gets the event's `Input` when it has one, else the "Scheduled Event" EventBridge sends (for
  `ScheduleV2` too, with the schedule's ARN as its resource);
- one run at a time per function, as a reserved concurrency of 1 would have it: a tick that comes while a run is
  going is skipped; `run_now` waits for the run under way, then runs. A run that fails (the handler raised, its
  process crashed, it overran its Timeout) is logged, never retried, and the next tick runs as usual.
Each run gets a fresh Lambda context whose remaining time starts from the function's Timeout. The execution
environment starts with the first run (a cold start), stays warm between runs, and is replaced after a crash or a
timeout. Every run and every skipped tick is one JSON line on the log (`{"local_schedule": function, ...}`), beside
the function's own logs.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Self

from local_stack.core.lambda_worker import LOCAL_ACCOUNT_ID
from local_stack.core.template import function_settings, load_template, resolve
from local_stack.core.workers import (
    STOP_GRACE_SECONDS,
    ChildProcesses,
    InvocationFailed,
    LambdaWorker,
    execution_environment,
    stop_workers,
)

SCHEDULE_EVENT_TYPES = ("Schedule", "ScheduleV2")
_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_CRON = re.compile(r"cron\(.+\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
# The runs kept for `LocalSchedules.runs` (a timer every 0.1 s fills it in under two minutes).
HISTORY = 1000


def schedule_period(expression: str, override: float | None = None) -> float:
    """How often an event with this schedule expression runs locally, in seconds: its rate, or `override` instead.
    ValueError for anything but a rate or cron expression, and for a cron expression without `override`: cron
    schedules have no local timer."""
    text = str(expression).strip()
    if match := _RATE.fullmatch(text):
        if int(match[1]) < 1:
            raise ValueError(f"{text}: a rate's value is a whole number from 1")
        rate = float(int(match[1]) * _UNIT_SECONDS[match[2].removesuffix("s")])
        return rate if override is None else override
    if _CRON.fullmatch(text):
        if override is None:
            raise ValueError(f"{text}: cron schedules are not run locally; give a period instead")
        return override
    raise ValueError(f"{text!r} is not a schedule expression: rate(N minute|minutes|hour|hours|day|days) or cron(...)")


@dataclass(frozen=True)
class Schedule:
    """One schedule event of a function, its values resolved at the parameters' defaults."""

    function: str  # the function's logical id
    event: str  # the event's name under the function's Events
    kind: str  # Schedule (an EventBridge rule) or ScheduleV2 (EventBridge Scheduler)
    expression: str
    enabled: bool = True
    input: Any = None  # what the handler gets instead of a Scheduled Event; None: a Scheduled Event
    name: str | None = None  # the rule's or schedule's Name, when the template gives one


def schedules_from_template(template: dict[str, Any], function: str | None = None) -> list[Schedule]:
    """The Schedule and ScheduleV2 events of the function with logical id `function` (of every function when None),
    in the template's order."""
    found = []
    for name, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function" or function not in (None, name):
            continue
        for event_name, event in (resource.get("Properties", {}).get("Events") or {}).items():
            kind = event.get("Type")
            if kind not in SCHEDULE_EVENT_TYPES:
                continue
            values = _EventValues(template, event.get("Properties", {}), f"{name}.{event_name}")
            given = values.get("Input")
            try:
                payload = json.loads(given) if isinstance(given, str) else given
            except ValueError:
                raise ValueError(f"{name}.{event_name}.Input is not JSON") from None
            found.append(
                Schedule(
                    function=name,
                    event=event_name,
                    kind=kind,
                    expression=str(values.get("Schedule" if kind == "Schedule" else "ScheduleExpression", "")),
                    enabled=str(values.get("State", "ENABLED")).upper() != "DISABLED"
                    and str(values.get("Enabled", True)).lower() != "false",
                    input=payload,
                    name=values.get("Name"),
                )
            )
    return found


@dataclass(frozen=True)
class _EventValues:
    """An event's properties, each resolved when read; what cannot be resolved locally names the event."""

    template: dict[str, Any]
    properties: dict[str, Any]
    where: str

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return resolve(self.properties.get(key, default), self.template)
        except ValueError as exc:
            raise ValueError(f"{self.where}.{key}: {exc}") from None


def scheduled_event(schedule: Schedule, *, region: str, name: str, now: datetime | None = None) -> Any:
    """What the function gets from one run of `schedule`: its Input, or EventBridge's "Scheduled Event" naming the
    rule (or the Scheduler's schedule) `name`."""
    if schedule.input is not None:
        return copy.deepcopy(schedule.input)
    if schedule.kind == "ScheduleV2":
        resource = f"arn:aws:scheduler:{region}:{LOCAL_ACCOUNT_ID}:schedule/default/{name}"
    else:
        resource = f"arn:aws:events:{region}:{LOCAL_ACCOUNT_ID}:rule/{name}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT_ID,
        "time": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [resource],
        "detail": {},
    }


@dataclass(frozen=True)
class ScheduledRun:
    """One tick or run of a scheduled function: `outcome` is "succeeded" (`result` is what the handler returned),
    "failed" (`error` says how), "skipped" (a tick while a run was going) or "stopped" (cut short by `stop`)."""

    function: str
    event: str
    trigger: str  # "timer" or "manual"
    outcome: str
    started: float  # time.monotonic()
    seconds: float = 0.0
    request_id: str | None = None
    result: Any = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if name != "started"}


class ScheduledFunction:
    """A function with schedule events, as the template declares it: `environment` (its variables, resolved) may
    be changed until the schedules start. Once started, it runs in one execution environment, one run at a time."""

    def __init__(
        self,
        template_path: Path,
        template: dict[str, Any],
        function: str,
        schedules: list[Schedule],
        physical_names: Mapping[str, str] | None,
    ) -> None:
        settings = function_settings(template, function, physical_names)
        if not settings.handler:
            raise ValueError(f"{function} names no handler")
        self.function = function
        self.schedules = schedules
        self.environment: dict[str, str] = settings.environment
        self.handler = settings.handler
        self.timeout_seconds = settings.timeout_seconds
        self.memory_mb = settings.memory_mb
        self.code_dir = template_path.parent / settings.code_uri
        self.name = function  # its name locally, once started
        self.run_lock = threading.Lock()  # held for the whole of a run: one at a time
        self._worker_lock = threading.Lock()
        self._worker: LambdaWorker | None = None
        self._worker_env: dict[str, str] = {}
        self._log: IO[str] | None = None
        self._processes: ChildProcesses | None = None
        self._stopped = False

    def prepare(self, name: str, log: IO[str] | None, processes: ChildProcesses | None = None) -> None:
        self.name = name
        self._log = log
        self._processes = processes
        self._worker_env = execution_environment(self.environment, function_name=name, memory_mb=self.memory_mb)

    @property
    def region(self) -> str:
        return self._worker_env.get("AWS_REGION") or self._worker_env.get("AWS_DEFAULT_REGION") or "us-east-1"

    @property
    def pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker is not None and worker.alive() else None

    def worker(self) -> LambdaWorker:
        """The warm execution environment, or a fresh one started now (a cold start)."""
        with self._worker_lock:
            if self._stopped:
                raise InvocationFailed("stopped")
            worker = self._worker
            fresh = worker is None or not worker.alive()
            if fresh:
                worker = self._worker = LambdaWorker(
                    self.handler,
                    self._worker_env,
                    self.timeout_seconds,
                    code_dir=self.code_dir,
                    log=self._log,
                    wait=False,
                    processes=self._processes,
                )
        assert worker is not None
        if fresh:
            worker.wait_ready()
        return worker

    def shut(self) -> LambdaWorker | None:
        """No environment starts any more; the current one, if any, for the caller to stop."""
        with self._worker_lock:
            self._stopped = True
            worker, self._worker = self._worker, None
        return worker


class LocalSchedules:
    def __init__(
        self,
        template_path: Path,
        *,
        physical_names: Mapping[str, str] | None = None,
        functions: Sequence[str] | None = None,
    ) -> None:
        """Read every function of the template at `template_path` that has schedule events (only those named in
        `functions`, when given). A `!Ref` to a resource in their settings takes the local name `physical_names`
        gives it; their code is imported from their CodeUri, as for `LocalApi`."""
        self.template_path = Path(template_path).resolve()
        self.template = load_template(self.template_path)
        found = schedules_from_template(self.template)
        names = list(dict.fromkeys(schedule.function for schedule in found)) if functions is None else functions
        self.functions: dict[str, ScheduledFunction] = {}
        for name in names:
            own = [schedule for schedule in found if schedule.function == name]
            if not own:
                raise ValueError(f"{name} has no Schedule or ScheduleV2 event")
            self.functions[name] = ScheduledFunction(self.template_path, self.template, name, own, physical_names)
        # Each event's period once started, by (function, event); None: no timer (disabled, or runs by hand only).
        self.periods: dict[tuple[str, str], float | None] = {}
        self.runs: deque[ScheduledRun] = deque(maxlen=HISTORY)
        self._log: IO[str] | None = None
        self._log_lock = threading.Lock()
        self._stopping = threading.Event()
        self._timers: list[threading.Thread] = []
        self._runs_under_way: set[threading.Thread] = set()
        self._started = False

    def start(
        self,
        *,
        period_seconds: float | None = None,
        function_names: Mapping[str, str] | None = None,
        log: IO[str] | None = None,
        processes: ChildProcesses | None = None,
    ) -> Self:
        """Start a timer for every enabled event: every `period_seconds` when given (0: no timers, runs only by
        `run_now`), else at the event's rate. Each function's environment is ours, its variables over it, and those
        Lambda sets (its name, from `function_names` or its logical id, and its memory). `log` receives the
        functions' logs and one line per run (by default, our stderr). The environments are started through
        `processes` when given. ValueError, before anything starts, for an expression that has no local timer (cron,
        without a period)."""
        if self._started:
            raise RuntimeError("already started")
        if period_seconds is not None and not period_seconds >= 0:
            raise ValueError("the period is 0 (runs by hand only) or a number of seconds")
        periods: dict[tuple[str, str], float | None] = {}
        for function in self.functions.values():
            for schedule in function.schedules:
                period = None
                if schedule.enabled:
                    try:
                        period = schedule_period(schedule.expression, period_seconds) or None
                    except ValueError as exc:
                        raise ValueError(f"{function.function}.{schedule.event}: {exc}") from None
                periods[(function.function, schedule.event)] = period
        self.periods = periods
        self._log = log
        self._started = True
        for function in self.functions.values():
            function.prepare((function_names or {}).get(function.function, function.function), log, processes)
            for schedule in function.schedules:
                period = periods[(function.function, schedule.event)]
                if period is not None:
                    timer = threading.Thread(
                        target=self._timer,
                        args=(function, schedule, period),
                        name=f"schedule-{function.function}-{schedule.event}",
                        daemon=True,
                    )
                    self._timers.append(timer)
                    timer.start()
        return self

    def _timer(self, function: ScheduledFunction, schedule: Schedule, period: float) -> None:
        """Tick every `period` seconds from the start, on a fixed rate (a late tick does not delay the next ones;
        ticks missed while this machine was too busy are not made up for, as EventBridge does not either)."""
        next_tick = time.monotonic() + period
        while not self._stopping.wait(max(0.0, next_tick - time.monotonic())):
            self._tick(function, schedule)
            now = time.monotonic()
            while next_tick <= now:
                next_tick += period

    def _tick(self, function: ScheduledFunction, schedule: Schedule) -> None:
        now = time.monotonic()
        if not function.run_lock.acquire(blocking=False):
            self._record(ScheduledRun(function.function, schedule.event, "timer", "skipped", now))
            return
        thread = threading.Thread(
            target=self._run_and_release,
            args=(function, schedule, now),
            name=f"run-{function.function}-{schedule.event}",
            daemon=True,
        )
        self._runs_under_way.add(thread)
        thread.start()

    def _run_and_release(self, function: ScheduledFunction, schedule: Schedule, ticked: float) -> None:
        try:
            self._run(function, schedule, "timer", ticked)
        finally:
            function.run_lock.release()
            self._runs_under_way.discard(threading.current_thread())

    def _run(
        self, function: ScheduledFunction, schedule: Schedule, trigger: str, started: float | None = None
    ) -> ScheduledRun:
        """One run, the caller holding the function's run lock; `started` is when its tick fired (by default now)."""
        request_id = str(uuid.uuid4())
        started = time.monotonic() if started is None else started
        name = schedule.name or f"{function.name}-{schedule.event}"
        event = scheduled_event(schedule, region=function.region, name=name)
        try:
            result = function.worker().invoke(event, request_id)
        except Exception as exc:  # InvocationFailed, or an environment that could not even be started
            outcome = "stopped" if self._stopping.is_set() else "failed"
            run = ScheduledRun(
                function.function,
                schedule.event,
                trigger,
                outcome,
                started,
                time.monotonic() - started,
                request_id,
                error=str(exc) if isinstance(exc, InvocationFailed) else f"{type(exc).__name__}: {exc}",
            )
        else:
            run = ScheduledRun(
                function.function,
                schedule.event,
                trigger,
                "succeeded",
                started,
                time.monotonic() - started,
                request_id,
                result=result,
            )
        self._record(run)
        return run

    def run_now(self, function: str, *, event: str | None = None) -> ScheduledRun:
        """Run `function` now, as its event `event` (by default its first) would, and return the finished run; a run
        under way is waited for first. A failed run is returned too: see its `outcome` and `error`."""
        scheduled = self.functions.get(function)
        if scheduled is None:
            raise KeyError(f"no scheduled function {function!r}; there are: {', '.join(self.functions) or 'none'}")
        schedule = next((each for each in scheduled.schedules if event in (None, each.event)), None)
        if schedule is None:
            raise KeyError(f"{function} has no schedule event {event!r}")
        if not self._started or self._stopping.is_set():
            raise RuntimeError("the schedules are not running")
        with scheduled.run_lock:
            return self._run(scheduled, schedule, "manual")

    def running(self, function: str) -> bool:
        """Whether a run of `function` is under way."""
        return self.functions[function].run_lock.locked()

    def _record(self, run: ScheduledRun) -> None:
        line = {"local_schedule": run.function, **run.as_json()}
        del line["function"], line["result"]
        log = self._log or sys.stderr
        with self._log_lock:  # the log's lines in the order of `runs`
            self.runs.append(run)
            try:
                log.write(json.dumps({key: value for key, value in line.items() if value is not None}) + "\n")
                log.flush()
            except (OSError, ValueError):  # the log is closed: the run is still recorded
                pass

    @property
    def pids(self) -> dict[str, int]:
        """The warm execution environments' process ids, by function."""
        return {name: pid for name, function in self.functions.items() if (pid := function.pid) is not None}

    def describe(self) -> dict[str, Any]:
        """Each function with its local name, events (expression, period in seconds or None for no timer),
        whether a run is under way and its environment's process id."""
        return {
            name: {
                "name": function.name,
                "events": {
                    schedule.event: {
                        "expression": schedule.expression,
                        "period_seconds": self.periods.get((name, schedule.event)),
                    }
                    for schedule in function.schedules
                },
                "running": function.run_lock.locked(),
                "pid": function.pid,
            }
            for name, function in self.functions.items()
        }

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop the timers and every environment within `grace` seconds, whatever they are doing: a run under way
        is cut short (its outcome "stopped") and no run starts any more."""
        self._stopping.set()
        for timer in self._timers:
            timer.join()
        self._timers = []
        workers = [worker for function in self.functions.values() if (worker := function.shut()) is not None]
        stop_workers(workers, grace)
        for thread in list(self._runs_under_way):
            thread.join(timeout=grace)

    def __enter__(self) -> Self:
        return self.start() if not self._started else self

    def __exit__(self, *_: object) -> None:
        self.stop()
