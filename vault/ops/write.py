"""Write-back: concept cards, evidence, status changes and the embedder choice — one audit
entry, one generation.

Every write-back runs the same steps under the write lock:

1. validate all input (before the lock; nothing is written on an error);
2. catch up: complete any acknowledged operation the index does not reflect yet;
3. plan the records against the current snapshot (conflicts, duplicates, citations);
4. store the new objects (durably);
5. compute the whole new generation in memory — a record that cannot be indexed fails here,
   before anything is acknowledged;
6. append the audit line: the **acknowledgement**;
7. publish the generation (objects, record, ``CURRENT``, view).

A crash after 6 loses nothing: the next writer's catch-up completes the work from the log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vault.canonical import canonical_bytes, sha256_hex
from vault.errors import (
    CommittedError,
    ConflictError,
    InputError,
    InvalidInputError,
    NotFoundError,
    UsageError,
    VaultError,
    counted,
)
from vault.grid.reprs import normalize_repr, repr_id, strip_provenance
from vault.index.build import catch_up, plan_incremental, publish
from vault.index.snapshot import Snapshot
from vault.index.state import Records, cited_reprs
from vault.records.cards import (
    VERSION_PART_MAX,
    NormalizedEvidence,
    normalize_card,
    normalize_evidence,
    normalize_status,
    parse_version,
    ref,
    status_event,
    version_text,
)
from vault.records.keys import Declared
from vault.store.audit import AuditEntry

if TYPE_CHECKING:
    from vault.handle import Handle


# the state entry of ``id@version`` in the snapshot a write-back plans against (or None)
Lookup = Callable[[str], "dict[str, Any] | None"]


@dataclass(frozen=True)
class WriteResult:
    """What a write-back did."""

    op: str
    # refs of new concept versions and ids of new evidence: each once, in input order
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # given again, held as is (each once)
    audit_seq: int | None = None
    generation: str | None = None
    number: int | None = None
    # refs of the concept versions new status events were stored for: each once, in order
    status: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "added": self.added,
            "unchanged": self.unchanged,
            "status": self.status,
            "audit_seq": self.audit_seq,
            "generation": self.generation,
            "number": self.number,
        }


class _Batch:
    """The new records of one write-back: bytes to store and parsed values for the fold."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.parsed: dict[str, Any] = {}
        self.stored: dict[str, bytes] = {}  # records given again that the vault holds

    def restore(self, vault: Handle) -> None:
        """Rewrite the records given again whose object file is damaged or gone (a write
        of the same records brings them back; a damaged one's repair is logged, FORMAT
        section 3): each stored file is read and compared, only a bad one is written."""
        bad = []
        for digest, data in self.stored.items():
            try:
                sound = vault.objects.get(digest) == data
            except (OSError, VaultError):
                sound = False
            if not sound:
                bad.append((digest, data))
        if bad:
            vault.put_objects(bad)

    def add(self, obj: dict[str, Any]) -> str:
        data = canonical_bytes(obj)
        digest = sha256_hex(data)
        self.blobs[digest] = data
        self.parsed[digest] = obj
        return digest

    def records(self, fallback: Records) -> Records:
        parsed = self.parsed

        def get(digest: str) -> Any:
            value = parsed.get(digest)
            return value if value is not None else fallback(digest)

        return get


def add(vault: Handle, cards: Iterable[tuple[Any, str]], *, fork: bool = False) -> WriteResult:
    """Store concept cards (``(object, source)`` pairs); all are checked before any write.

    An id+version already stored with the same content is left as is; with different
    content it is refused. ``fork`` stores each card as the next minor version of its id.
    """
    return write_back(vault, cards=cards, fork=fork, op="fork" if fork else "add")


def add_evidence(vault: Handle, items: Iterable[tuple[Any, str]]) -> WriteResult:
    """Store evidence records (positive or negative) about stored concept versions."""
    return write_back(vault, evidence=items, op="evidence")


