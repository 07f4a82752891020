"""What a load run got back, and its report: the figures it measured and the checks it failed, and their text."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load_plan import OP_KINDS, Intent, Kind, LinkOp, Planned

PROBLEM_TYPE_PREFIX = "urn:payout-link-proxy:problem:"
# The roles of the creates, in the order the report lists their answers.
ROLES = ("new", "same-body", "other-body", "ambiguous", "retry other-body", "retry same-body")


@dataclass(frozen=True)
class Result:
    request: Planned
    role: str  # the request's `reuse`, "ambiguous" (a first request meeting a fault), or "retry <reuse>"
    status: int
    ms: float
    link_id: str | None
    amount: Any


@dataclass(frozen=True)
class OpResult:
    op: LinkOp
    method: str
    status: int
    ms: float
    link_id: str | None  # the target's link, as its create's 201 carried it
    body: Any  # the parsed answer, or None

    def problem(self) -> str | None:
        kind = self.body.get("type") if isinstance(self.body, dict) else None
        return kind.removeprefix(PROBLEM_TYPE_PREFIX) if isinstance(kind, str) else None


@dataclass
class Batch:
    kind: Kind
    results: list[Result]
    faults: int  # queued
    upstream_requests: int  # made while the batch ran
    links: dict[str, str]  # made while the batch ran: derived upstream key -> link id


@dataclass(frozen=True)
class Run:
    """What one run planned, sent and got back, as the driver recorded it: all the report is built from."""

    clients: int
    containers: int  # function processes
    planned: list[Planned]
    ambiguous: dict[Intent, Kind]
    batches: list[Batch]  # phase 1
    phase1_seconds: float
    load: list[Result]  # phase 2's creates
    ops: list[OpResult]  # phase 2's reads and cancels
    final: dict[str, str]  # link id -> its status at the emulator after the load, for each link acted on
    phase2_seconds: float
    emulator: dict[str, Any]  # the emulator's stats after the load
    log_path: Path  # the stack's log


@dataclass(frozen=True)
class BatchFigures:
    """One kind of ambiguous failure in phase 1."""

    kind: str
    intents: int
    faults: int  # queued
    upstream_requests: int
    links: int


@dataclass(frozen=True)
class Latency:
    """Phase 2's latencies, in milliseconds."""

    p50: float
    p95: float
    p99: float
    mean: float


