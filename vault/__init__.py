"""vault: a content-addressed concept vault with symbolic and hybrid retrieval.

Open or create a vault with ``Vault.open`` / ``Vault.init``, write back concept cards
and evidence, and ask ``retrieve`` which concepts to try on a new task.
"""

from vault.config import Config
from vault.errors import VaultError
from vault.grid.reprs import grid_to_repr, repr_id
from vault.index.build import BuildResult
from vault.records.query import Query, normalize_query, task_query
from vault.retrieve import Hit, RetrievalResult, retrieve
from vault.vault import Vault
from vault.writeback import WriteResult

__version__ = "0.1.0"

__all__ = [
    "BuildResult",
    "Config",
    "Hit",
    "Query",
    "RetrievalResult",
    "Vault",
    "VaultError",
    "WriteResult",
    "__version__",
    "grid_to_repr",
    "normalize_query",
    "repr_id",
    "retrieve",
    "task_query",
]
