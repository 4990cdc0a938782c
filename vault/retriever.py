"""The solver-loop API: open the current snapshot once, ask it many questions.

    from vault import Vault

    with Vault.open("my-vault").retriever(refresh_every=100) as r:
        for task in tasks:                       # ARC task dicts, Query objects, reprs, grids
            result = r.retrieve(task, mode="hybrid", k=10)
            try_concepts([hit.id for hit in result.results])
        r.refresh()                              # pick up concepts written back meanwhile

A ``Retriever`` reads one immutable generation (see ``vault.index.snapshot``): a
write-back by this or another process never changes what an open retriever sees until it
refreshes — on ``refresh()`` or every ``refresh_every`` calls. ``vault gc`` does not
change that either: what retrieval reads of the generation is held open from the moment
the retriever opens it (``vault.index.snapshot``), so it keeps answering from it after gc
removed it from the vault. Should a read ever find its generation collected
(``GenerationGoneError``), the retriever says so (a ``GenerationGoneWarning``), refreshes to
the current generation and answers from that — never a silent fallback. A generation
built by another embedder is not an error: hybrid and soft requests fall back to symbolic
and say "embedder drift" in ``fallback_reason``. ``batch`` answers JSON-lines requests,
one result (or one error) per request. The cache entries of the grids and pairs it is asked
about are collected and written as one pack when it closes or refreshes (``flush``; at the
latest when the process exits), not one file per item.
"""

from __future__ import annotations

import contextlib
import os
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from vault.config import MODES, Config
from vault.errors import GenerationGoneError, InvalidInputError, UsageError, VaultError, json_value
from vault.index.snapshot import Snapshot
from vault.like import neighbours_in
from vault.records.keys import NONE_DECLARED, Declared
from vault.records.query import Query, query_from
from vault.retrieval import RetrievalResult, bound, retrieve_in

if TYPE_CHECKING:
    from vault.handle import Handle

REQUEST_KINDS = ("task", "repr", "query")


class GenerationGoneWarning(UserWarning):
    """A retriever's generation was collected by ``vault gc``; it refreshed to the current
    one and answered from that."""


def as_query(
    value: Any,
    source: str | None = None,
    test_index: int = 0,
    declared: Declared = NONE_DECLARED,
) -> Query:
    """A ``Query`` from what a solver holds: a Query, an ARC task, a repr, a query record or
    a grid (list of rows)."""
    if isinstance(value, Query):
        return value
    if isinstance(value, list):
        return query_from("repr", value, source)
    if isinstance(value, dict):
        if "train" in value and "kind" not in value:
            return query_from("task", value, source, test_index)
        if value.get("kind") == "repr" or "globals" in value:
            return query_from("repr", value, source)
        return query_from("query", value, source, declared=declared)
    raise InvalidInputError(
        f"expected a task, a repr, a query or a grid, got {json_value(value)}", source=source
    )


