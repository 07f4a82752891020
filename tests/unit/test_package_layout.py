"""The function's package says what it holds: each module is named for its one job and says that job in its
docstring's first line, no module takes a standard library module's name, and every problem lives in problems.py.
The Dots emulator's package (local_stack/dots_emulator/) keeps the same two rules on its modules' names and docstrings.

Read from the sources with `ast`, not by importing them: a module that is never imported is checked all the same.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from payout_links import problems
from tests.support import ROOT

pytestmark = pytest.mark.unit

PACKAGE = ROOT / "functions" / "payout_links"
MODULES = sorted(PACKAGE.glob("*.py"))
EMULATOR_MODULES = sorted((ROOT / "local_stack" / "dots_emulator").glob("*.py"))
# Names this package once used for modules whose names said something else: `http` (the router, named like the
# standard library's package) and `deadlines` (a transport bounded by a deadline, taken for the time budget).
RETIRED_NAMES = {"http": "router", "deadlines": "bounded_transport"}


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def base_names(node: ast.ClassDef) -> set[str]:
    """The names a class's bases are written with: `NotFound` and `problems.NotFound` are both `NotFound`."""
    names = set()
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.add(base.id)
        elif isinstance(base, ast.Attribute):
            names.add(base.attr)
    return names


def problem_names() -> set[str]:
    """`Problem` and every class problems.py derives from it, directly or through another."""
    classes = [node for node in parsed(PACKAGE / "problems.py").body if isinstance(node, ast.ClassDef)]
    names = {"Problem"}
    grown = True
    while grown:
        before = len(names)
        names |= {node.name for node in classes if base_names(node) & names}
        grown = len(names) > before
    return names


def module_id(path: Path) -> str:
    return path.relative_to(path.parent.parent).as_posix()


def test_the_package_is_where_the_tests_look():
    assert (PACKAGE / "app.py").is_file() and (PACKAGE / "problems.py").is_file()
    assert {"__init__.py", "__main__.py", "control.py", "faults.py"} <= {path.name for path in EMULATOR_MODULES}


@pytest.mark.parametrize(("retired", "named"), RETIRED_NAMES.items())
def test_no_module_takes_a_retired_name(retired, named):
    assert not (PACKAGE / f"{retired}.py").exists(), f"{retired}.py was renamed {named}.py: keep it so"


def test_no_module_is_named_like_a_standard_library_module():
    shadowing = [module_id(path) for path in MODULES + EMULATOR_MODULES if path.stem in sys.stdlib_module_names]
    assert not shadowing


@pytest.mark.parametrize("path", MODULES + EMULATOR_MODULES, ids=module_id)
def test_each_module_says_its_job_in_its_first_docstring_line(path: Path):
    """The first line is a sentence of its own (PEP 257's summary line): it ends there, with a full stop, or with
    a colon before the list that details it."""
    docstring = ast.get_docstring(parsed(path))
    assert docstring, f"{path.name} has no docstring"
    first = docstring.splitlines()[0].strip()
    assert first and first[-1] in ".:", f"{path.name}: the first line runs on: {first!r}"


def test_problems_are_defined_in_problems_py_only():
    """A class derived from any problem, in any other module, is refused: problems.py is where a reader finds
    every answer the function can give, and the OpenAPI document is generated from it."""
    names = problem_names()
    assert {"NotFound", "LinkNotFound", "SignatureRejected"} <= names  # the walk finds refinements too
    elsewhere = [
        f"{path.name}: {node.name}({', '.join(sorted(base_names(node)))})"
        for path in MODULES
        if path.name != "problems.py"
        for node in ast.walk(parsed(path))
        if isinstance(node, ast.ClassDef) and base_names(node) & names
    ]
    assert not elsewhere


def test_every_problem_class_the_function_imports_is_from_problems_py():
    """The same, on the classes themselves, once every module of the package is imported."""
    for path in MODULES:
        if path.stem != "__init__":
            __import__(f"payout_links.{path.stem}")
    found, pending = [], [problems.Problem]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass.__module__.startswith("payout_links."):
                found.append(subclass)
            pending.append(subclass)
    assert found
    assert {cls.__module__ for cls in found} == {problems.__name__}, [(c.__qualname__, c.__module__) for c in found]
