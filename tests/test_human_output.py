"""Issue 20, item 7 — human output people can read.

* numbers rounded for people in tables (full precision stays in ``--json``);
* ``index status`` and ``embedder status`` are tables, not raw JSON;
* piped tables are plain TSV (a header, one row a line, the same number of fields on every
  line, values whole); on an 80-column terminal they fit in 80 columns;
* the eval summary states a tie as a tie and names each column for what it measures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vault.vault import Vault
from vault_cli import render
from vault_cli.app import app

from .conftest import EXAMPLES, card

runner = CliRunner()
TASK = str(EXAMPLES / "tasks" / "rotate.json")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LONG_FLOAT = re.compile(r"\d\.\d{4,}")

TABLES = [
    ["retrieve", "--task", TASK],
    ["retrieve", "--like", "rotate-90"],
    ["log"],
    ["index", "status"],
    ["embedder", "status"],
    ["rollback", "--list"],
]


def _run(root: Path, *args: str, env: dict[str, str] | None = None, code: int = 0) -> str:
    result = runner.invoke(app, ["--vault", str(root), *args], env=env)
    assert result.exit_code == code, result.output
    return result.stdout


def test_numbers_are_rounded_in_tables_and_whole_in_json(example_vault: Vault) -> None:
    root = example_vault.root
    doc = json.loads(_run(root, "retrieve", "--task", TASK, "--json"))
    assert any(LONG_FLOAT.search(repr(h["similarity"])) for h in doc["results"])  # full
    for args in TABLES:
        text = _run(root, *args)
        assert not LONG_FLOAT.search(text.replace(str(root), "")), (args, text)
    table = _run(root, "retrieve", "--task", TASK)
    first = doc["results"][0]
    assert f"{first['similarity']:.3f}" in table and f"{first['score']:.3f}" in table


def test_status_commands_are_tables_not_json(example_vault: Vault) -> None:
    root = example_vault.root
    for args in (["index", "status"], ["embedder", "status"]):
        text = _run(root, *args)
        lines = text.splitlines()
        assert lines[0] == "what\tvalue", text
        assert all(line.count("\t") == 1 for line in lines), text
        assert "{" not in text and "null" not in text and '"' not in text, text
    index = dict(line.split("\t") for line in _run(root, "index", "status").splitlines()[1:])
    status = json.loads(_run(root, "index", "status", "--json"))
    assert index["index"] == "current"
    assert index["generation"] == f"{status['number']} ({status['generation'][:12]})"
    assert str(status["counts"]["concepts"]) + " concepts" in index["counts"]
    emb = dict(line.split("\t") for line in _run(root, "embedder", "status").splitlines()[1:])
    assert emb["fit"].endswith("(in use)") and "evidence" in " ".join(emb)


def test_piped_tables_are_tsv_with_whole_values(example_vault: Vault) -> None:
    """`vault log | cat` was 240 columns of box drawing; now one TSV row per entry."""
    root = example_vault.root
    for args in TABLES:
        lines = [x for x in _run(root, *args).splitlines() if not x.startswith("# ")]
        fields = {line.count("\t") for line in lines}
        assert len(fields) == 1 and fields != {0}, (args, lines[:3])
        assert "│" not in "".join(lines) and "─" not in "".join(lines)
    log = _run(root, "log").splitlines()
    assert log[0] == "seq\ttime\top\trecords\tdetail"
    entries = json.loads(_run(root, "log", "--json"))
    assert len(log) == len(entries) + 1
    for line, entry in zip(log[1:], entries, strict=True):
        assert line.split("\t")[4] == json.dumps(entry["detail"], sort_keys=True)  # whole


def test_tables_fit_an_80_column_terminal(example_vault: Vault) -> None:
    root = example_vault.root
    env = {"FORCE_COLOR": "1", "COLUMNS": "80", "NO_COLOR": None}
    for args in TABLES:
        text = ANSI.sub("", _run(root, *args, env=env))
        assert "\t" not in text  # (a terminal gets the drawn table)
        widths = [len(line.rstrip()) for line in text.splitlines()]
        assert max(widths) <= 80, (args, text)
    table = ANSI.sub("", _run(root, "retrieve", "--task", TASK, env=env))
    assert "crop-largest-object" in table  # ids are never cut


@pytest.mark.parametrize("columns", ["10", "40", "64", "72", "100"])
def test_a_narrow_terminal_never_folds_nor_drops_a_value(
    example_vault: Vault, columns: str
) -> None:
    """Red team 41: at COLUMNS=50 a score 1.087 was drawn as "1.0" over "87" (it reads as
    1.0), at 30 rich dropped whole columns, at 10 every row was blank. An id, a version,
    an evidence count and every number is drawn whole, or — when the terminal is narrower
    than those — the table is written in its plain form (every value, tab-separated)."""
    root = example_vault.root
    env = {"FORCE_COLOR": "1", "COLUMNS": columns, "NO_COLOR": None}
    for args, whole in (
        (["retrieve", "--task", TASK], range(9)),
        (["list"], (0, 1, 3, 4)),
    ):
        plain = _run(root, *args).splitlines()
        text = ANSI.sub("", _run(root, *args, env=env))
        drawn = [line.split() for line in text.splitlines()]
        rows = [line.split("\t") for line in plain if "\t" in line][1:]  # (no title, header)
        assert rows
        for row in rows:
            cells = [row[i] for i in whole]
            # the row's whole values, in order, on one line of the output
            assert any(
                _in_order([c for cell in cells for c in cell.split()], words) for words in drawn
            ), (args, columns, row, text)
        if "\t" not in text:
            assert max(len(line.rstrip()) for line in text.splitlines()) <= int(columns)


def _in_order(wanted: list[str], words: list[str]) -> bool:
    it = iter(words)
    return all(any(w == x for x in it) for w in wanted)


def test_eval_summary_states_a_tie_and_names_its_columns(tmp_path: Path) -> None:
    """Both modes have precision@5 0.200 on this data: the summary said "`hybrid-weighted`
    ranks best by precision@5 (0.200 vs 0.200 ...)", beside a "vs symbolic" column holding
    a coverage change next to an MRR gain."""
    result = runner.invoke(
        app,
        [
            "eval",
            "--dataset",
            "synthetic",
            "--tasks-per-family",
            "2",
            "--modes",
            "symbolic,hybrid-weighted",
        ],
    )
    assert result.exit_code == 0, result.output
    said = result.stderr
    assert "tie by precision@5 (0.200)" in said and "ranks best" not in said
    head = [c.strip() for c in result.stdout.splitlines()[0].strip("|").split("|")]
    assert "MRR vs symbolic" in head and "coverage@10 vs symbolic" in head
    assert "vs symbolic" not in head
    doc = json.loads(
        runner.invoke(
            app,
            [
                "eval",
                "--dataset",
                "synthetic",
                "--tasks-per-family",
                "2",
                "--modes",
                "symbolic,hybrid-weighted",
                "--json",
            ],
        ).stdout
    )
    gain = doc["mrr_difference_vs_symbolic"]["hybrid-weighted"]["mean_diff"]
    row = [r for r in result.stdout.splitlines() if r.startswith("| hybrid-weighted |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[head.index("MRR vs symbolic")] == f"{gain:+.3f}"


def test_control_codes_from_a_vault_never_reach_the_terminal(
    vault: Vault, capsys: pytest.CaptureFixture[str]
) -> None:
    """A card's template (an import or a pull brings other people's) holding terminal
    control codes — a colour, an OSC that retitles the terminal, a C1 CSI, DEL — is printed
    with each control character as U+FFFD on a terminal (rich) or piped, ``NO_COLOR`` or
    not; a table's TSV cells the same (newline, tab and CR as spaces)."""
    evil = "(x grid)\x1b[31mRED\x1b]0;pwned\x07\x9b2J\x7f"
    injected = re.compile("\x1b\\[(31|2J)|\x1b\\]|[\x07\x9b\x7f]")
    vault.add([(card("esc", ["feature:square"], dsl=evil), "esc")])
    for env in ({"NO_COLOR": "1"}, {"FORCE_COLOR": "1", "NO_COLOR": None}, {}):
        text = _run(vault.root, "show", "esc", env=env)
        assert not injected.search(text) and "\ufffd[31mRED\ufffd]0;pwned" in text, (env, text)
    render.table(["a", "b"], [["x\x1b[31my", "\x9b2J\tz\r\nw\x7f"]])
    assert capsys.readouterr().out == "a\tb\nx\ufffd[31my\t\ufffd2J z  w\ufffd\n"
