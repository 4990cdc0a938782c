"""``Vault``: the facade — the bottom handle (``vault.handle.Handle``: paths, format, lock,
config, audit log, snapshot) with one method per operation. Each method is one call into
an operation module (``vault.ops``, retrieval); nothing below imports this module (see
ARCHITECTURE.md)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from vault import catalog
from vault.config import Config, load_retention
from vault.errors import CommittedError, StorageError, VaultError
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
from vault.ops import arc_import, create, embed, embedder, gc, rollback, transfer, verify, write
from vault.ops.build import build_index
from vault.records.keys import NONE_DECLARED
from vault.retrieval import RetrievalResult, retrieve
from vault.retriever import Retriever, as_query

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


def sourced(items: Iterable[Any], what: str) -> Iterator[tuple[Any, str]]:
    """``(item, source)`` pairs from plain items (named ``<what> N``) or from pairs."""
    for i, item in enumerate(items, 1):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            yield item
        else:
            yield item, f"{what} {i}"


class Vault(Handle):
    """A vault directory. Use ``Vault.open`` or ``Vault.init``.

    ``readonly`` vaults never write a byte (``vault verify`` opens them so): no objects, no
    cache entries, no lock file."""

    # ----------------------------------------------------------------- create
    #: True when ``Vault.init`` made this vault (False when it opened an existing one)
    created: bool = False

    @classmethod
    @_contract
    def init(
        cls, root: Path | str, *, clock: Clock | None = None, embedder: str = "shipped"
    ) -> Vault:
        """Create a vault at ``root`` (or open the one already there: ``vault.created``
        tells which). ``embedder``: ``"shipped"`` (the fitted default) or ``"builtin"``. See
        ``vault.ops.create.init``."""
        handle, created = create.init(root, clock=clock, embedder=embedder)
        made = cls(handle.root, clock=clock)
        made.created = created
        return made

    @classmethod
    @_contract
    def open(cls, root: Path | str, *, clock: Clock | None = None, readonly: bool = False) -> Vault:
        """Open the vault at ``root``: ``NotAVaultError`` when there is none, ``FormatError``
        when it needs ``vault upgrade``. ``readonly`` never writes a byte. ``clock`` gives
        the audit log's times (``fixed_clock(epoch)`` for reproducible vaults)."""
        return super().open(root, clock=clock, readonly=readonly)

    @classmethod
    @_contract
    def upgrade(cls, root: Path | str, *, clock: Clock | None = None) -> tuple[int, int]:
        """Bring an older vault to this tool's format (``vault.ops.create.upgrade``)."""
        return create.upgrade(root, clock=clock)

    @_contract
    def set_mode(self, mode: str | None) -> None:
        """The kill switch: make ``mode`` (``symbolic | hybrid | soft``) the retrieval
        default whatever config.toml says; ``None`` goes back to config.toml. Audited."""
        super().set_mode(mode)

    # ----------------------------------------------------------------- write-back
    def _retain(self, result: write.WriteResult) -> write.WriteResult:
        """After an acknowledged write-back: the ``[gc]`` retention policy of config.toml."""
        if result.audit_seq is None:
            return result  # nothing was written
        try:
            gc.retain(self, load_retention(self.config_path), roots=embedder.fit_roots)
        except (VaultError, OSError) as exc:
            raise CommittedError.after(
                result.op,
                result.audit_seq,
                "the [gc] retention policy of config.toml could not run",
                exc,
                "`vault verify` tells more — do not redo the write",
            ) from None
        return result

    @_contract
    def add(self, cards: Iterable[Any], *, fork: bool = False) -> write.WriteResult:
        """Store concept cards — dicts in the form ``vault add`` reads (or ``(card, source)``
        pairs, ``source`` naming it in errors) — as one write-back; all are checked before
        any write. An id+version already stored with the same content is left as is; with
        different content it is refused. ``fork`` stores each card as the next minor
        version of its id (content equal to the newest version's makes none)."""
        return self._retain(write.add(self, sourced(cards, "card"), fork=fork))

    @_contract
    def add_evidence(self, items: Iterable[Any]) -> write.WriteResult:
        """Store evidence records (dicts as ``vault evidence add`` reads, or ``(record,
        source)`` pairs) about stored concept versions, as one write-back."""
        return self._retain(write.add_evidence(self, sourced(items, "evidence")))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[write.Transaction]:
        """Gather cards, evidence and status changes into one write-back::

            with vault.transaction() as t:
                t.add(card)
                t.add_evidence({"concept": "c", "version": "1.0.0", "polarity": "positive", ...})
                t.set_status("old", "1.0.0", "deprecated")
            t.result  # the WriteResult: one audit entry, one generation

        Each item is checked as it is added; all of them again, against the vault, when the
        block ends. An exception inside the block writes nothing."""
        t = write.Transaction(self)
        yield t
        try:
            self._retain(t.commit())
        except OSError as exc:
            raise StorageError.of(exc) from None

    # One write-back of ``(record, source)`` items, without the retention policy (a
    # low-level call: the remote's re-application and the study use it).
    write_back = _contract(write.write_back)

    @_contract
    def set_status(
        self, concept: str, version: str, status: str, reason: str | None = None
    ) -> write.WriteResult:
        """Set a concept version's status (``active | deprecated | suppressed``) by appending
        a status event; the card never changes. Setting the status it has changes nothing."""
        return self._retain(write.set_status(self, concept, version, status, reason))

    @_contract
    def import_tasks(
        self,
        tasks: Iterable[Any],
        *,
        holdout_last: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> write.WriteResult:
        """One concept per ARC task — ``(task id, task dict, source)`` items, as
        ``vault.arc.read_task_files`` gives them — in one write-back (``vault.ops.arc_import``)."""
        return self._retain(
            arc_import.import_tasks(self, tasks, holdout_last=holdout_last, progress=progress)
        )

    @_contract
    def import_records(self, records: Iterable[Any]) -> write.WriteResult:
        """Store the records of an export (``export``, ``vault export``) — cards, evidence,
        status events and reprs, dicts with ``kind`` (or ``(record, source)`` pairs) — as
        one write-back (audit op ``import``). Records already held are left as they are."""
        return self._retain(transfer.import_records(self, sourced(records, "record")))

    # ----------------------------------------------------------------- reading
    def concepts(
        self,
        *,
        all_versions: bool = False,
        status: str | None = None,
        key: str | Sequence[str] | None = None,
        domain: str | None = None,
        has_evidence: bool | None = None,
    ) -> Iterator[catalog.Concept]:
        """The stored concepts of the current snapshot, in (id, version) order: the newest
        version of each id unless ``all_versions``; filtered by ``status``, a ``key`` they
        hold (several: every one), ``domain`` and whether they have evidence. Each is a
        ``Concept`` (fields: id, version, status, domain, keys, positive, negative, penalty,
        utility; ``card`` and ``template`` read on use). A ``key`` not of a card's key
        form, or naming a transform or invariant neither known nor declared in
        config.toml, is a ``UsageError``."""
        snap = self.snapshot()
        return catalog.concepts(
            snap,
            snap.record,
            all_versions=all_versions,
            status=status,
            key=key,
            domain=domain,
            has_evidence=has_evidence,
            declared=self.declared() if key is not None else NONE_DECLARED,
        )

    def concept(self, concept: str, version: str | None = None) -> catalog.Concept:
        """One stored concept version (``concept`` may be ``id@version``; default: the
        newest); ``NotFoundError`` when there is none."""
        snap = self.snapshot()
        return catalog.concept(snap, concept, version, snap.record)

    def export(self, *, since: int | None = None) -> Iterator[dict[str, Any]]:
        """The records of the current snapshot as ``vault export`` writes them, one dict per
        line (``vault.catalog``); ``since``: only those of audit entries after that seq."""
        snap = self.snapshot()
        entries = [e for e in self.audit.entries() if e.seq <= snap.audit_seq]
        return catalog.export_records(snap, entries, snap.record, since)

    # ----------------------------------------------------------------- index
    @_contract
    def build_index(self, progress: Progress | None = None) -> BuildResult:
        """``vault index build``: the whole index from the audit log, as a new generation."""
        return build_index(self, progress)

    @_contract
    def index_status(self) -> rollback.IndexStatus:
        """The current generation, its record, whether it is stale, the audit position."""
        return rollback.index_status(self)

    @_contract
    def rollback(self, to: str | None = None, *, dry_run: bool = False) -> rollback.RollbackResult:
        """Make the current record's parent (or record ``to``: a number or a generation id
        prefix) current again, in O(1); audited, and undone by rolling back ``to`` a later
        record. ``dry_run``: the plan, computed as the rollback computes it, nothing written
        (``vault.ops.rollback.rollback``)."""
        return rollback.rollback(self, to, dry_run=dry_run)

    @_contract
    def gc(
        self,
        keep: int | None = None,
        *,
        cache: bool = False,
        dry_run: bool = False,
        keep_days: float = 0.0,
    ) -> gc.GcResult:
        """Drop old generation records (all but the ``keep`` newest and, with ``keep_days``,
        those younger than that) and every object no kept one reaches; ``cache`` drops the
        cache files ``verify`` reports. ``dry_run`` deletes nothing. Audited."""
        return gc.gc(
            self, keep, cache=cache, dry_run=dry_run, roots=embedder.fit_roots, keep_days=keep_days
        )

    @_contract
    def verify(self, *, sample: int | None = None) -> verify.VerifyReport:
        """Check every object against its address, the audit log, the index (rebuilt and
        compared), the view and the cache; changes nothing. ``sample`` checks that many
        cache entries only."""
        return verify.verify(self, sample=sample)

    # ----------------------------------------------------------------- embedder
    @_contract
    def fit_embedder(self, tasks: Any = (), **options: Any) -> embedder.FitResult:
        """Fit a weights object (``vault.ops.embedder.fit_embedder``)."""
        return embedder.fit_embedder(self, tasks, **options)

    @_contract
    def use_embedder(self, which: str) -> write.WriteResult:
        """Make ``which`` (``builtin``, ``shipped``, ``fitted`` or a weights digest) the
        embedder: one audited write-back re-embedding every concept (rollback undoes it)."""
        return self._retain(embedder.use_embedder(self, which))

    @_contract
    def embedder_status(self) -> embedder.EmbedderStatus:
        """The embedder in effect, the latest fit, and whether a re-fit is suggested."""
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
        """Rank the current snapshot's concepts for ``query`` — an ARC task, a grid, a repr,
        a query record or a ``Query`` (``vault.retrieval.retrieve``); for many queries use
        ``retriever()``, which opens the snapshot once."""
        q = as_query(query, declared=self.declared())
        return retrieve(self, q, config or self.config(), mode)

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
