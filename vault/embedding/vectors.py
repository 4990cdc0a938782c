"""Embedding files under ``<vault>/embeddings/`` and the per-repr cache.

* ``embedder.json`` — the running embedder's identity (canonical JSON).
* ``concept_vectors.jsonl`` — one canonical line ``{"id", "version", "vector"}`` per
  concept version, sorted by id then semantic version.
* ``ann.index.sha256`` — sha256 of ``embedder.json`` bytes followed by
  ``concept_vectors.jsonl`` bytes, as 64 hex digits and a newline.
* ``cache/ab/<xxh3-128>.json`` — ``{"key", "source", "vector"}``; the key
  ``content_id:embedder_version:weights_hash`` is checked on every read, so a hash
  collision or a stale entry is a miss, never a wrong vector.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vault.canonical import canonical_bytes, dumps_line, loads, loads_trusted, sha256_hex
from vault.embedding import embedder
from vault.embedding.cache import EmbeddingCache, _is_vector, pair_id
from vault.errors import EmbeddingError, InvalidInputError
from vault.grid.grid import parse_grid
from vault.grid.pairs import analyze_pair
from vault.grid.reprs import grid_to_repr, repr_id
from vault.records.cards import parse_version
from vault.records.query import Query
from vault.store.fs import atomic_write
from vault.store.objects import ObjectStore

EMBEDDER_FILE = "embedder.json"
VECTORS_FILE = "concept_vectors.jsonl"
HASH_FILE = "ann.index.sha256"


def source_vector(source: dict[str, Any]) -> tuple[str, list[int]]:
    """Recompute (content id, vector) of a cache entry's source (used by verify)."""
    if "grid" in source:
        rep = grid_to_repr(parse_grid(source["grid"]))
        return repr_id(rep), embedder.repr_vector(rep)
    if "input" in source and "output" in source:
        a = grid_to_repr(parse_grid(source["input"]))
        b = grid_to_repr(parse_grid(source["output"]))
        return pair_id(repr_id(a), repr_id(b)), embedder.pair_vector(a, analyze_pair(a, b))
    raise InvalidInputError("cache entry source has neither grid nor input/output")


def embed_repr(
    rep: dict[str, Any], cache: EmbeddingCache | None, rid: str | None = None
) -> list[int]:
    """The standalone vector of a repr (``rid``: its id, when the caller knows it)."""
    rid = rid or repr_id(rep)
    if cache is not None and (hit := cache.get(rid)) is not None:
        return hit
    vector = embedder.repr_vector(rep)
    if cache is not None and "grid" in rep:
        cache.put(rid, {"grid": rep["grid"]}, vector)
    return vector


def embed_pair(
    a: dict[str, Any],
    b: dict[str, Any],
    cache: EmbeddingCache | None,
    ids: tuple[str, str] | None = None,
) -> list[int]:
    """The standalone vector of a pair (``ids``: the two repr ids, when known)."""
    pid = pair_id(*(ids or (repr_id(a), repr_id(b))))
    if cache is not None and (hit := cache.get(pid)) is not None:
        return hit
    vector = embedder.pair_vector(a, analyze_pair(a, b))
    if cache is not None:
        cache.put(pid, {"input": a["grid"], "output": b["grid"]}, vector)
    return vector


def query_vector(query: Query, cache: EmbeddingCache | None) -> list[int]:
    pairs = [embed_pair(p.input, p.output, cache) for p in query.pairs]
    apps = pairs + ([embed_repr(query.repr, cache)] if query.repr else [])
    return embedder.combine(apps, pairs, query.all_keys())


def concept_vector(
    entry: dict[str, Any], objects: ObjectStore, cache: EmbeddingCache | None
) -> list[int]:
    """A concept's vector: its keys plus the reprs and pairs it was validated on."""
    card = objects.get_record(entry["card"])
    # validated_on may name tasks or anything else; only stored reprs feed the vector
    repr_ids: list[str] = [
        v
        for v in card.get("provenance", {}).get("validated_on", ())
        if objects.has(v) and objects.get_record(v).get("kind") == "repr"
    ]
    pair_ids: list[tuple[str, str]] = []
    for digest in entry["evidence"]:
        ev = objects.get_record(digest)
        if ev["polarity"] != "positive":
            continue
        if "repr_id" in ev:
            repr_ids.append(ev["repr_id"])
        if "pair" in ev:
            pair_ids.append((ev["pair"]["input"], ev["pair"]["output"]))
    apps = [embed_repr(objects.get_record(r), cache, r) for r in repr_ids]
    pairs = [
        embed_pair(objects.get_record(a), objects.get_record(b), cache, (a, b)) for a, b in pair_ids
    ]
    return embedder.combine(apps + pairs, pairs, entry["keys"])


# ref ("id@version") -> its canonical concept_vectors.jsonl line (with the newline)
VectorLines = dict[str, bytes]


def vector_line(concept: str, version: str, vector: list[int]) -> bytes:
    return dumps_line({"id": concept, "version": version, "vector": vector})