@dataclass(frozen=True)
class LoadReport:
    """What the run measured and what it checked: `failures` holds one line for each check that failed."""

    clients: int
    containers: int
    requests: int  # every request sent: phase 1's, phase 2's creates, and the reads and cancels that had a link
    phase1_requests: int
    phase1_seconds: float
    phase2_requests: int
    phase2_seconds: float
    latency: Latency
    statuses: Mapping[int, int]  # every request sent, by its answer's status
    by_role: Mapping[str, Mapping[int, int]]  # the creates, by role (ROLES), then by status
    intended_5xx: Mapping[int, int]  # the ambiguous first requests that got their intended status, by status
    ambiguous_injected: int
    ambiguous_recovered: int
    batches: tuple[BatchFigures, ...]
    ops_sent: int  # reads and cancels
    ops_unsent: int  # reads and cancels never sent: their target had no link
    by_op: Mapping[str, Mapping[tuple[str, int], int]]  # reads and cancels by kind (OP_KINDS), then (method, status)
    dots_reads: int  # what the emulator saw
    dots_cancels: int
    owner_reads: tuple[int, int]  # the least and the most reads the owners' requests can have made at Dots
    owner_cancels: tuple[int, int]  # likewise cancels
    links_created: int  # at the emulator
    intents_with_201: int
    distinct_intents: int
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def requests_per_second(self) -> float:
        """Phase 2's throughput."""
        return self.phase2_requests / self.phase2_seconds


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def build_report(run: Run) -> LoadReport:
    """Every check of the module docstring of bench/load.py, made on `run`, and the figures the report shows."""
    failures: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            failures.append(message)

    batches, load, ops, stats, ambiguous = run.batches, run.load, run.ops, run.emulator, run.ambiguous
    phase1_results = [result for batch in batches for result in batch.results]
    results = phase1_results + load
    intents = {request.intent for request in run.planned}

    # Phase 1: the intended status, exactly the queued faults consumed, one link per request.
    made_in_phase1: set[str] = set()
    intended_5xx: Counter[int] = Counter()
    for batch in batches:
        name, expected = batch.kind.name, batch.kind.expected
        wrong = Counter(result.status for result in batch.results if result.status != expected)
        intended_5xx[expected] += sum(1 for result in batch.results if result.status == expected)
        check(not wrong, f"{name}: {dict(wrong)} instead of {expected}")
        check(
            batch.upstream_requests == batch.faults,
            f"{name}: {batch.faults} faults queued, {batch.upstream_requests} upstream requests",
        )
        check(len(batch.links) == len(batch.results), f"{name}: {len(batch.links)} links for {len(batch.results)}")
        made_in_phase1.update(batch.links.values())

    # Phase 2: the status each request may get. Concurrent requests of one intent race for its key, and the body
    # that takes it wins: then a request with the winning body gets 201 (or 409 while another is in flight), one
    # with another body 422, whatever the plan's order (a reuse may overtake the request it reuses).
    # An ambiguous intent's retries run in order, after its failure: its own body 201, another body 422.
    winning: dict[Intent, set[int]] = defaultdict(set)
    for result in load:
        if result.status == 201:
            winning[result.request.intent].add(result.request.amount)
    two_bodies = [intent for intent, amounts in winning.items() if len(amounts) > 1]
    check(not two_bodies, f"{len(two_bodies)} intents got a 201 for two bodies: {two_bodies[:3]}")

    def allowed(result: Result) -> set[int]:
        if result.role == "retry same-body":
            return {201}
        if result.role == "retry other-body":
            return {422}
        return {201, 409} if result.request.amount in winning[result.request.intent] else {422}

    unexpected = Counter((result.role, result.status) for result in load if result.status not in allowed(result))
    for (role, status), count in sorted(unexpected.items()):
        check(False, f"{count} {role} requests got {status}")
    stray_5xx = sum(1 for result in [*load, *ops] if result.status >= 500) + sum(
        1
        for result in phase1_results
        if result.status >= 500 and result.status != ambiguous[result.request.intent].expected
    )
    check(not stray_5xx, f"{stray_5xx} answers were 5xx besides the intended ones (log: {run.log_path})")

    # Recovery of each ambiguous intent: its own body gets a link made in phase 1, another body 422.
    recovered: defaultdict[Intent, bool] = defaultdict(lambda: True)
    for result in load:
        intent = result.request.intent
        if intent in ambiguous:
            if result.role == "retry same-body":
                recovered[intent] &= result.status == 201 and result.link_id in made_in_phase1
            else:
                recovered[intent] &= result.status == 422
    not_recovered = [intent for intent in ambiguous if not recovered.get(intent, False)]
    check(not not_recovered, f"{len(not_recovered)} ambiguous intents not recovered: {not_recovered[:3]}")

    # Links: one per intent, carried by every 201 of that intent and by no other, each with its request's amount.
    links_of: dict[Intent, set[str | None]] = defaultdict(set)
    for result in results:
        if result.status == 201:
            links_of[result.request.intent].add(result.link_id)
            check(
                result.amount == result.request.amount,
                f"a 201 for {result.request.intent} carries amount {result.amount!r}, not {result.request.amount}",
            )
    split = {intent: ids for intent, ids in links_of.items() if len(ids) != 1}
    check(not split, f"{len(split)} intents got different link ids: {list(split.items())[:3]}")
    handed_out = Counter(link_id for ids in links_of.values() for link_id in ids)
    shared = [link_id for link_id, count in handed_out.items() if count > 1]
    check(not shared, f"{len(shared)} link ids were handed to more than one intent")
    at_emulator = set(stats["links"].values())
    links = stats["links_created"]
    check(
        at_emulator == set(handed_out),
        f"{len(at_emulator - set(handed_out))} links no 201 carries, "
        f"{len(set(handed_out) - at_emulator)} link ids the emulator did not make",
    )
    check(links == len(links_of), f"{links} links for {len(links_of)} intents that got a 201")
    check(links == len(intents), f"{links} links for {len(intents)} intents")

    # Reads and cancels: the owner's answered with its own link, canceled unless claimed (409); a stranger's 404.
    def wrong_answer(result: OpResult) -> str | None:
        body = result.body if isinstance(result.body, dict) else {}
        if result.link_id is None:
            return "no link to act on"
        if result.op.stranger:
            return None if result.status == 404 and result.problem() == "not-found" else f"{result.status}"
        if result.op.kind == "claimed cancel":
            return None if result.status == 409 and result.problem() == "not-cancelable" else f"{result.status}"
        if result.status != 200 or body.get("id") != result.link_id:
            return f"{result.status} {'(another id)' if result.status == 200 else result.problem()}"
        if result.method == "DELETE" and body.get("status") != "canceled":
            return f"200 with status {body.get('status')!r}"
        return None

    wrong_ops = Counter((result.op.kind, result.method, wrong) for result in ops if (wrong := wrong_answer(result)))
    for (kind, method, wrong), count in sorted(wrong_ops.items()):
        check(False, f"{count} {kind} requests ({method}) got {wrong}")
    # Dots saw the owners' requests and no stranger's: a GET per read, a DELETE per cancel, and a GET more for
    # each DELETE it refused (a claimed link, or the second DELETE of a cancel sent twice). An owner's request
    # answered wrongly may or may not have reached Dots: it widens the range (reported above already).
    reads, cancels = [0, 0], [0, 0]  # the least and the most the owners' requests can have made
    first_delete: dict[LinkOp, bool] = {}  # a cancel sent twice: whether its first DELETE answered right
    for result in ops:
        if result.op.stranger or result.link_id is None:
            continue  # a stranger's request must make none; one never sent makes none
        right = wrong_answer(result) is None
        if result.method == "GET":
            reads = [reads[0] + right, reads[1] + 1]
            continue
        cancels = [cancels[0] + right, cancels[1] + 1]
        refused: bool | None = result.op.kind == "claimed cancel"  # None: unknown
        if result.op.kind == "cancel twice":
            if result.op not in first_delete:
                first_delete[result.op] = right
            else:  # refused if the first canceled the link; unknown if it went wrong
                refused = True if first_delete[result.op] else None
        least, most = (int(refused), int(refused)) if right and refused is not None else (0, 1)
        reads = [reads[0] + least, reads[1] + most]
    check(
        reads[0] <= stats["reads"] <= reads[1] and cancels[0] <= stats["cancels"] <= cancels[1],
        f"Dots saw {stats['reads']} reads and {stats['cancels']} cancels; the owners' requests make "
        f"{span(reads[0], reads[1])} and {span(cancels[0], cancels[1])}",
    )
    should_be = {
        result.link_id: "claimed" if result.op.kind == "claimed cancel" else "canceled"
        for result in ops
        if not result.op.stranger and result.method == "DELETE" and wrong_answer(result) is None
    }
    final = run.final
    off = {link_id: final.get(link_id) for link_id, status in should_be.items() if final.get(link_id) != status}
    check(not off, f"{len(off)} links answered canceled or claimed are not so at Dots: {list(off.items())[:3]}")

    sent = [result for result in ops if result.link_id is not None]
    latencies = [result.ms for result in [*load, *sent]]
    by_role = Counter((result.role, result.status) for result in results)
    by_op = Counter((result.op.kind, result.method, result.status) for result in sent)
    return LoadReport(
        clients=run.clients,
        containers=run.containers,
        requests=len(results) + len(sent),
        phase1_requests=len(phase1_results),
        phase1_seconds=run.phase1_seconds,
        phase2_requests=len(load) + len(sent),
        phase2_seconds=run.phase2_seconds,
        latency=Latency(
            p50=percentile(latencies, 0.50),
            p95=percentile(latencies, 0.95),
            p99=percentile(latencies, 0.99),
            mean=statistics.fmean(latencies),
        ),
        statuses=dict(sorted(Counter(result.status for result in [*results, *sent]).items())),
        by_role={role: {status: n for (r, status), n in sorted(by_role.items()) if r == role} for role in ROLES},
        intended_5xx=dict(sorted(intended_5xx.items())),
        ambiguous_injected=len(ambiguous),
        ambiguous_recovered=len(ambiguous) - len(not_recovered),
        batches=tuple(
            BatchFigures(batch.kind.name, len(batch.results), batch.faults, batch.upstream_requests, len(batch.links))
            for batch in batches
        ),
        ops_sent=len(sent),
        ops_unsent=len(ops) - len(sent),
        by_op={
            kind: {(method, status): n for (k, method, status), n in sorted(by_op.items()) if k == kind}
            for kind in OP_KINDS
        },
        dots_reads=stats["reads"],
        dots_cancels=stats["cancels"],
        owner_reads=(reads[0], reads[1]),
        owner_cancels=(cancels[0], cancels[1]),
        links_created=links,
        intents_with_201=len(links_of),
        distinct_intents=len(intents),
        failures=tuple(failures),
    )


