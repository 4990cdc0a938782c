"""vault: a content-addressed concept vault with symbolic and hybrid retrieval.

Open or create a vault with ``Vault.open`` / ``Vault.init``, write back concept cards
and evidence, and ask ``retrieve`` which concepts to try on a new task.

Importing ``vault`` is cheap: the names below are loaded on first use (numpy and the
embedder only when something needs them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vault.errors import (
    CommittedError,
    ConfigError,
    ConflictError,
    CorruptionError,
    EmbeddingError,
    FormatError,
    GenerationGoneError,
    InputError,
    InvalidInputError,
    LockError,
    MissingExtraError,
    NotAVaultError,
    NotFoundError,
    StorageError,
    UsageError,
    VaultError,
    VaultStateError,
)

if TYPE_CHECKING:
    from vault.catalog import Concept
    from vault.config import Config
    from vault.grid.reprs import grid_to_repr, repr_id
    from vault.index.build import BuildResult
    from vault.ops.write import Transaction, WriteResult
    from vault.records.query import Query, normalize_query, task_query
    from vault.retrieval import Hit, RetrievalResult, retrieve
    from vault.retriever import Retriever
    from vault.vault import Vault

__version__ = "0.2.0"

_LAZY = {
    "BuildResult": "vault.index.build",
    "Concept": "vault.catalog",
    "Config": "vault.config",
    "Hit": "vault.retrieval",
    "Query": "vault.records.query",
    "RetrievalResult": "vault.retrieval",
    "Retriever": "vault.retriever",
    "Transaction": "vault.ops.write",
    "Vault": "vault.vault",
    "WriteResult": "vault.ops.write",
    "grid_to_repr": "vault.grid.reprs",
    "normalize_query": "vault.records.query",
    "repr_id": "vault.grid.reprs",
    "retrieve": "vault.retrieval",
    "task_query": "vault.records.query",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vault' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
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
