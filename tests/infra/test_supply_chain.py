"""The locks, the layer's SBOM and its audit.

* Every lock and export is current (`scripts/locks.py --check`, what `make check-locks` runs): uv.lock against
  pyproject.toml, the layer's hashed requirements against a fresh export of uv.lock, each tools/NAME.txt against
  a fresh compile of tools/NAME.in. It answers from uv's cache when it can. On a copy of the project, each kind
  of staleness is made on purpose and must be caught.
* The development environment is exactly uv.lock, with the project installed in it (no sys.path patches), and
  the bootstrapped uv is the pinned one.
* `make sbom` lists exactly the locked layer packages, at their locked versions, with their hashes.
* `make audit`'s script never passes without vulnerability data: against a stand-in OSV service on loopback it
  passes when no package is affected, fails on a vulnerability, and refuses when the service is down or answers
  an error.

These use .venv-uv, .venv-sbom and .venv-audit (`make uv sbom-tools audit-tools`, which `make test` runs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local_stack.core.aws_resources import free_port
from tests.support import LAYER_REQUIREMENTS, ROOT, canonical_name, locked_layer_requirements

pytestmark = pytest.mark.infra

UV = Path(os.environ.get("UV", ROOT / ".venv-uv" / "bin" / "uv"))
AUDIT_PYTHON = ROOT / ".venv-audit" / "bin" / "python"
LOCK_INPUTS = ("pyproject.toml", "uv.lock", "README.md", "tools", "layers/dependencies/requirements.txt")


def _need(path: Path, target: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make {target}`", pytrace=False)


def _check_locks(root: Path) -> subprocess.CompletedProcess[str]:
    _need(UV, "uv")
    command = [sys.executable, str(ROOT / "scripts" / "locks.py"), "--check", "--root", str(root), "--uv", str(UV)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_every_lock_and_export_is_current() -> None:
    result = _check_locks(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The files the locks are made from and the locks themselves, as committed."""
    copy = tmp_path / "project"
    for name in LOCK_INPUTS:
        source, target = ROOT / name, copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


# (file, text in it, replacement, what the check must name): each a lock left behind by its input, or edited.
STALE = {
    "a dependency added to pyproject.toml, uv.lock not updated": (
        "pyproject.toml",
        '"httpx==0.28.1",',
        '"httpx==0.28.1",\n  "jmespath==1.1.0",',
        "uv.lock does not match pyproject.toml",
    ),
    "the layer's requirements edited by hand": (
        "layers/dependencies/requirements.txt",
        "httpx==0.28.1",
        "httpx==0.28.0",
        "layers/dependencies/requirements.txt is stale",
    ),
    "a tool's input changed, its lock not": (
        "tools/sam.in",
        "cfn-lint==1.58.0\n",
        "",
        "tools/sam.txt is stale",
    ),
    "a tool's lock edited by hand": (
        "tools/checkov.txt",
        "checkov==3.3.30",
        "checkov==3.3.29",
        "tools/checkov.txt is stale",
    ),
}


@pytest.mark.parametrize("case", STALE)
def test_a_stale_lock_fails_the_check(project_copy: Path, case: str) -> None:
    name, old, new, named = STALE[case]
    _edit(project_copy / name, old, new)

    result = _check_locks(project_copy)

    assert result.returncode == 1, result.stdout + result.stderr
    assert named in result.stdout
    assert "stale: run `make lock`" in result.stdout
    assert sum(line.endswith(" is stale:") or "does not match" in line for line in result.stdout.splitlines()) == 1


def test_the_development_environment_is_exactly_the_lock() -> None:
    _need(UV, "uv")
    result = subprocess.run(
        [str(UV), "sync", "--locked", "--check", "--offline"],
        cwd=ROOT,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stderr}\nrun `make dev`"


