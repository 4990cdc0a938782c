"""The embedding space: the embedder, exact similarity, concept vectors and the cache.

One name per thing: ``builtin`` is the built-in embedder (fixed constants), ``fitted/`` the
fitted one (``raw`` layout, ``weights``, ``fit``, training ``items``), ``features`` the
raw feature values both read from a grid or a pair (by name, with the quantisation rules
they share), ``relations`` the fitted one's structure groups, ``select`` which embedder a
vault or a generation uses, ``vectors`` the vectors of reprs, pairs, queries and
concepts through the cache. Both embedders are an ``Embedder`` (below): ``DIM`` int8 values
in one shared space.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vault.grid.pairs import PairFacts

DIM = 64  # the dims of every vector, whichever embedder made it
Vectors = Sequence[Sequence[int]]  # item vectors (``DIM`` int8 each) to combine
Item = tuple[dict[str, Any], dict[str, Any], "PairFacts"]  # a pair: input, output, facts


class Embedder(Protocol):
    """What vectors are computed with (``DIM`` int8 each, one shared space)."""

    @property
    def choice(self) -> str:
        """``"builtin"`` or the weights object's digest (what the audit log records)."""

    @property
    def version(self) -> str: ...

    @property
    def weights_hash(self) -> str: ...

    def identity(self) -> dict[str, Any]:
        """The content of ``embedder.json``."""

    def repr_vector(self, rep: dict[str, Any]) -> list[int]: ...

    def pair_vector(
        self, in_rep: dict[str, Any], out_rep: dict[str, Any], facts: PairFacts
    ) -> list[int]: ...

    def item_vectors(
        self, reprs: Sequence[dict[str, Any]], pairs: Sequence[Item]
    ) -> list[list[int]]:
        """``repr_vector`` of each of ``reprs``, then ``pair_vector`` of each of ``pairs``
        (input, output, facts), computed together where the embedder can (one pass)."""

    def combine(self, appearance: Vectors, transform: Vectors, keys: Iterable[str]) -> list[int]:
        """One vector from item vectors: the appearance blocks summed over ``appearance``
        (every item), the transformation blocks over ``transform`` (the pairs), each
        requantised from exact integer sums, plus the keys block of ``keys``."""
