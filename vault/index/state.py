"""The vault's state: the fold of its audit log — the one definition every reader and writer uses.

``state(S)`` is the fold, in sequence order, of the state-changing audit entries with
``seq <= S`` that the rollback in effect at ``S`` does not revert. It holds:

* one *concept entry* per concept version (``id@version``): its card, status, keys, evidence
  digests, status-event digests and evidence counts;
* the *known reprs*: the repr ids that acknowledged evidence cites. Only known reprs feed a
  concept's vector (through its evidence, or its card's ``provenance.validated_on``), so an
  object that merely sits in ``objects/`` — e.g. left by a write-back killed before its audit
  line — never changes an index;
* the *pending citations*: reprs a card's ``validated_on`` names that are not known yet, with
  the concepts citing them, so that a later write-back that makes one known re-embeds them;
* the *embedder*: ``"builtin"`` or the digest of a fitted weights object, as the last
  ``embedder`` entry in effect chose (``vault embedder use``); a rollback that reverts that
  entry takes the embedder back with it.

A full build folds every entry into an empty state; an incremental update folds the new
entries into the state of the current generation. It is the same function on the same
events, so both give the same bytes. The state is stored as 256 concept shards (by the first
byte of sha256(ref)) and 256 repr shards (by the repr id's first byte), so a write-back
rewrites only the shards it touches. The stored shard list names the embedder only when it
is not the built-in one (so a vault that never chose another keeps its bytes).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from vault.canonical import canonical_bytes
from vault.embedding.builtin import BUILTIN
from vault.errors import CorruptionError, VaultError, json_value
from vault.records.cards import ref
from vault.records.keys import concept_keys
from vault.store.audit import STATE_OPS, AuditEntry
from vault.store.objects import ObjectStore, is_digest

if TYPE_CHECKING:
    from vault.index.preload import Preloaded

SHARDS = 256
EMPTY_CONCEPT_SHARD: dict[str, Any] = {}
STATUS_CODES = {"active": 0, "deprecated": 1, "suppressed": 2}

# digest -> parsed record (objects are immutable; callers never mutate the result)
Records = Callable[[str], Any]


def concept_shard(name: str) -> int:
    return hashlib.sha256(name.encode()).digest()[0]


def repr_shard(rid: str) -> int:
    return int(rid[:2], 16)


def _empty_repr_shard() -> dict[str, Any]:
    return {"cited": {}, "known": []}


def cited_reprs(ev: dict[str, Any]) -> list[str]:
    """The repr ids an evidence record cites (repr_id, then the pair's input and output)."""
    out = [ev["repr_id"]] if "repr_id" in ev else []
    if "pair" in ev:
        out += [ev["pair"]["input"], ev["pair"]["output"]]
    return out


class State:
    """A mutable state, loaded shard by shard from a stored one (or empty).

    ``shards`` is the stored ``{"concepts": [256 digests], "reprs": [256 digests]}`` (plus
    ``"embedder"``: a weights digest, when one is chosen; None for an empty state). Changed
    shards are tracked, so storing writes only those."""

    def __init__(self, objects: ObjectStore, shards: dict[str, Any] | None = None):
        self.objects = objects
        self._base = shards
        self.embedder: str = (shards or {}).get("embedder", BUILTIN)
        self._concepts: list[dict[str, Any] | None] = [None] * SHARDS
        self._reprs: list[dict[str, Any] | None] = [None] * SHARDS
        self.dirty_concepts: set[int] = set()
        self.dirty_reprs: set[int] = set()

    # -------------------------------------------------------------- shard access
    def _load(self, kind: str, i: int) -> dict[str, Any]:
        if self._base is None:
            return {} if kind == "concepts" else _empty_repr_shard()
        digest = self._base[kind][i]
        try:
            value = self.objects.get_record(digest)
        except VaultError as exc:
            raise CorruptionError(f"state shard {kind}[{i}] unreadable ({exc})") from None
        if not isinstance(value, dict):
            raise CorruptionError(f"state shard {kind}[{i}] ({digest}) is malformed")
        return value

    def concept_shard(self, i: int, *, write: bool = False) -> dict[str, Any]:
        shard = self._concepts[i]
        if shard is None:
            shard = self._load("concepts", i)
            if not write:
                return shard
        if write and i not in self.dirty_concepts:
            shard = {
                k: dict(v) for k, v in shard.items()
            }  # copy-on-write: stored shards are shared
            self.dirty_concepts.add(i)
        self._concepts[i] = shard
        return shard

    def repr_shard(self, i: int, *, write: bool = False) -> dict[str, Any]:
        shard = self._reprs[i]
        if shard is None:
            shard = self._load("reprs", i)
            if not write:
                return shard
        if write and i not in self.dirty_reprs:
            shard = {
                "cited": {k: list(v) for k, v in shard["cited"].items()},
                "known": list(shard["known"]),
            }
            self.dirty_reprs.add(i)
        self._reprs[i] = shard
        return shard

    # -------------------------------------------------------------- concepts
    def concept(self, name: str) -> dict[str, Any] | None:
        """The entry of ``id@version`` (do not mutate it; use ``edit``)."""
        entry: dict[str, Any] | None = self.concept_shard(concept_shard(name)).get(name)
        return entry

    def entries(self, names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The entries of ``names`` (do not mutate them), reading the shards they fall in in
        shard order: each shard is parsed at most once, however the names are spread."""
        by_shard: dict[int, list[str]] = {}
        for name in dict.fromkeys(names):
            by_shard.setdefault(concept_shard(name), []).append(name)
        out: dict[str, dict[str, Any] | None] = {}
        for i in sorted(by_shard):
            shard = self.concept_shard(i)
            for name in by_shard[i]:
                out[name] = shard.get(name)
        return out

    def edit(self, name: str) -> dict[str, Any]:
        return self.concept_shard(concept_shard(name), write=True)[name]  # type: ignore[no-any-return]

    def insert(self, name: str, entry: dict[str, Any]) -> None:
        self.concept_shard(concept_shard(name), write=True)[name] = entry

    def concepts(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (ref, entry), shard by shard (order is not meaningful)."""
        for i in range(SHARDS):
            yield from self.concept_shard(i).items()

    # -------------------------------------------------------------- reprs
    def known(self, rid: str) -> bool:
        known = self.repr_shard(repr_shard(rid))["known"]
        i = bisect.bisect_left(known, rid)
        return i < len(known) and known[i] == rid

    def know(self, rid: str) -> list[str]:
        """Mark ``rid`` known; return the concepts whose cards were waiting for it."""
        if self.known(rid):
            return []
        shard = self.repr_shard(repr_shard(rid), write=True)
        bisect.insort(shard["known"], rid)
        waiting: list[str] = shard["cited"].pop(rid, [])
        return waiting

    def cite(self, rid: str, name: str) -> None:
        """``name``'s card cites ``rid``, which is not known yet."""
        cited = self.repr_shard(repr_shard(rid), write=True)["cited"]
        refs = cited.setdefault(rid, [])
        if name not in refs:
            bisect.insort(refs, name)

    def known_reprs(self) -> Iterator[str]:
        for i in range(SHARDS):
            yield from self.repr_shard(i)["known"]

    # -------------------------------------------------------------- storing
    def shard_bytes(self) -> tuple[dict[str, Any], list[bytes]]:
        """(the shard list, the bytes of every changed shard) — what storing this state writes."""
        from vault.canonical import sha256_hex

        blobs: list[bytes] = []
        out: dict[str, Any] = {
            "concepts": list(self._base["concepts"]) if self._base else [],
            "reprs": list(self._base["reprs"]) if self._base else [],
        }
        for kind, shards, dirty, empty in (
            ("concepts", self._concepts, self.dirty_concepts, {}),
            ("reprs", self._reprs, self.dirty_reprs, _empty_repr_shard()),
        ):
            if not out[kind]:
                data = canonical_bytes(empty)
                blobs.append(data)
                out[kind] = [sha256_hex(data)] * SHARDS
            for i in sorted(dirty):
                shard = shards[i]
                assert shard is not None
                data = canonical_bytes(shard)
                blobs.append(data)
                out[kind][i] = sha256_hex(data)
        if self.embedder != BUILTIN:
            out["embedder"] = self.embedder
        return out, blobs


# ref -> what its vector is built from, gathered while folding (so a full build does not
# read every card and evidence record a second time): validated_on digests, positive
# evidence repr ids and pairs
Inputs = dict[str, tuple[list[str], list[str], list[tuple[str, str]]]]


def apply(
    state: State,
    entry: AuditEntry,
    records: Records,
    inputs: Inputs | None = None,
    preloaded: Preloaded | None = None,
) -> set[str]:
    """Fold one acknowledged audit entry into ``state``; return the refs it touched (whose
    vector or row may have changed). ``inputs``, if given, gathers vector inputs;
    ``preloaded`` holds slim records (and card keys) read ahead by worker processes."""
    touched: set[str] = set()
    if entry.op not in STATE_OPS:
        return touched
    if entry.op == "embedder":  # every vector changes: the planner re-embeds everything
        state.embedder = _chosen_embedder(entry)
        return touched
    skip = entry.detail.get("reprs", 0) if isinstance(entry.detail, dict) else 0
    if not isinstance(skip, int) or isinstance(skip, bool) or not 0 <= skip <= len(entry.records):
        raise CorruptionError(f"audit entry {entry.seq}: malformed 'reprs' count")
    for digest in entry.records[skip:]:  # the first ``skip`` records are reprs
        try:
            slim = preloaded.get(digest) if preloaded is not None else None
            obj, keys = slim if slim is not None else (records(digest), None)
            kind = obj.get("kind") if isinstance(obj, dict) else None
            if kind == "concept":
                _fold_card(state, digest, obj, touched, inputs, keys)
            elif kind == "evidence":
                _fold_evidence(state, digest, obj, touched, entry.seq, inputs)
            elif kind == "status":
                _fold_status(state, digest, obj, touched, entry.seq)
            elif kind != "repr":  # reprs become known when evidence cites them
                raise CorruptionError(f"record {digest} has unknown kind {json_value(kind)}")
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise CorruptionError(
                f"audit entry {entry.seq}: record {digest} is malformed ({type(exc).__name__}: "
                f"{exc})"
            ) from None
    return touched


def _chosen_embedder(entry: AuditEntry) -> str:
    choice = entry.detail.get("embedder") if isinstance(entry.detail, dict) else None
    if not isinstance(choice, str) or not (choice == BUILTIN or is_digest(choice)):
        raise CorruptionError(f"audit entry {entry.seq}: malformed embedder choice")
    return choice


def _fold_card(
    state: State,
    digest: str,
    card: dict[str, Any],
    touched: set[str],
    inputs: Inputs | None,
    keys: list[str] | None = None,
) -> None:
    name = ref(card["id"], card["version"])
    if state.concept(name) is not None:
        return
    cited = [
        r
        for r in card.get("provenance", {}).get("validated_on", ())
        if isinstance(r, str) and is_digest(r)
    ]
    if inputs is not None:
        inputs[name] = (cited, [], [])
    state.insert(
        name,
        {
            "card": digest,
            "domain": card["domain"],
            "events": [],
            "evidence": [],
            "id": card["id"],
            "keys": concept_keys(card) if keys is None else keys,
            "negative": 0,
            "positive": 0,
            "status": card["status"],
            "version": card["version"],
        },
    )
    for rid in cited:
        if not state.known(rid):
            state.cite(rid, name)
    touched.add(name)


def _fold_evidence(
    state: State,
    digest: str,
    ev: dict[str, Any],
    touched: set[str],
    seq: int,
    inputs: Inputs | None,
) -> None:
    name = ref(ev["concept"], ev["version"])
    if state.concept(name) is None:
        raise CorruptionError(f"audit entry {seq}: evidence {digest} for unknown {name}")
    entry = state.edit(name)
    if digest in entry["evidence"]:
        return
    entry["evidence"] = sorted([*entry["evidence"], digest])
    field = "positive" if ev["polarity"] == "positive" else "negative"
    entry[field] += 1
    touched.add(name)
    if inputs is not None and field == "positive" and name in inputs:
        if "repr_id" in ev:
            inputs[name][1].append(ev["repr_id"])
        if "pair" in ev:
            inputs[name][2].append((ev["pair"]["input"], ev["pair"]["output"]))
    for rid in cited_reprs(ev):
        touched.update(state.know(rid))


def _fold_status(
    state: State, digest: str, ev: dict[str, Any], touched: set[str], seq: int
) -> None:
    name = ref(ev["concept"], ev["version"])
    if state.concept(name) is None:
        raise CorruptionError(f"audit entry {seq}: status of unknown {name}")
    if ev["status"] not in STATUS_CODES:
        raise CorruptionError(f"audit entry {seq}: status event {digest} is malformed")
    entry = state.edit(name)
    entry["status"] = ev["status"]
    if digest not in entry["events"]:
        entry["events"] = sorted([*entry["events"], digest])
    touched.add(name)


def reverted_in_effect(entries: list[AuditEntry]) -> frozenset[int]:
    """Audit seqs left out of the state by the last rollback among ``entries``."""
    for e in reversed(entries):
        if e.op == "rollback":
            return frozenset(e.detail.get("reverted", ()))
    return frozenset()


def fold(
    entries: list[AuditEntry],
    state: State,
    records: Records,
    inputs: Inputs | None = None,
    preloaded: Preloaded | None = None,
) -> set[str]:
    """Fold ``entries`` (minus those the last rollback among them reverts) into ``state``."""
    reverted = reverted_in_effect(entries)
    touched: set[str] = set()
    for e in entries:
        if e.seq not in reverted:
            touched |= apply(state, e, records, inputs, preloaded)
    return touched
