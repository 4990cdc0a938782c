"""What a vault holds, read from one snapshot: ``vault list``, ``vault show``, ``vault export``
and the typed records of the Python API (``Vault.concepts()``, ``Vault.concept()``).

A ``Concept`` is one stored concept version with its evidence counts and the one evidence
model of FORMAT §10 (``vault.retrieval.failure_rate``): the same penalty and utility as a
retrieval hit. Its card (template included) is read when first asked for.

An export is JSON lines, one stored record per line, exactly its stored bytes (canonical
JSON, FORMAT §2): every repr the exported evidence cites, sorted by id; then, for each
concept version in (id, semantic version) order, its card, its status events (each once, in
the order their last application has in the audit log) and its evidence (by digest).
``vault import`` of that file into any vault stores the same records, so exporting the
result gives the same bytes. ``since`` keeps only the records of audit entries after that
``seq`` (the repr lines stay whole for the evidence kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from vault.errors import InvalidInputError, UsageError
from vault.index.snapshot import Snapshot
from vault.index.state import cited_reprs
from vault.records.cards import STATUSES
from vault.records.keys import NONE_DECLARED, Declared, canonical_key
from vault.records.schema import validate_field
from vault.retrieval import evidence_of
from vault.store.audit import STATE_OPS, AuditEntry

Records = Callable[[str], Any]


@dataclass(frozen=True)
class Concept:
    """One stored concept version, as ``vault list`` / ``vault show`` report it."""

    id: str
    version: str
    status: str
    domain: str
    keys: tuple[str, ...]
    positive: int
    negative: int
    penalty: float  # FORMAT §10: max(0, Wilson lower bound of the failure rate - 0.05)
    utility: float  # 1 - penalty
    digest: str  # the card's address
    _records: Records | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        """``id@version``."""
        return f"{self.id}@{self.version}"

    @property
    def card(self) -> dict[str, Any]:
        """The stored concept card (read from the vault on first use)."""
        if self._records is None:
            raise UsageError(f"{self.ref}: this record is not bound to a vault")
        card: dict[str, Any] = self._records(self.digest)
        return card

    @property
    def template(self) -> dict[str, Any]:
        """The card's template: ``{"template_dsl": …, "params": {…}}``."""
        template: dict[str, Any] = self.card["template"]
        return template

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "status": self.status,
            "domain": self.domain,
            "keys": list(self.keys),
            **evidence_of(self.positive, self.negative),
            "card": self.digest,
        }


def concept_of(entry: dict[str, Any], records: Records | None = None) -> Concept:
    """The ``Concept`` of a state entry (FORMAT §7.4)."""
    pos, neg = int(entry["positive"]), int(entry["negative"])
    penalty = evidence_of(pos, neg)["penalty"]  # the one evidence model (FORMAT §10)
    return Concept(
        entry["id"],
        entry["version"],
        entry["status"],
        entry["domain"],
        tuple(entry["keys"]),
        pos,
        neg,
        penalty,
        1.0 - penalty,
        entry["card"],
        records,
    )


