"""docs/ is the contract callers and contributors rely on: these checks keep it in step with the code it describes.

Each list the docs hold (problems, configuration, local variables, alarms, parameters) is compared with the
source it comes from, so that adding one without writing it down fails here; links between documents resolve.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from local_stack.core.template import load_template
from local_stack.dots_emulator import faults as emulator_faults
from local_stack.stack import TEMPLATE_PATH
from payout_links import inbound, problems, webhooks
from payout_links.credentials import decode_webhook_secret
from payout_links.models import parse_partner_event
from tests.support import ROOT, webhook_secret

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


def runbook_entries() -> dict[str, str]:
    """The runbook: each `- **`alarm`**: ...` entry of docs/operations.md's Alarms section, by alarm, its text up to
    the next entry."""
    section = text("operations.md").split("\n## Alarms\n", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^- \*\*`([a-z0-9-]+)`\*\*:", section, flags=re.MULTILINE)
    names = parts[1::2]
    assert len(names) == len(set(names)), "an alarm has two runbook entries"
    return dict(zip(names, parts[2::2], strict=True))


def test_the_runbook_has_one_entry_per_alarm_each_with_a_first_query_and_an_end():
    """One entry for every alarm of the template and none for an alarm it does not have; each says what to query
    first (CloudWatch Logs Insights: a `filter` or `stats`), and how to know the incident is over. The table above
    it lists the same alarms, once each."""
    template = load_template(TEMPLATE_PATH)
    alarms = {
        resource["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-")
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    entries = runbook_entries()
    assert set(entries) == alarms, (alarms - set(entries), set(entries) - alarms)
    for alarm, entry in entries.items():
        assert re.search(r"`[^`]*\b(filter|stats) [^`]*`", entry), f"{alarm}: no first query"
        assert "Over when" in " ".join(entry.split()), f"{alarm}: no word on when it is over"
    table = text("operations.md").split("\n## Alarms\n", 1)[1].split("What to check first", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.MULTILINE)
    assert sorted(rows) == sorted(alarms)


def test_the_runbook_names_each_alarms_threshold_parameter_with_its_default():
    """An alarm whose threshold is a parameter: the table names the parameter and its default, as deploy.md does."""
    template = load_template(TEMPLATE_PATH)
    table = text("operations.md").split("\n## Alarms\n", 1)[1].split("What to check first", 1)[0]
    deploy = text("deploy.md")
    for resource in template["Resources"].values():
        threshold = resource["Properties"].get("Threshold")
        if resource["Type"] != "AWS::CloudWatch::Alarm" or not isinstance(threshold, dict):
            continue
        parameter = threshold["Ref"]
        default = template["Parameters"][parameter]["Default"]
        assert f"`{parameter}` ({default}" in table.replace(",", ""), parameter
        assert re.search(rf"^\| `{parameter}` \| `{default}`", deploy, re.MULTILINE), parameter


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


def section(markdown: str, heading: str) -> str:
    """The text under `heading`, up to the next heading of the same or a higher level (a `#` line inside a fenced
    code block is a shell comment, not a heading)."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = markdown[markdown.index(heading + "\n") :].splitlines(keepends=True)[1:]
    fenced = False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "".join(lines[:number])
    return "".join(lines)


def prose(markdown: str) -> str:
    """Markdown with its line breaks and runs of spaces as single spaces, so that a phrase is found however the
    lines are wrapped."""
    return " ".join(markdown.split())


PARTNERS = "## `POST /webhooks/{partner}/payout-links`"


def partner_key_rows() -> list[tuple[str, str | None, str]]:
    """The rows of the partner section's key table: the webhook-id, the data.idempotency_key (None: absent), the
    answer."""
    rows = re.findall(
        r"^\| `([^`]+)` \| (absent|`\"[^`]+\"`) \| (.+) \|$", section(text("api.md"), PARTNERS), re.MULTILINE
    )
    return [(webhook_id, None if key == "absent" else key.strip('`"'), answer) for webhook_id, key, answer in rows]


