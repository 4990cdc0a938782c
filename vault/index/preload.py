"""Reading a whole audit log's records at once, on every core (full builds and verify).

A full fold reads every card, evidence and status record the log names — 2.5 × 10^5 files
at 10^5 concepts — and most of its time went to opening, hashing and parsing them, and to
``concept_keys``. Worker processes do that here, each for a contiguous slice of the
records, and send back *slim* records: only the fields the fold reads (``state.apply``),
plus each card's keys. The parent then folds them in log order with the same functions
as always, so the state is the same bytes, only sooner.

A record a worker cannot read or slim (missing, damaged, malformed, of an unknown kind) is
left out: the fold reads it itself and reports it precisely, exactly as without preloading.
Below ``PARALLEL_MIN`` records, or where worker processes cannot start, nothing is
preloaded.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vault.embedding.cache import EmbeddingCache
from vault.embedding.prefetch import Computed, Item, compute, content_id
from vault.records.keys import concept_keys
from vault.store.audit import STATE_OPS, AuditEntry
from vault.store.objects import ObjectStore
from vault.workers import exit_with_parent

PARALLEL_MIN = 5000
CHUNK = 2500  # records per task
WORKERS_MAX = 8


Slim = tuple[dict[str, Any], list[str] | None]  # (slim record, its keys if a card)


class Preloaded:
    """Slim records by digest, arriving chunk by chunk in log order while the fold runs (the
    fold of the first entries overlaps the reading of the last ones)."""

    def __init__(
        self,
        chunks: list[list[str]],
        results: Iterator[list[Slim | None]],
        pool: Any = None,
        root: str = "",
        cache: EmbeddingCache | None = None,
    ):
        self._chunks = chunks
        self._chunk_of = {d: i for i, chunk in enumerate(chunks) for d in chunk}
        self._results = results
        self._ready = 0  # chunks received
        self._items: dict[str, Slim] = {}
        self._pool, self._root, self._cache = pool, root, cache
        self._seen: set[Item] = set()
        self._jobs: list[Any] = []

    def get(self, digest: str) -> Slim | None:
        """The slim record of ``digest`` (waiting for its chunk), or None: read it yourself."""
        i = self._chunk_of.get(digest)
        if i is None:
            return None
        while self._ready <= i:
            self._take()
        return self._items.get(digest)

    def _take(self) -> None:
        chunk = self._chunks[self._ready]
        self._ready += 1
        try:
            part = next(self._results)
        except Exception:  # noqa: BLE001 - a lost worker: the fold reads the rest itself
            self._chunk_of = {}
            self._ready = len(self._chunks)
            return
        for digest, item in zip(chunk, part, strict=True):
            if item is not None:
                self._items[digest] = item
        self._speculate(part)

    def _speculate(self, part: list[Slim | None]) -> None:
        """Start computing the repr and pair vectors of these records' positive evidence
        that the cache lacks (what the build's ``prefetch`` would compute after the fold),
        so that they are computed while the fold runs."""
        if self._cache is None or self._pool is None:
            return
        todo: list[Item] = []
        for item in part:
            ev = item[0] if item is not None else None
            if ev is None or ev["kind"] != "evidence" or ev["polarity"] != "positive":
                continue
            wanted: list[Item] = [(ev["repr_id"],)] if "repr_id" in ev else []
            if "pair" in ev:
                wanted.append((ev["pair"]["input"], ev["pair"]["output"]))
            for w in wanted:
                if w not in self._seen and all(isinstance(x, str) for x in w):
                    self._seen.add(w)
                    if self._cache.get(content_id(w)) is None:
                        todo.append(w)
        if todo:
            with contextlib.suppress(Exception):  # (prefetch computes whatever is missing)
                self._jobs.append(
                    self._pool.apply_async(compute, (self._cache.embedder, self._root, todo))
                )

    def computed(self) -> list[Computed]:
        """The vectors computed ahead, for the cache given (waits for them; a failed batch
        is left out: ``prefetch`` computes it)."""
        out: list[Computed] = []
        for job in self._jobs:
            with contextlib.suppress(Exception):
                out += job.get()
        self._jobs = []
        return out


def slim(obj: Any) -> tuple[dict[str, Any], list[str] | None] | None:
    """(the fields of ``obj`` the fold reads, its keys if a card), or None when ``obj`` is
    anything the fold would have to report on (then it reads the record itself)."""
    if not isinstance(obj, dict):
        return None
    kind = obj.get("kind")
    if kind == "concept":
        prov = obj.get("provenance", {})
        if not isinstance(prov, dict):
            return None
        out = {k: obj[k] for k in ("kind", "id", "version", "domain", "status")}
        out["provenance"] = {"validated_on": prov["validated_on"]} if "validated_on" in prov else {}
        return out, concept_keys(obj)
    if kind == "evidence":
        out = {k: obj[k] for k in ("kind", "concept", "version", "polarity")}
        if "repr_id" in obj:
            out["repr_id"] = obj["repr_id"]
        if "pair" in obj:
            pair = obj["pair"]
            out["pair"] = {"input": pair["input"], "output": pair["output"]}
        return out, None
    if kind == "status":
        return {k: obj[k] for k in ("kind", "concept", "version", "status")}, None
    if kind == "repr":
        return {"kind": "repr"}, None
    return None


def _slim_many(task: tuple[str, list[str]]) -> list[Slim | None]:
    root, digests = task
    objects = ObjectStore(Path(root), memo_bytes=0)
    out: list[Slim | None] = []
    for digest in digests:
        try:
            out.append(slim(objects.get_record(digest)))
        except Exception:  # noqa: BLE001 - the fold reads this record itself and says why
            out.append(None)
    return out


def folded_digests(entries: list[AuditEntry]) -> list[str]:
    """The records a fold of ``entries`` reads (reprs a write-back carried are skipped)."""
    out: list[str] = []
    for e in entries:
        if e.op not in STATE_OPS or e.op == "embedder":
            continue
        skip = e.detail.get("reprs", 0) if isinstance(e.detail, dict) else 0
        ok = isinstance(skip, int) and not isinstance(skip, bool) and 0 <= skip <= len(e.records)
        out += e.records[skip:] if ok else e.records
    return out


@contextlib.contextmanager
def preload(
    entries: list[AuditEntry], objects: ObjectStore, cache: EmbeddingCache | None = None
) -> Iterator[Preloaded | None]:
    """The slim records of ``entries``, read by worker processes while the caller folds
    (None: not worth it, or workers could not start). With ``cache``, the workers then
    compute the evidence vectors it lacks, with its embedder (``Preloaded.computed``)."""
    digests = list(dict.fromkeys(folded_digests(entries)))
    workers = min(os.cpu_count() or 1, WORKERS_MAX)
    if len(digests) < PARALLEL_MIN or workers < 2:
        yield None
        return
    # contiguous slices in log order: the fold needs them in that order, and neighbours in
    # the log were written together
    chunks = [digests[i : i + CHUNK] for i in range(0, len(digests), CHUNK)]
    try:
        pool = mp.get_context("fork").Pool(workers, exit_with_parent, (os.getpid(),))
    except Exception:  # noqa: BLE001 - no workers: the fold reads every record itself
        yield None
        return
    root = str(objects.root)
    with pool:
        results = pool.imap(_slim_many, [(root, c) for c in chunks])
        yield Preloaded(chunks, results, pool, root, cache)
