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
from .helpers import tree

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
    v, _ = Vault.init(tmp_path / "v")
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
