"""Why each hit ranks where it does: ``vault retrieve --explain``.

For every hit of a ``RetrievalResult``: the query keys it shares, its similarity and the
similarity of each embedding block group (appearance: shape + colour; behaviour:
transformation + keys — what FORMAT §9's structured metric compares apart), its evidence,
penalty and utility, the terms of its score (weighted hybrid: α·sim, β·utility,
γ·class_match, −δ·dup), and the ranking term that decided its place against the next hit
(the first term of the mode's order, FORMAT §10, in which the two differ). Read-only; it
changes no ranking.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from vault.config import Config
from vault.embedding.similarity import APPEARANCE_DIMS, BEHAVIOUR_DIMS
from vault.records.keys import matchable
from vault.records.query import Query
from vault.retrieval import Hit, RetrievalResult

if TYPE_CHECKING:
    from vault.index.snapshot import Snapshot


def explain(
    snap: Snapshot,
    query: Query | None,
    result: RetrievalResult,
    cfg: Config,
    *,
    like: str | None = None,
) -> list[dict[str, Any]]:
    """One explanation per hit of ``result`` (in its order), computed on ``snap`` (the
    snapshot it was ranked on). For a ``--like`` ranking give ``like`` (the ``id@version``
    asked about: its stored vector is the query's) and no ``query``."""
    qkeys = set(matchable(result.keys))
    qvec = None
    if like is not None:
        row = snap.table.find(like)
        qvec = None if row is None else np.array(snap.table.matrix[row], dtype=np.int64)
    elif result.mode_used != "symbolic":
        qvec = _query_vector(snap, query)
    out = []
    hits = result.results
    for i, h in enumerate(hits):
        _, entry = snap.entry(h.id, h.version)
        shared = sorted(qkeys & set(matchable(entry["keys"])))
        blocks = _blocks(snap, f"{h.id}@{h.version}", qvec) if qvec is not None else None
        terms = _terms(h, cfg, len(qkeys)) if result.strategy == "weighted" else None
        nxt = hits[i + 1] if i + 1 < len(hits) else None
        out.append(
            {
                "shared_keys": shared,
                "similarity": h.similarity,
                "block_similarity": blocks,
                "evidence": {"positive": h.positive, "negative": h.negative},
                "penalty": h.penalty,
                "utility": h.utility,
                "score_terms": terms,
                "decided_by": _decided(result, h, nxt, terms, cfg, len(qkeys)),
            }
        )
    return out


def _query_vector(snap: Snapshot, query: Query | None) -> np.ndarray | None:
    if query is None:
        return None
    from vault.embedding.vectors import query_vector

    try:
        return np.array(query_vector(snap.embedder(), query, None), dtype=np.int64)
    except Exception:  # noqa: BLE001 - an explanation never fails a retrieval
        return None


def _cos(a: np.ndarray, b: np.ndarray) -> float | None:
    na, nb = int(a @ a), int(b @ b)
    if na == 0 or nb == 0:
        return None
    return float(int(a @ b) / math.sqrt(na * nb))


def _blocks(snap: Snapshot, name: str, qvec: np.ndarray) -> dict[str, float | None] | None:
    row = snap.table.find(name)
    if row is None:
        return None
    vec = np.array(snap.table.matrix[row], dtype=np.int64)
    return {
        "appearance": _cos(vec[APPEARANCE_DIMS], qvec[APPEARANCE_DIMS]),
        "behaviour": _cos(vec[BEHAVIOUR_DIMS], qvec[BEHAVIOUR_DIMS]),
    }


def _terms(h: Hit, cfg: Config, n_keys: int) -> dict[str, float]:
    sim = cfg.alpha * (h.similarity or 0.0)
    util = cfg.beta * h.utility
    share = cfg.gamma * (h.key_overlap / n_keys if n_keys else 0.0)
    return {
        "alpha*sim": sim,
        "beta*utility": util,
        "gamma*class_match": share,
        "-delta*dup": h.score - (sim + util + share),
    }


def _order(result: RetrievalResult, h: Hit, cfg: Config, n_keys: int) -> list[tuple[str, Any]]:
    """The hit's sort key in the mode's order (FORMAT §10), each term named; larger ranks
    first. (Version and id, the final ties, are left to ``_decided``.)"""
    status = ("status", -("active", "deprecated", "suppressed").index(h.status))
    if result.mode_used == "symbolic":
        return [status, ("key overlap", h.key_overlap), ("penalty", -h.penalty)]
    if result.mode_used == "soft":
        return [status, ("similarity", h.similarity)]
    if result.strategy == "tiebreak":
        return [
            status,
            ("key overlap", h.key_overlap),
            ("penalty", -h.penalty),
            ("similarity", h.similarity),
        ]
    return [status, ("score", h.score)]


def _decided(
    result: RetrievalResult,
    h: Hit,
    nxt: Hit | None,
    terms: dict[str, float] | None,
    cfg: Config,
    n_keys: int,
) -> str:
    """The first ranking term in which ``h`` beats the next hit, said in words."""
    if nxt is None:
        return "last hit"
    mine, theirs = _order(result, h, cfg, n_keys), _order(result, nxt, cfg, n_keys)
    for (name, a), (_, b) in zip(mine, theirs, strict=True):
        if a == b:
            continue
        if name == "score" and terms is not None:
            other = _terms(nxt, cfg, n_keys)
            gaps = {t: terms[t] - other[t] for t in terms}
            top = max(gaps, key=lambda t: gaps[t])
            mine_s, theirs_s = _apart(h.score, nxt.score)
            return f"score {mine_s} vs {theirs_s} (most from {top}: {gaps[top]:+.3f})"
        if name == "status":
            return f"status: {h.status} before {nxt.status}"
        shown = {"penalty": (h.penalty, nxt.penalty)}.get(name, (a, b))
        return f"{name} {' vs '.join(_apart(*shown))}"
    if h.version != nxt.version:
        return f"version {h.version} vs {nxt.version} (newer first)"
    return f"id {h.id} before {nxt.id} (the final tie)"


def _apart(a: Any, b: Any) -> tuple[str, str]:
    """Two values that differ, written so that they read differently: floats with 3
    decimals, or as many more as it takes (0.12221 vs 0.12164: "0.1222 vs 0.1216", not
    "0.122 vs 0.122"); anything else as it is."""
    if not (isinstance(a, float) and isinstance(b, float)):
        return str(a), str(b)
    for digits in range(3, 18):
        x, y = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if x != y:
            return x, y
    return repr(a), repr(b)
