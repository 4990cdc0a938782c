"""``Vault``: the facade — the bottom handle (``vault.handle.Handle``: paths, format, lock,
config, audit log, snapshot) with one method per operation. Each method is one call into
an operation module (``vault.ops``, retrieval); nothing below imports this module (see
ARCHITECTURE.md)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from vault.config import Config
from vault.errors import StorageError
from vault.handle import (
    CHANGE_OPS,
    FORMAT_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    Clock,
    Handle,
    find_vault,
    fixed_clock,
    format_bytes,
    read_format,
    utc_now,
)
from vault.like import Neighbours, neighbours
from vault.ops import arc_import, create, embed, embedder, gc, write
from vault.ops import build as build_op
from vault.ops import rollback as rollback_op
from vault.ops import verify as verify_op
from vault.retrieval import RetrievalResult, retrieve
from vault.retriever import Retriever

__all__ = [
    "CHANGE_OPS",
    "FORMAT_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Clock",
    "Vault",
    "find_vault",
    "fixed_clock",
    "format_bytes",
    "read_format",
    "utc_now",
]


P = ParamSpec("P")
R = TypeVar("R")


def _contract(fn: Callable[P, R]) -> Callable[P, R]:
    """The error contract at the facade: an ``OSError`` an operation did not turn into a
    ``VaultError`` leaves as a ``StorageError`` (also an ``OSError``) naming its path."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            raise StorageError.of(exc) from None

    return call


class Vault(Handle):
    """A vault directory. Use ``Vault.open`` or ``Vault.init``.

    ``readonly`` vaults never write a byte (``vault verify`` opens them so): no objects, no
    cache entries, no lock file."""

    # ----------------------------------------------------------------- create
    @classmethod
    @_contract
    def init(
        cls, root: Path | str, *, clock: Clock | None = None, embedder: str = "shipped"
    ) -> tuple[Vault, bool]:
        """Create a vault (or open the existing one); returns (vault, created). See
        ``vault.ops.create.init``."""
        handle, created = create.init(root, clock=clock, embedder=embedder)
        return cls(handle.root, clock=clock), created

    @classmethod
    @_contract
    def upgrade(cls, root: Path | str, *, clock: Clock | None = None) -> tuple[int, int]:
        """Bring an older vault to this tool's format (``vault.ops.create.upgrade``)."""
        return create.upgrade(root, clock=clock)

    @_contract
    def set_mode(self, mode: str | None) -> None:
        """The kill switch (``Handle.set_mode``)."""
        super().set_mode(mode)

    # -------------------------------------------------- one call into an operation each
    # (the operation's own signature and docstring; ``self`` is its handle argument)
    add = _contract(write.add)
    add_evidence = _contract(write.add_evidence)
    write_back = _contract(write.write_back)
    set_status = _contract(write.set_status)
    import_tasks = _contract(arc_import.import_tasks)
    build_index = _contract(build_op.build_index)
    index_status = _contract(rollback_op.index_status)
    rollback = _contract(rollback_op.rollback)
    verify = _contract(verify_op.verify)
    fit_embedder = _contract(embedder.fit_embedder)
    use_embedder = _contract(embedder.use_embedder)
    embedder_status = _contract(embedder.embedder_status)

    @_contract
    def gc(
        self, keep: int | None = None, *, cache: bool = False, dry_run: bool = False
    ) -> gc.GcResult:
        """``vault.ops.gc.gc``, keeping the latest fit's weights (``embedder.fit_roots``)."""
        return gc.gc(self, keep, cache=cache, dry_run=dry_run, roots=embedder.fit_roots)

    @_contract
    def embed(self, records: Iterable[tuple[Any, str]]) -> list[dict[str, Any]]:
        """Vectors for reprs, grids, queries and ARC tasks (``vault.ops.embed``)."""
        return list(embed.embed_records(self, records))

    # ----------------------------------------------------------------- retrieval
    @_contract
    def retrieve(
        self, query: Any, config: Config | None = None, mode: str | None = None
    ) -> RetrievalResult:
        """Rank the current snapshot's concepts for ``query`` (``vault.retrieval.retrieve``)."""
        return retrieve(self, query, config or self.config(), mode)

    @_contract
    def neighbours(
        self, concept: str, version: str | None = None, config: Config | None = None
    ) -> Neighbours:
        """The stored concepts nearest ``concept`` (``vault.like``)."""
        return neighbours(self, concept, version, config or self.config())

    @_contract
    def retriever(
        self, *, config: Config | None = None, refresh_every: int | None = None
    ) -> Retriever:
        """A handle for a solver's loop: the current snapshot, opened once (see
        ``vault.retriever``)."""
        return Retriever(self, config=config, refresh_every=refresh_every)
