"""docs/ is the contract callers and contributors rely on: these checks keep it in step with the code it describes.

Each list the docs hold (problems, configuration, local variables, alarms, parameters) is compared with the
source it comes from, so that adding one without writing it down fails here; links between documents resolve.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from local_stack.core.template import load_template
from local_stack.stack import TEMPLATE_PATH
from payout_links import problems
from tests.support import ROOT

pytestmark = pytest.mark.unit

DOCS = ROOT / "docs"
# Files whose words a reader of the repository meets: all Markdown, and the code and tests that cite the docs.
CITING = [*ROOT.glob("*.md"), *DOCS.glob("*.md"), *(ROOT / "events").glob("*.md")]
SOURCES = [
    path
    for folder in ("functions", "local_stack", "tests", "bench", "scripts", "layers")
    for path in (ROOT / folder).rglob("*")
    if path.suffix in {".py", ".md", ".yaml", ""} and path.is_file() and "__pycache__" not in path.parts
]


def text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def table_column(markdown: str, heading: str) -> set[str]:
    """The first column of the table under `heading`, with backticks and markup stripped, one name per cell part."""
    section = markdown[markdown.index(heading) :]
    names: set[str] = set()
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def problem_kinds() -> set[type[problems.Problem]]:
    found, pending = {problems.Problem}, [problems.Problem]
    while pending:
        for subclass in pending.pop().__subclasses__():
            found.add(subclass)
            pending.append(subclass)
    return found


def test_the_error_table_lists_every_problem_with_its_status_and_fixed_retry_after():
    """Each row's status and slug are a problem's; a row that names a fixed `Retry-After: N` names the problem's."""
    table = text("api.md")[text("api.md").index("## Errors") :]
    rows = re.findall(r"^\| (\d{3}) \| `([a-z-]+)` \|(.*)$", table, re.MULTILINE)
    assert {(int(status), slug) for status, slug, _ in rows} == {(kind.status, kind.slug) for kind in problem_kinds()}
    retry_after = {kind.slug: kind.retry_after for kind in problem_kinds()}
    for _, slug, rest in rows:
        for stated in re.findall(r"`Retry-After: (\d+)`", rest):
            assert retry_after[slug] == int(stated), slug


def test_the_configuration_table_lists_every_function_variable_of_the_template():
    template = load_template(TEMPLATE_PATH)
    variables = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            variables |= set(resource["Properties"].get("Environment", {}).get("Variables", {}))
    listed = table_column(text("deploy.md"), "## Configuration (function environment)")
    assert variables <= listed, variables - listed


def test_the_local_stack_page_lists_every_variable_make_run_reads():
    source = (ROOT / "local_stack" / "stack.py").read_text(encoding="utf-8")
    read = set(re.findall(r'(?<![\w.])env(?:\.get\(|\[)"([A-Z_]+)"', source))
    listed = table_column(text("local-stack.md"), "| variable |")
    assert read and read <= listed, read - listed


def test_the_operations_page_explains_every_alarm():
    alarms = {
        resource["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-")
        for resource in load_template(TEMPLATE_PATH)["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    page = text("operations.md")
    assert alarms and all(f"`{alarm}`" in page for alarm in alarms), [a for a in alarms if f"`{a}`" not in page]


def test_the_deploy_page_names_every_parameter_of_the_template():
    page = text("deploy.md")
    missing = [name for name in load_template(TEMPLATE_PATH)["Parameters"] if f"`{name}`" not in page]
    assert not missing


def anchors(document: Path) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings: lower case, punctuation dropped, spaces to `-`."""
    headings = re.findall(r"^#+ (.+)$", document.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("document", CITING, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_and_their_anchors_resolve(document: Path):
    links = re.findall(r"\]\(([^)\s]+)\)", document.read_text(encoding="utf-8"))
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = document.parent / target if target else document
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(link)
    assert not broken


def test_nothing_cites_the_design_document_that_is_not_in_the_repository():
    outside = "DESIGN" + ".md"  # not in the repository; split so that this file does not name it either
    citing = [str(path.relative_to(ROOT)) for path in SOURCES + CITING if outside in path.read_text("utf-8")]
    assert not citing


def test_the_performance_figures_are_the_benchmarks_own():
    """docs/performance.md shows the table `make bench` last wrote between its markers, and no other figures table
    anywhere in the docs or the README could disagree with it."""
    page = text("performance.md")
    start, end = "<!-- figures: written by make bench -->", "<!-- end of figures -->"
    assert page.count(start) == page.count(end) == 1 and page.index(start) < page.index(end)
    bench = (ROOT / "bench" / "perf.py").read_text(encoding="utf-8")
    assert start in bench and end in bench
    elsewhere = [path.name for path in CITING if path.name != "performance.md" and "warm CPU/floor" in path.read_text()]
    assert not elsewhere
