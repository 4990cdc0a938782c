"""The snapshot: one immutable generation, opened once, read by every reader.

A reader reads ``index/CURRENT`` (replaced atomically) and then only content-addressed
objects named by that generation's manifest, which never change: it can never observe a
mix of two generations, whatever writers do meanwhile. The ``embeddings/`` files are a view
for people and tools; readers do not use them.

Every binary object is checked against its address when loaded (a flipped byte is an error,
never a silently different ranking). Loaded generations are cached per process by id, so a
solver that asks many questions pays for loading once.

**Readers survive ``vault gc``.** A generation opens, when it is opened, every object it
reads later on demand — the table's objects, the vectors file, the state list and the
fitted weights — and holds those descriptors until it is dropped: on POSIX an open file
stays readable after ``gc`` unlinks it, so retrieval over an open generation never meets a
missing object (the space comes back when the last reader of that generation drops it).
What it does not hold (state shards and records, read by ``show``-like calls) may go: a
read that finds them collected raises ``GenerationGoneError`` ("… collected by `vault gc`
…: refresh"), never a wrong or half answer. Opening the current generation retries when
``CURRENT`` moved and gc collected the one it named in between (``open_current``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from vault import forksafe
from vault.canonical import loads, loads_trusted, sha256_hex
from vault.embedding import Embedder, builtin, select
from vault.errors import (
    CorruptionError,
    EmbeddingError,
    GenerationGoneError,
    NotFoundError,
    VaultError,
    json_value,
)
from vault.index.generations import CurrentRef, Generations
from vault.index.state import State
from vault.index.table import (
    MANIFEST_SCHEMA_VERSION,
    TABLE_OBJECTS,
    Meta,
    Table,
    join,
    parse_lists,
    read_into,
    read_matrix,
    read_object,
)
from vault.store.objects import ObjectStore, is_digest

CACHE_SIZE = 4  # generations kept loaded per process (each holds <= 4 + PIN_CHUNKS fds) ...
PIN_CHUNKS = 256  # chunk objects held open at most; a larger table is read when opened
CACHE_BYTES = 512 << 20  # ... and at most this much of them (the most recent one always)
SHARD_ENTRY_BYTES = 1024  # a parsed state entry, estimated
REPR_ID_BYTES = 128  # a repr id in a parsed repr shard, estimated
KINDS = ("concepts", "reprs")
OPEN_RETRIES = 100  # times CURRENT may move under one open before it gives up
_lock = forksafe.lock(sys.modules[__name__], "_lock")  # (made anew in a forked child)
_loaded: OrderedDict[tuple[str, str], Generation] = OrderedDict()


def read_manifest(objects: ObjectStore, generation: str) -> dict[str, Any]:
    """A generation's manifest, checked against its address and for its shape."""
    where = f"generation {generation[:12]}"
    try:
        data = objects.get(generation, check=True)
        manifest = loads(data, source=str(objects.path(generation)))
    except NotFoundError as exc:
        raise GenerationGoneError(f"{where}: manifest missing ({exc}); {_GONE}") from None
    except VaultError as exc:
        raise CorruptionError(f"{where}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "generation":
        raise CorruptionError(f"object {generation} is not a generation manifest")
    if manifest.get("schema_version") != MANIFEST_SCHEMA_VERSION:
        raise CorruptionError(
            f"{where}: manifest schema {json_value(manifest.get('schema_version'))} is not "
            f"{MANIFEST_SCHEMA_VERSION} (made by another version of vault: `vault index build`)"
        )
    table = manifest.get("table")
    names = ["state", "embedder", "ann_hash"]
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


_GONE = (
    "it was collected by `vault gc` after a newer generation became current "
    "(or the object was deleted: `vault verify` tells); refresh to the current generation "
    "(Retriever.refresh(), or open the vault again)"
)


def _close(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()


class Pins(ObjectStore):
    """The store as one generation sees it: the objects it reads on demand are opened with
    it, and an open file stays readable after ``vault gc`` unlinks it (POSIX), so a reader
    that opened a generation can read all of it for as long as it holds it. Descriptors
    are closed when the generation is dropped (``weakref.finalize``) and inherited by a
    batch's forked workers (``pread`` shares no file offset); other objects are read from
    the store."""

    def __init__(
        self,
        objects: ObjectStore,
        digests: Iterable[str],
        where: str,
        optional: Iterable[str] = (),
    ):
        """``optional``: objects whose absence is not an error here (the fitted weights: a
        generation whose weights are missing serves symbolic and says "embedder drift");
        the missing ones are listed in ``missing``."""
        super().__init__(objects.root, memo_bytes=0, readonly=True)
        self.store = objects
        self.chunks = False  # whether it holds the table's chunks too
        self._fds: dict[str, int] = {}
        self.missing: list[str] = []
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
        maybe = set(optional)
        try:
            for digest in [*digests, *maybe]:
                if digest in self._fds:
                    continue
                try:
                    path = f"{objects.root}/{digest[:2]}/{digest[2:]}"  # (= objects.path)
                    self._fds[digest] = os.open(path, flags)
                except FileNotFoundError:
                    if digest not in maybe:
                        raise
                    self.missing.append(digest)
        except FileNotFoundError:
            _close(self._fds)
            raise GenerationGoneError(f"{where}: object {digest} is missing; {_GONE}") from None
        except OSError as exc:
            _close(self._fds)
            raise CorruptionError(
                f"{where}: object {objects.path(digest)} cannot be read ({exc.strerror})"
            ) from None
        weakref.finalize(self, _close, self._fds)

    def fd(self, digest: str) -> int | None:
        return self._fds.get(digest)

    def get(self, digest: str, *, check: bool = False) -> bytes:
        """The object's bytes (a held one always checked against its address)."""
        fd = self._fds.get(digest)
        if fd is None:
            return self.store.get(digest, check=check)
        path = self.path(digest)
        try:
            size = os.fstat(fd).st_size
            chunks, at = [], 0
            while at < size:  # (pread: no shared offset between threads or forked workers)
                chunk = os.pread(fd, size - at, at)
                if not chunk:
                    break
                chunks.append(chunk)
                at += len(chunk)
        except OSError as exc:
            raise CorruptionError(f"object {path} cannot be read ({exc.strerror or exc})") from None
        data = b"".join(chunks)
        if sha256_hex(data) != digest:
            raise CorruptionError(f"object {path} does not match its address")
        return data


def _read(store: ObjectStore, generation: str, digest: str, what: str) -> bytes:
    where = f"generation {generation[:12]}: {what}"
    try:
        return store.get(digest, check=True)
    except NotFoundError as exc:
        if not store.path(generation).exists():  # the manifest went too: collected
            raise GenerationGoneError(f"{where}: {exc}; {_GONE}") from None
        raise CorruptionError(f"{where}: {exc}") from None
    except VaultError as exc:
        raise CorruptionError(f"{where}: {exc}") from None


class _Chunks:
    """Reads a generation's chunk objects into the joined arrays: from a held descriptor,
    else from the store (a missing one: ``GenerationGoneError`` when the generation was
    collected, or ``gone``)."""

    def __init__(self, objects: ObjectStore, pins: Pins | None, generation: str, gone: bool):
        self.objects, self.pins, self.generation, self.gone = objects, pins, generation, gone

    def rows(self, i: int, m: Meta, bufs: list[memoryview]) -> None:
        self._read(m.digest, bufs, f"rows chunk {i}")

    def matrix(self, i: int, m: Meta, buf: memoryview) -> None:
        self._read(m.matrix, [buf], f"matrix chunk {i}")

    def _read(
        self, digest: str, bufs: list[memoryview] | list[bytes], what: str, size: int = 0
    ) -> None:
        """Into ``bufs`` (views), or appended to it (``size`` bytes)."""
        where = f"generation {self.generation[:12]}: {what}"
        fd = self.pins.fd(digest) if self.pins is not None else None
        if fd is not None:
            self._into(fd, bufs, digest, lambda: f"{where} ({self.objects.path(digest)})", size)
            return
        path = self.objects.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            if self.gone or not self.objects.path(self.generation).exists():
                raise GenerationGoneError(f"{where}: object {digest} is missing; {_GONE}") from None
            raise CorruptionError(f"{where}: object {path} is missing") from None
        except OSError as exc:
            raise CorruptionError(
                f"{where}: object {path} cannot be read ({exc.strerror})"
            ) from None
        try:
            self._into(fd, bufs, digest, lambda: f"{where} ({path})", size)
        finally:
            os.close(fd)

    @staticmethod
    def _into(
        fd: int,
        bufs: list[memoryview] | list[bytes],
        digest: str,
        what: Callable[[], str],
        size: int,
    ) -> None:
        if size:
            bufs.append(read_object(fd, size, digest, what))  # type: ignore[arg-type]
        else:
            read_into(fd, bufs, digest, what)  # type: ignore[arg-type]


class Generation:
    """The loaded, immutable content of one generation (shared by snapshots of it)."""

    def __init__(self, objects: ObjectStore, generation: str, *, pin: bool = False):
        """``pin``: hold what it reads later open now (a reader's ``Snapshot.open``;
        ``GenerationGoneError`` if any of it is missing) — its state list, chunk lists and
        chunks; of a table of more than ``PIN_CHUNKS`` chunk objects, the rows chunks are
        read now instead (the matrix chunks when first used).
        Without it (gc, verify: they read under the lock or only report) everything is
        read from the store."""
        self.objects = objects
        self.id = generation
        self.manifest = read_manifest(objects, generation)
        self.pins: Pins | None = None
        if pin:
            self.pins = self._pin()
            if self.pins is not None and not self.pins.chunks:  # too many to hold open:
                # the rows chunks are read now; the matrix chunks when first used (a
                # retriever that then finds them collected by gc refreshes and says so)
                self.__dict__["table"] = self._load_table(gone=True)

    def _pin(self, chunks: bool = True) -> Pins:
        """Its state list, chunk lists, fitted weights, and (``chunks``, up to
        ``PIN_CHUNKS`` of them) the chunks, held open."""
        m = self.manifest
        names = [m["state"], *(m["table"][n] for n in TABLE_OBJECTS)]
        held = chunks and 2 * len(self.metas) <= PIN_CHUNKS  # (the lists read from the store)
        if held:
            names += [d for c in self.metas for d in (c.digest, c.matrix)]
        weights = [m["weights"]] if "weights" in m else []
        pins = Pins(self.objects, names, f"generation {self.id[:12]}", optional=weights)
        pins.chunks = held
        return pins

    @classmethod
    def built(
        cls, objects: ObjectStore, generation: str, manifest: dict[str, Any], table: Table
    ) -> Generation:
        """A generation this process has just computed and stored, with its table as it is
        in memory: its bytes were hashed here to name them, so reading them back (tens of
        MB at 10^5 concepts) would only check what was just written."""
        data = cls.__new__(cls)
        data.objects, data.id, data.manifest = objects, generation, manifest
        try:
            data.pins = data._pin(chunks=False)  # (the table is in memory)
        except VaultError:  # (just stored: never; else it is read from the store)
            data.pins = None
        table.freeze()  # shared by every reader, as a loaded table is
        if table.matrix_loaded:  # its summaries kept in the cache, as a loaded matrix's
            from vault.embedding import summary

            name = manifest["table"]["matrix"]
            summary.place(table.matrix, _summaries(objects), name, not objects.readonly)
        data.__dict__["table"] = table  # (the cached_property's slot)
        return data

    def _blob(self, digest: str, what: str) -> bytes:
        return _read(self.pins or self.objects, self.id, digest, what)

    @cached_property
    def lists(self) -> tuple[bytes, bytes]:
        names = self.manifest["table"]
        return self._blob(names["rows"], "rows list"), self._blob(names["matrix"], "matrix list")

    @cached_property
    def metas(self) -> list[Meta]:
        return parse_lists(*self.lists, f"generation {self.id[:12]}")

    def _load_table(self, gone: bool = False) -> Table:
        where = f"generation {self.id[:12]}"
        metas = self.metas
        # the loaders the table keeps hold the store, never this generation: no reference
        # cycle, so dropping the generation closes its descriptors at once
        reader = _Chunks(self.objects, self.pins, self.id, gone)
        names = self.manifest["table"]
        objects = self.objects

        def matrix() -> np.ndarray:  # the top-k summary of the matrix: kept in the cache
            from vault.embedding import summary

            m = summary.seal(read_matrix(metas, reader.matrix))
            summary.place(m, _summaries(objects), names["matrix"], not objects.readonly)
            return m

        return join(metas, reader.rows, matrix, self.lists, where)

    def read_ahead(self, metric: str) -> None:
        """Start reading the top-k summary that the first scan of this generation's matrix
        with ``metric`` will want, in the background (``summary.read_ahead``): only while
        the matrix is not read yet, for a table large enough to have one."""
        from vault.embedding import summary
        from vault.embedding.topk import SUMMARY_MIN_ROWS

        table = self.table
        if table.n >= SUMMARY_MIN_ROWS and not table.matrix_loaded:
            summary.read_ahead(
                _summaries(self.objects),
                self.manifest["table"]["matrix"],
                summary.kind_for(metric),
                table.n,
            )

    @cached_property
    def table(self) -> Table:
        return self._load_table()

    def nbytes(self) -> int:
        """What this generation holds in memory now (estimated: arrays and blobs exactly,
        parsed state entries at ``SHARD_ENTRY_BYTES``)."""
        n = 0
        table = self.__dict__.get("table")
        if table is not None:
            n += table.columns.nbytes + table.ref_offsets.nbytes + len(table.refs)
            r = table.runs
            n += len(r.kbytes) + r.counts.nbytes + r.local.nbytes + 49 * len(r.names)
            n += table.postings_bytes() + sum(49 + len(k) for k in table.keys)
            if not callable(table._matrix):  # (loaded on first use)
                n += table._matrix.nbytes
        state = self.__dict__.get("state")
        if state is not None:  # (what State parsed so far)
            n += SHARD_ENTRY_BYTES * sum(len(sh) for sh in state._concepts if sh is not None)
            for sh in state._reprs:
                if sh is not None:
                    n += REPR_ID_BYTES * (len(sh.get("known", ())) + len(sh.get("cited", ())))
        return n

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
    def fitted(self) -> Embedder | str:
        """The fitted embedder the manifest names, loaded once (or why it cannot be)."""
        try:
            return select.for_generation(self.pins or self.objects, self.manifest)
        except EmbeddingError as exc:
            return str(exc)


def _summaries(objects: ObjectStore) -> Path:
    """Where the summaries of the store's matrices are kept (FORMAT.md §8.5)."""
    return objects.root.parent / "embeddings" / "cache" / "summaries"


class Snapshot:
    """What one reader sees: a generation and the position it was current at."""

    def __init__(self, ref: CurrentRef, data: Generation):
        self.ref = ref
        self._data = data

    @classmethod
    def open(cls, objects: ObjectStore, ref: CurrentRef) -> Snapshot:
        """The generation ``ref`` names, everything it reads later held open (see the
        module docstring); ``GenerationGoneError`` if gc collected it already."""
        key = (str(objects.root), ref.generation)
        with _lock:
            data = _loaded.get(key)
            if data is not None:
                _loaded.move_to_end(key)
        if data is None:
            data = Generation(objects, ref.generation, pin=True)
            with _lock:
                _loaded[key] = data
        _evict()
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

    def embedder(self) -> Embedder:
        """The embedder this generation was built with; ``EmbeddingError`` ("embedder
        drift: ...") when this tool cannot run it (another version, weights missing or
        damaged)."""
        if select.manifest_choice(self.manifest) == builtin.BUILTIN:
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

    def read_ahead(self, metric: str) -> None:
        """See ``Generation.read_ahead``."""
        self._data.read_ahead(metric)

    @property
    def state_shards(self) -> dict[str, Any]:
        return self._data.state_shards

    @property
    def state(self) -> State:
        return self._data.state

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A state shard or record that cannot be read because gc collected this generation
        (its manifest is gone too) is ``GenerationGoneError``, not damage."""
        try:
            yield
        except CorruptionError as exc:
            if self.objects.path(self.generation).exists():
                raise
            raise GenerationGoneError(
                f"generation {self.generation[:12]} (number {self.number}): {exc}; {_GONE}"
            ) from None

    def concept(self, name: str) -> dict[str, Any] | None:
        """The state entry of ``id@version`` (read-only)."""
        with self._reading():
            return self.state.concept(name)

    def entries(self, names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The state entries of ``names`` (``id@version``; None for one not stored), each
        shard read once: a write-back names thousands of concepts spread over every shard,
        more than the record memo holds at 10^5 concepts."""
        with self._reading():
            return self.state.entries(names)

    def known(self, rid: str) -> bool:
        with self._reading():
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
        with self._reading():
            try:
                return self.objects.get_record(digest)
            except VaultError as exc:
                raise CorruptionError(f"record {digest}: {exc}") from None


def open_current(objects: ObjectStore, generations: Generations) -> Snapshot:
    """The current generation, opened (``Vault.snapshot``). ``CURRENT`` is read, then the
    generation it names is opened: when a write-back moved ``CURRENT`` and gc collected
    that generation in between, it reads ``CURRENT`` again (readers take no lock)."""
    for _ in range(OPEN_RETRIES):
        cur = generations.current()
        if cur is None:
            raise CorruptionError(
                f"{objects.root.parent}: no current index generation; run `vault index build`"
            )
        try:
            snap = Snapshot.open(objects, cur)
        except GenerationGoneError as exc:
            if generations.current() != cur:
                continue  # CURRENT moved on: open the new one
            raise CorruptionError(  # the current generation itself is incomplete: damage
                str(exc).replace(
                    _GONE,
                    "the current generation is incomplete (`vault verify` tells more; "
                    "`vault index build` rebuilds it)",
                )
            ) from None
        pins = snap._data.pins
        if pins is not None and pins.missing and generations.current() != cur:
            continue  # its weights went with it (gc): the current one, not a drift fallback
        return snap
    raise CorruptionError(f"{objects.root.parent}: CURRENT kept moving while it was opened")


def generation_embedders(objects: ObjectStore, generations: Iterable[str]) -> list[Embedder]:
    """The embedders the given generations were built with that this tool can run, each
    once (the caches worth keeping and checking)."""
    out: dict[str, Embedder] = {}
    for generation in generations:
        try:
            manifest = Generation(objects, generation).manifest
            emb = select.resolve(objects, select.manifest_choice(manifest))
        except VaultError:
            continue
        out.setdefault(f"{emb.version}:{emb.weights_hash}", emb)
    return list(out.values())


def loaded_table(objects: ObjectStore, generation: str) -> Table | None:
    """The table of ``generation`` if this process holds it loaded (a write-back's base)."""
    with _lock:
        data = _loaded.get((str(objects.root), generation))
    return None if data is None else data.__dict__.get("table")


def remember(data: Generation) -> None:
    """Keep ``data`` as the loaded form of its generation (``Generation.built``: the one a
    write-back just published is what its next write-back and reader open)."""
    key = (str(data.objects.root), data.id)
    with _lock:
        _loaded[key] = data
        _loaded.move_to_end(key)
    _evict()


def _evict() -> None:
    """Forget the generations gc collected (their held files' space comes back once no
    reader holds them either), then the least recently used beyond ``CACHE_SIZE`` or
    ``CACHE_BYTES`` (sizes are measured now: a generation grows as it loads on demand). A
    reader that holds one keeps it; it is only not shared any more."""
    with _lock:
        for key in [k for k, g in _loaded.items() if not g.objects.path(g.id).exists()]:
            del _loaded[key]
        sizes = [g.nbytes() for g in _loaded.values()]
        total = sum(sizes)
        while len(_loaded) > 1 and (len(_loaded) > CACHE_SIZE or total > CACHE_BYTES):
            _loaded.popitem(last=False)
            total -= sizes.pop(0)


def clear_cache() -> None:
    """Forget every loaded generation (tests; a process that changed objects behind vault)."""
    with _lock:
        _loaded.clear()
