"""The snapshot: one immutable generation, opened once, read by every reader.

A reader reads ``index/CURRENT`` (replaced atomically) and then only content-addressed
objects named by that generation's manifest, which never change: it can never observe a
mix of two generations, whatever writers do meanwhile. The ``embeddings/`` files are a view
for people and tools; readers do not use them.

Every binary object is checked against its address when loaded (a flipped byte is an error,
never a silently different ranking). Loaded generations are cached per process by id, so a
solver that asks many questions pays for loading once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any

from vault.canonical import loads, loads_trusted
from vault.embedding import select
from vault.errors import CorruptionError, EmbeddingError, NotFoundError, VaultError
from vault.index.generations import CurrentRef
from vault.index.state import State
from vault.index.table import MANIFEST_SCHEMA_VERSION, TABLE_OBJECTS, Table
from vault.store.objects import ObjectStore, is_digest

CACHE_SIZE = 4
KINDS = ("concepts", "reprs")
_lock = threading.Lock()
_loaded: OrderedDict[tuple[str, str], Generation] = OrderedDict()


def read_manifest(objects: ObjectStore, generation: str) -> dict[str, Any]:
    """A generation's manifest, checked against its address and for its shape."""
    where = f"generation {generation[:12]}"
    try:
        data = objects.get(generation, check=True)
        manifest = loads(data, source=str(objects.path(generation)))
    except VaultError as exc:
        raise CorruptionError(f"{where}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "generation":
        raise CorruptionError(f"object {generation} is not a generation manifest")
    if manifest.get("schema_version") != MANIFEST_SCHEMA_VERSION:
        raise CorruptionError(
            f"{where}: manifest schema {manifest.get('schema_version')!r} is not "
            f"{MANIFEST_SCHEMA_VERSION} (made by another version of vault: `vault index build`)"
        )
    table = manifest.get("table")
    names = ["state", "embedder", "vectors", "ann_hash_file"]
    if (
        not isinstance(table, dict)
        or set(table) != set(TABLE_OBJECTS)
        or not all(isinstance(manifest.get(n), str) and is_digest(manifest[n]) for n in names)
        or not all(isinstance(d, str) and is_digest(d) for d in table.values())
        or not isinstance(manifest.get("embedder_id"), dict)
        or not isinstance(manifest.get("counts"), dict)
    ):
        raise CorruptionError(f"{where}: malformed manifest")
    return manifest


class Generation:
    """The loaded, immutable content of one generation (shared by snapshots of it)."""

    def __init__(self, objects: ObjectStore, generation: str):
        self.objects = objects
        self.id = generation
        self.manifest = read_manifest(objects, generation)

    @classmethod
    def built(
        cls, objects: ObjectStore, generation: str, manifest: dict[str, Any], table: Table
    ) -> Generation:
        """A generation this process has just computed and stored, with its table as it is
        in memory: its bytes were hashed here to name them, so reading them back (tens of
        MB at 10^5 concepts) would only check what was just written."""
        data = cls.__new__(cls)
        data.objects, data.id, data.manifest = objects, generation, manifest
        for a in (table.columns, table.offsets, table.matrix, table.key_offsets, table.postings):
            a.flags.writeable = False  # shared by every reader, as a loaded table is
        data.__dict__["table"] = table  # (the cached_property's slot)
        return data

    def _blob(self, digest: str, what: str) -> bytes:
        try:
            return self.objects.get(digest, check=True)
        except VaultError as exc:
            raise CorruptionError(f"generation {self.id[:12]}: {what}: {exc}") from None

    @cached_property
    def table(self) -> Table:
        names = self.manifest["table"]
        blobs = {name: self._blob(names[name], name) for name in TABLE_OBJECTS if name != "matrix"}
        return Table.from_blobs(
            blobs,
            lambda: self._blob(names["matrix"], "matrix"),
            lambda: self._blob(self.manifest["vectors"], "concept_vectors.jsonl"),
            f"generation {self.id[:12]}",
        )

    @cached_property
    def state_shards(self) -> dict[str, Any]:
        shards = loads_trusted(self._blob(self.manifest["state"], "state"))
        if (
            not isinstance(shards, dict)
            or set(shards) - {"embedder"} != {"concepts", "reprs"}
            or not all(isinstance(shards[k], list) and len(shards[k]) == 256 for k in KINDS)
            or not isinstance(shards.get("embedder", ""), str)
        ):
            raise CorruptionError(f"generation {self.id[:12]}: malformed state list")
        return shards

    @cached_property
    def state(self) -> State:
        return State(self.objects, self.state_shards)

    @cached_property
    def fitted(self) -> select.Embedder | str:
        """The fitted embedder the manifest names, loaded once (or why it cannot be)."""
        try:
            return select.for_generation(self.objects, self.manifest)
        except EmbeddingError as exc:
            return str(exc)


class Snapshot:
    """What one reader sees: a generation and the position it was current at."""

    def __init__(self, ref: CurrentRef, data: Generation):
        self.ref = ref
        self._data = data

    @classmethod
    def open(cls, objects: ObjectStore, ref: CurrentRef) -> Snapshot:
        key = (str(objects.root), ref.generation)
        with _lock:
            data = _loaded.get(key)
            if data is not None:
                _loaded.move_to_end(key)
        if data is None:
            data = Generation(objects, ref.generation)
            with _lock:
                _loaded[key] = data
                while len(_loaded) > CACHE_SIZE:
                    _loaded.popitem(last=False)
        return cls(ref, data)

    # -------------------------------------------------------------- identity
    @property
    def generation(self) -> str:
        return self.ref.generation

    @property
    def number(self) -> int:
        return self.ref.number

    @property
    def audit_seq(self) -> int:
        return self.ref.audit_seq

    @property
    def objects(self) -> ObjectStore:
        return self._data.objects

    @property
    def manifest(self) -> dict[str, Any]:
        return self._data.manifest

    @property
    def embedder_id(self) -> dict[str, Any]:
        ident: dict[str, Any] = self.manifest["embedder_id"]
        return ident

    def embedder(self) -> select.Embedder:
        """The embedder this generation was built with; ``EmbeddingError`` ("embedder
        drift: ...") when this tool cannot run it (another version, weights missing or
        damaged)."""
        if select.manifest_choice(self.manifest) == select.BUILTIN:
            return select.for_generation(self.objects, self.manifest)
        emb = self._data.fitted
        if isinstance(emb, str):
            raise EmbeddingError(emb)
        return emb

    @property
    def drift(self) -> bool:
        """True when this tool cannot run the embedder this generation was built with."""
        try:
            self.embedder()
        except EmbeddingError:
            return True
        return False

    @property
    def counts(self) -> dict[str, int]:
        c: dict[str, int] = self.manifest["counts"]
        return c

    # -------------------------------------------------------------- contents
    @property
    def table(self) -> Table:
        return self._data.table

    @property
    def state_shards(self) -> dict[str, Any]:
        return self._data.state_shards

    @property
    def state(self) -> State:
        return self._data.state

    def concept(self, name: str) -> dict[str, Any] | None:
        """The state entry of ``id@version`` (read-only)."""
        return self.state.concept(name)

    def known(self, rid: str) -> bool:
        return self.state.known(rid)

    def versions(self, concept: str) -> list[str]:
        """Stored versions of ``concept``, oldest first."""
        t = self.table
        return [t.ref(i).rsplit("@", 1)[1] for i in t.id_rows(concept)]

    def refs(self) -> Iterator[str]:
        t = self.table
        for i in range(t.n):
            yield t.ref(i)

    def entry(self, concept: str, version: str | None = None) -> tuple[str, dict[str, Any]]:
        """(ref, state entry) of ``concept`` at ``version`` (default: the newest)."""
        if version is None:
            versions = self.versions(concept)
            if not versions:
                raise NotFoundError(f"unknown concept {concept!r}")
            version = versions[-1]
        name = f"{concept}@{version}"
        entry = self.concept(name)
        if entry is None:
            raise NotFoundError(f"unknown concept version {name}")
        return name, entry

    def record(self, digest: str) -> Any:
        try:
            return self.objects.get_record(digest)
        except VaultError as exc:
            raise CorruptionError(f"record {digest}: {exc}") from None


def generation_embedders(objects: ObjectStore, generations: Iterable[str]) -> list[select.Embedder]:
    """The embedders the given generations were built with that this tool can run, each
    once (the caches worth keeping and checking)."""
    out: dict[str, select.Embedder] = {}
    for generation in generations:
        try:
            manifest = Generation(objects, generation).manifest
            emb = select.resolve(objects, select.manifest_choice(manifest))
        except VaultError:
            continue
        out.setdefault(f"{emb.version}:{emb.weights_hash}", emb)
    return list(out.values())


def remember(data: Generation) -> None:
    """Keep ``data`` as the loaded form of its generation (``Generation.built``: the one a
    write-back just published is what its next write-back and reader open)."""
    key = (str(data.objects.root), data.id)
    with _lock:
        _loaded[key] = data
        _loaded.move_to_end(key)
        while len(_loaded) > CACHE_SIZE:
            _loaded.popitem(last=False)


def clear_cache() -> None:
    """Forget every loaded generation (tests; a process that changed objects behind vault)."""
    with _lock:
        _loaded.clear()
