"""Making generations: the one path from the audit log to a published index.

* ``plan_full`` — the generation of the audit log up to a seq, from scratch (``vault index
  build``, verify's rebuild, recovery from an unreadable generation);
* ``plan_incremental`` — a stored generation with newer acknowledged entries folded in,
  re-embedding only the concepts they touch (write-back, catch-up);
* ``publish`` — store a plan's objects and make it current: append its record (with its
  parent) to ``generations.jsonl``, replace ``CURRENT``, refresh the ``embeddings/`` view.
  Write-back, build, catch-up and init all publish through it; rollback moves ``CURRENT``
  to an existing record with ``point_current``;
* ``catch_up`` — complete every acknowledged operation the index does not reflect yet
  (write-backs and rollbacks alike), under the write lock, before any write.

A plan is a pure function of the audit entries — the embedder included: the state names the
embedder in effect (``vault embedder use``), whose weights object the manifest then names
(``weights``). Incremental and full plans of the same log give the same bytes
(property-tested), so every generation can be re-derived and checked by ``vault verify``.
An embedder change re-embeds every concept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vault.canonical import canonical_bytes, sha256_hex
from vault.embedding import Embedder
from vault.embedding.builtin import BUILTIN
from vault.embedding.cache import EmbeddingCache
from vault.embedding.prefetch import Computed, prefetch, put_computed
from vault.embedding.select import resolve
from vault.embedding.vectors import ann_hash, concept_inputs, concept_vector, embedder_bytes
from vault.errors import CorruptionError, VaultError
from vault.handle import CHANGE_OPS, Handle, is_stale
from vault.index import table as tables
from vault.index.generations import CurrentRef, IndexGeneration
from vault.index.preload import preload
from vault.index.state import (
    STATUS_CODES,
    Inputs,
    Records,
    State,
    apply,
    fold,
    reverted_in_effect,
)
from vault.store.audit import STATE_OPS, AuditEntry
from vault.store.fs import atomic_write

if TYPE_CHECKING:
    from vault.index.snapshot import Snapshot

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BuildResult:
    generation: str
    number: int
    concepts: int
    changed: bool
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "number": self.number,
            "concepts": self.concepts,
            "changed": self.changed,
            "counts": self.counts,
        }


@dataclass
class Plan:
    """A generation computed in memory: every byte it will store, nothing stored yet."""

    state: State
    table: tables.Table
    audit_seq: int
    reverted: tuple[int, ...]
    embedder: Embedder
    _objects: tuple[str, dict[str, Any], list[tuple[str, bytes]]] | None = field(
        default=None, repr=False
    )

    def materialize(self) -> tuple[str, dict[str, Any], list[tuple[str, bytes]]]:
        """(generation id, manifest, [(digest, bytes)] of every object including the
        manifest) — computed once."""
        if self._objects is None:
            self._objects = manifest_objects(self.state, self.table, self.embedder)
        return self._objects

    @property
    def generation(self) -> str:
        return self.materialize()[0]


def counts(table: tables.Table) -> dict[str, int]:
    status = table.col("status")
    return {
        "concepts": table.n,
        "active": int(np.count_nonzero(status == 0)),
        "evidence": int(table.col("positive").sum(dtype=np.int64))
        + int(table.col("negative").sum(dtype=np.int64)),
        "keys": len(table.keys),
    }


def manifest_objects(
    state: State, table: tables.Table, embedder: Embedder
) -> tuple[str, dict[str, Any], list[tuple[str, bytes]]]:
    """The generation's id, manifest and the objects to store: the state shards, the
    table's chunks made in this process (the others are the base generation's, stored
    already), its two chunk lists, the embedder identity and the manifest."""
    shard_list, shard_blobs = state.shard_bytes()
    blobs: list[tuple[str, bytes]] = [(sha256_hex(b), b) for b in shard_blobs]
    state_obj = canonical_bytes(shard_list)
    emb = embedder_bytes(embedder)
    rows_list, matrix_list = table.lists
    named = {"state": state_obj, "embedder": emb, "rows": rows_list, "matrix": matrix_list}
    digests = {name: sha256_hex(data) for name, data in named.items()}
    for chunk in table.new:
        blobs += [(chunk.meta.digest, chunk.blob), (chunk.meta.matrix, chunk.mblob)]
    blobs += [(digests[name], data) for name, data in named.items()]
    manifest = {
        "kind": "generation",
        "schema_version": tables.MANIFEST_SCHEMA_VERSION,
        "ann_hash": ann_hash(emb, rows_list + matrix_list),
        "counts": counts(table),
        "embedder": digests["embedder"],
        "embedder_id": embedder.identity(),
        "state": digests["state"],
        "table": {name: digests[name] for name in tables.TABLE_OBJECTS},
    }
    if embedder.choice != BUILTIN:
        manifest["weights"] = embedder.choice  # the weights object (gc keeps it)
    data = canonical_bytes(manifest)
    gen = sha256_hex(data)
    blobs.append((gen, data))
    return gen, manifest, blobs


def posted_keys(entry: dict[str, Any]) -> tuple[str, ...]:
    """The keys a state entry is posted under in the table: its matchable keys and
    ``domain:<its card's domain>`` — the one ``domain:`` posting retrieval filters by. A
    ``domain:`` key the card's signature names besides its own domain stays in the entry's
    ``keys`` but is not posted (FORMAT §7.5): the card's ``domain`` field decides."""
    own = f"domain:{entry['domain']}"
    return tuple(sorted({own, *(k for k in entry["keys"] if not k.startswith("domain:"))}))