def write_back(
    vault: Handle,
    cards: Iterable[tuple[Any, str]] = (),
    evidence: Iterable[tuple[Any, str]] = (),
    *,
    fork: bool = False,
    op: str = "add",
    detail: dict[str, Any] | None = None,
    reprs: Iterable[dict[str, Any]] = (),
    statuses: Iterable[tuple[Any, str]] = (),
    repr_sources: dict[str, str] | None = None,
) -> WriteResult:
    """Cards, evidence and status events (which may name those cards) as one audit entry and
    one new generation. ``reprs``: reprs made by ``grid_to_repr`` that the evidence cites by
    id. A status event equal to the concept's status that is already among its events is
    left as is (so writing the same records twice changes nothing). The ``[gc]`` retention
    policy is not applied (``Vault.add`` and the other facade writes apply it after).

    ``repr_sources`` (repr id -> source) marks reprs the caller gave as records in their own
    right (``vault import``): each must be cited by evidence of this write-back (it is
    stored with it) or be known to the vault already (it is listed as unchanged); any other
    is refused, naming its source, since a repr is stored only with the evidence citing it
    (FORMAT.md section 6) and would otherwise be dropped without a word."""
    declared = vault.declared()
    norm_cards = [(normalize_card(obj, src, declared), src) for obj, src in cards]
    norm_ev = [(normalize_evidence(obj, src), src) for obj, src in evidence]
    norm_status = [(normalize_status(obj, src), src) for obj, src in statuses]
    given = {repr_id(r): strip_provenance(r) for r in reprs}
    with vault.lock:
        completed: list[AuditEntry] = []
        snap = catch_up(vault, completed=completed)
        if fork and norm_cards:
            earlier = _earlier_fork(vault, completed, [c for c, _ in norm_cards])
            if earlier is not None:  # a retry of a fork that took effect, then failed
                return WriteResult("fork", earlier[1], [], earlier[0], snap.generation, snap.number)
        batch = _Batch()
        repr_digests: list[str] = []
        # the entries of every concept named, read shard by shard (each shard parsed once)
        found = snap.entries(
            [ref(c["id"], c["version"]) for c, _ in norm_cards]
            + [ref(e.record["concept"], e.record["version"]) for e, _ in norm_ev]
            + [ref(e["concept"], e["version"]) for e, _ in norm_status]
        )

        def concept(name: str) -> dict[str, Any] | None:
            return found[name] if name in found else snap.concept(name)

        card_digests, new_refs, unchanged = _plan_cards(
            vault, snap, concept, norm_cards, fork, batch
        )
        ev_digests, unchanged_ev = _plan_evidence(
            vault, snap, concept, set(new_refs), norm_ev, given, batch, repr_digests
        )
        st_digests, st_refs, unchanged_st = _plan_status(concept, set(new_refs), norm_status, batch)
        unchanged_reprs = _uncited_reprs(snap, repr_sources or {}, given, batch)
        # each ref or digest once, in order; status events apart (a stored card given again
        # whose status changes is unchanged, and its ref is in ``status``)
        added = list(dict.fromkeys(new_refs + ev_digests))
        status = list(dict.fromkeys(st_refs))
        new = set(added)
        unchanged = [
            x
            for x in dict.fromkeys(unchanged + unchanged_ev + unchanged_st + unchanged_reprs)
            if x not in new
        ]
        if not added and not status:  # (else the reprs the evidence carries are stored below)
            batch.stored.update((d, batch.blobs[d]) for d in repr_digests)
        batch.restore(vault)
        if not added and not status:
            return WriteResult(op, [], unchanged)
        info = detail or ({"concepts": new_refs} if new_refs else {})
        if ev_digests:
            info = {**info, "evidence": len(ev_digests)}
        if st_digests:
            info = {**info, "status": len(st_digests)}
        if repr_digests:  # the records start with them; the fold need not read them
            info = {**info, "reprs": len(repr_digests)}
        return _commit(
            vault,
            snap,
            op,
            repr_digests + card_digests + ev_digests + st_digests,
            batch,
            info,
            added,
            unchanged,
            status,
        )


def _uncited_reprs(
    snap: Snapshot, sources: dict[str, str], given: dict[str, dict[str, Any]], batch: _Batch
) -> list[str]:
    """The reprs of ``sources`` no evidence of this write-back carries: those the vault
    knows already (unchanged; their object restored if damaged); any other is refused."""
    unchanged = []
    for rid, src in sources.items():
        if rid in batch.blobs:  # carried by evidence citing it: stored with it
            continue
        if not snap.known(rid):
            raise InvalidInputError(
                f"repr {rid} is cited by no evidence given with it, and the vault does not "
                "hold it: a repr is stored only with evidence that cites it (give that "
                "evidence in the same file)",
                source=src,
            )
        batch.stored[rid] = canonical_bytes(given[rid])
        unchanged.append(rid)
    return unchanged