def partner_answer(webhook_id: str, body_key: str | None) -> str:
    """What the partner route answers for this pair, as the table writes it, from the models and the key check
    it runs (app.receive_partner_event): `201`; the key, or the problem's status and slug, and its pointers."""
    data: dict = {"amount": 2500, "user_id": "u-1"}
    if body_key is not None:
        data["idempotency_key"] = body_key
    event = json.dumps({"type": "payout_link.create", "timestamp": "2026-11-24T23:50:00Z", "data": data})
    try:
        parsed = parse_partner_event(event, max_amount_cents=1_000_000)
        return f"`201`; the key is `{inbound.webhook_key(webhook_id, parsed.data.idempotency_key)}`"
    except problems.Problem as problem:
        return " ".join([f"`{problem.status}` `{problem.slug}`", *(f"`{error.pointer}`" for error in problem.errors)])


def test_the_partner_key_table_is_what_the_function_does():
    """Each documented pair of webhook-id and data.idempotency_key gets the documented answer, a msg_ id and a
    UUID alike."""
    rows = partner_key_rows()
    assert {answer.split()[0] for _, _, answer in rows} == {"`201`;", "`422`", "`400`"}
    assert any(webhook_id.startswith("msg_") for webhook_id, _, _ in rows)
    for webhook_id, body_key, answer in rows:
        status_and_slug, *pointers = partner_answer(webhook_id, body_key).split(" `#")
        assert answer.startswith(status_and_slug), (webhook_id, body_key, answer)
        assert all(f"`#{pointer}" in answer for pointer in pointers), (webhook_id, body_key, answer)


def test_the_partner_sections_examples_use_ids_the_key_rules_accept():
    """The webhook-ids the partner section shows (in the table, and the demo's `msg_` ids) are valid keys without a
    data.idempotency_key, which the section's examples never send."""
    page = section(text("api.md"), PARTNERS)
    for webhook_id in [row[0] for row in partner_key_rows()] + ["msg_" + uuid.uuid4().hex]:
        assert inbound.webhook_key(webhook_id, None)
    for example in re.findall(r"^```json\n(.*?)\n```", page, re.MULTILINE | re.DOTALL):
        assert "idempotency_key" not in json.loads(example)["data"]
    assert 'f"msg_{uuid.uuid4().hex}"' in page  # the demo partner's ids


def test_the_partner_section_says_which_timestamp_a_re_delivery_changes():
    page = prose(section(text("api.md"), PARTNERS))
    assert "a new `webhook-timestamp` header" in page
    assert "The `webhook-timestamp` must be within 5 minutes" in page
    assert "a new timestamp" not in page and "The timestamp must" not in page


def test_the_partners_rotation_advice_holds_at_every_step():
    """The section's snippet signs with both secrets; such a delivery passes before the new secret is added,
    while both are there, and after the old one is removed; a delivery signed with the old one alone does not."""
    page = section(text("api.md"), PARTNERS)
    rotation = section(page, "### Rotating a signing secret")
    assert "deploy.md#onboarding-a-partner" in rotation and "space-separated" in rotation
    (snippet,) = re.findall(r"^```python\n(.*?)\n```", rotation, re.MULTILINE | re.DOTALL)
    old_secret, new_secret = webhook_secret("rotation-old-not-real"), webhook_secret("rotation-new-not-real")
    body, msg_id, now = b'{"type": "payout_link.create"}', "msg_" + uuid.uuid4().hex, datetime.now(UTC)
    scope = {"Webhook": Webhook, "msg_id": msg_id, "now": now, "body": body.decode()}
    exec(snippet, {**scope, "new_secret": new_secret, "old_secret": old_secret}, scope)  # noqa: S102
    timestamp = str(int(now.timestamp()))
    both = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": scope["signature"]}
    old_alone = {**both, "webhook-signature": Webhook(old_secret).sign(msg_id, now, body.decode())}

    def keys(*secrets: str) -> list[bytes]:
        return [decode_webhook_secret(secret) for secret in secrets]

    for step in (keys(old_secret), keys(new_secret, old_secret), keys(new_secret)):
        assert webhooks.verify(body, both, step, now=now.timestamp()) == msg_id
    with pytest.raises(problems.SignatureRejected):
        webhooks.verify(body, old_alone, keys(new_secret), now=now.timestamp())


