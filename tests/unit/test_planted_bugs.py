"""The planted-bug harness (scripts/planted_bugs.py, `make planted-bugs`) stays honest as the code moves: every
mutation's snippets are in today's source exactly once, each mutation changes its file into Python that still
compiles (a bug, not a syntax error), and each says what it would do."""

from __future__ import annotations

import pytest

from scripts.planted_bugs import MUTATIONS, ROOT, Mutation, SnippetError, apply

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda mutation: mutation.name)
def test_each_snippet_occurs_exactly_once_and_the_mutant_compiles(mutation: Mutation) -> None:
    source = (ROOT / mutation.file).read_text()
    for snippet, replacement in mutation.edits:
        assert source.count(snippet) == 1, f"{mutation.name}: a snippet is not in {mutation.file} exactly once"
        assert snippet != replacement

    mutant = apply(mutation, source)

    assert mutant != source
    compile(mutant, mutation.file, "exec")
    assert mutation.harm


def test_names_are_unique_and_there_are_enough_of_them() -> None:
    names = [mutation.name for mutation in MUTATIONS]
    assert len(names) == len(set(names)) >= 16


def test_a_snippet_that_is_not_there_once_fails_loudly() -> None:
    missing = Mutation("missing", "functions/payout_links/store.py", (("no such line\n", "x\n"),), "none")
    twice = Mutation("twice", "x.py", (("a", "b"),), "none")

    with pytest.raises(SnippetError):
        apply(missing, "def f():\n    pass\n")
    with pytest.raises(SnippetError):
        apply(twice, "a = 1\na = 2\n")
