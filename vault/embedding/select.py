"""Which embedder: the built-in one or a fitted weights object, behind one interface.

The built-in embedder (``vault.embedding.builtin``) is fixed code. A fitted one
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

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vault.embedding import Embedder, Item, builtin
from vault.errors import EmbeddingError, VaultError
from vault.store.objects import ObjectStore, is_digest

if TYPE_CHECKING:  # the fitted model (numpy-heavy) loads only with a fitted embedder
    from vault.embedding.fitted import FittedWeights

SHIPPED = "shipped"  # the name of the package's default weights (stored as their digest)


class FittedEmbedder:
    """A fitted weights object (``FittedWeights``) as an ``Embedder``."""

    def __init__(self, weights: FittedWeights):
        self.version = weights.version
        self.weights = weights
        self.weights_hash = weights.weights_hash
        self.choice = self.weights_hash
        self._identity = weights.identity()
        self.repr_vector = weights.embed_repr
        self.pair_vector = weights.embed_pair
        self.combine = weights.combine

    def item_vectors(
        self, reprs: Sequence[dict[str, Any]], pairs: Sequence[Item]
    ) -> list[list[int]]:
        return self.weights.embed_items(reprs, pairs)

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)


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
    if choice == builtin.BUILTIN:
        return builtin.EMBEDDER
    if not is_digest(choice):
        raise EmbeddingError(f"embedder drift: {choice!r} is neither builtin nor a digest")
    try:
        return FittedEmbedder(load_weights(objects, choice))
    except EmbeddingError as exc:
        raise EmbeddingError(f"embedder drift: {exc}") from None


def manifest_choice(manifest: Mapping[str, Any]) -> str:
    """The choice a generation manifest records (``weights``: present for a fitted one)."""
    weights = manifest.get("weights")
    return weights if isinstance(weights, str) else builtin.BUILTIN


def for_generation(objects: ObjectStore, manifest: Mapping[str, Any]) -> Embedder:
    """The embedder that built the generation of ``manifest``, if this tool runs it."""
    emb = resolve(objects, manifest_choice(manifest))
    if manifest.get("embedder_id") != emb.identity():  # built by another version of the tool
        raise EmbeddingError("embedder drift: run `vault index build`")
    return emb