def concepts(
    snap: Snapshot,
    records: Records | None = None,
    *,
    all_versions: bool = False,
    status: str | None = None,
    key: str | Sequence[str] | None = None,
    domain: str | None = None,
    has_evidence: bool | None = None,
    declared: Declared = NONE_DECLARED,
) -> Iterator[Concept]:
    """The concept versions of ``snap`` in (id, version) order: the newest version of each id
    unless ``all_versions``; filtered by ``status``, a ``key`` the concept holds (several:
    it holds every one), ``domain`` and whether it has evidence (``has_evidence``). Each
    key is checked as a card's is (``key_filter``; ``declared``: the names config.toml
    adds), and the domain as a card's domain is (``domain_filter``): ``UsageError`` when
    one is not, before anything is listed."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"invalid status {status!r} (expected {' | '.join(STATUSES)})")
    if domain is not None:
        try:
            domain = domain_filter(domain)
        except InvalidInputError as exc:
            raise UsageError(f"invalid value for domain: {exc.detail}") from None
    wanted = []
    for one in (key,) if isinstance(key, str) else tuple(key or ()):
        try:
            wanted.append(key_filter(one, declared))
        except InvalidInputError as exc:
            raise UsageError(f"invalid value for key: {exc.detail}") from None
    return _concepts(snap, records, all_versions, status, tuple(wanted), domain, has_evidence)


def key_filter(key: str, declared: Declared = NONE_DECLARED) -> str:
    """``key`` as a filter of concepts: checked as a card's key is — its form (the card
    schema's ``signature.keys[]``: ``family:name``), then a ``transform:`` or ``invariant:``
    name known or ``declared`` — and canonical (aliases mapped). ``InvalidInputError`` says
    what is wrong (``vault list --key`` makes it a usage error naming the option)."""
    validate_field(key, "concept", "signature.keys[]")
    return canonical_key(key, declared=declared)


def domain_filter(domain: str) -> str:
    """``domain`` as a filter of concepts: checked as a card's domain is (the card schema's
    ``domain``: a lower-case name). ``InvalidInputError`` says what is wrong (``vault list
    --domain`` makes it a usage error naming the option, before the vault is read)."""
    validate_field(domain, "concept", "domain")
    return domain


def _concepts(
    snap: Snapshot,
    records: Records | None,
    all_versions: bool,
    status: str | None,
    wanted: tuple[str, ...],
    domain: str | None,
    has_evidence: bool | None,
) -> Iterator[Concept]:
    names = list(snap.refs())  # the table's order: id, then semantic version (FORMAT §7.5)
    if not all_versions:
        newest: dict[str, str] = {}
        for name in names:  # ascending: the last one of an id is its newest
            newest[name.rsplit("@", 1)[0]] = name
        names = list(newest.values())
    for name in names:
        entry = snap.concept(name)
        if entry is None:
            continue
        if status is not None and entry["status"] != status:
            continue
        if any(k not in entry["keys"] for k in wanted):
            continue
        if domain is not None and entry["domain"] != domain:
            continue
        if has_evidence is not None and bool(entry["positive"] + entry["negative"]) != has_evidence:
            continue
        yield concept_of(entry, records)


def concept(
    snap: Snapshot, name: str, version: str | None = None, records: Records | None = None
) -> Concept:
    """``name`` (an id, or ``id@version``) at ``version`` (default: the newest)."""
    if version is None and "@" in name:
        name, version = name.rsplit("@", 1)
    _, entry = snap.entry(name, version)  # NotFoundError names what is missing
    return concept_of(entry, records)


def _applied_order(entries: Iterable[AuditEntry], reverted: frozenset[int]) -> dict[str, int]:
    """Each record digest -> the position of its last appearance in the state's fold."""
    order: dict[str, int] = {}
    n = 0
    for e in entries:
        if e.op not in STATE_OPS or e.seq in reverted:
            continue
        for digest in e.records:
            order[digest] = n
            n += 1
    return order


def export_records(
    snap: Snapshot,
    entries: list[AuditEntry],
    records: Records,
    since: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The records of an export (see the module docstring), as stored dicts. ``entries``: the
    audit log up to the snapshot's ``audit_seq``."""
    if since is not None and since < 0:
        raise UsageError(f"since must be an audit seq >= 0, got {since}")
    reverted = frozenset(snap.ref.reverted)
    order = _applied_order(entries, reverted)
    fresh: set[str] | None = None
    if since is not None:
        fresh = {
            d
            for e in entries
            if e.seq > since and e.op in STATE_OPS and e.seq not in reverted
            for d in e.records
        }
    body: list[dict[str, Any]] = []
    cited: set[str] = set()
    for name in snap.refs():
        entry = snap.concept(name)
        if entry is None:
            continue
        if fresh is None or entry["card"] in fresh:
            body.append(records(entry["card"]))
        for digest in sorted(entry["events"], key=lambda d: order.get(d, -1)):
            if fresh is None or digest in fresh:
                body.append(records(digest))
        for digest in entry["evidence"]:
            if fresh is None or digest in fresh:
                ev = records(digest)
                cited.update(cited_reprs(ev))
                body.append(ev)
    for rid in sorted(cited):
        yield records(rid)
    yield from body
