"""Index generations: content-addressed snapshots of the whole index, and the ref to one.

A generation is a manifest object naming the symbolic index, ``embedder.json``,
``concept_vectors.jsonl`` and ``ann.index.sha256`` objects; its id is the manifest's
sha256, so the same index content is the same generation. ``index/generations.jsonl``
lists generations in the order they were made (number, time, audit position, counts,
embedder); ``index/CURRENT`` names the current one. Moving ``CURRENT`` is one atomic
file replace: rollback is O(1) and reversible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault.canonical import canonical_bytes, dumps_line, loads
from vault.embedding import embedder
from vault.embedding.vectors import VectorLines, ann_hash, embedder_bytes, vectors_bytes
from vault.errors import CorruptionError, InvalidInputError, NotFoundError
from vault.store.fs import atomic_write
from vault.store.jsonl import append_line, complete_lines, last_line
from vault.store.objects import ObjectStore, is_digest

GENERATION_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class IndexGeneration:
    """One entry of ``index/generations.jsonl``."""

    number: int
    generation: str
    time: str
    audit_seq: int
    op: str
    counts: dict[str, int]
    embedder: dict[str, Any]
    reverted: tuple[int, ...] = ()  # state entries (audit seqs) left out by a rollback

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "generation": self.generation,
            "time": self.time,
            "audit_seq": self.audit_seq,
            "op": self.op,
            "counts": self.counts,
            "embedder": self.embedder,
            "reverted": list(self.reverted),
        }


@dataclass(frozen=True)
class CurrentRef:
    generation: str
    number: int
    audit_seq: int
    reverted: tuple[int, ...] = ()  # audit seqs the rollback in effect leaves out


def counts(index: dict[str, Any]) -> dict[str, int]:
    concepts = index["concepts"].values()
    return {
        "concepts": len(index["concepts"]),
        "active": sum(1 for c in concepts if c["status"] == "active"),
        "evidence": sum(len(c["evidence"]) for c in concepts),
        "keys": len(index["by_key"]),
    }


def write_generation(
    objects: ObjectStore, index: dict[str, Any], vectors: VectorLines
) -> tuple[str, dict[str, Any]]:
    """Store the index and its embedding files as objects; return (generation id, manifest)."""
    emb = embedder_bytes()
    vec = vectors_bytes(vectors)
    digest = ann_hash(emb, vec)
    manifest = {
        "kind": "generation",
        "schema_version": GENERATION_SCHEMA_VERSION,
        "symbolic": objects.put(canonical_bytes(index)),
        "embedder": objects.put(emb),
        "vectors": objects.put(vec),
        "ann_hash": digest,
        "ann_hash_file": objects.put(f"{digest}\n".encode()),
        "counts": counts(index),
        "embedder_id": embedder.identity(),
    }
    return objects.put_json(manifest), manifest


def read_manifest(objects: ObjectStore, generation: str) -> dict[str, Any]:
    try:
        manifest = objects.get_json(generation)
    except InvalidInputError as exc:
        raise CorruptionError(f"generation {generation}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "generation":
        raise CorruptionError(f"object {generation} is not a generation manifest")
    return manifest


class Generations:
    """``index/CURRENT`` and ``index/generations.jsonl``."""

    def __init__(self, root: Path):
        self.root = root
        self.current_path = root / "CURRENT"
        self.log_path = root / "generations.jsonl"

    def current(self) -> CurrentRef | None:
        try:
            data = self.current_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            obj = loads(data, source=str(self.current_path))
            ref = CurrentRef(
                obj["generation"],
                int(obj["number"]),
                int(obj["audit_seq"]),
                tuple(int(s) for s in obj.get("reverted", ())),
            )
        except (InvalidInputError, KeyError, TypeError, ValueError):
            raise CorruptionError(
                f"{self.current_path} is corrupted; `vault rollback --to N` or "
                "`vault index build` writes a good one"
            ) from None
        if not is_digest(ref.generation):
            raise CorruptionError(f"{self.current_path} names no generation")
        return ref

    def set_current(self, ref: CurrentRef) -> None:
        data = dumps_line(
            {
                "generation": ref.generation,
                "number": ref.number,
                "audit_seq": ref.audit_seq,
                "reverted": list(ref.reverted),
            }
        )
        atomic_write(self.current_path, data)

    def last(self) -> IndexGeneration | None:
        """The newest generation, reading only the end of the log."""
        line = last_line(self.log_path)
        return None if line is None else _generation(loads(line, source=str(self.log_path)))

    def history(self) -> list[IndexGeneration]:
        lines, _ = complete_lines(self.log_path)
        out = []
        for i, line in enumerate(lines, start=1):
            try:
                out.append(_generation(loads(line, source=f"{self.log_path}:{i}")))
            except (InvalidInputError, KeyError, TypeError):
                raise CorruptionError(f"{self.log_path}:{i}: malformed line") from None
        return out

    def append(self, gen: IndexGeneration) -> None:
        append_line(self.log_path, gen.to_json())

    def find(self, spec: str) -> IndexGeneration:
        """A generation by number (``3``) or by id or unique id prefix (at least 6 hex digits)."""
        history = self.history()
        if spec.isdigit():
            for g in history:
                if g.number == int(spec):
                    return g
            have = ", ".join(str(g.number) for g in history) or "none"
            raise NotFoundError(
                f"unknown generation {spec} (have: {have}; `vault gc` removes old ones)"
            )
        matches = {
            g.generation for g in history if len(spec) >= 6 and g.generation.startswith(spec)
        }
        if len(matches) == 1:
            found = [g for g in history if g.generation in matches]
            return found[-1]
        if len(matches) > 1:
            raise NotFoundError(f"generation prefix {spec!r} is ambiguous")
        raise NotFoundError(f"unknown generation {spec!r}; `vault rollback --list` shows them")


def _generation(o: Any) -> IndexGeneration:
    try:
        return IndexGeneration(
            o["number"],
            o["generation"],
            o["time"],
            o["audit_seq"],
            o["op"],
            o["counts"],
            o["embedder"],
            tuple(o.get("reverted", ())),
        )
    except (KeyError, TypeError):
        raise InvalidInputError("malformed generations log line") from None