def row(name: str, entry: dict[str, Any], vector: list[int]) -> tables.Row:
    return tables.Row(
        name,
        STATUS_CODES[entry["status"]],
        int(entry["positive"]),
        int(entry["negative"]),
        posted_keys(entry),
        tuple(vector),
    )


def _rows(
    emb: Embedder,
    state: State,
    names: Iterable[str],
    records: Records,
    cache: EmbeddingCache | None,
    progress: Progress | None = None,
    total: int = 0,
    inputs: Inputs | None = None,
) -> dict[str, tables.Row]:
    out: dict[str, tables.Row] = {}
    with cache.bulk() if cache is not None else contextlib.nullcontext():
        _embed_rows(emb, state, names, records, cache, progress, total, out, inputs or {})
    return out


def _embed_rows(
    emb: Embedder,
    state: State,
    names: Iterable[str],
    records: Records,
    cache: EmbeddingCache | None,
    progress: Progress | None,
    total: int,
    out: dict[str, tables.Row],
    inputs: Inputs,
) -> None:
    for i, name in enumerate(names, start=1):
        entry = state.concept(name)
        if entry is None:
            raise CorruptionError(f"concept {name} vanished from the state")
        try:
            vector = concept_vector(emb, entry, state.known, records, cache, inputs.get(name))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise CorruptionError(
                f"concept {name}: a record it is built from is malformed ({exc})"
            ) from None
        out[name] = row(name, entry, vector)
        if progress:
            progress(i, total)


def _chosen_cache(
    entries: list[AuditEntry], reverted: frozenset[int], state: State, cache: EmbeddingCache | None
) -> EmbeddingCache | None:
    """The cache of the embedder the fold of ``entries`` will end with (the last ``embedder``
    entry in effect), read before the fold so that worker processes compute, while it runs,
    the vectors that embedder lacks (``preload``). Guessing the vault's default cache (the
    built-in embedder's) instead made every full build of a vault using the shipped fitted
    embedder compute every evidence vector twice — once with the wrong embedder, thrown away
    (found by the tables23 work: 12,860 wasted vectors per build at 10^4)."""
    if cache is None:
        return None
    choice = BUILTIN
    for e in entries:
        if e.op == "embedder" and e.seq not in reverted and isinstance(e.detail, dict):
            choice = e.detail.get("embedder", choice)
    try:
        return cache.bound(resolve(state.objects, str(choice)))
    except VaultError:  # (the fold reports it)
        return cache


