"""Computing many standalone item vectors at once, on every core (full builds and verify).

A full build needs the vector of every repr and pair its concepts were validated on; those
the cache lacks are computed here in worker processes (each reads the repr objects itself
and returns plain int lists), then put into the cache in the parent — so the result is the
same as computing them one by one, only sooner. Below ``PARALLEL_MIN`` items, or where
worker processes cannot start, the work runs in this process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vault.embedding import Embedder
from vault.embedding.cache import EmbeddingCache, pair_id
from vault.grid.pairs import analyze_pair
from vault.store.objects import ObjectStore
from vault.workers import exit_with_parent

PARALLEL_MIN = 2000
Item = tuple[str, ...]  # (repr id,) or (input repr id, output repr id)


Computed = tuple[Item, list[int], dict[str, Any]]  # (item, vector, cache entry source)


def content_id(item: Item) -> str:
    """The cache's content id of an item."""
    return item[0] if len(item) == 1 else pair_id(item[0], item[1])


BATCH = 256  # items embedded together (``Embedder.item_vectors``: one pass a batch)


def compute(emb: Embedder, root: str, items: list[Item]) -> list[Computed]:
    """The vectors of ``items`` (a worker's task; a repr that is not a record is skipped),
    each what ``embed_repr`` / ``embed_pair`` gives it, computed ``BATCH`` at a time."""
    objects = ObjectStore(Path(root))
    out: list[Computed] = []
    for lo in range(0, len(items), BATCH):
        # each item with its position, so the batch's results go back in the items' order
        reprs: list[tuple[int, Item, dict[str, Any]]] = []
        pairs: list[tuple[int, Item, dict[str, Any], dict[str, Any]]] = []
        for k, item in enumerate(items[lo : lo + BATCH]):
            if len(item) == 1:
                rep = objects.get_record(item[0])
                if isinstance(rep, dict):
                    reprs.append((k, item, rep))
            else:
                a, b = objects.get_record(item[0]), objects.get_record(item[1])
                pairs.append((k, item, a, b))
        vectors = emb.item_vectors(
            [rep for _, _, rep in reprs], [(a, b, analyze_pair(a, b)) for _, _, a, b in pairs]
        )
        sources = [{"grid": rep["grid"]} if "grid" in rep else {} for _, _, rep in reprs]
        sources += [{"input": a["grid"], "output": b["grid"]} for _, _, a, b in pairs]
        done = [(k, item) for k, item, _ in reprs] + [(k, item) for k, item, _, _ in pairs]
        # in the order of ``items`` (the order they are put into the cache)
        batch = sorted(zip(done, vectors, sources, strict=True), key=lambda c: c[0][0])
        out += [(item, vector, source) for (_, item), vector, source in batch]
    return out


def prefetch(items: Iterable[Item], objects: ObjectStore, cache: EmbeddingCache) -> int:
    """Compute the vectors of ``items`` missing from ``cache`` (with its embedder) and put
    them there; return
    how many were computed. Errors (a missing or malformed repr) are left for the caller's
    own computation to report."""
    todo = sorted({i for i in items if cache.get(content_id(i)) is None})
    if not todo:
        return 0
    workers = min(os.cpu_count() or 1, 8)
    if len(todo) < PARALLEL_MIN or workers < 2:
        return 0  # not worth the start-up: the build computes them as it goes
    chunks = [todo[i::workers] for i in range(workers)]
    try:
        with mp.get_context("fork").Pool(workers, exit_with_parent, (os.getpid(),)) as pool:
            results = pool.starmap(
                compute, [(cache.embedder, str(objects.root), c) for c in chunks]
            )
    except (OSError, ValueError, RuntimeError):
        return 0
    except Exception:  # noqa: BLE001 - a worker's error: the serial path reports it precisely
        return 0
    return sum(put_computed(cache, part) for part in results)


def put_computed(cache: EmbeddingCache, computed: list[Computed]) -> int:
    """Put computed vectors into ``cache`` (of the embedder they were computed with)."""
    n = 0
    for item, vector, source in computed:
        if source:  # (a repr without a grid is not cached: the build computes it)
            cache.put(content_id(item), source, vector)
            n += 1
    return n
