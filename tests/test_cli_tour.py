"""The README's tour runs verbatim: every line of the first ``sh`` block after "A tour of the
CLI", in order, in a temporary vault (``export VAULT_DIR=…`` is pointed there), from the
repository root (the tour's paths are relative to it), each command through the CLI runner
with the shell's ``&&`` / ``;`` / comments / globs honoured. Every command must succeed."""

from __future__ import annotations

import glob
import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vault_cli.app import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def tour() -> list[str]:
    text = (ROOT / "README.md").read_text()
    after = text.split("## A tour of the CLI", 1)[1]
    block = after.split("```sh\n", 1)[1].split("\n```", 1)[0]
    return block.splitlines()


def simple_commands(line: str) -> list[tuple[str, list[str]]]:
    """(the operator before it: "", "&&" or ";", words) for each command of a shell line."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out: list[tuple[str, list[str]]] = []
    op, words = "", []
    for token in lexer:
        if token in ("&&", ";"):
            out.append((op, words))
            op, words = token, []
        else:
            assert token not in ("|", "||", "&"), f"the tour test does not run {token!r}: {line}"
            words.append(token)
    if words:
        out.append((op, words))
    return out


def expand(words: list[str]) -> list[str]:
    """Globs as the shell expands them (sorted; a pattern matching nothing stays as is)."""
    out = []
    for w in words:
        matches = sorted(glob.glob(w)) if any(c in w for c in "*?[") else []
        out += matches or [w]
    return out


def test_the_tour_is_there_and_shows_the_undo_of_the_kill_switch() -> None:
    lines = tour()
    assert lines[0].startswith("export VAULT_DIR=")
    text = "\n".join(lines)
    for needle in (
        "vault init",
        "vault rollback --mode symbolic",
        "vault rollback --mode config",
        "vault set-status",
        "--like",
        "--jsonl",
    ):
        assert needle in text


def test_the_readme_tour_runs_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("obstore")  # (the tour's remote and cluster lines: dev installs both)
    pytest.importorskip("dask.distributed")
    monkeypatch.chdir(ROOT)
    env: dict[str, str | None] = {
        "VAULT_DIR": None,
        "SOURCE_DATE_EPOCH": None,
        "DASK_SCHEDULER_ADDRESS": None,
    }
    ran = 0
    for line in tour():
        for op, raw in simple_commands(line):
            words = [w.replace("/tmp/", f"{tmp_path}/") for w in raw]  # (/tmp/… is the test's)
            if words[0] == "export":
                name, _, _ = words[1].partition("=")
                assert name == "VAULT_DIR", line
                env["VAULT_DIR"] = str(tmp_path / "myvault")
                continue
            assert words[0] == "vault", line
            assert op in ("", "&&", ";")
            result = runner.invoke(app, expand(words[1:]), env=env)
            where = f"`{' '.join(words)}` (README tour: {line!r})"
            assert result.exception is None or isinstance(result.exception, SystemExit), where
            assert "Traceback" not in result.output, where
            assert result.exit_code == 0, f"{where} exited {result.exit_code}: {result.stderr}"
            if "--json" in words:
                json.loads(result.stdout)
            if "--jsonl" in words or words[1] in ("repr", "embed"):
                assert all(json.loads(x) for x in result.stdout.splitlines())
            ran += 1
    assert ran >= 15
    assert (tmp_path / "myvault" / "format.json").is_file()
    # the clone's write-back came back with the pull: the same log, the same index bytes
    mine, clone = tmp_path / "myvault", tmp_path / "myvault-clone"
    assert (mine / "audit" / "commits.jsonl").read_bytes() == (
        clone / "audit" / "commits.jsonl"
    ).read_bytes()
    from vault.vault import Vault

    ref, cref = Vault.open(mine).current_ref(), Vault.open(clone).current_ref()
    assert ref is not None and cref is not None and ref.generation == cref.generation
