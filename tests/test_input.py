"""One input module (``vault.input``): the study's labels and ARC task files are read as
the CLI reads its input — strict JSON, UTF-8 only, size-limited, errors at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault import input as vault_input
from vault.arc import read_task_files
from vault.errors import InvalidInputError
from vault.eval.datasets import read_labels

TASK = '{"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]}'


def test_labels_are_parsed_strictly_and_located(tmp_path: Path) -> None:
    tasks = [("a", {}, "a.json"), ("b", {}, "b.json")]
    good = tmp_path / "good.jsonl"
    good.write_text('{"task": "a", "group": "g"}\n\n{"task": "b", "group": "g"}\n')
    assert read_labels(good, tasks, tmp_path) == {"a": "g", "b": "g"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "a", "group": "g"}\n{"task": "b", "task": "b", "group": "g"}\n')
    with pytest.raises(InvalidInputError, match=rf"{bad}:2: .*duplicate"):
        read_labels(bad, tasks, tmp_path)
    with pytest.raises(InvalidInputError, match="no such file"):
        read_labels(tmp_path / "missing.jsonl", tasks, tmp_path)


def test_labels_and_task_files_are_size_limited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vault_input, "MAX_INPUT_BYTES", 40)
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"task": "a", "group": "g"}\n' * 3)
    with pytest.raises(InvalidInputError, match="input limit"):
        read_labels(labels, [("a", {}, "a.json")], tmp_path)


def test_task_files_must_be_utf8_and_strict(tmp_path: Path) -> None:
    good = tmp_path / "t.json"
    good.write_text(TASK)
    assert [(t, s) for t, _, s in read_task_files([str(good)])] == [("t", str(good))]
    latin = tmp_path / "latin.json"
    latin.write_bytes(TASK.encode().replace(b"train", b"tr\xe9in"))
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        read_task_files([str(latin)])
    nan = tmp_path / "nan.json"
    nan.write_text(TASK.replace("[[2]]", "[[NaN]]"))
    with pytest.raises(InvalidInputError, match=str(nan)):
        read_task_files([str(nan)])