class Retriever:
    """Many queries against one snapshot of a vault (see the module docstring)."""

    def __init__(
        self,
        vault: Handle,
        *,
        config: Config | None = None,
        refresh_every: int | None = None,
    ):
        if refresh_every is not None and refresh_every < 1:
            raise UsageError("refresh_every must be at least 1")
        self.vault = vault
        self.config = config or vault.config()
        self.declared = vault.declared()
        self.refresh_every = refresh_every
        self._calls = 0
        self._snapshot: Snapshot | None = vault.snapshot()
        #: generations this retriever found collected by gc (and refreshed from), in order
        self.gone: list[str] = []
        # The cache entries of its queries' items, collected (bounded in bytes) and written
        # as one pack, not one file per item: see ``_collect``.
        self._collecting: weakref.finalize[[], Retriever] | None = None

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write the cache entries collected, drop the snapshot (its held files are
        released); later calls are refused."""
        self.flush()
        self._snapshot = None

    def flush(self) -> None:
        """Write the cache entries of the items asked about so far as one pack (derived data:
        not fsynced). A retriever also writes them when it closes or refreshes, when it has
        collected ``vault.embedding.cache.PENDING_BYTES`` of them, and at the process's
        exit."""
        if self._collecting is not None:
            self._collecting()  # (runs once: closes the cache's bulk, which writes)
            self._collecting = None

    def _collect(self) -> None:
        """From now until ``flush``, the cache entries retrieval computes are collected by
        the cache of the snapshot's embedder (``bulk``) instead of written one file each:
        a query's items (its grids and pairs) cost an atomic file write apiece otherwise,
        about a sixth of answering a new task."""
        if self._collecting is None:
            bulk = contextlib.ExitStack()
            bulk.enter_context(self.batch_cache().bulk())
            self._collecting = weakref.finalize(self, bulk.close)

    @property
    def snapshot(self) -> Snapshot:
        """The generation this retriever answers from (until it refreshes)."""
        if self._snapshot is None:
            raise UsageError("this retriever is closed")
        return self._snapshot

    @property
    def generation(self) -> str:
        """The id of the generation this retriever answers from."""
        return self.snapshot.generation

    def refresh(self) -> bool:
        """Open the vault's current generation; True when it is a newer one."""
        before = self.snapshot.generation
        self.flush()  # (the new generation's embedder may be another: another cache)
        self._snapshot = self.vault.snapshot()
        self._calls = 0
        return self._snapshot.generation != before

    @property
    def stale(self) -> bool:
        """True when acknowledged write-backs are not in the index yet (after a crash)."""
        return self.vault.stale()

    # -------------------------------------------------------------- asking
    def retrieve(
        self,
        query: Any,
        *,
        mode: str | None = None,
        k: int | None = None,
        strategy: str | None = None,
        similarity: str | None = None,
        exclude: Iterable[str] = (),
        test_index: int = 0,
    ) -> RetrievalResult:
        """Rank concepts for ``query`` (a task, Query, repr, query record or grid)."""
        if self.refresh_every is not None and self._calls >= self.refresh_every:
            self.refresh()
        self._calls += 1
        cfg = self.config.with_overrides(k=k, strategy=strategy, similarity=similarity)
        q = as_query(query, test_index=test_index, declared=self.declared)
        return self._answering(
            lambda: retrieve_in(
                self.snapshot, q, cfg, mode, cache=self.vault.cache, exclude=exclude
            )
        )

    def _answering(self, ask: Callable[[], RetrievalResult]) -> RetrievalResult:
        """``ask()`` (which reads ``self.snapshot``), bound to the snapshot it answered
        from. When ``vault gc`` collected this retriever's generation meanwhile: a warning
        (GenerationGoneWarning), a refresh, and ``ask()`` again from the current one."""
        self._collect()
        try:
            return bound(ask(), self.snapshot)
        except GenerationGoneError as exc:
            gone = self.generation
            self.refresh()
            self.gone.append(gone)
            warnings.warn(
                f"{exc}: this retriever refreshed to generation {self.generation[:12]}",
                GenerationGoneWarning,
                stacklevel=3,
            )
        self._collect()
        return bound(ask(), self.snapshot)

    def like(
        self,
        concept: str,
        version: str | None = None,
        *,
        k: int | None = None,
        similarity: str | None = None,
    ) -> RetrievalResult:
        """The stored concepts nearest ``concept`` (``id`` or ``id@version``; default: its
        newest version) in this retriever's snapshot — ``vault retrieve --like``: soft
        ranking with the stored concept as the query, its own id left out."""
        if version is None and "@" in concept:
            concept, version = concept.rsplit("@", 1)
        cfg = self.config.with_overrides(k=k, similarity=similarity)
        return self._answering(lambda: neighbours_in(self.snapshot, concept, version, cfg).result)

    def retrieve_many(self, queries: Iterable[Any], **options: Any) -> list[RetrievalResult]:
        """``retrieve`` for each query, all against the same snapshot."""
        return [self.retrieve(q, **options) for q in queries]

    def batch(
        self, requests: Iterable[tuple[int, Any]], *, workers: int = 1
    ) -> Iterator[dict[str, Any]]:
        """Answer JSON-lines requests: each ``(line number, value)`` with exactly one of
        ``task``, ``repr``, ``query`` and optionally ``k``, ``mode``, ``id``, ``exclude``.
        Yields, in input order, the result as ``retrieve --json`` prints it plus ``line``
        (and ``id`` when given), or ``{"line", "id"?, "error"}`` for a bad request — never
        stopping the run. The vectors of query grids new to the cache are written as one
        pack when the run ends, not one file per request.

        ``workers`` > 1 answers chunks of requests in that many forked worker processes
        (sharing this retriever's snapshot), a few chunks ahead of the output: the same
        results in the same order, up to ``workers`` times sooner on free cores, but each
        answer waits for its chunk (a co-process asking one question at a time wants 1).
        A worker that dies has its chunks answered here instead. Without ``fork`` (or with
        ``refresh_every``, which a batch's workers could not share) it runs in-process."""
        if workers < 1:
            raise UsageError("workers must be at least 1")
        self._collect()
        try:
            if workers == 1 or self.refresh_every is not None or not _can_fork():
                for line, value in requests:
                    yield self._answer(line, value)
            else:
                yield from _parallel(self, requests, workers)
        finally:
            self.flush()

    def batch_cache(self) -> Any:
        """The cache retrieval writes to: the one of the snapshot's embedder (retrieval
        binds the vault's cache to it), or the vault's own when that embedder cannot run."""
        try:
            return self.vault.cache.bound(self.snapshot.embedder())
        except VaultError:
            return self.vault.cache

    def _answer(self, line: int, value: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"line": line}
        if isinstance(value, VaultError):  # the line did not even parse
            out["error"] = str(value)
            return out
        try:
            kind, body, options = _request(value, line)
            if "id" in options:
                out["id"] = options.pop("id")
            result = self.retrieve(
                query_from(kind, body, f"line {line}", declared=self.declared), **options
            )
            out.update(result.to_json())
        except VaultError as exc:
            out["error"] = str(exc)
        return out