def plan_full(
    entries: list[AuditEntry],
    state: State,
    records: Records,
    cache: EmbeddingCache | None,
    progress: Progress | None = None,
) -> Plan:
    """The generation of ``entries`` (the audit log from seq 1) from scratch; ``state`` is an
    empty ``State`` over the vault's objects, which ``records`` reads (worker processes
    read them ahead from there: ``vault.index.preload``)."""
    inputs: Inputs = {}
    reverted = reverted_in_effect(entries)
    guess = _chosen_cache(entries, reverted, state, cache)
    if guess is not None:
        guess.load_packs()
    speculated: list[Computed] = []
    with preload([e for e in entries if e.seq not in reverted], state.objects, guess) as pre:
        fold(entries, state, records, inputs, pre)
        speculated = pre.computed() if pre is not None else []
    emb = resolve(state.objects, state.embedder)
    names = sorted(name for name, _ in state.concepts())
    if cache is not None:
        cache = cache.bound(emb)
        cache.load_packs()
        with cache.bulk():
            if cache is guess:
                put_computed(cache, speculated)
            prefetch(_items(state, inputs), state.objects, cache)
            rows = _rows(emb, state, names, records, cache, progress, len(names), inputs)
    else:
        rows = _rows(emb, state, names, records, cache, progress, len(names), inputs)
    table = tables.build(rows.values())
    seq = entries[-1].seq if entries else 0
    return Plan(state, table, seq, tuple(sorted(reverted_in_effect(entries))), emb)


def _items(state: State, inputs: Inputs) -> list[tuple[str, ...]]:
    """Every repr and pair the concepts' vectors are built from."""
    out: list[tuple[str, ...]] = []
    for cited, reprs, pairs in inputs.values():
        out += [(r,) for r in cited if state.known(r)]
        out += [(r,) for r in reprs]
        out += list(pairs)
    return out


def plan_incremental(
    base: Snapshot,
    entries: list[AuditEntry],
    records: Records,
    cache: EmbeddingCache | None,
    audit_seq: int,
    reverted: tuple[int, ...],
) -> Plan:
    """``base`` with ``entries`` (state-changing, no rollback among them) folded in; every
    concept is embedded anew when the embedder is not the one that made ``base`` (an
    ``embedder`` entry among them, or a base built by another version of the tool)."""
    state = State(base.objects, base.state_shards)
    touched: set[str] = set()
    for e in entries:
        touched |= apply(state, e, records)
    emb = resolve(state.objects, state.embedder)
    cache = cache.bound(emb) if cache is not None else None
    if base.embedder_id != emb.identity():
        names = sorted(name for name, _ in state.concepts())
        table = tables.build(_rows(emb, state, names, records, cache).values())
        return Plan(state, table, audit_seq, reverted, emb)
    names = sorted(touched)
    if cache is not None:  # a large write-back's new vectors computed on every core first
        with cache.bulk():
            prefetch(_concept_items(state, names, records), state.objects, cache)
            changes = _rows(emb, state, names, records, cache)
    else:
        changes = _rows(emb, state, names, records, cache)
    return Plan(state, tables.update(base.table, changes), audit_seq, reverted, emb)


def _concept_items(state: State, names: list[str], records: Records) -> list[tuple[str, ...]]:
    """Every repr and pair the vectors of concepts ``names`` are built from (a concept
    whose records cannot be read is left out: its own computation reports it)."""
    out: list[tuple[str, ...]] = []
    for name in names:
        entry = state.concept(name)
        try:
            reprs, pairs = concept_inputs(entry, state.known, records) if entry else ([], [])
        except (KeyError, TypeError, AttributeError, ValueError, VaultError):
            continue
        out += [(r,) for r in reprs]
        out += list(pairs)
    return out


# --------------------------------------------------------------------------- publishing
def publish(
    vault: Handle, plan: Plan, op: str, parent: int | None, *, force_view: bool = False
) -> BuildResult:
    """Store ``plan`` and make it current (under the write lock). ``parent`` is the record
    current before it (the record a pending rollback moved to, during catch-up)."""
    gen, manifest, blobs = plan.materialize()
    vault.put_objects(blobs)
    cur = vault.current_ref(tolerant=True)
    last = vault.last_record(tolerant=True)
    if cur is not None and cur.generation == gen and cur.number == parent:
        number, changed = cur.number, False
        vault.generations.sync()  # (a killed writer's record may not be durable yet)
    elif last is not None and last.generation == gen and last.parent == parent:
        number, changed = last.number, True  # a crash after the record, before CURRENT
        vault.generations.sync()  # (as above)
    else:
        number, changed = (last.number + 1 if last else 1), True
        vault.generations.append(
            IndexGeneration(
                number,
                gen,
                vault.clock(),
                plan.audit_seq,
                op,
                manifest["counts"],
                plan.embedder.identity(),
                plan.reverted,
                parent,
            )
        )
    point_current(
        vault,
        CurrentRef(gen, number, plan.audit_seq, plan.reverted),
        manifest,
        plan.table,
        cur,
        force_view=force_view,
    )
    from vault.index.snapshot import Generation, remember

    plan.table.new = []  # stored: a later write-back from it stores only its own chunks
    remember(Generation.built(vault.objects, gen, manifest, plan.table))
    derive_summaries(vault, manifest, plan.table)
    return BuildResult(gen, number, plan.table.n, changed, manifest["counts"])


