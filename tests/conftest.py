from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vault.vault import Vault, fixed_clock

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    """A fresh empty vault in this test's own directory, with a frozen clock (and the
    shipped fitted embedder every new vault starts with)."""
    v, _ = Vault.init(tmp_path / "v", clock=fixed_clock(1_700_000_000))
    return v


@pytest.fixture
def builtin_vault(tmp_path: Path) -> Vault:
    """The same with the built-in (hand-set) embedder, as a vault made before issue 22."""
    v, _ = Vault.init(tmp_path / "v", clock=fixed_clock(1_700_000_000), embedder="builtin")
    return v


def card(
    cid: str, keys: list[str], version: str = "1.0.0", dsl: str = "(x grid)", **extra: Any
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "schema_version": 1,
        "id": cid,
        "version": version,
        "domain": "grid_2d",
        "signature": {"keys": keys},
        "template": {"template_dsl": dsl},
    }
    c.update(extra)
    return c


def example_cards() -> list[tuple[Any, str]]:
    lines = (EXAMPLES / "cards.jsonl").read_text().splitlines()
    return [(json.loads(line), f"cards.jsonl:{i}") for i, line in enumerate(lines, 1)]


def example_evidence() -> list[tuple[Any, str]]:
    lines = (EXAMPLES / "evidence.jsonl").read_text().splitlines()
    return [(json.loads(line), f"evidence.jsonl:{i}") for i, line in enumerate(lines, 1)]


@pytest.fixture
def example_vault(vault: Vault) -> Vault:
    vault.add(example_cards())
    vault.add_evidence(example_evidence())
    return vault


@pytest.fixture
def example_builtin_vault(builtin_vault: Vault) -> Vault:
    """The example cards and evidence in a built-in-embedder vault (the drift tests change
    the running built-in embedder's identity)."""
    builtin_vault.add(example_cards())
    builtin_vault.add_evidence(example_evidence())
    return builtin_vault
