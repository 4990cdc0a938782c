"""FORMAT.md §9's similarities and §10's retrieval order in plain Python.

Every float is a Python float (IEEE 754 double), every operation written in the order
FORMAT.md gives it; integers are exact Python ints. No numpy, nothing from ``vault``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .store import STATUSES, Concept, RefVault

DIM = 64
APPEARANCE = range(0, 26)  # §9: shape [0,16) + colour [16,26)
BEHAVIOUR = range(26, 64)  # transformation [26,48) + keys [48,64)
Z = 1.96
TOLERATED = 0.05
# which of §10's branches the rankings took (so a test run can show it covered them)
EVENTS: Counter[str] = Counter()


@dataclass(frozen=True)
class RefConfig:
    """§11's [retrieval] settings (what a ranking depends on)."""

    k: int = 10
    shortlist_min: int = 10
    shortlist_max: int = 200
    similarity: str = "structured"
    strategy: str = "weighted"
    alpha: float = 0.65
    beta: float = 0.2
    gamma: float = 0.0
    delta: float = 0.0

    @staticmethod
    def of(settings: dict[str, Any], **overrides: Any) -> RefConfig:
        names = RefConfig.__dataclass_fields__
        values = {k: v for k, v in settings.items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("alpha", "beta", "gamma", "delta"):
            values[key] = float(values[key])
        return replace(RefConfig(), **values)


# ------------------------------------------------------------------------ §10 evidence
def penalty(positive: int, negative: int) -> float:
    """§10: max(L − 0.05, 0), L the Wilson lower bound of negative / (positive + negative)."""
    if negative == 0:
        return 0.0
    n = float(positive + negative)
    p = negative / n
    z2 = Z * Z
    low = (p + z2 / (2.0 * n) - Z * math.sqrt(p * (1.0 - p) / n + z2 / ((4.0 * n) * n))) / (
        1.0 + z2 / n
    )
    return max(low - TOLERATED, 0.0)


# ------------------------------------------------------------------------ §9 similarity
def _dot(a: Sequence[int], b: Sequence[int], dims: range) -> int:
    return sum(a[i] * b[i] for i in dims)


def _cos(dot: int, na: int, nb: int) -> float:
    if na == 0 or nb == 0:
        return 0.0
    return dot / math.sqrt(na * nb)


def similarity(a: Sequence[int], b: Sequence[int], metric: str) -> float:
    """§9's similarity of two int8 vectors (symmetric)."""
    da, db = _dot(a, b, APPEARANCE), _dot(a, b, BEHAVIOUR)
    aa, ab = _dot(a, a, APPEARANCE), _dot(a, a, BEHAVIOUR)
    ba, bb = _dot(b, b, APPEARANCE), _dot(b, b, BEHAVIOUR)
    if metric == "cosine":
        return _cos(da + db, aa + ab, ba + bb)
    if metric == "euclidean":
        na, nb = aa + ab, ba + bb
        if na == 0 and nb == 0:
            return 1.0
        if na == 0 or nb == 0:
            return 0.0
        d2 = sum((x - y) * (x - y) for x, y in zip(a, b, strict=True))
        return 1.0 - math.sqrt(d2) / (math.sqrt(na) + math.sqrt(nb))
    if metric == "structured":
        look = _cos(da, aa, ba)
        act = _cos(db, ab, bb)
        return act + 2.0 * max(0.0, look - 0.7)
    raise ValueError(metric)


class _Sims:
    """Similarities to one query vector, computed once per distinct concept vector."""

    def __init__(self, query: Sequence[int], metric: str):
        self.query, self.metric = tuple(query), metric
        self.memo: dict[tuple[int, ...], float] = {}

    def __call__(self, c: Concept) -> float:
        s = self.memo.get(c.vector)
        if s is None:
            s = self.memo[c.vector] = similarity(self.query, c.vector, self.metric)
        return s


# ------------------------------------------------------------------------ §10 order
def _tail(c: Concept) -> tuple[int, int, int, str]:
    """Final ties: version descending (numeric), then id ascending (code points)."""
    return (-c.semver[0], -c.semver[1], -c.semver[2], c.id)


def _dedupe(ordered: Iterable[Concept], k: int) -> list[Concept]:
    seen: set[str] = set()
    out = []
    for c in ordered:
        if c.id in seen:
            continue
        seen.add(c.id)
        out.append(c)
        if len(out) == k:
            break
    return out


def _hit(rank: int, c: Concept, score: float, overlap: int, sim: float | None) -> dict[str, Any]:
    pen = penalty(c.positive, c.negative)
    return {
        "rank": rank,
        "id": c.id,
        "version": c.version,
        "score": score,
        "key_overlap": overlap,
        "penalty": pen,
        "similarity": sim,
        "utility": 1.0 - pen,
        "status": STATUSES[c.status],
        "evidence": {"positive": c.positive, "negative": c.negative},
    }


def _result(
    vault: RefVault,
    mode: str,
    keys: Sequence[str],
    hits: list[dict[str, Any]],
    cfg: RefConfig,
) -> dict[str, Any]:
    return {
        "mode_requested": mode,
        "mode_used": mode,
        "fallback_reason": None,
        "keys": sorted(keys),
        "strategy": cfg.strategy if mode == "hybrid" else None,
        "similarity_metric": None if mode == "symbolic" else cfg.similarity,
        "generation": vault.generation,
        "index_stale": False,
        "results": hits,
    }


def resolve_mode(vault: RefVault, flag: str | None) -> str:
    """§11: command-line flag > refs/mode.json > config.toml > built-in default."""
    return flag or vault.mode_override or str(vault.settings["mode"])


def rank(
    vault: RefVault,
    *,
    domain: str,
    keys: Sequence[str],
    vector: Sequence[int] | None,
    cfg: RefConfig,
    mode: str,
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """The ranking §10 defines, as ``retrieve --json`` prints it. ``keys`` are the query's
    §5 keys (domain: included), ``vector`` its §9 vector (unused in symbolic mode)."""
    excluded = set(exclude)
    eligible = [
        c for c in vault.concepts if c.domain == domain and c.status != 2 and c.id not in excluded
    ]
    qkeys = {k for k in keys if not k.startswith("domain:")}
    overlap = {c.ref: len(c.matchable & qkeys) for c in eligible}
    candidates = [c for c in eligible if overlap[c.ref] > 0]

    def symbolic_key(c: Concept) -> tuple[Any, ...]:
        return (c.status, -overlap[c.ref], penalty(c.positive, c.negative), _tail(c))

    symbolic_order = sorted(candidates, key=symbolic_key)
    if mode == "symbolic":
        chosen = _dedupe(symbolic_order, cfg.k)
        hits = [
            _hit(i, c, float(overlap[c.ref]), overlap[c.ref], None) for i, c in enumerate(chosen, 1)
        ]
        return _result(vault, mode, keys, hits, cfg)
    assert vector is not None
    sim = _Sims(vector, cfg.similarity)
    if mode == "soft":
        ordered = sorted(eligible, key=lambda c: (c.status, -sim(c), _tail(c)))
        chosen = _dedupe(ordered, cfg.k)
        hits = [_hit(i, c, sim(c), overlap[c.ref], sim(c)) for i, c in enumerate(chosen, 1)]
        return _result(vault, mode, keys, hits, cfg)
    if mode != "hybrid":
        raise ValueError(mode)
    shortlist = symbolic_order[: cfg.shortlist_max]
    if len(symbolic_order) > cfg.shortlist_max:
        EVENTS["hybrid: shortlist cut at shortlist_max"] += 1
    if len(shortlist) < cfg.shortlist_min:
        EVENTS["hybrid: shortlist topped up"] += 1
        others = sorted(
            (c for c in eligible if overlap[c.ref] == 0), key=lambda c: (-sim(c), _tail(c))
        )
        shortlist += others[: cfg.shortlist_min - len(shortlist)]
    if shortlist and len(shortlist) == len(vault.concepts):
        EVENTS["hybrid: shortlist holds every row"] += 1
    if cfg.strategy == "tiebreak":
        ordered = sorted(
            shortlist,
            key=lambda c: (
                c.status,
                -overlap[c.ref],
                penalty(c.positive, c.negative),
                -sim(c),
                _tail(c),
            ),
        )
        chosen = _dedupe(ordered, cfg.k)
        hits = [
            _hit(i, c, float(overlap[c.ref]), overlap[c.ref], sim(c))
            for i, c in enumerate(chosen, 1)
        ]
        return _result(vault, mode, keys, hits, cfg)
    if cfg.strategy != "weighted":
        raise ValueError(cfg.strategy)
    picked = _weighted(shortlist, overlap, len(qkeys), sim, cfg)
    hits = [_hit(i, c, score, overlap[c.ref], sim(c)) for i, (c, score) in enumerate(picked, 1)]
    return _result(vault, mode, keys, hits, cfg)


def _weighted(
    shortlist: list[Concept],
    overlap: dict[str, int],
    n_keys: int,
    sim: Callable[[Concept], float],
    cfg: RefConfig,
) -> list[tuple[Concept, float]]:
    """§10 weighted: greedy; score = α·sim + β·utility + γ·class_match − δ·dup, left to
    right; dup = 0.0 before the first choice, then the highest similarity to the chosen."""

    def relevance(c: Concept) -> float:
        class_match = overlap[c.ref] / n_keys if n_keys else 0.0
        utility = 1.0 - penalty(c.positive, c.negative)
        return cfg.alpha * sim(c) + cfg.beta * utility + cfg.gamma * class_match

    alive = list(shortlist)
    chosen: list[Concept] = []
    chosen_ids: set[str] = set()
    out: list[tuple[Concept, float]] = []
    pair_memo: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}

    def dup(c: Concept) -> float:
        if not chosen:
            return 0.0
        best = -math.inf
        for d in chosen:
            key = (d.vector, c.vector)
            s = pair_memo.get(key)
            if s is None:
                s = pair_memo[key] = similarity(d.vector, c.vector, cfg.similarity)
            best = max(best, s)
        if best < 0.0 and cfg.delta > 0.0:
            EVENTS["weighted: negative dup"] += 1
        return best

    while alive and len(out) < cfg.k:
        scored = [(c, relevance(c) - cfg.delta * dup(c)) for c in alive]
        best_c, best_s = min(scored, key=lambda cs: (cs[0].status, -cs[1], _tail(cs[0])))
        alive.remove(best_c)
        if best_c.id in chosen_ids:
            continue  # a second version of a chosen id is dropped
        chosen_ids.add(best_c.id)
        chosen.append(best_c)
        out.append((best_c, best_s))
    return out


def like(vault: RefVault, ref_or_id: str, cfg: RefConfig) -> dict[str, Any]:
    """§10 ``retrieve --like ID[@VERSION]``: soft retrieval with the stored concept version
    as the query (its vector, keys and domain), its own id excluded."""
    c = vault.by_ref(ref_or_id) if "@" in ref_or_id else vault.newest(ref_or_id)
    out = rank(
        vault,
        domain=c.domain,
        keys=c.keys,
        vector=c.vector,
        cfg=cfg,
        mode="soft",
        exclude=[c.id],
    )
    return {"like": c.ref, **out}