def point_current(
    vault: Handle,
    ref: CurrentRef,
    manifest: Mapping[str, Any],
    table: tables.Table | None = None,
    before: CurrentRef | None = None,
    *,
    force_view: bool = False,
) -> None:
    """Replace ``CURRENT`` with ``ref``, then refresh the ``embeddings/`` view, derived data
    (``vault.index.view``: a crash before it is done leaves the view behind; readers never
    use it, the next write fixes it, and verify reports it as a warning). ``table``: the
    generation's table when in memory; ``before``: the record current until now (the view
    splices the lines of the chunks both share).

    When replacing ``CURRENT`` fails (an fsync after the rename), it is put back as it
    was, if the disk lets us: the acknowledged operation then stays *pending*, so the next
    command's catch-up completes it and a retry of the same request recognises it (no
    second fork, no second rollback) instead of finding it done and repeating it."""
    path = vault.generations.current_path
    try:
        old: bytes | None = path.read_bytes()
    except FileNotFoundError:
        old = None
    try:
        vault.generations.set_current(ref)
    except OSError:
        with contextlib.suppress(OSError):
            if old is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, old)
        raise
    refresh_view(vault, ref.generation, manifest, table, before, force=force_view)


def refresh_view(
    vault: Handle,
    generation: str,
    manifest: Mapping[str, Any],
    table: tables.Table | None = None,
    before: CurrentRef | None = None,
    *,
    force: bool = False,
) -> None:
    """Bring ``embeddings/`` to ``generation`` (derived data: an error is not the write's;
    the view stays behind, and the next write or `vault index build` retries)."""
    from vault.index.snapshot import Generation, loaded_table

    prev, prev_manifest = None, None
    if before is not None and before.generation != generation:
        prev = loaded_table(vault.objects, before.generation)
        if prev is not None:
            with contextlib.suppress(VaultError):
                prev_manifest = Generation(vault.objects, before.generation).manifest
    with contextlib.suppress(OSError, VaultError):  # (verify reports it; the next one retries)
        vault.view.publish(
            vault.objects,
            manifest,
            table if table is not None else (lambda: Generation(vault.objects, generation).table),
            prev,
            prev_manifest,
            force=force,
        )


# --------------------------------------------------------------------------- catch-up
def pending(vault: Handle, cur: CurrentRef) -> list[AuditEntry]:
    """Acknowledged entries after ``cur``'s audit position."""
    return vault.audit.entries_after(cur.audit_seq)


def catch_up(
    vault: Handle, *, repair: bool = False, completed: list[AuditEntry] | None = None
) -> Snapshot:
    """Under the lock: the current snapshot, after completing every acknowledged operation
    the index does not reflect yet (a write-back or a rollback killed after its audit line);
    the entries it completed are appended to ``completed`` (a retry recognises its own
    earlier attempt there). Also repairs a view left behind by a crash. An unreadable
    ``CURRENT`` or current generation is an error — unless ``repair`` (``vault index
    build``): then the index is rebuilt from the audit log. A ``generations.jsonl`` that
    lost ``CURRENT``'s record (``Generations.check``) or an audit log that lost
    acknowledged lines is an error either way: nothing is written."""
    from vault.index.snapshot import Snapshot

    cur = vault.current_ref(tolerant=repair)
    if cur is not None:
        vault.generations.check(cur)  # the log still ends at or after CURRENT's record
        last = vault.audit.last_seq()
        if cur.audit_seq > last:  # the log lost acknowledged lines: never write over them
            raise CorruptionError(
                f"{vault.audit.path} ends at seq {last} but the index accounts for seq "
                f"{cur.audit_seq}: acknowledged lines are missing (restore the log from a "
                "backup; `vault verify` tells more)"
            )
    if cur is None or not _readable(vault, cur):
        if not repair:
            if cur is None:
                raise CorruptionError(
                    f"{vault.root}: no current index generation; run `vault index build`"
                )
            Snapshot.open(vault.objects, cur)  # raises the precise error
        build_all(vault, "build", parent=cur.number if cur else None)
        return vault.snapshot()
    todo = pending(vault, cur)
    if not is_stale(todo):
        snap = vault.snapshot()
        refresh_view(vault, snap.generation, snap.manifest)  # no-op unless a crash left it
        return snap
    vault.audit.sync()  # the lines completed here are durable before anything names them
    if completed is not None:
        completed.extend(e for e in todo if e.op in CHANGE_OPS)
    base = cur
    ops: list[AuditEntry] = []
    for e in todo:
        if e.op == "rollback":
            base = rollback_target(e)
            ops = []
        elif e.op in STATE_OPS:
            ops.append(e)
    last_seq = todo[-1].seq
    if not ops:  # only a rollback to finish
        target = Snapshot.open(vault.objects, base)
        point_current(
            vault,
            CurrentRef(base.generation, base.number, last_seq, base.reverted),
            target.manifest,
            before=cur,
        )
        return vault.snapshot()
    try:
        snap = Snapshot.open(vault.objects, base)
        plan = plan_incremental(snap, ops, vault.records, vault.cache, last_seq, base.reverted)
    except VaultError:  # an unreadable base: derive everything from the audit log
        build_all(vault, "catch-up", parent=base.number)
        return vault.snapshot()
    publish(vault, plan, "catch-up", base.number)
    return vault.snapshot()


