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
from vault.index.build import BuildResult, Progress
from vault.like import Neighbours, neighbours
from vault.ops import arc_import, create, embed, embedder, gc, rollback, verify, write
from vault.ops.build import build_index
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

    # ----------------------------------------------------------------- write-back
    @_contract
    def add(self, cards: Iterable[tuple[Any, str]], *, fork: bool = False) -> write.WriteResult:
        """Store concept cards (``(object, source)`` pairs); all are checked before any write.

        An id+version already stored with the same content is left as is; with different
        content it is refused. ``fork`` stores each card as the next minor version of its id.
        """
        return write.add(self, cards, fork=fork)

    @_contract
    def add_evidence(self, items: Iterable[tuple[Any, str]]) -> write.WriteResult:
        """Store evidence records (positive or negative) about stored concept versions."""
        return write.add_evidence(self, items)

    @_contract
    def write_back(
        self,
        cards: Iterable[tuple[Any, str]] = (),
        evidence: Iterable[tuple[Any, str]] = (),
        *,
        fork: bool = False,
        op: str = "add",
        detail: dict[str, Any] | None = None,
        reprs: Iterable[dict[str, Any]] = (),
    ) -> write.WriteResult:
        """One write-back (see ``vault.ops.write.write_back``)."""
        return write.write_back(self, cards, evidence, fork=fork, op=op, detail=detail, reprs=reprs)

    @_contract
    def set_status(
        self, concept: str, version: str, status: str, reason: str | None = None
    ) -> write.WriteResult:
        return write.set_status(self, concept, version, status, reason)

    @_contract
    def import_tasks(
        self, tasks: Iterable[Any], *, holdout_last: bool = False
    ) -> write.WriteResult:
        """One concept per ARC task (``vault.ops.arc_import``)."""
        return arc_import.import_tasks(self, tasks, holdout_last=holdout_last)

    # ----------------------------------------------------------------- index
    @_contract
    def build_index(self, progress: Progress | None = None) -> BuildResult:
        """``vault index build``: the whole index from the audit log, as a new generation."""
        return build_index(self, progress)

    @_contract
    def index_status(self) -> rollback.IndexStatus:
        return rollback.index_status(self)

    @_contract
    def rollback(self, to: str | None = None, *, dry_run: bool = False) -> rollback.RollbackResult:
        """Make the previous (or ``to``) generation current; ``dry_run``: the plan only
        (``vault.ops.rollback.rollback``)."""
        return rollback.rollback(self, to, dry_run=dry_run)

    @_contract
    def gc(
        self, keep: int | None = None, *, cache: bool = False, dry_run: bool = False
    ) -> gc.GcResult:
        return gc.gc(self, keep, cache=cache, dry_run=dry_run, roots=embedder.fit_roots)

    @_contract
    def verify(self, *, sample: int | None = None) -> verify.VerifyReport:
        return verify.verify(self, sample=sample)

    # ----------------------------------------------------------------- embedder
    @_contract
    def fit_embedder(self, tasks: Any = (), **options: Any) -> embedder.FitResult:
        """Fit a weights object (``vault.ops.embedder.fit_embedder``)."""
        return embedder.fit_embedder(self, tasks, **options)

    @_contract
    def use_embedder(self, which: str) -> write.WriteResult:
        return embedder.use_embedder(self, which)

    @_contract
    def embedder_status(self) -> embedder.EmbedderStatus:
        return embedder.embedder_status(self)

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
