"""Neighbours of a stored concept: ``vault retrieve --like ID[@VERSION]`` (as ``llm similar ID``).

The query is the stored concept itself — its row of the snapshot's vector matrix and its
keys — ranked as soft retrieval ranks: same domain only, suppressed never, deprecated after
active, by similarity, one result per id (its best-ranked version), ties by version
(newest first) then id. The concept's own id, every version of it, is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vault.config import Config
from vault.embedding.similarity import similarity_rows
from vault.errors import CorruptionError
from vault.index.snapshot import Snapshot
from vault.records.keys import matchable
from vault.retrieval import STATUS_NAMES, Hit, RetrievalResult

if TYPE_CHECKING:
    from vault.vault import Vault


@dataclass(frozen=True)
class Neighbours:
    """The concept version asked about (``id@version``) and its ranked neighbours."""

    like: str
    result: RetrievalResult

    def to_json(self) -> dict[str, Any]:
        return {"like": self.like, **self.result.to_json()}


def neighbours(vault: Vault, concept: str, version: str | None, cfg: Config) -> Neighbours:
    """Neighbours of ``concept`` at ``version`` (default: its newest) in the current snapshot."""
    snap = vault.snapshot()
    stale = snap.audit_seq != vault.audit.last_seq() and vault.stale()
    return neighbours_in(snap, concept, version, cfg, stale=stale)


def neighbours_in(
    snap: Snapshot, concept: str, version: str | None, cfg: Config, *, stale: bool = False
) -> Neighbours:
    name, entry = snap.entry(concept, version)
    t = snap.table
    row = t.find(name)
    if row is None:
        raise CorruptionError(f"generation {snap.generation[:12]}: {name} has no table row")
    status = t.col("status").astype(np.int64)
    tail = t.col("tail").astype(np.int64)
    eligible = np.zeros(t.n, dtype=bool)
    eligible[t.posting(f"domain:{entry['domain']}")] = True
    eligible &= status != 2
    eligible &= t.groups != t.groups[row]
    rows = np.nonzero(eligible)[0]
    sims = similarity_rows(t, rows, t.matrix[row], cfg.similarity)
    ordered = rows[np.lexsort((tail[rows], -sims, status[rows]))]
    _, first = np.unique(t.groups[ordered], return_index=True)
    chosen = ordered[np.sort(first)][: cfg.k].tolist()
    sim_of = dict(zip(rows.tolist(), sims.tolist(), strict=True))
    keys = list(entry["keys"])
    parts = [t.posting(k) for k in matchable(keys)]
    hits_per_row = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    overlap = np.bincount(hits_per_row, minlength=t.n)
    pos, neg = t.col("positive"), t.col("negative")
    hits = []
    for rank, r in enumerate(chosen, start=1):
        cid, ver = t.ref(r).rsplit("@", 1)
        p, q = int(pos[r]), int(neg[r])
        hits.append(
            Hit(
                rank=rank,
                id=cid,
                version=ver,
                score=sim_of[r],
                key_overlap=int(overlap[r]),
                penalty=q,
                similarity=sim_of[r],
                utility=(p + 1) / (p + q + 2),
                status=STATUS_NAMES[int(status[r])],
            )
        )
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
