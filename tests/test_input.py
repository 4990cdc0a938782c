"""One input module (``vault.input``): the study's labels and ARC task files are read as
the CLI reads its input — strict JSON, UTF-8 only, size-limited, errors at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault import input as vault_input
from vault.arc import read_task_files
from vault.errors import InvalidInputError
from vault.eval.datasets import read_labels

from .test_strict_json import LOCATED, as_document, located, message

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


# --------------------------------------------------------------------------- located refusals
@pytest.mark.parametrize(("name", "case", "what", "field"), LOCATED, ids=[c[0] for c in LOCATED])
def test_a_refusal_in_a_file_names_its_line_and_column(
    tmp_path: Path, name: str, case: str, what: str, field: str | None
) -> None:
    """Each refusal of the strict parser, in a multi-line JSON file (the line within the
    file) and on line 4 of a JSON-lines file (the file's line, the column within it), read
    each way vault reads user files: records, JSON lines, batch requests."""
    text, line, column = located(as_document(case))
    doc = tmp_path / "doc.json"
    doc.write_text(text)
    for read in (vault_input.read_json, vault_input.read_records):
        with pytest.raises(InvalidInputError) as exc:
            read(str(doc))
        assert str(exc.value) == message(str(doc), what, field, line, column)

    text, _, column = located(case)
    jsonl = tmp_path / "lines.jsonl"
    jsonl.write_text('{"a": 1}\n\n[2, 3]\n  ' + text + '\n{"b": 4}\n')
    expected = message(f"{jsonl}:4", what, field, 4, column + 2)
    with pytest.raises(InvalidInputError) as exc:
        vault_input.read_records(str(jsonl))
    assert str(exc.value) == expected
    with pytest.raises(InvalidInputError) as exc:
        list(vault_input.iter_json_lines(str(jsonl)))
    assert str(exc.value) == expected
    answers = list(vault_input.iter_requests(str(jsonl)))  # retrieve --batch: every line
    assert [n for n, _ in answers] == [1, 3, 4, 5] and answers[3][1] == {"b": 4}
    assert str(answers[2][1]) == expected


def test_a_lone_surrogate_as_the_first_json_line(tmp_path: Path) -> None:
    """A first line that is just a string with a lone surrogate is refused as such (it was
    reported as `Extra data`: the file was taken for one malformed document)."""
    f = tmp_path / "lines.jsonl"
    f.write_text('"\\ud800"\n{"a": 1}\n')
    with pytest.raises(InvalidInputError) as exc:
        vault_input.read_records(str(f))
    assert str(exc.value) == (
        f"{f}:1: invalid JSON: \\ud800 is a lone surrogate, not a Unicode character, "
        "expected a pair (\\ud800-\\udbff, then \\udc00-\\udfff) (line 1, column 1)"
    )


def test_a_mark_jsonlines_drops_still_counts_as_a_column(tmp_path: Path) -> None:
    """``jsonlines`` drops a BOM or an RFC 7464 separator starting a line; the column is
    the file's, counting it."""
    f = tmp_path / "lines.jsonl"
    f.write_bytes(b'{"a": 1}\n\xef\xbb\xbf{"a": NaN}\n\x1e[1, 1e999]\n')
    answers = list(vault_input.iter_requests(str(f)))
    assert str(answers[1][1]).endswith(
        "NaN is not allowed, expected a finite number (line 2, column 8)"
    )
    assert str(answers[2][1]).endswith("out of range, expected a finite number (line 3, column 6)")
