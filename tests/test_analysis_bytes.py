"""Task analysis gives the same bytes as before it was restructured for speed (issue 23):
reprs, pair facts, keys and vectors (built-in and shipped embedders) of a fixed corpus
equal the digests written from the previous code (tests/analysis_corpus.py)."""

from __future__ import annotations

import json

import pytest

from tests import analysis_corpus as ac
from vault.grid.objects import clear_caches


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads(ac.FIXTURE.read_text())


def test_the_corpus_is_the_one_the_fixture_was_written_from(expected: dict) -> None:
    assert expected["synthetic"]["fingerprint"] == ac.synthetic_fingerprint()
    assert sorted(expected["tasks"]) == sorted(name for name, _ in ac.corpus())


def test_reprs_keys_and_vectors_equal_the_previous_definition(expected: dict) -> None:
    clear_caches()
    differ = {}
    for name, task in ac.corpus():
        got = ac.digests(task)
        if got != expected["tasks"][name]:
            differ[name] = sorted(k for k in got if got[k] != expected["tasks"][name][k])
    assert not differ, f"{len(differ)} tasks differ: {dict(list(differ.items())[:5])}"


def test_warm_caches_give_the_same_bytes(expected: dict) -> None:
    """Analysed twice in one process (the per-grid memos hit): the same digests."""
    tasks = [t for t in ac.corpus() if t[0].startswith(("big-", "odd", "fill"))]
    for _ in range(2):
        for name, task in tasks:
            assert ac.digests(task) == expected["tasks"][name], name
