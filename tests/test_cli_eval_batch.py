"""`vault eval` and `vault retrieve --batch` through the CLI runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from vault.vault import Vault
from vault_cli.app import app

from .conftest import EXAMPLES

runner = CliRunner()
ROTATE = json.loads((EXAMPLES / "tasks" / "rotate.json").read_text())


def test_eval_writes_the_report_and_prints_json(tmp_path: Path) -> None:
    out = tmp_path / "ev"
    args = [
        "eval",
        "--dataset",
        "synthetic",
        "--tasks-per-family",
        "2",
        "--modes",
        "none,symbolic,hybrid-weighted",
        "--out",
        str(out),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["modes"]) == {"none", "symbolic", "hybrid-weighted"}
    assert data["dataset"]["protocol"] == "cross" and data["report"]["out"] == str(out)
    assert (out / "REPORT.md").is_file() and (out / "results.json").is_file()
    assert result.stderr == ""  # no progress without a terminal, nothing else with --json
    human = runner.invoke(app, args[:-1])
    assert "| hybrid-weighted |" in human.stdout and "ranks best" in human.stderr


def test_batch_streams_one_result_per_line_in_order(example_vault: Vault, tmp_path: Path) -> None:
    grid = ROTATE["test"][0]["input"]
    requests = tmp_path / "req.jsonl"
    requests.write_text(
        json.dumps({"task": ROTATE, "k": 2, "id": "first"})
        + "\n"
        + "{broken\n\n"
        + json.dumps({"repr": grid, "mode": "symbolic", "k": 1})
        + "\n"
        + json.dumps({"task": ROTATE, "mode": "fast"})
        + "\n"
    )
    result = runner.invoke(
        app, ["--vault", str(example_vault.root), "retrieve", "--batch", str(requests)]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 4, 5]
    assert lines[0]["id"] == "first" and lines[0]["results"][0]["id"] == "rotate-90"
    assert "req.jsonl:2" in lines[1]["error"]
    assert lines[2]["mode_used"] == "symbolic" and len(lines[2]["results"]) == 1
    assert "mode" in lines[3]["error"]
    single = runner.invoke(
        app,
        [
            "--vault",
            str(example_vault.root),
            "retrieve",
            "--task",
            str(EXAMPLES / "tasks" / "rotate.json"),
            "-k",
            "2",
            "--json",
        ],
    )
    assert {k: v for k, v in lines[0].items() if k not in ("line", "id")} == json.loads(
        single.stdout
    )
    stdin = runner.invoke(
        app,
        ["--vault", str(example_vault.root), "retrieve", "--batch", "-"],
        input=json.dumps({"repr": grid}) + "\n",
    )
    assert stdin.exit_code == 0 and json.loads(stdin.stdout)["line"] == 1