class Transaction:
    """Cards, evidence and status events gathered for one write-back: one audit entry (op
    ``transaction``), one generation, written by ``commit`` (``Vault.transaction()`` commits
    when its ``with`` block ends without an exception, and writes nothing otherwise).

    Items are checked when they are added (a bad one raises at once, naming it) and again,
    against the vault, at the commit; nothing is written before the commit."""

    def __init__(self, vault: Handle, *, op: str = "transaction"):
        self.vault = vault
        self.op = op
        self.cards: list[tuple[dict[str, Any], str]] = []
        self.evidence: list[tuple[Any, str]] = []
        self.statuses: list[tuple[dict[str, Any], str]] = []
        self.reprs: list[dict[str, Any]] = []
        self.repr_sources: dict[str, str] = {}  # repr id -> where it was given
        self.result: WriteResult | None = None
        self.declared = vault.declared()

    def __len__(self) -> int:
        return len(self.cards) + len(self.evidence) + len(self.statuses)

    def _open(self) -> None:
        if self.result is not None:
            raise UsageError("this transaction was committed: start another")

    def add(self, card: Any, source: str | None = None) -> None:
        """Queue a concept card (a dict in the form ``vault add`` reads)."""
        self._open()
        src = source or f"transaction card {len(self.cards) + 1}"
        self.cards.append((normalize_card(card, src, self.declared), src))

    def add_evidence(self, item: Any, source: str | None = None) -> None:
        """Queue an evidence record (grids may be given inline, as for ``vault evidence add``)."""
        self._open()
        src = source or f"transaction evidence {len(self.evidence) + 1}"
        normalize_evidence(item, src)  # checked now; normalised again at the commit
        self.evidence.append((item, src))

    def set_status(
        self, concept: str, version: str, status: str, reason: str | None = None
    ) -> None:
        """Queue a status change (applied after the cards and evidence, in order)."""
        self._open()
        src = f"transaction status {len(self.statuses) + 1}"
        self.statuses.append((status_event(concept, version, status, reason), src))

    def add_status_event(self, event: Any, source: str | None = None) -> None:
        """Queue a stored status event record (as ``vault export`` writes it)."""
        self._open()
        src = source or f"transaction status {len(self.statuses) + 1}"
        self.statuses.append((normalize_status(event, src), src))

    def add_repr(self, rep: Any, source: str | None = None) -> None:
        """Queue a repr that evidence of this transaction cites by id (one no evidence here
        cites, and the vault does not hold, is refused at the commit: it could not be
        stored; one the vault holds is listed as unchanged)."""
        self._open()
        src = source or f"transaction repr {len(self.reprs) + 1}"
        rep = strip_provenance(normalize_repr(rep, src))
        self.reprs.append(rep)
        self.repr_sources.setdefault(repr_id(rep), src)

    def commit(self) -> WriteResult:
        """Write everything queued as one write-back (nothing queued: nothing written)."""
        self._open()
        self.result = write_back(
            self.vault,
            self.cards,
            self.evidence,
            op=self.op,
            reprs=self.reprs,
            statuses=self.statuses,
            repr_sources=self.repr_sources,
        )
        return self.result


def _fork_shape(card: dict[str, Any]) -> bytes:
    """A card as a fork request sees it: without the version and forked_from it is given."""
    provenance = {k: v for k, v in card.get("provenance", {}).items() if k != "forked_from"}
    return canonical_bytes({**card, "version": None, "provenance": provenance})


def _earlier_fork(
    vault: Handle, completed: list[AuditEntry], cards: list[dict[str, Any]]
) -> tuple[int, list[str]] | None:
    """(audit seq, refs) of a fork this command's catch-up just completed whose cards are
    these cards: the same request, acknowledged by an attempt that then failed."""
    wanted = sorted(_fork_shape(c) for c in cards)
    for e in reversed(completed):
        if e.op != "fork":
            continue
        skip = e.detail.get("reprs", 0) if isinstance(e.detail, dict) else 0
        stored = [vault.records(d) for d in e.records[skip:]]
        forked = [c for c in stored if isinstance(c, dict) and c.get("kind") == "concept"]
        if sorted(_fork_shape(c) for c in forked) == wanted:
            return e.seq, [ref(c["id"], c["version"]) for c in forked]
    return None


def set_status(
    vault: Handle, concept: str, version: str, status: str, reason: str | None = None
) -> WriteResult:
    """Append a status event (the card itself never changes)."""
    event = status_event(concept, version, status, reason)
    with vault.lock:
        snap = catch_up(vault)
        name = ref(concept, version)
        entry = snap.concept(name)
        if entry is None:
            raise NotFoundError(f"unknown concept version {name}")
        if entry["status"] == status:
            return WriteResult("status", [], [name])
        batch = _Batch()
        digest = batch.add(event)
        return _commit(
            vault,
            snap,
            "status",
            [digest],
            batch,
            {"concept": name, "status": status},
            [],
            [],
            [name],
        )