def span(least: int, most: int) -> str:
    """`3`, or `3 to 5` when the count is only known to lie between the two."""
    return f"{least}" if least == most else f"{least} to {most}"


def counts(answers: Mapping[Any, int]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in sorted(answers.items()))


def format_report(report: LoadReport) -> str:
    """The report as `make load` prints it."""
    latency = report.latency
    lines = [
        f"load: {report.requests} requests, {report.clients} clients, {report.containers} function processes",
        f"  phase 1 (ambiguous)  {report.phase1_requests:8d} requests in {report.phase1_seconds:.2f} s, "
        "one kind at a time",
        f"  phase 2 (load)       {report.phase2_requests:8d} requests in {report.phase2_seconds:.2f} s "
        f"({report.requests_per_second:.0f} requests/s)",
        f"  latency p50          {latency.p50:8.1f} ms   (phase 2)",
        f"  latency p95          {latency.p95:8.1f} ms",
        f"  latency p99          {latency.p99:8.1f} ms",
        f"  latency mean         {latency.mean:8.1f} ms",
        f"  statuses             {counts(report.statuses)}",
    ]
    lines += [f"    {role:<18} {counts(report.by_role.get(role, {}))}" for role in ROLES]
    lines += [
        f"  intended 5xx         {counts(report.intended_5xx)}",
        f"  ambiguous injected   {report.ambiguous_injected:8d}   recovered {report.ambiguous_recovered}",
    ]
    lines += [
        f"    {batch.kind:<20} {batch.intents:3d} intents, {batch.faults:3d} faults, "
        f"{batch.upstream_requests:3d} upstream requests, {batch.links:3d} links"
        for batch in report.batches
    ]
    unsent = f"; {report.ops_unsent} not sent: no link" if report.ops_unsent else ""
    lines.append(f"  reads and cancels    {report.ops_sent:8d}   (phase 2, of links made earlier in the run{unsent})")
    for kind in OP_KINDS:
        answers = sorted(report.by_op.get(kind, {}).items())
        lines.append(f"    {kind:<18} " + ", ".join(f"{method} {status}: {n}" for (method, status), n in answers))
    lines += [
        f"  Dots reads, cancels  {report.dots_reads:8d}, {report.dots_cancels}"
        f"   (the owners' calls make {span(*report.owner_reads)}, {span(*report.owner_cancels)})",
        f"  links created        {report.links_created:8d}",
        f"  intents with a 201   {report.intents_with_201:8d}",
        f"  distinct intents     {report.distinct_intents:8d}",
    ]
    lines += [f"FAIL: {failure}" for failure in report.failures]
    if report.ok:
        lines.append(
            "OK: one link per intent, ambiguous failures recovered, no 5xx but the intended ones; owners read and "
            "cancel their own links, strangers get 404 and never reach Dots"
        )
    return "\n".join(lines)
