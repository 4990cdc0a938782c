"""The crash check of ``tests/conftest.py``: a test fails when anything it ran hit an
unexpected exception — reported by the CLI as one line (exit 1, like a clean refusal) or by
retrieval as a fallback — in its own process, a forked child or a subprocess, whatever the
test asserted; ``@pytest.mark.internal_error`` opts out and then requires one. Checked by
running a small suite with those hooks in a separate pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

INNER = """
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vault.internal import note
from vault.records.query import task_query
from vault.retrieval import retrieve
from vault_cli.app import app

TASK = json.loads((EXAMPLES / "tasks" / "rotate.json").read_text())


def _broken_status(monkeypatch):
    def broken(*a, **k):
        raise KeyError("boom")

    monkeypatch.setattr("vault.ops.rollback.index_status", broken)


def _status(vault):
    return CliRunner().invoke(app, ["--vault", str(vault.root), "index", "status"])


def test_clean(example_vault):
    assert _status(example_vault).exit_code == 0


def test_cli_crash_taken_for_a_refusal(vault, monkeypatch):
    _broken_status(monkeypatch)
    assert _status(vault).exit_code == 1  # all a careless test checks


@pytest.mark.internal_error
def test_cli_crash_on_purpose(vault, monkeypatch):
    _broken_status(monkeypatch)
    assert _status(vault).stderr.startswith("error: internal error: KeyError")


@pytest.mark.internal_error
def test_marked_but_nothing_crashed(vault):
    assert _status(vault).exit_code == 0


def test_fallback_after_a_bug(example_vault, monkeypatch):
    def boom(*a, **k):
        raise ValueError("kaput")

    monkeypatch.setattr("vault.retrieval.query_vector", boom)
    r = retrieve(example_vault, task_query(TASK), example_vault.config(), "hybrid")
    assert r.results  # an answer all the same
    assert r.fallback_reason == "internal error: ValueError: kaput"


def test_designed_fallback(example_builtin_vault, monkeypatch):
    v = example_builtin_vault  # a built-in-embedder vault: patching its identity is drift
    monkeypatch.setattr("vault.embedding.builtin.WEIGHTS_HASH", "0" * 64)
    r = retrieve(v, task_query(TASK), v.config(), "hybrid")
    assert r.fallback_reason.startswith("embedder drift")


def test_crash_in_a_subprocess():
    code = "from vault.internal import note; note(ValueError('in a child'), 'child')"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_crash_in_a_forked_child():
    pid = os.fork()
    if pid == 0:
        note(IndexError("forked"), "child")
        os._exit(0)
    os.waitpid(pid, 0)


@pytest.fixture
def crashing_setup():
    note(RuntimeError("in a fixture"), "fixture")


def test_crash_in_setup(crashing_setup):
    pass
"""

EXPECTED = {
    "test_clean": "PASSED",
    "test_cli_crash_taken_for_a_refusal": "FAILED",
    "test_cli_crash_on_purpose": "PASSED",
    "test_marked_but_nothing_crashed": "FAILED",
    "test_fallback_after_a_bug": "FAILED",
    "test_designed_fallback": "PASSED",
    "test_crash_in_a_subprocess": "FAILED",
    "test_crash_in_a_forked_child": "FAILED",
    "test_crash_in_setup": "ERROR",
}


def test_the_crash_check_fails_every_unplanned_internal_error(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_inner.py").write_text("from tests.conftest import EXAMPLES\n" + INNER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("VAULT_INTERNAL_ERRORS", None)  # the inner run sets its own
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    got = dict(
        (name, outcome)
        for outcome, name in re.findall(r"^(PASSED|FAILED|ERROR) \S*::(\w+)", done.stdout, re.M)
    )
    assert got == EXPECTED, done.stdout[-3000:]
    assert "1 internal error(s) during call" in done.stdout
    assert "[cli] internal error: KeyError: 'boom'" in done.stdout
    assert "[retrieval] internal error: ValueError: kaput" in done.stdout
    assert "marked internal_error, but no internal error was recorded" in done.stdout
    assert "internal error(s) during setup" in done.stdout
