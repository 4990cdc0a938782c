"""The per-repr / per-pair embedding cache under ``embeddings/cache/``.

``cache/ab/<xxh3-128>.json`` holds ``{"key", "source", "vector"}``; the key
``content_id:embedder_version:weights_hash`` is checked on every read, so a hash collision or
a stale entry is a miss, never a wrong vector.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import xxhash

from vault.canonical import canonical_bytes, loads, sha256_hex
from vault.embedding import embedder
from vault.errors import InvalidInputError
from vault.store.fs import atomic_write


def pair_id(in_id: str, out_id: str) -> str:
    return sha256_hex(f"pair:{in_id}:{out_id}".encode())


class EmbeddingCache:
    """Standalone vectors of reprs and pairs, keyed by content id + embedder identity."""

    def __init__(self, root: Path, *, writable: bool = True):
        self.root = root
        self.writable = writable

    @staticmethod
    def key(content: str) -> str:
        return f"{content}:{embedder.VERSION}:{embedder.WEIGHTS_HASH}"

    def path(self, key: str) -> Path:
        h = xxhash.xxh3_128_hexdigest(key.encode())
        return self.root / h[:2] / f"{h[2:]}.json"

    def get(self, content: str) -> list[int] | None:
        key = self.key(content)
        try:
            entry = loads(self.path(key).read_bytes())
        except (OSError, InvalidInputError):  # missing, unreadable or corrupt: a miss
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        vector = entry.get("vector")
        return [int(x) for x in vector] if vector is not None and _is_vector(vector) else None

    def put(self, content: str, source: dict[str, Any], vector: list[int]) -> None:
        if not self.writable:
            return
        key = self.key(content)
        entry = {"key": key, "source": source, "vector": vector}
        # a cache is rebuildable: atomic, but no fsync on the hot path; a full disk is a miss
        with contextlib.suppress(OSError):
            atomic_write(self.path(key), canonical_bytes(entry), durable=False)

    def entries(self) -> Iterable[Path]:
        if self.root.is_dir():
            yield from sorted(self.root.glob("*/*.json"))


def _is_vector(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == embedder.DIM
        and all(isinstance(x, int) and not isinstance(x, bool) and -127 <= x <= 127 for x in v)
    )
