"""An independent reference ranking, written from FORMAT.md's rules alone.

It reads a vault's current generation by hand (``store``: §2–§7, §11) and ranks its
concepts (``rank``: §5 keys, §9 similarities, §10 order) with plain Python ints and floats
— no numpy, nothing imported from ``vault``. What it takes from the library is only the
*query*: its keys (§5's inference from grids and pairs) and its vector (§9's embedder,
built-in or fitted), since the key inference and the embedder are checked by their own
tests (tests/test_records.py, tests/test_embeddings.py, tests/golden, tests/test_fitted.py).
The differential tests (tests/test_reference.py) compare every field of every hit of
every entry point with it.
"""

from .rank import RefConfig, like, rank
from .store import RefVault, read_vault

__all__ = ["RefConfig", "RefVault", "like", "rank", "read_vault"]
