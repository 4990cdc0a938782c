"""Point 4 of the CLI issue — scriptable output: ``retrieve --jsonl``, ``retrieve --like``,
``index status`` with an exit code (and ``--json``, ``-q``), tables not cut when piped, and
JSON lines read and written with the ``jsonlines`` package (errors name the line)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from vault import input as cli_io
from vault.embedding import builtin
from vault.errors import InvalidInputError, NotFoundError
from vault.like import neighbours
from vault.ops import write as writeback
from vault.vault import Vault
from vault_cli.app import app

from .conftest import EXAMPLES, card

runner = CliRunner()
TASK = str(EXAMPLES / "tasks" / "rotate.json")


def run(root: Path, *args: str, code: int = 0, input: str | None = None) -> Result:
    result = runner.invoke(app, [*args, "--vault", str(root)], input=input, env={"VAULT_DIR": None})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    return result


# --------------------------------------------------------------------------- export
def test_export_stdout_is_records_only_and_json_needs_a_file(
    example_vault: Vault, tmp_path: Path
) -> None:
    """``vault export --json`` without ``-o`` wrote the records on stdout and its "JSON"
    summary on stderr, though --json promises clean JSON on stdout. The contract now: without
    -o stdout is the records (JSON lines) and only them, the summary on stderr; --json needs
    -o FILE (a file other than stdout) and then stdout is one JSON document."""
    import subprocess
    import sys

    from .helpers import tree

    def vault(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "vault", *args, "--vault", str(example_vault.root)]
        return subprocess.run(argv, capture_output="stdout" not in kw, text=True, **kw)

    plain = vault("export")
    assert plain.returncode == 0, plain.stderr
    records = [json.loads(line) for line in plain.stdout.splitlines()]
    assert records and all(r["kind"] in ("concept", "evidence", "status", "repr") for r in records)
    assert plain.stderr.startswith(f"export: {len(records)} records, up to audit seq ")

    before = tree(example_vault.root)
    refused = vault("export", "--json")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.count("\n") == 1 and "--json needs -o FILE" in refused.stderr
    to_stdout = vault("export", "-o", "/dev/stdout", "--json")  # (stdout: a pipe here)
    assert (to_stdout.returncode, to_stdout.stdout) == (2, ""), to_stdout.stderr
    out = tmp_path / "all.jsonl"
    with open(out, "w") as same:  # stdout redirected to the very file -o names
        assert vault("export", "-o", str(out), "--json", stdout=same).returncode == 2
    assert tree(example_vault.root) == before

    done = vault("export", "-o", str(out), "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    summary = json.loads(done.stdout)
    assert summary["records"] == len(records) and summary["output"] == str(out)
    assert isinstance(summary["audit_seq"], int)
    assert out.read_text() == plain.stdout


# --------------------------------------------------------------------------- --jsonl
@pytest.mark.parametrize("mode", ["symbolic", "hybrid", "soft"])
def test_retrieve_jsonl_is_one_line_per_hit(example_vault: Vault, mode: str) -> None:
    root = example_vault.root
    doc = json.loads(run(root, "retrieve", "--task", TASK, "--mode", mode, "--json").stdout)
    lines = run(root, "retrieve", "--task", TASK, "--mode", mode, "--jsonl").stdout
    assert lines.endswith("\n")
    hits = [json.loads(line) for line in lines.splitlines()]
    assert hits == doc["results"] and len(hits) > 1
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    for line in lines.splitlines():  # compact, keys sorted: one stable byte form
        assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"))


def test_retrieve_jsonl_tells_a_fallback_on_stderr(
    example_builtin_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builtin, "WEIGHTS_HASH", "0" * 64)
    result = run(example_builtin_vault.root, "retrieve", "--task", TASK, "--jsonl")
    assert "fell back to symbolic: embedder drift" in result.stderr
    assert all(json.loads(line)["similarity"] is None for line in result.stdout.splitlines())


# --------------------------------------------------------------------------- --like
LIKE_CARDS = [
    card("base", ["transform:rotate_90", "feature:square"], dsl="(rotate_90 grid)"),
    card("base", ["transform:rotate_90"], version="1.1.0", dsl="(rotate_90 grid)"),
    card("twin", ["transform:rotate_90", "feature:square"], dsl="(rotate_90 grid)"),
    card("twin-old", ["transform:rotate_90", "feature:square"], dsl="(rotate_90 grid)"),
    card("near", ["transform:rotate_90", "feature:multi_object"], dsl="(rotate_90 grid)"),
    card("far", ["transform:flip_h", "feature:no_object"], dsl="(flip_h grid)"),
    card("hidden", ["transform:rotate_90", "feature:square"], dsl="(rotate_90 grid)"),
    card("textual", ["transform:rotate_90", "feature:square"], domain="text"),
]


@pytest.fixture
def like_vault(vault: Vault, tmp_path: Path) -> Vault:
    f = tmp_path / "cards.jsonl"
    f.write_text("".join(json.dumps(c) + "\n" for c in LIKE_CARDS))
    run(vault.root, "add", str(f))
    run(vault.root, "set-status", "hidden", "1.0.0", "suppressed")
    run(vault.root, "set-status", "twin-old", "1.0.0", "deprecated")
    return vault


def test_like_ranks_neighbours_of_a_stored_concept(like_vault: Vault) -> None:
    out = json.loads(run(like_vault.root, "retrieve", "--like", "base@1.0.0", "--json").stdout)
    assert out["like"] == "base@1.0.0"
    ids = [h["id"] for h in out["results"]]
    assert "base" not in ids  # itself (every version) left out
    assert "hidden" not in ids and "textual" not in ids  # suppressed; another domain
    assert ids[0] == "twin"  # the same keys: the same vector
    assert ids[-1] == "twin-old"  # deprecated after every active one
    sims = [h["similarity"] for h in out["results"] if h["status"] == "active"]
    assert sims == sorted(sims, reverse=True)
    assert out["results"][0]["similarity"] == pytest.approx(1.0)
    assert all(h["score"] == h["similarity"] for h in out["results"])
    assert out["mode_used"] == "soft" and out["fallback_reason"] is None
    assert "transform:rotate_90" in out["keys"]


def test_like_default_version_is_the_newest(like_vault: Vault) -> None:
    newest = json.loads(run(like_vault.root, "retrieve", "--like", "base", "--json").stdout)
    assert newest["like"] == "base@1.1.0"
    assert newest == json.loads(
        run(like_vault.root, "retrieve", "--like", "base@1.1.0", "--json").stdout
    )


def test_like_k_jsonl_metric_and_table(like_vault: Vault) -> None:
    root = like_vault.root
    lines = run(root, "retrieve", "--like", "base", "-k", "2", "--jsonl").stdout.splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["rank"] == 1
    euclid = json.loads(
        run(root, "retrieve", "--like", "base@1.0.0", "--similarity", "euclidean", "--json").stdout
    )
    assert euclid["similarity_metric"] == "euclidean" and euclid["results"][0]["id"] == "twin"
    table = run(root, "retrieve", "--like", "base@1.0.0").stdout
    assert "like base@1.0.0" in table and "twin" in table
    again = run(root, "retrieve", "--like", "base@1.0.0", "--json").stdout
    assert again == run(root, "retrieve", "--like", "base@1.0.0", "--json").stdout


def test_like_library_function(like_vault: Vault) -> None:
    cfg = like_vault.config()
    found = neighbours(like_vault, "base", "1.0.0", cfg)
    assert found.like == "base@1.0.0" and found.to_json()["like"] == "base@1.0.0"
    assert found.result.results[0].id == "twin"
    with pytest.raises(NotFoundError):
        neighbours(like_vault, "ghost", None, cfg)


def test_like_on_the_example_vault(example_vault: Vault) -> None:
    out = json.loads(run(example_vault.root, "retrieve", "--like", "rotate-90", "--json").stdout)
    assert out["results"] and "rotate-90" not in [h["id"] for h in out["results"]]


# --------------------------------------------------------------------------- index status
def _make_stale(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write acknowledged in the audit log but not indexed (killed before publishing)."""

    def die(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(writeback, "publish", die)
    with pytest.raises(KeyboardInterrupt):
        vault.add([(card("late", ["feature:square"]), "late")])
    monkeypatch.undo()


def test_index_status_exit_code_says_current_or_stale(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = vault.root
    assert run(root, "index", "status", "-q").stdout == ""
    assert json.loads(run(root, "index", "status", "--json").stdout)["stale"] is False
    assert run(root, "index", "status").stdout.startswith("what\tvalue\nindex\tcurrent\n")
    _make_stale(vault, monkeypatch)
    quiet = run(root, "index", "status", "-q", code=1)
    assert quiet.stdout == "" and quiet.stderr == ""
    doc = json.loads(run(root, "index", "status", "--json", code=1).stdout)
    assert doc["stale"] is True and doc["pending"] == 1
    assert run(root, "index", "status", code=1).stdout.startswith("what\tvalue\nindex\tstale\n")
    run(root, "index", "build")
    run(root, "index", "status", "-q")


def test_index_status_drift_is_not_current(
    example_builtin_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builtin, "WEIGHTS_HASH", "0" * 64)
    result = run(example_builtin_vault.root, "index", "status", code=1)
    assert result.stdout.startswith("what\tvalue\nindex\tdrift\n")


# --------------------------------------------------------------------------- piped tables
def test_piped_tables_are_not_cut(vault: Vault, tmp_path: Path) -> None:
    long_id = "a-concept-with-a-very-long-name-" + "x" * 90
    f = tmp_path / "c.jsonl"
    many = [card(long_id, ["feature:square"])] + [
        card(f"c{i:03d}", ["feature:square"]) for i in range(12)
    ]
    f.write_text("".join(json.dumps(c) + "\n" for c in many))
    run(vault.root, "add", str(f))
    grid = tmp_path / "g.json"
    grid.write_text("[[0, 0], [0, 1]]")
    table = run(vault.root, "retrieve", "--repr", str(grid), "--mode", "symbolic").stdout
    assert any(long_id in line for line in table.splitlines())
    log = run(vault.root, "log").stdout
    detail = json.dumps({"concepts": sorted(f"{c['id']}@1.0.0" for c in many)}, sort_keys=True)
    assert any(detail in line for line in log.splitlines())  # whole, on one line
    assert max(len(line) for line in log.splitlines()) > 200


# --------------------------------------------------------------------------- JSON lines in
def test_jsonl_input_errors_name_the_line(vault: Vault, tmp_path: Path) -> None:
    f = tmp_path / "cards.jsonl"
    good = json.dumps(card("ok", []))
    f.write_text(good + "\n\n" + json.dumps(card("ok2", [])) + "\n" + '{"id": 1, "id": 2}\n')
    err = run(vault.root, "add", str(f), code=1).stderr
    assert err == (
        f"error: {f}:4: invalid JSON: duplicate key 'id', expected each key once in an object "
        "(line 4, column 11)\n"
    )
    f.write_text(good + "\n" + json.dumps(card("bad", [], version="1")) + "\n")
    err = run(vault.root, "add", str(f), code=1).stderr
    assert err.startswith(f"error: {f}:2: field 'version'")


def test_jsonl_from_stdin_with_blank_lines_and_a_bom(vault: Vault) -> None:
    text = "\ufeff" + json.dumps(card("s1", [])) + "\n\n" + json.dumps(card("s2", [])) + "\n"
    out = json.loads(run(vault.root, "add", "-", "--json", input=text).stdout)
    assert out["added"] == ["s1@1.0.0", "s2@1.0.0"]


def test_iter_json_lines_streams_with_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "q.jsonl"
    f.write_bytes(b'{"a": 1}\n\n  \n[1, 2]\nnull\n{"b": NaN}\n')
    stream = cli_io.iter_json_lines(str(f))
    assert next(stream) == ({"a": 1}, f"{f}:1")
    assert next(stream) == ([1, 2], f"{f}:4")
    assert next(stream) == (None, f"{f}:5")
    with pytest.raises(InvalidInputError) as err:
        next(stream)
    assert str(err.value) == (
        f"{f}:6: invalid JSON: NaN is not allowed, expected a finite number (line 6, column 7)"
    )
    f.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(InvalidInputError, match=r":2: not UTF-8"):
        list(cli_io.iter_json_lines(str(f)))
    with pytest.raises(InvalidInputError, match="no such file"):
        list(cli_io.iter_json_lines(str(tmp_path / "missing.jsonl")))


def test_iter_json_lines_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b'{"q": 1}\n{"q": 2}\n'))
    monkeypatch.setattr("sys.stdin", fake)
    assert list(cli_io.iter_json_lines("-")) == [({"q": 1}, "<stdin>:1"), ({"q": 2}, "<stdin>:2")]


def test_json_lines_out_are_flushed_per_line(vault: Vault) -> None:
    out = run(vault.root, "embed", str(EXAMPLES / "grids" / "ring.json")).stdout
    (line,) = out.splitlines()
    assert set(json.loads(line)) >= {"id", "kind", "vector"}
    task_reprs = run(vault.root, "repr", TASK).stdout.splitlines()
    assert len(task_reprs) > 2 and all(json.loads(x)["repr_id"] for x in task_reprs)