def rollback_target(e: AuditEntry) -> CurrentRef:
    """The record a rollback entry moves to, as a ref at the rollback's own position."""
    d = e.detail
    try:
        return CurrentRef(
            str(d["to"]), int(d["number"]), e.seq, tuple(int(s) for s in d["reverted"])
        )
    except (KeyError, TypeError, ValueError):
        raise CorruptionError(f"audit entry {e.seq}: malformed rollback") from None


def _readable(vault: Handle, cur: CurrentRef) -> bool:
    from vault.index.snapshot import Snapshot

    try:
        Snapshot.open(vault.objects, cur)
        return True
    except VaultError:
        return False


def build_all(
    vault: Handle, op: str, parent: int | None, progress: Progress | None = None
) -> BuildResult:
    """The whole index from the audit log, published (under the lock)."""
    entries = vault.audit.entries()
    plan = plan_full(entries, State(vault.objects), vault.records, vault.cache, progress)
    result = publish(vault, plan, op, parent, force_view=op == "build")
    if op == "build":
        store_summaries(vault, result.generation, plan.table)
    return result


def derive_summaries(vault: Handle, manifest: dict[str, Any], table: tables.Table) -> None:
    """A write-back's table (``tables.update``): the top-k summaries of its base's matrix
    that this process holds or the cache stores, derived for its matrix (the changed rows
    projected, the others copied: ``summary.derive``), kept for this process's queries and
    stored in the cache (FORMAT.md §8.5) — so no query after a write-back builds one."""
    from vault.embedding import summary, topk

    origin, table.origin = table.origin, None  # (holds the base table)
    if origin is None or table.n < topk.SUMMARY_MIN_ROWS:
        return
    base, rows = origin
    if not base.matrix_loaded:
        return
    for kind in ("parts", "full"):
        try:
            old = summary.stored(base.matrix, kind)
            new = None if old is None else summary.derive(old, base.matrix, table.matrix, rows)
        except Exception as exc:  # noqa: BLE001 - derived data: the write-back stands
            from vault.internal import note

            note(exc, "derive_summaries")  # (a bug, made visible to the test suite)
            continue
        if new is None:
            continue
        summary.keep(table.matrix, new)
        if vault.cache.writable:
            summary.write(vault.cache.root / "summaries", manifest["table"]["matrix"], new)


def store_summaries(vault: Handle, generation: str, table: tables.Table) -> None:
    """A full build also writes its matrix's top-k summaries into the cache (FORMAT.md
    §8.5), so that no query process pays for one — for tables large enough to have them."""
    from vault.embedding import summary, topk
    from vault.index.snapshot import read_manifest

    if table.n < topk.SUMMARY_MIN_ROWS or not vault.cache.writable:
        return
    digest = read_manifest(vault.objects, generation)["table"]["matrix"]
    for kind in ("parts", "full"):
        summary.write(
            vault.cache.root / "summaries", digest, summary.build(table.matrix, kind, topk.NA)
        )
