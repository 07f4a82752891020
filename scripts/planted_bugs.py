"""Plant small, plausible bugs one at a time and check that the fast loop (`make check`'s tests) catches each.

    scripts/planted_bugs.py [--only NAME ...] [--list] [--no-baseline] [--workers N] [--tests PATH ...]

`make planted-bugs` runs it. Each mutation below is one bug a reviewer could miss: the file, one or more exact
snippets of today's source and what replaces each, and what the bug would do to money or safety. For each, the
project's files (tracked, and untracked ones git does not ignore) are copied to a throwaway directory, the edit is
applied there (each snippet must occur exactly once, or the run fails at once: the list must move with the code),
and the unit and integration tiers run in that copy, as `make check` runs them but stopping at the first failure,
and without the tests that compare source text or the generated API document (`TEXT_CHECKS`): a bug must be caught
by behaviour.
The real tree is never touched. A mutation is caught when a test fails, and survives when all pass.

First, unless --no-baseline, the unmutated copy runs the same tests: they must all pass there, or no mutation's
result would mean anything. Every run checks that the copy's own code is what its tests import.

It prints a table (mutation, caught or survived, seconds, the first failing test) and "N of M caught by make
check"; it exits 1 when any mutation survived (or the baseline failed).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = Path(sys.executable)  # the .venv python, as make runs it


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository's root
    edits: tuple[tuple[str, str], ...]  # (exact snippet of today's source, its replacement), applied in order
    harm: str  # what the bug would do to money or safety


def mutation(name: str, file: str, harm: str, *edits: tuple[str, str]) -> Mutation:
    return Mutation(name, file, tuple(edits), harm)


STORE = "functions/payout_links/store.py"
SERVICE = "functions/payout_links/service.py"
OUTCOMES = "functions/payout_links/outcomes.py"
OWNERS = "functions/payout_links/owners.py"
NORMALIZE = "functions/payout_links/normalize.py"
ROUTER = "functions/payout_links/router.py"
WEBHOOKS = "functions/payout_links/webhooks.py"
CREDENTIALS = "functions/payout_links/credentials.py"
BUDGET = "functions/payout_links/budget.py"
TRANSPORT = "functions/payout_links/bounded_transport.py"
LIMITS = "functions/payout_links/limits.py"
UPSTREAM = "functions/payout_links/upstream.py"

# A write conditioned on the record being locked by anyone, not on this request's lock token.
_ANY_LOCK = (
    '\n        {0}["ConditionExpression"] = "#status = :inprogress AND attribute_exists(#token)"'
    '\n        del {0}["ExpressionAttributeValues"][":token"]'
)

MUTATIONS: tuple[Mutation, ...] = (
    mutation(
        "release-ignores-lock-token",
        STORE,
        "a request whose lock expired and was taken over deletes the record of the request that holds it now: "
        "the key is free while that request makes a link, and another body makes a second one",
        (
            "        delete = self._if_held(lock)\n",
            "        delete = self._if_held(lock)" + _ANY_LOCK.format("delete") + "\n",
        ),
    ),
    mutation(
        "drop-ignores-lock-token",
        STORE,
        "a late request marks another request's live lock unknown (lock dropped): a retry takes over while the "
        "holder is still creating, two requests drive one intent at once",
        (
            '                ":expiry": {"N": str(expires_at)},\n            },\n        )\n',
            '                ":expiry": {"N": str(expires_at)},\n            },\n        )'
            + _ANY_LOCK.format("update")
            + "\n",
        ),
    ),
    mutation(
        "complete-ignores-lock-token",
        STORE,
        "a late request completes another request's lock with its own link: the record and the link the holder "
        "made disagree, one of the two links is never recorded",
        (
            '":completed": {"S": COMPLETED}},\n        )\n',
            '":completed": {"S": COMPLETED}},\n        )' + _ANY_LOCK.format("complete") + "\n",
        ),
    ),
    mutation(
        "take-over-ignores-body",
        STORE,
        "an expired lock is taken over by a request with another body under the same key: a second, different "
        "payout is sent for an intent that may already have a link",
        (
            '        status = item[A.STATUS]["S"]\n        if item[A.VALIDATION]["S"] != intent.fingerprint:\n',
            '        status = item[A.STATUS]["S"]\n'
            "        if status == IN_PROGRESS and"
            ' int(item.get(A.LOCK_EXPIRY, {}).get("N", "0")) < time.time() * 1000:\n'
            "            return self._take_over(intent, item, lock_seconds)\n"
            '        if item[A.VALIDATION]["S"] != intent.fingerprint:\n',
        ),
        (
            '                    ":validation": {"S": intent.fingerprint},\n',
            '                    ":validation": item[A.VALIDATION],\n',
        ),
    ),
    mutation(
        "unknown-outcome-releases",
        SERVICE,
        "a create whose link may exist (5xx, timeout) deletes its record: the key is free, another body makes a "
        "second link, and the settler never finds the first",
        (
            "        problem.bound_to(self._intents.mark_unknown(lock, settle_in=settle_in,"
            " resent=settle_in is not None))\n",
            "        problem.bound_to(self._intents.release(lock))\n",
        ),
    ),
    mutation(
        "no-response-reserve",
        SERVICE,
        "Dots gets the function's whole time: no time is left to record the outcome, the function is killed "
        "with the link made and the lock held, and the caller gets no answer",
        (
            "        deadline = time.monotonic() + remaining - self.budget.response_reserve\n",
            "        deadline = time.monotonic() + remaining\n",
        ),
    ),
    mutation(
        "reserve-without-the-write",
        BUDGET,
        "the reserve keeps back only the answer's time: a slow completion write runs past the function's end",
        ("        return self.aws_call + ANSWER_SECONDS\n", "        return ANSWER_SECONDS\n"),
    ),
    mutation(
        "dots-5xx-not-created",
        OUTCOMES,
        "a Dots 503 (which may have made the link) releases the key: another body under it makes a second link",
        (
            "_NOT_CREATED_STATUSES = frozenset({401, 403, 429})\n",
            "_NOT_CREATED_STATUSES = frozenset({401, 403, 429, 503})\n",
        ),
    ),
    mutation(
        "dots-409-not-created",
        OUTCOMES,
        "a Dots 409 (its own request in progress: the link may exist) releases the key",
        (
            "_NOT_CREATED_STATUSES = frozenset({401, 403, 429})\n",
            "_NOT_CREATED_STATUSES = frozenset({401, 403, 409, 429})\n",
        ),
    ),
    mutation(
        "read-timeout-not-sent",
        OUTCOMES,
        "a read timeout (the request was sent, Dots may have made the link) counts as never sent: key released",
        (
            "(httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)",
            "(httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ReadTimeout)",
        ),
    ),
    mutation(
        "inherited-lock-releases",
        OUTCOMES,
        "a retry that took over an unknown intent and met a 429 releases the key, though the first attempt "
        "may have made the link",
        (
            "(self.outcome is Outcome.NOT_CREATED and not inherited)",
            "(self.outcome is Outcome.NOT_CREATED)",
        ),
    ),
    mutation(
        "owner-check-ignores-scope",
        OWNERS,
        "user:acme reads or cancels the links of partner:acme (or client:acme): another caller's payout",
        (
            '        if item[self.OWNER_ATTR]["S"] != caller:\n',
            '        if item[self.OWNER_ATTR]["S"].partition(":")[2] != caller.partition(":")[2]:\n',
        ),
    ),
    mutation(
        "owner-record-taken-by-same-key",
        OWNERS,
        "a link recorded for another caller is recorded again for a caller who used the same idempotency key "
        "string: the link changes hands and its first owner loses it",
        (
            '" OR (#owner = :owner AND (#key = :key OR attribute_not_exists(#key)))"',
            '" OR (#owner = :owner OR (#key = :key OR attribute_not_exists(#key)))"',
        ),
    ),
    mutation(
        "cancel-before-owner-check",
        SERVICE,
        "another caller's cancel is answered 404, but the link was canceled at Dots first: a payee loses a payout",
        (
            "        self._owners.require_owner(caller, link_id)\n"
            "        _name_the_link(link_id)\n"
            "        return self.payout_api.cancel_payout_link(link_id, deadline=deadline)\n",
            "        link = self.payout_api.cancel_payout_link(link_id, deadline=deadline)\n"
            "        self._owners.require_owner(caller, link_id)\n"
            "        _name_the_link(link_id)\n"
            "        return link\n",
        ),
    ),
    mutation(
        "mismatch-ignores-delivery-method",
        NORMALIZE,
        "a link Dots made for another delivery method (email instead of sms) is handed out as the caller's",
        ('        "delivery.method": (request.get("delivery") or {}).get("method"),\n', ""),
    ),
    mutation(
        "mismatch-accepts-missing-amount",
        NORMALIZE,
        "a link whose amount Dots does not echo is handed out unchecked: any amount passes",
        (
            '    wrong = [] if link["amount"] == request["amount"] else ["amount"]\n',
            '    wrong = [] if link["amount"] in (None, request["amount"]) else ["amount"]\n',
        ),
    ),
    mutation(
        "mismatch-ignores-payee",
        NORMALIZE,
        "a link made out to another payee (another phone number) is handed out as the caller's",
        ('        **{f"payee.{key}": value for key, value in (link["payee"] or {}).items()},\n', ""),
    ),
    mutation(
        "router-case-insensitive",
        ROUTER,
        "a route key API Gateway never sends (another spelling) reaches a route: the template's routes, their "
        "authorizers and scopes, are no longer the function's",
        (
            "        if handler := self._routes.get(request.route_key):\n",
            "        if handler := {key.casefold(): route for key, route in self._routes.items()}.get(\n"
            "            request.route_key.casefold()\n"
            "        ):\n",
        ),
    ),
    mutation(
        "webhook-tolerance-ten-minutes",
        WEBHOOKS,
        "a captured partner request can be replayed for ten minutes instead of five",
        ("TOLERANCE_SECONDS = 300\n", "TOLERANCE_SECONDS = 600\n"),
    ),
    mutation(
        "webhook-partner-name-case-folded",
        CREDENTIALS,
        "a partner's secret also signs for another spelling of its name (ACME): a second caller identity, with "
        "its own limits and links, for the same partner",
        ("        return partners.get(partner, ())\n", "        return partners.get(partner.lower(), ())\n"),
    ),
    mutation(
        "transport-deadline-ignored",
        TRANSPORT,
        "an upstream that dribbles its answer holds the request past its deadline: no time is left to record "
        "the outcome",
        (
            "    return left if timeout is None else min(timeout, left)\n",
            "    return left if timeout is None else timeout\n",
        ),
    ),
    mutation(
        "give-back-swapped",
        LIMITS,
        "a released key gives back one cent of the day's amount (and its amount in links): the caller's limit "
        "fills with payouts that were never made",
        (
            "-(reservation.amount if window.limit is Limit.DAILY_AMOUNT else 1)",
            "-(reservation.amount if window.limit is Limit.HOURLY_LINKS else 1)",
        ),
    ),
    mutation(
        "claimed-link-cancelable",
        UPSTREAM,
        'a claimed (paid out) link that Dots will not cancel is answered as an upstream failure, not "can no '
        'longer be canceled": a mismatched, claimed link is never spent and the settler retries it forever',
        (
            'NOT_CANCELABLE_STATUSES = frozenset({"claimed", "reversed", "expired"})\n',
            'NOT_CANCELABLE_STATUSES = frozenset({"reversed", "expired"})\n',
        ),
    ),
)


# Tests that compare the source, or a document generated from it, with what is committed: they fail at any edit of
# what they read, bug or not, so they would "catch" a mutation without any behaviour having been checked. A mutated
# copy runs without them (the unmutated copy runs them too).
TEXT_CHECKS = ("tests/unit/test_planted_bugs.py", "tests/unit/test_openapi.py")


class SnippetError(Exception):
    """A mutation's snippet is not in today's source exactly once: the list must be updated with the code."""


def apply(mutation: Mutation, source: str) -> str:
    """`source` with the mutation's edits applied; `SnippetError` when a snippet does not occur exactly once."""
    for snippet, replacement in mutation.edits:
        count = source.count(snippet)
        if count != 1:
            raise SnippetError(f"{mutation.name}: a snippet occurs {count} times in {mutation.file}, not once")
        source = source.replace(snippet, replacement)
    return source