def split_vector_lines(data: bytes) -> VectorLines:
    """Lines of a (trusted, canonical) concept_vectors.jsonl by ref, without parsing vectors:
    a line is ``{"id":"<id>","vector":[...],"version":"<version>"}`` and ids and versions
    never need escaping."""
    out: VectorLines = {}
    for line in data.splitlines(keepends=True):
        concept = line[7 : line.index(b'","vector":[')].decode()
        version = line[line.rindex(b',"version":"') + 12 : -3].decode()
        out[f"{concept}@{version}"] = line
    return out


def _ref_order(ref: str) -> tuple[str, tuple[int, int, int]]:
    concept, version = ref.rsplit("@", 1)
    return concept, parse_version(version)


def vectors_bytes(vectors: VectorLines) -> bytes:
    """``concept_vectors.jsonl`` bytes: one line per concept version, sorted by id then
    semantic version."""
    return b"".join(vectors[r] for r in sorted(vectors, key=_ref_order))


def embedder_bytes() -> bytes:
    return canonical_bytes(embedder.identity())


def ann_hash(embedder_json: bytes, vectors_jsonl: bytes) -> str:
    return sha256_hex(embedder_json + vectors_jsonl)


@dataclass(frozen=True)
class LoadedVectors:
    """Concept vectors ready for exact similarity: refs and an (n, DIM) int8 matrix."""

    refs: tuple[str, ...]
    matrix: np.ndarray
    row: dict[str, int]
    ann_hash: str


def parse_vectors(data: bytes, source: str) -> tuple[list[str], np.ndarray]:
    refs: list[str] = []
    rows: list[list[int]] = []
    for number, line in enumerate(data.splitlines(), start=1):
        try:  # the file is hash-checked by the caller: fast plain parsing, then shape checks
            obj = loads_trusted(line)
        except ValueError:
            obj = loads(line, source=f"{source}:{number}")
        if not isinstance(obj, dict) or set(obj) != {"id", "version", "vector"}:
            raise InvalidInputError("expected {id, version, vector}", source=f"{source}:{number}")
        if not _is_vector(obj["vector"]):
            raise InvalidInputError(
                f"expected {embedder.DIM} int8 values", source=f"{source}:{number}", field="vector"
            )
        refs.append(f"{obj['id']}@{obj['version']}")
        rows.append(obj["vector"])
    matrix = np.array(rows, dtype=np.int8).reshape(len(rows), embedder.DIM)
    return refs, matrix


class EmbeddingFiles:
    """The materialized embedding files of the current generation."""

    def __init__(self, root: Path):
        self.root = root

    def paths(self) -> dict[str, Path]:
        return {n: self.root / n for n in (EMBEDDER_FILE, VECTORS_FILE, HASH_FILE)}

    def write(
        self, objects: ObjectStore, embedder_obj: str, vectors_obj: str, hash_obj: str
    ) -> None:
        """Point the three files at the generation's objects (hard links; copies if needed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name, digest in (
            (EMBEDDER_FILE, embedder_obj),
            (VECTORS_FILE, vectors_obj),
            (HASH_FILE, hash_obj),
        ):
            target = self.root / name
            source = objects.path(digest)
            tmp = self.root / f".{name}.link"
            try:
                if target.exists() and os.path.samefile(source, target):
                    continue
                tmp.unlink(missing_ok=True)
                os.link(source, tmp)
                os.replace(tmp, target)
            except OSError:
                tmp.unlink(missing_ok=True)
                atomic_write(target, objects.get(digest))

    def load(self, expected_hash: str | None) -> LoadedVectors:
        """Load and check the files; ``EmbeddingError`` says why they cannot be used."""
        paths = self.paths()
        missing = [n for n, p in paths.items() if not p.is_file()]
        if missing:
            raise EmbeddingError(
                f"embedding index missing ({', '.join(missing)}): run `vault index build`"
            )
        emb = paths[EMBEDDER_FILE].read_bytes()
        vec = paths[VECTORS_FILE].read_bytes()
        stored = paths[HASH_FILE].read_text("ascii", errors="replace").strip()
        try:
            ident = loads(emb, source=str(paths[EMBEDDER_FILE]))
        except InvalidInputError as exc:
            raise EmbeddingError(f"embedder.json unreadable ({exc})") from None
        running = embedder.identity()
        if not isinstance(ident, dict) or any(
            ident.get(k) != running[k] for k in ("name", "version", "weights_hash", "dim")
        ):
            raise EmbeddingError("embedder drift: run `vault index build`")
        actual = ann_hash(emb, vec)
        if actual != stored:
            raise EmbeddingError(
                "index hash mismatch: ann.index.sha256 does not match "
                "embedder.json + concept_vectors.jsonl"
            )
        if expected_hash is not None and actual != expected_hash:
            raise EmbeddingError(
                "embedding files are not the current generation's: run `vault index build`"
            )
        try:
            refs, matrix = parse_vectors(vec, str(paths[VECTORS_FILE]))
        except InvalidInputError as exc:
            raise EmbeddingError(f"concept_vectors.jsonl unreadable ({exc})") from None
        return LoadedVectors(tuple(refs), matrix, {r: i for i, r in enumerate(refs)}, actual)
