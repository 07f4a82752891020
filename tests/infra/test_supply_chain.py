"""The locks.

* Every lock and export is current (`scripts/locks.py --check`, what `make check-locks` runs): uv.lock against
  pyproject.toml, the layer's hashed requirements against a fresh export of uv.lock, each tools/NAME.txt against
  a fresh compile of tools/NAME.in. It answers from uv's cache when it can. On a copy of the project, each kind
  of staleness is made on purpose and must be caught.
* The development environment is exactly uv.lock, with the project installed in it (no sys.path patches), and
  the bootstrapped uv is the pinned one.

These use .venv-uv (`make uv`, which `make test` runs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.infra

UV = Path(os.environ.get("UV", ROOT / ".venv-uv" / "bin" / "uv"))
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
