"""schemathesis fuzzes the local stack against the OpenAPI document the stack itself serves: every answer, to
valid and invalid requests alike, must be one the document declares (status, content type, headers, body) and
none may be a server error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, token

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(os.environ.get("SCHEMATHESIS_VENV", ROOT / ".venv-schemathesis")) / "bin" / "schemathesis"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",  # invalid input is refused with a 4xx, never accepted
    "missing_required_header",
)
# Left out: positive_data_acceptance (a schema-valid body can still break a rule that ties fields together, like
# "user_id or payee", or lack the key that may come in a header or the body) and unsupported_method (API Gateway
# answers 404, not 405, to a method no route has).
# Fuzzing examples per operation. The coverage phase adds its own boundary cases (about 450 in all); the whole run
# takes about 15 s with one worker per execution environment of the stack.
MAX_EXAMPLES = 50
SEED = 20261124
# Operations the run must have tested, each with at least one 2xx answer checked (not only 404s): schemathesis
# reads and cancels the links its own creates returned, and lists them (any limit within bounds, no cursor).
MUST_TEST = ("GET /payout-links/{id}", "DELETE /payout-links/{id}", "GET /payout-links")


def test_the_stack_serves_its_document_and_docs_page(stack):
    document = httpx.get(f"{stack.url}/openapi.json", timeout=10)
    page = httpx.get(f"{stack.url}/docs", timeout=10)

    assert document.status_code == 200 and document.content == (ROOT / "openapi.json").read_bytes()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_every_answer_conforms_to_the_openapi_document(stack, upstream, tmp_path, capsys):
    if not os.access(SCHEMATHESIS, os.X_OK):
        pytest.fail(f"{SCHEMATHESIS} is missing: run `make schemathesis`", pytrace=False)
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{stack.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token()}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "4",  # the stack's execution environments (conftest's LOCAL_CONCURRENCY)
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
        "--report",
        "junit,json",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
        "--report-json-path",
        str(tmp_path / "report.json"),
    ]
    # From an empty directory: nothing schemathesis writes lands in the work tree.
    started = time.monotonic()
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    elapsed = time.monotonic() - started

    output = result.stdout + result.stderr
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    with capsys.disabled():  # shown in every run, not only when the test fails
        summary = counts.group(0) if counts else "no summary"
        print(f"\nschemathesis: {summary} (seed {SEED}, --max-examples {MAX_EXAMPLES}, {elapsed:.1f} s)")
    assert result.returncode == 0, output[-8000:]
    assert counts and counts.group(1) == counts.group(2), output[-3000:]

    # schemathesis' own reports: one JUnit test case per operation tested, and how many positive cases each
    # phase had accepted (a 2xx) per operation.
    junit = ElementTree.parse(tmp_path / "junit.xml")  # noqa: S314 - written just now by the run above
    tested = {case.get("name"): case for case in junit.iter("testcase")}
    valid_rates = json.loads((tmp_path / "report.json").read_text())["valid_rates"]
    for operation in MUST_TEST:
        assert operation in tested, f"{operation} was not tested: {sorted(tested)}"
        outcome = ElementTree.tostring(tested[operation]).decode()
        assert len(tested[operation]) == 0, f"{operation} was skipped, failed or errored: {outcome}"
        accepted = sum(phase["accepted"] for phase in valid_rates.get(operation, {}).values())
        assert accepted >= 1, f"{operation} never answered a 2xx: {valid_rates.get(operation)}"
