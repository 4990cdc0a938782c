"""Hostile layouts and failing disks: a link planted inside a vault is never written
through; an append that cannot be made durable is undone; a write that took effect before
a later step failed says so, and its retry is safe."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vault.errors import CorruptionError
from vault.store import jsonl
from vault.vault import Vault
from vault_cli.app import app

from .conftest import card
from .helpers import full_build_id, tree

runner = CliRunner()


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "sentinel").write_text("untouched")
    return out


@pytest.mark.parametrize(
    "target",
    [
        "audit/commits.jsonl",
        "index/generations.jsonl",
        "index/CURRENT",
        "lock",
        "objects/ab",
        "embeddings/cache",
        "audit",
    ],
)
def test_a_planted_symlink_is_never_written_through(
    example_vault: Vault, tmp_path: Path, target: str
) -> None:
    v = example_vault
    out = _outside(tmp_path)
    victim = v.root / target
    if victim.is_dir():
        os.rename(victim, tmp_path / "moved")
        (out / "dir").mkdir()
        victim.symlink_to(out / "dir")
    else:
        if victim.exists():
            os.rename(victim, out / victim.name)
        else:
            (out / victim.name).write_text("")
        victim.symlink_to(out / victim.name)
    before_out = tree(out)
    result = runner.invoke(
        app,
        ["--vault", str(v.root), "add", "-"],
        input='{"schema_version": 1, "id": "x", "version": "1.0.0", '
        '"domain": "grid_2d", "signature": {"keys": ["feature:x"]}, '
        '"template": {"template_dsl": "(x)"}}',
    )
    assert result.exit_code == 1, result.output
    assert "symbolic link" in result.stderr and result.stderr.count("\n") == 1
    assert tree(out) == before_out  # not one byte outside the vault
    assert not v.verify().ok


def test_a_failed_append_is_cut_off_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = Vault.init(tmp_path / "v")
    before = v.audit.path.read_bytes()

    def no_sync(fd: int) -> None:
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(jsonl.os, "fsync", no_sync)
    with pytest.raises(OSError, match="injected"):
        v.add([(card("a", ["feature:a"]), "a")])
    monkeypatch.undo()
    assert v.audit.path.read_bytes() == before  # not acknowledged: the line is gone
    assert v.add([(card("a", ["feature:a"]), "a")]).added == ["a@1.0.0"]  # the retry does it


def test_verify_names_a_planted_link(example_vault: Vault, tmp_path: Path) -> None:
    v = example_vault
    out = _outside(tmp_path)
    os.rename(v.root / "refs", tmp_path / "refs")
    (v.root / "refs").symlink_to(out)
    report = v.verify()
    assert not report.ok
    assert any(p.kind == "symlink_planted" for p in report.problems)


def test_read_only_vault_never_touches_links(example_vault: Vault) -> None:
    with pytest.raises(CorruptionError):
        (example_vault.root / "lock").unlink()
        (example_vault.root / "lock").symlink_to("/tmp")
        with example_vault.lock:
            pass


def test_unbounded_inputs_are_refused_quickly(vault: Vault, tmp_path: Path) -> None:
    import time

    from vault import limits

    big = tmp_path / "sparse.json"
    with open(big, "wb") as f:
        f.truncate(limits.MAX_INPUT_BYTES + 10)  # a sparse file larger than the limit
    for args in (["add", str(big)], ["add", "/dev/zero"], ["retrieve", "--task", "/dev/zero"]):
        t = time.perf_counter()
        result = runner.invoke(app, ["--vault", str(vault.root), *args])
        assert time.perf_counter() - t < 5
        assert result.exit_code == 1 and "input limit" in result.stderr, result.output
        assert result.stderr.count("\n") == 1


def test_tasks_with_too_many_pairs_are_refused(vault: Vault, tmp_path: Path) -> None:
    import json

    from vault import limits

    task = {"train": [{"input": [[1]], "output": [[2]]}] * (limits.MAX_PAIRS + 1)}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(task))
    result = runner.invoke(app, ["--vault", str(vault.root), "retrieve", "--task", str(path)])
    assert result.exit_code == 1 and "at most 100" in result.stderr


def test_a_batch_line_over_the_limit_is_that_lines_error(
    example_vault: Vault, tmp_path: Path, monkeypatch: Any
) -> None:
    """A line over MAX_LINE_BYTES is answered as an error and the batch goes on (it used to
    end the run, later lines unanswered); its rest is read in bounded pieces and dropped."""
    import io as stdio
    import json

    from vault import input as io
    from vault.errors import InvalidInputError

    monkeypatch.setattr(io, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(io, "_SKIP", 16)
    good = '{"repr": [[1]], "id": "ok"}\n'
    text = good + '{"repr": [[1]], "id": "' + "x" * 1000 + '"}\n' + "{broken\n" + good
    result = runner.invoke(
        app, ["--vault", str(example_vault.root), "retrieve", "--batch", "-"], input=text
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 2 of 4 request lines failed"), result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3, 4]
    assert "<stdin>: line 2 is longer than" in lines[1]["error"] and lines[3]["id"] == "ok"
    assert "<stdin>:3: malformed JSON" in lines[2]["error"]  # (its own number)
    # --scheduler's client sends the workers a line too long as None: the same answers
    path = tmp_path / "req.jsonl"
    path.write_text(text)
    raw = list(io.request_lines(str(path)))
    assert [n for n, _ in raw] == [1, 2, 3, 4] and raw[1][1] is None
    parsed = list(io.requests_of([line for _, line in raw], str(path), 0))
    assert [n for n, _ in parsed] == [1, 2, 3, 4] and parsed[3][1]["id"] == "ok"
    assert isinstance(parsed[1][1], InvalidInputError) and "line 2" in str(parsed[1][1])
    assert "req.jsonl:3: malformed JSON" in str(parsed[2][1])

    class Reads(stdio.BytesIO):
        sizes: list[int] = []

        def readline(self, size: int | None = -1) -> bytes:
            self.sizes.append(-1 if size is None else size)
            return super().readline(size)

    assert [n for n, _ in io.requests_of(Reads(text.encode()), "f", 0)] == [1, 2, 3, 4]
    assert Reads.sizes and all(0 < size <= 101 for size in Reads.sizes)


def _fail_once(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """Make ``module.name`` raise ENOSPC on its first call only; returns the call count."""
    real = getattr(module, name)
    calls = [0]

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)
    return calls


def test_a_failure_after_the_acknowledgement_says_the_write_took_effect(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vault.errors import CommittedError
    from vault.ops import write as writeback

    vault.add([(card("c1", ["invariant:same_dims"]), "op")])
    _fail_once(monkeypatch, writeback, "publish")
    with pytest.raises(CommittedError) as info:
        vault.add([(card("c2", ["invariant:same_dims"]), "op")])
    assert "took effect" in str(info.value) and "do not redo" in str(info.value)
    seq = info.value.audit_seq
    assert vault.audit.last_seq() == seq
    # The next command completes it: c2 is served, the index equals a full build.
    again = vault.add([(card("c2", ["invariant:same_dims"]), "op")])
    assert again.added == [] and vault.snapshot().versions("c2")
    assert full_build_id(vault) == vault.current_ref().generation


def test_a_write_that_took_effect_counts_the_records_it_stored(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note of a write acknowledged before its publishing failed counted ``added``
    (concept refs and evidence ids: 1 for this evidence) as records; it counts the records
    the audit entry names (the evidence and the two reprs of its pair: 3), and says none
    for an embedder switch, which stores no record."""
    from vault.errors import CommittedError
    from vault.ops import write as writeback

    vault.add([(card("c1", ["invariant:same_dims"]), "op")])
    evidence = {
        "schema_version": 1,
        "concept": "c1",
        "version": "1.0.0",
        "polarity": "positive",
        "pair": {"input": [[1, 2]], "output": [[2, 1]]},
    }
    _fail_once(monkeypatch, writeback, "publish")
    with pytest.raises(CommittedError) as info:
        vault.add_evidence([evidence])
    seq = info.value.audit_seq
    assert seq is not None and len(vault.audit.entries()[-1].records) == 3
    assert str(info.value) == (
        f"evidence took effect (audit seq {seq}: 3 records stored and acknowledged) but "
        "its index generation could not be published ([Errno 28] No space left on device); "
        "the next vault command completes it — do not redo the write"
    )
    _fail_once(monkeypatch, writeback, "publish")
    with pytest.raises(CommittedError) as info:
        writeback.set_embedder(vault, "builtin")
    seq = info.value.audit_seq
    assert vault.audit.entries()[-1].records == ()
    assert str(info.value).startswith(f"embedder took effect (audit seq {seq}) but its "), info


