"""`vault eval` and `vault retrieve --batch` through the CLI runner."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
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
    assert "| hybrid-weighted |" in human.stdout and "tie by precision@5" in human.stderr


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
    # every line answered, and the run says that 2 of the 4 failed (issue 20: it exited 0)
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        'error: 2 of 4 request lines failed (their results are {"line", "error"} lines)\n'
    )
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


@pytest.mark.parametrize("workers", ["1", "2"])
def test_batch_answers_a_lone_surrogate_line_and_goes_on(
    example_vault: Vault, tmp_path: Path, workers: str
) -> None:
    """A lone surrogate (``"\\ud800"``) in a request, a key or a task is that line's error:
    it used to reach the writer (`internal error: UnicodeEncodeError`) and end the run."""
    grid = ROTATE["test"][0]["input"]
    task = {**ROTATE, "test": [{"input": grid, "note": "\udc00"}]}
    requests = tmp_path / "req.jsonl"
    requests.write_text(
        json.dumps({"repr": grid, "id": "\ud800"})
        + "\n"
        + json.dumps({"repr": grid, "\ud800": 1})
        + "\n"
        + json.dumps({"task": task})
        + "\n"
        + json.dumps({"repr": grid, "id": "after"})
        + "\n"
    )
    args = ["--vault", str(example_vault.root), "retrieve", "--batch", str(requests)]
    result = runner.invoke(app, [*args, "--workers", workers])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: 3 of 4 request lines failed")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3, 4]
    assert "req.jsonl:1: field 'id'" in lines[0]["error"]
    assert "field '\\ud800'" in lines[1]["error"]
    assert "field 'task.test[0].note'" in lines[2]["error"]
    assert all("lone surrogate" in x["error"] for x in lines[:3])
    assert lines[3]["id"] == "after" and lines[3]["results"]


def test_batch_workers_give_the_same_bytes(example_vault: Vault, tmp_path: Path) -> None:
    """`--workers 2` answers in forked processes: byte-identical output (order, errors,
    ids) and the same cache pack as one process; `--workers` needs `--batch`."""
    grid = ROTATE["test"][0]["input"]
    lines = []
    for i in range(150):  # several chunks, with bad lines and new grids among them
        if i % 37 == 5:
            lines.append("{broken")
        elif i % 3 == 0:
            lines.append(json.dumps({"task": ROTATE, "k": 1 + i % 4, "id": i}))
        else:
            g = [[(r * 3 + c + i) % 5 for c in range(2 + i % 4)] for r in range(3)]
            lines.append(json.dumps({"repr": g, "mode": ("hybrid", "soft", "symbolic")[i % 3]}))
    requests = tmp_path / "req.jsonl"
    requests.write_text("\n".join(lines) + "\n" + json.dumps({"repr": grid}) + "\n")
    outputs, packs = [], []
    for workers in ("1", "2"):
        root = tmp_path / f"v{workers}"
        shutil.copytree(example_vault.root, root)
        args = ["--vault", str(root), "retrieve", "--batch", str(requests), "--workers", workers]
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.stderr  # the 4 broken lines, counted
        assert result.stderr.startswith("error: 4 of 151 request lines failed")
        outputs.append(result.stdout)
        packs.append(sorted(p.read_bytes() for p in (root / "embeddings/cache/packs").glob("*")))
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 151
    assert packs[0] == packs[1] and packs[0]
    bad = runner.invoke(
        app, ["--vault", str(example_vault.root), "retrieve", "--repr", "x", "--workers", "2"]
    )
    assert bad.exit_code == 2 and "--workers applies to --batch" in bad.stderr


def test_a_dead_batch_worker_leaves_no_gap(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-run: its chunks (and all after) are answered in the parent."""
    import vault.retriever as retriever

    parent = os.getpid()
    real = retriever.Retriever._answer

    def dies_in_a_worker(self: Any, line: int, value: Any) -> Any:
        if os.getpid() != parent and line == retriever.CHUNK + 1:
            os._exit(9)  # (forked workers inherit this patch)
        return real(self, line, value)

    monkeypatch.setattr(retriever.Retriever, "_answer", dies_in_a_worker)
    grid = ROTATE["test"][0]["input"]
    requests = [(i + 1, {"repr": grid, "k": 1 + i % 3}) for i in range(5 * retriever.CHUNK)]
    r = example_vault.retriever()
    assert list(r.batch(requests, workers=2)) == list(r.batch(requests))


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_batch_workers_do_not_outlive_a_killed_parent(example_vault: Vault, tmp_path: Path) -> None:
    """A CI timeout SIGKILLs `vault retrieve --batch --workers 2`: its workers end too (they
    used to wait for their next chunk for ever)."""
    import signal
    import subprocess
    import sys
    import time

    grid = ROTATE["test"][0]["input"]
    requests = tmp_path / "many.jsonl"
    requests.write_text((json.dumps({"repr": grid}) + "\n") * 50_000)
    args = ["--vault", str(example_vault.root), "retrieve", "--batch", str(requests)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vault", *args, "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        workers = _children(proc.pid)
    assert len(workers) >= 2, "the workers did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(_state(w) not in ("gone", "Z") for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [w for w in workers if _state(w) not in ("gone", "Z")] == []


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