def test_the_project_is_installed_so_nothing_patches_sys_path(tmp_path: Path) -> None:
    """The venv imports payout_links and local_stack from the work tree (editable), from any directory, with
    neither functions/ nor the repository root on sys.path: only those two packages are mapped."""
    probe = (
        "import json, sys, payout_links, local_stack\n"
        "try:\n    import tests\nexcept ImportError:\n    tests = None\n"
        "print(json.dumps([payout_links.__file__, local_stack.__file__, sys.path, tests is None]))"
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr

    function, local_stack, path, no_tests = json.loads(result.stdout)
    assert Path(function) == ROOT / "functions" / "payout_links" / "__init__.py"
    assert Path(local_stack) == ROOT / "local_stack" / "__init__.py"
    assert not {str(ROOT), str(ROOT / "functions")} & set(path)
    assert no_tests


def test_the_bootstrapped_uv_is_the_pinned_one() -> None:
    _need(UV, "uv")
    (pin,) = re.findall(r"^uv==(\S+)", (ROOT / "tools" / "uv.txt").read_text(), re.MULTILINE)
    version = subprocess.run([str(UV), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    assert version == pin


# --- the SBOM ------------------------------------------------------------------------------------------------


def test_the_sbom_lists_exactly_the_locked_layer_packages(tmp_path: Path) -> None:
    sbom = tmp_path / "layer.cdx.json"
    result = subprocess.run(
        ["make", "-s", "sbom", f"SBOM={sbom}"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

    bom = json.loads(sbom.read_text())
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["metadata"]["component"]["name"] == "payout-link-proxy"
    components = {canonical_name(component["name"]): component for component in bom["components"]}
    assert len(components) == len(bom["components"])
    locked = locked_layer_requirements()
    assert {name: component["version"] for name, component in components.items()} == {
        name: version for name, (version, _) in locked.items()
    }
    for name, component in components.items():
        version, hashes = locked[name]
        assert component["purl"] == f"pkg:pypi/{name}@{version}"
        listed = {digest["content"] for ref in component["externalReferences"] for digest in ref.get("hashes", [])}
        assert listed == hashes, name
    assert not {"boto3", "botocore", "s3transfer"} & set(components)


def test_the_sbom_is_written_where_git_ignores_it() -> None:
    result = subprocess.run(["git", "check-ignore", "-q", "build/sbom/layer.cdx.json"], cwd=ROOT, check=False)
    assert result.returncode == 0


# --- the audit -----------------------------------------------------------------------------------------------


class FakeOsv(ThreadingHTTPServer):
    """OSV's query endpoint on loopback: the given vulnerabilities by package name, or the given status."""

    def __init__(self, vulnerabilities: dict[str, list[dict[str, Any]]], status: int = 200) -> None:
        self.vulnerabilities, self.status, self.queries = vulnerabilities, status, []
        super().__init__(("127.0.0.1", 0), OsvHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/query"


class OsvHandler(BaseHTTPRequestHandler):
    server: FakeOsv

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.queries.append((query["package"]["name"], query["version"]))
        vulns = self.server.vulnerabilities.get(query["package"]["name"], [])
        body = json.dumps({"vulns": vulns} if vulns else {}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def osv(request: pytest.FixtureRequest) -> Iterator[FakeOsv]:
    vulnerabilities, status = getattr(request, "param", ({}, 200))
    server = FakeOsv(vulnerabilities, status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _audit(osv_url: str) -> subprocess.CompletedProcess[str]:
    _need(AUDIT_PYTHON, "audit-tools")
    command = [str(AUDIT_PYTHON), str(ROOT / "scripts" / "audit.py"), "--service", "osv", "--osv-url", osv_url]
    return subprocess.run(
        [*command, str(LAYER_REQUIREMENTS)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_audit_asks_about_every_locked_package_and_passes_when_none_is_affected(osv: FakeOsv) -> None:
    result = _audit(osv.url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No known vulnerabilities found" in result.stderr
    locked = {name: version for name, (version, _) in locked_layer_requirements().items()}
    asked = dict(osv.queries[1:])  # the first query is the reachability check
    assert asked == locked


HTTPX_VULNERABILITY = {
    "id": "GHSA-test-only-0001",
    "summary": "A stand-in vulnerability for the test",
    "affected": [
        {
            "package": {"name": "httpx", "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}],
        }
    ],
}


@pytest.mark.parametrize("osv", [({"httpx": [HTTPX_VULNERABILITY]}, 200)], indirect=True)
def test_the_audit_fails_on_a_known_vulnerability(osv: FakeOsv) -> None:
    result = _audit(osv.url)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "GHSA-test-only-0001" in result.stdout
    assert "httpx" in result.stdout


@pytest.mark.parametrize("osv", [({}, 404), ({}, 503)], indirect=True)
def test_the_audit_refuses_to_pass_when_the_service_answers_an_error(osv: FakeOsv) -> None:
    result = _audit(osv.url)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "AUDIT NOT DONE" in result.stderr
    assert f"answered {osv.status}" in result.stderr
    assert len(osv.queries) == 1  # pip-audit never ran


def test_the_audit_refuses_to_pass_when_the_service_cannot_be_reached() -> None:
    result = _audit(f"http://127.0.0.1:{free_port()}/v1/query")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "AUDIT NOT DONE" in result.stderr
    assert "could not be reached" in result.stderr