# ------------------------------------------------------------------ parallel batches
CHUNK = 32  # requests per task sent to a worker (about 30 ms of work) ...
CHUNK_VALUES = 100_000  # ... or fewer, when they hold this many JSON values (one task of
# 100 pairs of 30x30 holds ~180,000: ~2 MB parsed, ~0.5 s of work — the window of chunks
# read ahead stays a few such tasks, not 2 x workers x 32 of them)
_SERVING: Retriever | None = None  # the retriever a forked worker answers with


def _can_fork() -> bool:
    import multiprocessing  # (only a parallel batch needs it: start-up stays light)

    return "fork" in multiprocessing.get_all_start_methods()


def _chunks(
    requests: Iterable[tuple[int, Any]], size: int, values: int = CHUNK_VALUES
) -> Iterator[list[tuple[int, Any]]]:
    """Chunks of at most ``size`` requests, cut early once they hold ``values`` JSON values."""
    chunk: list[tuple[int, Any]] = []
    held = 0
    for item in requests:
        chunk.append(item)
        held += _values(item[1])
        if len(chunk) == size or held >= values:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def _values(value: Any) -> int:
    """How many JSON values a parsed request holds (what its memory goes with)."""
    if isinstance(value, list):
        return len(value) + sum(_values(v) for v in value if isinstance(v, list | dict))
    if isinstance(value, dict):
        return len(value) + sum(_values(v) for v in value.values() if isinstance(v, list | dict))
    return 1


def _work(chunk: list[tuple[int, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """In a worker: the chunk's answers and the cache entries (pack lines) they computed."""
    assert _SERVING is not None
    cache = _SERVING.batch_cache()
    cache.take_pending()  # (anything inherited from the parent is the parent's to write)
    answers = [_SERVING._answer(line, value) for line, value in chunk]
    return answers, cache.take_pending()


def _parallel(
    r: Retriever, requests: Iterable[tuple[int, Any]], workers: int
) -> Iterator[dict[str, Any]]:
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from vault.workers import exit_with_parent

    global _SERVING
    _SERVING = r
    window: deque[tuple[list[tuple[int, Any]], Future[Any] | None]] = deque()
    broken = False

    def answered(chunk: list[tuple[int, Any]], fut: Future[Any] | None) -> list[dict[str, Any]]:
        nonlocal broken
        if fut is not None and not broken:
            try:
                answers, entries = fut.result()
                r.batch_cache().add_pending(entries)
                return list(answers)
            except BrokenProcessPool:  # a worker died: this process answers from here on
                broken = True
        return [r._answer(line, value) for line, value in chunk]

    try:
        with ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            for chunk in _chunks(requests, CHUNK):
                fut = None
                if not broken:
                    try:
                        fut = pool.submit(_work, chunk)
                    except BrokenProcessPool:
                        broken = True
                window.append((chunk, fut))
                while len(window) > 2 * workers:  # bounded: input is read a few chunks ahead
                    yield from answered(*window.popleft())
            while window:
                yield from answered(*window.popleft())
    finally:
        _SERVING = None


def _request(value: Any, line: int) -> tuple[str, Any, dict[str, Any]]:
    where = f"line {line}"
    if not isinstance(value, dict):
        raise InvalidInputError('expected an object {"task"|"repr"|"query": ...}', source=where)
    kinds = [k for k in REQUEST_KINDS if k in value]
    if len(kinds) != 1:
        raise InvalidInputError("give exactly one of task, repr, query", source=where)
    unknown = set(value) - set(REQUEST_KINDS) - {"k", "mode", "id", "exclude"}
    if unknown:
        raise InvalidInputError(
            "unknown field (allowed: task | repr | query, k, mode, id, exclude)",
            source=where,
            field=sorted(unknown)[0],
        )
    options: dict[str, Any] = {}
    if "id" in value:
        if not isinstance(value["id"], str | int) or isinstance(value["id"], bool):
            raise InvalidInputError("expected a string or an integer", source=where, field="id")
        options["id"] = value["id"]
    if "k" in value:
        options["k"] = value["k"]
        if not isinstance(value["k"], int) or isinstance(value["k"], bool):
            raise InvalidInputError("expected an integer", source=where, field="k")
    if "mode" in value:
        if value["mode"] not in MODES:
            raise InvalidInputError(
                f"expected one of {', '.join(MODES)}", source=where, field="mode"
            )
        options["mode"] = value["mode"]
    if "exclude" in value:
        ex = value["exclude"]
        if not isinstance(ex, list) or not all(isinstance(x, str) for x in ex):
            raise InvalidInputError("expected a list of concept ids", source=where, field="exclude")
        options["exclude"] = ex
    kind = kinds[0]
    return kind, value[kind], options
