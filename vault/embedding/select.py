"""Which embedder: the built-in one or a fitted weights object, behind one interface.

The built-in embedder (``vault.embedding.embedder``) is fixed code. A fitted one
(``vault.embedding.fitted``) is a weights object stored in ``objects/`` like any other
object: its address, the sha256 of its bytes, is its ``weights_hash``. A vault's embedder
is a *choice* — ``"builtin"`` or a weights digest — made by the audited ``embedder``
operation and folded into the index state (``vault.index.state``), so a generation names
the embedder it was built with and a rollback takes the embedder back with it.

``for_generation`` gives the embedder a generation needs, or raises ``EmbeddingError``
("embedder drift: ...") when this tool cannot run it bit for bit: another built-in
version, a missing or damaged weights object, weights of another fitted-embedder version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from vault.embedding import embedder
from vault.errors import EmbeddingError, VaultError
from vault.grid.pairs import PairFacts
from vault.store.objects import ObjectStore, is_digest

if TYPE_CHECKING:  # the fitted model (numpy-heavy) loads only with a fitted embedder
    from vault.embedding.fitted import FittedWeights

BUILTIN = "builtin"  # the choice naming the built-in embedder
SHIPPED = "shipped"  # the name of the package's default weights (stored as their digest)


class Embedder(Protocol):
    """What vectors are computed with (64 int8 each, one shared space)."""

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

    def combine(
        self,
        appearance: Sequence[Sequence[int]],
        transform: Sequence[Sequence[int]],
        keys: Iterable[str],
    ) -> list[int]: ...


class BuiltinEmbedder:
    """The module ``vault.embedding.embedder`` (its constants read at call time)."""

    choice = BUILTIN

    @property
    def version(self) -> str:
        return embedder.VERSION

    @property
    def weights_hash(self) -> str:
        return embedder.WEIGHTS_HASH

    def identity(self) -> dict[str, Any]:
        return embedder.identity()

    def repr_vector(self, rep: dict[str, Any]) -> list[int]:
        return embedder.repr_vector(rep)

    def pair_vector(
        self, in_rep: dict[str, Any], out_rep: dict[str, Any], facts: PairFacts
    ) -> list[int]:
        return embedder.pair_vector(in_rep, facts)  # (the built-in one reads the facts only)

    def combine(
        self,
        appearance: Sequence[Sequence[int]],
        transform: Sequence[Sequence[int]],
        keys: Iterable[str],
    ) -> list[int]:
        return embedder.combine(appearance, transform, keys)


class FittedEmbedder:
    """A fitted weights object (``FittedWeights``)."""

    def __init__(self, weights: FittedWeights):
        self.version = weights.version
        self.weights = weights
        self.weights_hash = weights.weights_hash
        self.choice = self.weights_hash
        self._identity = weights.identity()

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def repr_vector(self, rep: dict[str, Any]) -> list[int]:
        return self.weights.embed_repr(rep)

    def pair_vector(
        self, in_rep: dict[str, Any], out_rep: dict[str, Any], facts: PairFacts
    ) -> list[int]:
        return self.weights.embed_pair(in_rep, out_rep, facts)

    def combine(
        self,
        appearance: Sequence[Sequence[int]],
        transform: Sequence[Sequence[int]],
        keys: Iterable[str],
    ) -> list[int]:
        return self.weights.combine(appearance, transform, keys)


_BUILTIN = BuiltinEmbedder()


def builtin() -> BuiltinEmbedder:
    return _BUILTIN


def fitted_embedder(weights: FittedWeights) -> FittedEmbedder:
    return FittedEmbedder(weights)


def load_weights(objects: ObjectStore, digest: str) -> FittedWeights:
    """The weights object ``digest``, checked against its address; ``EmbeddingError`` if it
    is missing, damaged or of another fitted-embedder version."""
    try:
        data = objects.get(digest, check=True)
    except VaultError as exc:
        raise EmbeddingError(f"weights {digest[:12]}: {exc}") from None
    from vault.embedding.fitted import FittedWeights

    try:
        return FittedWeights.from_bytes(data)
    except ValueError as exc:
        raise EmbeddingError(f"weights {digest[:12]}: {exc}") from None


def resolve(objects: ObjectStore, choice: str) -> Embedder:
    """The embedder a choice names (``"builtin"`` or a weights digest); ``EmbeddingError``
    ("embedder drift: ...") if this tool cannot run it."""
    if choice == BUILTIN:
        return _BUILTIN
    if not is_digest(choice):
        raise EmbeddingError(f"embedder drift: {choice!r} is neither builtin nor a digest")
    try:
        return FittedEmbedder(load_weights(objects, choice))
    except EmbeddingError as exc:
        raise EmbeddingError(f"embedder drift: {exc}") from None


def manifest_choice(manifest: Mapping[str, Any]) -> str:
    """The choice a generation manifest records (``weights``: present for a fitted one)."""
    weights = manifest.get("weights")
    return weights if isinstance(weights, str) else BUILTIN


def for_generation(objects: ObjectStore, manifest: Mapping[str, Any]) -> Embedder:
    """The embedder that built the generation of ``manifest``, if this tool runs it."""
    emb = resolve(objects, manifest_choice(manifest))
    if manifest.get("embedder_id") != emb.identity():  # built by another version of the tool
        raise EmbeddingError("embedder drift: run `vault index build`")
    return emb