def project_files() -> list[str]:
    """The project's files as git sees them: tracked, and untracked ones that are not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607 - git from PATH
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (ROOT / name).is_file()})


def copy_project(destination: Path, files: Sequence[str]) -> None:
    for name in files:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def copy_env(copy: Path) -> dict[str, str]:
    """The environment that makes the copy's code what is imported: its packages ahead of the editable install's
    import finder (which maps them to the real tree), and no bytecode written into the copy from elsewhere."""
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join([str(copy / "functions"), str(copy)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_imports_from(copy: Path, env: dict[str, str]) -> None:
    """Fail unless the copy's own payout_links, local_stack and tests are what Python imports there."""
    probe = (
        "import local_stack, payout_links, tests; print(payout_links.__file__, local_stack.__file__, tests.__file__)"
    )
    found = subprocess.run(  # noqa: S603 - this venv's python, with this file's own arguments
        [str(VENV_PYTHON), "-c", probe], cwd=copy, env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    outside = [path for path in found if not Path(path).resolve().is_relative_to(copy.resolve())]
    if outside:
        raise SystemExit(f"the copy's tests would import code from outside it: {outside}")


@dataclass(frozen=True)
class Result:
    name: str
    mutation: Mutation | None  # None: the unmutated copy
    verdict: str  # caught (a test failed), survived (all passed), or error (pytest failed without naming a test)
    seconds: float
    first_failure: str

    @property
    def caught(self) -> bool:
        return self.verdict == "caught"


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_fast_loop(
    name: str, mutation: Mutation | None, files: Sequence[str], workers: int, tests: Sequence[str] = ()
) -> Result:
    with tempfile.TemporaryDirectory(prefix="planted-") as directory:
        copy = Path(directory)
        copy_project(copy, files)
        if mutation is not None:
            target = copy / mutation.file
            target.write_text(apply(mutation, target.read_text()))
        env = copy_env(copy)
        check_imports_from(copy, env)
        started = time.monotonic()
        command = [str(VENV_PYTHON), "-m", "pytest", "-q", "-m", "unit or integration", "-x"]
        command += ["-n", str(workers), "--dist", "worksteal", "-p", "no:cacheprovider", *tests]
        if mutation is not None:
            command += [f"--ignore={path}" for path in TEXT_CHECKS]
        run = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)  # noqa: S603 - pytest
        seconds = time.monotonic() - started
    output = run.stdout + run.stderr
    failures = _FAILED.findall(output)
    first = failures[0] if failures else ("" if run.returncode == 0 else f"(pytest exited {run.returncode})")
    verdict = "survived" if run.returncode == 0 else "caught" if failures else "error"
    if run.returncode != 0 and not failures:
        tail = "\n".join(output.splitlines()[-15:])
        print(f"  {name}: pytest exited {run.returncode} and named no failing test:\n{tail}", file=sys.stderr)
    return Result(name, mutation, verdict, seconds, first)