EMULATOR = "## The Dots emulator"


def test_the_local_stack_page_names_every_fault_field_the_emulator_takes():
    """Every field `POST /_emulator/faults` accepts is a row of the page's fault table, and no row names a field
    the emulator would refuse."""
    faults = section(section(text("local-stack.md"), EMULATOR), "### Faults")
    assert table_column(faults, "| field |") == set(emulator_faults.FAULT_KEYS)


def test_the_local_stack_page_names_every_control_of_the_emulator():
    """Each request the emulator's control API answers (the cases of `control.answer`) has its row, as
    `METHOD /_emulator/...` with `{id}` for a link's id."""
    source = (ROOT / "local_stack" / "dots_emulator" / "control.py").read_text(encoding="utf-8")
    cases = re.findall(r'case \("([A-Z]+)", \[([^\]]*)\]\)', source)
    controls = {
        f"{method} /_emulator/"
        + "/".join(part.strip('"') if part.startswith('"') else "{id}" for part in map(str.strip, parts.split(",")))
        for method, parts in cases
    }
    assert len(controls) == 10, controls
    assert controls == table_column(section(text("local-stack.md"), EMULATOR), "| request |")


def test_the_local_stack_page_shows_how_to_see_each_upstream_error_a_frontend_handles():
    recipe = section(section(text("local-stack.md"), EMULATOR), "### Each error a frontend must handle")
    for status, slug in (
        (409, "request-in-progress"),
        (429, "upstream-rate-limited"),
        (502, "upstream-failed"),
        (504, "upstream-timeout"),
    ):
        assert f"# {status} {slug}:" in recipe and f"| `{status}` `{slug}` |" in recipe, slug
    faults = re.findall(r"^fault '(\{.*?\})'", recipe, re.MULTILINE)
    assert len(faults) == 4, faults
    for fault in faults:
        emulator_faults.Fault.parse(json.loads(fault))  # every fault the recipe queues is one the emulator takes


def test_the_committed_figures_met_every_target():
    """`make bench` writes its table even when a figure misses its target, then exits 1: a table with a `MISS` is
    a failed run, never the one committed."""
    page = text("performance.md")
    figures = page[page.index("<!-- figures: written by make bench -->") : page.index("<!-- end of figures -->")]
    rows = [line.split("|")[1:-1] for line in figures.splitlines() if line.startswith("| ") and "---" not in line]
    judged = {cells[0].strip(): cells[3].strip() for cells in rows[1:] if cells[2].strip()}
    assert judged and all(verdict == "ok" for verdict in judged.values()), judged
    assert "MISS" not in figures


def test_the_idempotency_page_speaks_of_deploying_only_in_its_upgrade_notes():
    """What a deploy means for retries in flight belongs to the version it is about: a sentence on deploying
    outside an `Upgrading ...` section has lost its context."""
    stray, heading = [], ""
    for line in text("idempotency.md").splitlines():
        if line.startswith("#"):
            heading = line
        elif re.search(r"\bdeploy", line, re.IGNORECASE) and not heading.startswith("## Upgrading"):
            stray.append(line)
    assert not stray


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_names_every_file_of_bench():
    """The README's tree says what bench/ holds: every file in it, by name."""
    tree = readme()[readme().index("\nbench/") :]
    entry = tree[: tree.index("\n```")]
    files = sorted(path.name for path in (ROOT / "bench").iterdir() if path.is_file())
    assert files and [name for name in files if name not in entry] == []


def test_the_create_path_is_told_once_in_the_service_docstring():
    """service.py's docstring tells the create path step by step; the README links to it instead of telling it
    again (no numbered steps, none of the service's step names)."""
    service = ast.get_docstring(ast.parse((ROOT / "functions/payout_links/service.py").read_text(encoding="utf-8")))
    assert service and all(step in service for step in ("create_once", "_drive", "settle_due", "get_service()"))
    page = readme()
    assert "](functions/payout_links/service.py)" in page
    assert not re.search(r"^\d+\. ", page, re.MULTILINE)
    assert not any(step in page for step in ("create_once", "_drive", "settle_due"))
