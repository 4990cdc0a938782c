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
# the format-1 fixture upgraded by vault at b74506c (format 2: whole table objects, the view
# hard links to them), then one negative evidence record added
FIXTURE2 = Path(__file__).parent / "fixtures" / "format2-vault.tar.gz"


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
        "to": 3,
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
    assert again.exit_code == 0 and "already format 3" in again.stderr
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


def test_upgrade_from_format_2_rebuilds_the_table_in_chunks(tmp_path: Path) -> None:
    with tarfile.open(FIXTURE2) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / "f2"
    with pytest.raises(FormatError, match="vault upgrade"):
        Vault.open(root)
    before = concepts_of_format2(root)
    audit = (root / "audit" / "commits.jsonl").read_bytes()
    assert Vault.upgrade(root) == (2, 3)
    v = Vault.open(root)
    assert (root / "audit" / "commits.jsonl").read_bytes().startswith(audit)
    stored = concepts(v)
    assert {ref: e["negative"] for ref, e in stored.items()} == before
    assert set(v.snapshot().manifest["table"]) == {"rows", "matrix"}
    assert (root / "index" / "format2.generations.jsonl").is_file()
    # the view: derived files of their own now, not links to the old vectors objects
    view = root / "embeddings" / "concept_vectors.jsonl"
    assert view.stat().st_nlink == 1 and len(view.read_bytes().splitlines()) == len(stored)
    assert_sound(v)


def concepts_of_format2(root: Path) -> dict[str, int]:
    """{ref: negative} of a format-2 vault's current generation, read by hand (§7.3-7.4 of
    format 2: the manifest's ``state`` names 256 concept shards)."""

    def obj(digest: str) -> dict:  # type: ignore[type-arg]
        return json.loads((root / "objects" / digest[:2] / digest[2:]).read_bytes())

    current = json.loads((root / "index" / "CURRENT").read_text())
    out: dict[str, int] = {}
    for digest in obj(obj(current["generation"])["state"])["concepts"]:
        out.update({ref: e["negative"] for ref, e in obj(digest).items()})
    return out