def test_a_retried_fork_is_not_forked_twice(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    from vault.errors import CommittedError
    from vault.ops import write as writeback

    vault.add([(card("c1", ["invariant:same_dims"]), "op")])
    fork_card = card("c1", ["invariant:same_dims"], dsl="(fork x)")
    _fail_once(monkeypatch, writeback, "publish")
    with pytest.raises(CommittedError):
        vault.add([(fork_card, "op")], fork=True)
    retry = vault.add([(fork_card, "op")], fork=True)
    versions = vault.snapshot().versions("c1")
    assert len(versions) == 2, versions  # the original and one fork, not two
    assert retry.added == [f"c1@{versions[-1]}"]


def test_a_retried_rollback_does_not_roll_back_twice(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vault.errors import CommittedError
    from vault.ops import rollback as rollback_mod

    for i in range(3):
        vault.add([(card(f"c{i}", ["invariant:same_dims"]), "op")])
    before = vault.current_ref().number
    _fail_once(monkeypatch, rollback_mod, "point_current")
    with pytest.raises(CommittedError) as info:
        vault.rollback()
    assert "do not roll back again" in str(info.value)
    vault.rollback()  # the retry: recognised, completes the first one only
    assert vault.current_ref().number == before - 1
    assert sum(e.op == "rollback" for e in vault.audit.entries()) == 1


def test_temporaries_of_a_killed_writer_are_swept(vault: Vault) -> None:
    vault.add([(card("c1", ["invariant:same_dims"]), "op")])
    r = vault.root
    fan = next(p for p in (r / "objects").iterdir() if p.is_dir())
    by_writer = [
        r / "objects" / ".tmp-abc123",
        r / "index" / ".CURRENT.x1y2.tmp",
        r / "embeddings" / ".concept_vectors.jsonl.link",
        r / "audit" / ".commits.jsonl.z9.tmp",
        r / ".config.toml.q.tmp",
    ]
    by_gc = [fan / ".tmp-old", r / "embeddings" / "cache" / "ab" / ".entry.json.k.tmp"]
    for p in by_writer + by_gc:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    keep = r / "index" / ".not-ours"  # not a name vault makes: left alone
    keep.write_bytes(b"x")
    vault.add([(card("c2", ["invariant:same_dims"]), "op")])
    assert [p for p in by_writer if p.exists()] == []
    assert all(p.exists() for p in by_gc)
    assert vault.gc(keep=5, dry_run=True).removed_temporaries == 2
    assert all(p.exists() for p in by_gc)
    assert vault.gc(keep=5).removed_temporaries == 2
    assert [p for p in by_gc if p.exists()] == [] and keep.exists()
    from vault.ops.verify import verify

    assert verify(vault).ok


def _damage(path: Path, old: bytes, new: bytes) -> None:
    """One object's bytes changed in place (its name, the address, left as it was)."""
    data = path.read_bytes()
    assert old in data
    path.chmod(0o644)
    path.write_bytes(data.replace(old, new, 1))


def test_a_damaged_card_or_repr_is_never_shown_as_the_stored_one(
    example_vault: Vault, tmp_path: Path
) -> None:
    """README: readers load objects checked against their hashes. `vault show` printed a
    card whose bytes no longer match its address (a changed template) with exit 0, and
    `--html` drew a damaged repr's grid; both now stop with the object named."""
    v = example_vault
    entry, card_ = v.concept_card("rotate-90")
    assert "rotate_90" in card_["template"]["template_dsl"]
    _damage(v.objects.path(entry["card"]), b"rotate_90", b"rotate_91")
    with pytest.raises(CorruptionError, match="does not match its address"):
        Vault.open(v.root).concept_card("rotate-90")
    for args in (["show", "rotate-90"], ["show", "rotate-90", "--json"]):
        shown = runner.invoke(app, ["--vault", str(v.root), *args])
        assert shown.exit_code == 1, shown.output
        assert "does not match its address" in shown.stderr and "rotate_91" not in shown.stdout
    # a repr a positive evidence record cites, damaged: --html stops instead of drawing it
    other = "flip-horizontal"
    cited = [v.records(d) for d in v.snapshot().entry(other, None)[1]["evidence"]]
    rid = next(r["pair"]["input"] for r in cited if "pair" in r)
    _damage(v.objects.path(rid), b'"grid":[[', b'"grid":[[ ')
    drawn = runner.invoke(
        app, ["--vault", str(v.root), "show", other, "--html", str(tmp_path / "o.html")]
    )
    assert drawn.exit_code == 1, drawn.output
    assert "does not match its address" in drawn.stderr
    assert not (tmp_path / "o.html").exists()