def set_embedder(vault: Handle, choice: str) -> WriteResult:
    """Make ``choice`` (``"builtin"`` or a stored weights digest, already checked) the
    embedder: one ``embedder`` audit entry, one generation with every concept re-embedded.
    Choosing the embedder in effect changes nothing."""
    with vault.lock:
        snap = catch_up(vault)
        if snap.state.embedder == choice:
            return WriteResult("embedder", [], [choice])
        return _commit(vault, snap, "embedder", [], _Batch(), {"embedder": choice}, [choice], [])


def _commit(
    vault: Handle,
    snap: Snapshot,
    op: str,
    digests: list[str],
    batch: _Batch,
    detail: dict[str, Any],
    added: list[str],
    unchanged: list[str],
    status: list[str] | None = None,
) -> WriteResult:
    """Store, plan (everything computed before the acknowledgement), acknowledge, publish."""
    vault.put_objects([(d, batch.blobs[d]) for d in digests])
    entry = AuditEntry(vault.audit.last_seq() + 1, op, vault.clock(), tuple(digests), detail)
    records = batch.records(vault.records)
    plan = plan_incremental(snap, [entry], records, vault.cache, entry.seq, snap.ref.reverted)
    plan.materialize()
    vault.audit.append_entry(entry)  # the acknowledgement
    try:
        build = publish(vault, plan, op, snap.number)
    except (OSError, VaultError) as exc:
        # the records the audit entry names (reprs, cards, evidence, status events), not
        # ``added`` (concept refs and evidence ids); an embedder switch stores none
        stored = f": {counted(len(digests), 'record')} stored and acknowledged" if digests else ""
        raise CommittedError.after(
            op,
            entry.seq,
            "its index generation could not be published",
            exc,
            "the next vault command completes it — do not redo the write",
            note=stored,
        ) from None
    return WriteResult(
        op, added, unchanged, entry.seq, build.generation, build.number, status or []
    )


def _plan_cards(
    vault: Handle,
    snap: Snapshot,
    concept: Lookup,
    cards: list[tuple[dict[str, Any], str]],
    fork: bool,
    batch: _Batch,
) -> tuple[list[str], list[str], list[str]]:
    """(card digests, new refs, unchanged refs)."""
    new: dict[str, tuple[str, bytes]] = {}  # ref -> (digest, bytes)
    pending_versions: dict[str, list[tuple[int, int, int]]] = {}
    unchanged = []
    for card, src in cards:
        if fork:
            same = _newest_if_same(vault, snap, concept, card, pending_versions, new)
            if same is not None:  # forking unchanged content again makes no new version
                unchanged.append(same)
                continue
            card = _forked(snap, card, src, pending_versions, vault.declared())
        name = ref(card["id"], card["version"])
        data = canonical_bytes(card)
        if name in new:
            if new[name][1] != data:
                raise ConflictError(f"{src}: {name} appears twice with different content")
            continue
        existing = concept(name)
        if existing is not None:
            if sha256_hex(data) == existing["card"]:  # the very card (its file may be damaged)
                batch.stored[existing["card"]] = data
                unchanged.append(name)
                continue
            raise ConflictError(
                f"{src}: {name} is already stored with different content; a changed card "
                f"is a new version: bump 'version' or use --fork"
            )
        new[name] = (batch.add(card), data)
        pending_versions.setdefault(card["id"], []).append(parse_version(card["version"]))
    return [d for d, _ in new.values()], list(new), unchanged


def _newest_if_same(
    vault: Handle,
    snap: Snapshot,
    concept: Lookup,
    card: dict[str, Any],
    pending: dict[str, list[tuple[int, int, int]]],
    new: dict[str, tuple[str, bytes]],
) -> str | None:
    """The ref of the newest version of ``card``'s id (stored, or earlier in this batch)
    when it holds ``card``'s content but for the version and ``forked_from``; else None."""
    versions = [parse_version(v) for v in snap.versions(card["id"])]
    versions += pending.get(card["id"], [])
    if not versions:
        return None  # (``_forked`` says it cannot fork what is not stored)
    name = ref(card["id"], version_text(max(versions)))
    if name in new:
        data = new[name][1]
    else:
        entry = concept(name)
        if entry is None:
            return None
        data = vault.objects.get(entry["card"], check=True)
    return name if _fork_shape(json.loads(data)) == _fork_shape(card) else None