def table(results: Sequence[Result]) -> str:
    width = max(len("mutation"), *(len(result.name) for result in results))
    lines = [f"{'mutation':<{width}}  {'result':<8}  {'seconds':>7}  first failing test", "-" * (width + 50)]
    for result in results:
        verdict = result.verdict if result.caught else result.verdict.upper()
        if result.mutation is None:  # the unmutated copy: its tests must pass
            verdict = "passed" if result.verdict == "survived" else "FAILED"
        lines.append(f"{result.name:<{width}}  {verdict:<8}  {result.seconds:>7.1f}  {result.first_failure}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="planted-bugs", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    parser.add_argument("--list", action="store_true", help="list the mutations and what each would do")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the unmutated copy")
    parser.add_argument("--workers", type=int, default=4, help="pytest-xdist workers, as make check (4)")
    parser.add_argument(
        "--tests", nargs="+", default=(), metavar="PATH", help="run only these test files or ids (while writing tests)"
    )
    args = parser.parse_args(argv)

    chosen = [each for each in MUTATIONS if not args.only or each.name in args.only]
    if args.only and (unknown := set(args.only) - {each.name for each in MUTATIONS}):
        parser.error(f"no such mutation: {', '.join(sorted(unknown))}")
    if args.list:
        for each in chosen:
            print(f"{each.name} ({each.file}): {each.harm}")
        return 0
    for each in chosen:  # every snippet is checked, and every mutated file compiled, before anything runs
        compile(apply(each, (ROOT / each.file).read_text()), each.file, "exec")

    files = project_files()
    if not args.no_baseline:
        baseline = run_fast_loop("(no mutation)", None, files, args.workers, args.tests)
        print(table([baseline]), flush=True)
        if baseline.verdict != "survived":
            print("the unmutated copy fails its tests: no mutation's result would mean anything", file=sys.stderr)
            return 1
    results = []
    for each in chosen:
        results.append(run_fast_loop(each.name, each, files, args.workers, args.tests))
        print(f"  {each.name}: {results[-1].verdict}", flush=True)
    print()
    print(table(results))
    caught = sum(result.caught for result in results)
    print(f"\n{caught} of {len(results)} caught by make check")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
