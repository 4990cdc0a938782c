"""Upgrading a vault made by the previous format (a real one, made by vault 0.1 format 1)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vault.errors import FormatError
from vault.vault import Vault
from vault_cli.app import app

from .helpers import assert_sound, concepts, tree

FIXTURE = Path(__file__).parent / "fixtures" / "format1-vault.tar.gz"


@pytest.fixture
def old_vault(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "f1"


def test_old_format_is_refused_with_the_way_out(old_vault: Path) -> None:
    before = tree(old_vault)
    with pytest.raises(FormatError, match="vault upgrade"):
        Vault.open(old_vault)
    assert tree(old_vault) == before


def test_upgrade_keeps_every_record_and_the_rollback(old_vault: Path) -> None:
    audit = (old_vault / "audit" / "commits.jsonl").read_bytes()
    result = CliRunner().invoke(app, ["--vault", str(old_vault), "upgrade", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "vault": str(old_vault),
        "from": 1,
        "to": 2,
        "changed": True,
    }
    v = Vault.open(old_vault)
    assert (old_vault / "audit" / "commits.jsonl").read_bytes().startswith(audit)
    stored = concepts(v)
    assert len(stored) == 17
    assert stored["rotate-90@1.0.0"]["status"] == "deprecated"  # the status event after
    assert sum(int(e["positive"]) for e in stored.values()) == 0  # the rolled-back evidence
    assert_sound(v)
    again = CliRunner().invoke(app, ["--vault", str(old_vault), "upgrade"])
    assert again.exit_code == 0 and "already format 2" in again.stderr
    v.add_evidence(
        [
            (
                {
                    "schema_version": 1,
                    "concept": "rotate-90",
                    "version": "1.0.0",
                    "polarity": "negative",
                    "tier": "test",
                    "reason": "wrong",
                },
                "e",
            )
        ]
    )
    assert_sound(v)