def _forked(
    snap: Snapshot,
    card: dict[str, Any],
    src: str,
    pending: dict[str, list[tuple[int, int, int]]],
    declared: Declared,
) -> dict[str, Any]:
    versions = [parse_version(v) for v in snap.versions(card["id"])]
    versions += pending.get(card["id"], [])
    if not versions:
        raise NotFoundError(f"{src}: cannot fork {card['id']!r}: no stored version (use add)")
    top = max(versions)
    if top[1] >= VERSION_PART_MAX:  # (said as such, not as a version the user never wrote)
        instead = f"; add it as {top[0] + 1}.0.0 instead" if top[0] < VERSION_PART_MAX else ""
        raise InputError(
            f"{src}: cannot fork {card['id']!r}: the next minor version after its newest, "
            f"{version_text(top)}, would exceed {VERSION_PART_MAX} (the largest a version "
            f"part may be){instead}"
        )
    forked = dict(card)
    forked["version"] = version_text((top[0], top[1] + 1, 0))
    forked["provenance"] = {
        **card["provenance"],
        "forked_from": ref(card["id"], version_text(top)),
    }
    return normalize_card(forked, src, declared)


def _plan_evidence(
    vault: Handle,
    snap: Snapshot,
    concept: Lookup,
    new_refs: set[str],
    items: list[tuple[NormalizedEvidence, str]],
    given: dict[str, dict[str, Any]],
    batch: _Batch,
    repr_digests: list[str],
) -> tuple[list[str], list[str]]:
    """(new evidence digests, unchanged evidence digests); the reprs they bring are added to
    ``batch`` and ``repr_digests``."""
    new: list[str] = []
    unchanged: list[str] = []
    inline: dict[str, dict[str, Any]] = {}
    for ev, src in items:
        name = ref(ev.record["concept"], ev.record["version"])
        entry = concept(name)
        if entry is None and name not in new_refs:
            raise NotFoundError(f"{src}: evidence for unknown concept version {name}")
        for rep in ev.reprs:
            inline[repr_id(rep)] = rep
        needs_grid = set(cited_reprs(ev.record)[-2:]) if "pair" in ev.record else set()
        for rid in cited_reprs(ev.record):
            carried = inline.get(rid) or given.get(rid)
            if carried is not None:
                if rid not in batch.blobs:
                    batch.add(carried)
                    repr_digests.append(rid)
                continue
            _check_known_repr(vault, snap, rid, rid in needs_grid, src)
        data = canonical_bytes(ev.record)
        digest = sha256_hex(data)
        if (entry is not None and digest in entry["evidence"]) or digest in batch.blobs:
            if digest not in batch.blobs:
                batch.stored[digest] = data
            unchanged.append(digest)
            continue
        batch.add(ev.record)
        new.append(digest)
    return new, unchanged


def _plan_status(
    concept: Lookup,
    new_refs: set[str],
    events: list[tuple[dict[str, Any], str]],
    batch: _Batch,
) -> tuple[list[str], list[str], list[str]]:
    """(new status event digests, the refs they change, unchanged refs). Events are folded
    in the given order, after the cards and evidence of the same write-back. A concept whose
    events here are all among its events already and end at the status it has is left as is
    (so writing the same records twice changes nothing)."""
    per: dict[str, list[str]] = {}
    final: dict[str, str] = {}
    order: list[tuple[str, str, dict[str, Any]]] = []
    for ev, src in events:
        name = ref(ev["concept"], ev["version"])
        if concept(name) is None and name not in new_refs:
            raise NotFoundError(f"{src}: status of unknown concept version {name}")
        digest = sha256_hex(canonical_bytes(ev))
        per.setdefault(name, []).append(digest)
        final[name] = ev["status"]
        order.append((name, digest, ev))
    unchanged = []
    for name, digests in per.items():
        entry = concept(name)
        if (
            entry is not None
            and final[name] == entry["status"]
            and set(digests) <= set(entry["events"])
        ):
            unchanged.append(name)
    skip = set(unchanged)
    kept = [(name, d, ev) for name, d, ev in order if name not in skip]
    last = {d: i for i, (_, d, _) in enumerate(kept)}  # one digest once, at its last place
    out = [(name, d, ev) for i, (name, d, ev) in enumerate(kept) if last[d] == i]
    for _, _, ev in out:
        batch.add(ev)
    return [d for _, d, _ in out], [name for name, _, _ in out], unchanged


def _check_known_repr(vault: Handle, snap: Snapshot, rid: str, needs_grid: bool, src: str) -> None:
    if not snap.known(rid):
        raise NotFoundError(
            f"{src}: unknown repr id {rid} (a repr is known once evidence that carries it "
            "is written back: give its grid or repr here instead)"
        )
    rep = vault.records(rid)
    if not isinstance(rep, dict) or rep.get("kind") != "repr":
        raise InvalidInputError(f"{rid} is not a repr", source=src)
    if needs_grid and "grid" not in rep:
        raise InvalidInputError(f"repr {rid} has no grid; a pair needs grids", source=src)
