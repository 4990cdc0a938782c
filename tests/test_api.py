"""The public API: ``vault.__all__`` is pinned, every name resolves, importing is cheap."""

from __future__ import annotations

import subprocess
import sys

import vault

PUBLIC = [
    "BuildResult",
    "CommittedError",
    "Concept",
    "Config",
    "ConfigError",
    "ConflictError",
    "CorruptionError",
    "EmbeddingError",
    "FormatError",
    "GenerationGoneError",
    "Hit",
    "InputError",
    "InvalidInputError",
    "LockError",
    "MissingExtraError",
    "NotAVaultError",
    "NotFoundError",
    "Query",
    "RetrievalResult",
    "Retriever",
    "StorageError",
    "Transaction",
    "UsageError",
    "Vault",
    "VaultError",
    "VaultStateError",
    "WriteResult",
    "__version__",
    "grid_to_repr",
    "normalize_query",
    "repr_id",
    "retrieve",
    "task_query",
]


def test_all_is_pinned_and_resolves() -> None:
    assert vault.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(vault, name) is not None


def test_error_tree() -> None:
    assert issubclass(vault.InvalidInputError, vault.InputError)
    assert issubclass(vault.CorruptionError, vault.VaultStateError)
    for name in PUBLIC:
        obj = getattr(vault, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, vault.VaultError)
    assert vault.UsageError.exit_code == 2 and vault.CorruptionError.exit_code == 1


def test_import_vault_loads_no_numpy() -> None:
    code = "import sys, vault; print('numpy' in sys.modules, 'vault.vault' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
