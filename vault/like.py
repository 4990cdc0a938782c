"""Neighbours of a stored concept: ``vault retrieve --like ID[@VERSION]`` (as ``llm similar ID``).

The query is the stored concept itself — its row of the snapshot's vector matrix, its keys
and its card's domain — ranked as soft retrieval ranks, by the same code: same domain only,
suppressed never, deprecated after active, by similarity, one result per id (its
best-ranked version), ties by version (newest first) then id, with the same evidence
counts, penalty and utility per hit (FORMAT §10). The concept's own id, every version of
it, is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vault.config import Config
from vault.errors import CorruptionError
from vault.index.snapshot import Snapshot
from vault.retrieval import RetrievalResult, _Ranker, _soft

if TYPE_CHECKING:
    from vault.handle import Handle


@dataclass(frozen=True)
class Neighbours:
    """The concept version asked about (``id@version``) and its ranked neighbours."""

    like: str
    result: RetrievalResult

    def to_json(self) -> dict[str, Any]:
        return {"like": self.like, **self.result.to_json()}


def neighbours(vault: Handle, concept: str, version: str | None, cfg: Config) -> Neighbours:
    """Neighbours of ``concept`` at ``version`` (default: its newest) in the current snapshot."""
    snap = vault.snapshot()
    stale = snap.audit_seq != vault.audit.tail_seq() and vault.stale()
    return neighbours_in(snap, concept, version, cfg, stale=stale)


def neighbours_in(
    snap: Snapshot, concept: str, version: str | None, cfg: Config, *, stale: bool = False
) -> Neighbours:
    """Soft retrieval (``retrieval._soft``: the same ranking, evidence model and hit fields)
    with the stored concept version as the query: its table row's vector, its keys, its
    card's domain; its own id left out."""
    name, entry = snap.entry(concept, version)
    t = snap.table
    row = t.find(name)
    if row is None:
        raise CorruptionError(f"generation {snap.generation[:12]}: {name} has no table row")
    keys = list(entry["keys"])
    ranker = _Ranker(t, keys, entry["domain"], exclude=(entry["id"],))
    hits = _soft(ranker, np.array(t.matrix[row], dtype=np.int8), cfg)
    result = RetrievalResult(
        mode_requested="soft",
        mode_used="soft",
        fallback_reason=None,
        keys=keys,
        results=hits,
        strategy=None,
        similarity=cfg.similarity,
        generation=snap.generation,
        index_stale=stale,
    )
    return Neighbours(name, result)
