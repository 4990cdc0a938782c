"""The validation study: the same queries, in one process, on one throwaway vault, through
every retrieval mode (the seed's 3-way study, widened to five):

* ``none`` — no retrieval: the vault's own order (by concept id), as a solver without a
  vault index would try concepts;
* ``symbolic``, ``hybrid-tiebreak``, ``hybrid-weighted``, ``soft``.

Every mode ranks with the same snapshot and the same configuration (only the mode and the
strategy change), returns ``k_max`` results, and is timed per query (query embedding
included, no cache). The metrics are in ``vault.eval.metrics``.

The ``learning`` protocol (``Dataset.evidence``) writes the evidence back after the import
and asks every query twice: of the vault without it and with it (same process, same
configuration); the summaries are with the evidence, ``StudyResult.learning`` holds the
figures without it and the paired bootstrap interval of the MRR gain.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault.config import Config
from vault.errors import InvalidInputError
from vault.eval.datasets import Dataset, EvalQuery
from vault.eval.metrics import (
    BootstrapResult,
    ModeSummary,
    QueryOutcome,
    paired_bootstrap,
    recall_at,
    reciprocal_rank,
    summarize,
)
from vault.grid.reprs import clear_caches
from vault.index.snapshot import Snapshot
from vault.ops.arc_import import import_tasks
from vault.ops.write import set_embedder
from vault.retrieval import retrieve_in
from vault.vault import Vault, fixed_clock

# mode name -> (retrieval mode, hybrid strategy)
MODES: dict[str, tuple[str, str | None]] = {
    "none": ("none", None),
    "symbolic": ("symbolic", None),
    "hybrid-tiebreak": ("hybrid", "tiebreak"),
    "hybrid-weighted": ("hybrid", "weighted"),
    "soft": ("soft", None),
}
KS = (1, 5, 10, 50)
PARTITION = 16  # queries per task sent to a Dask worker (run(..., scheduler=...))
BOOTSTRAP_CONFIDENCE = 0.95  # of the interval of each mode's MRR difference with symbolic
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class StudyResult:
    dataset: dict[str, Any]
    settings: dict[str, Any]
    summaries: dict[str, ModeSummary]
    curves: dict[str, list[float]]  # recall@k for k = 1..k_max, per mode
    coverage_change: dict[str, float | None]  # relative to symbolic
    versus_symbolic: dict[str, BootstrapResult]  # per-query RR: mode minus symbolic
    fallbacks: dict[str, int]
    import_seconds: float
    seconds: float
    # the learning protocol: per mode, the summary without the evidence and the MRR gain
    learning: dict[str, Learning] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudyResult:
        """The result ``to_json`` wrote (``vault eval --json``, ``results.json``)."""
        order = data["settings"]["modes"]  # (JSON output sorts the keys)
        return cls(
            data["dataset"],
            data["settings"],
            {m: ModeSummary.from_json(data["modes"][m]) for m in order},
            data["recall_curves"],
            data["coverage_change_vs_symbolic"],
            {
                m: BootstrapResult.from_json(b)
                for m, b in data["mrr_difference_vs_symbolic"].items()
            },
            data["fallbacks"],
            data["import_seconds"],
            data["seconds"],
            {m: Learning.from_json(v) for m, v in data["learning"].items()}
            if data.get("learning") is not None
            else None,
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "dataset": self.dataset,
            "settings": self.settings,
            "modes": {m: s.to_json() for m, s in self.summaries.items()},
            "recall_curves": self.curves,
            "coverage_change_vs_symbolic": self.coverage_change,
            "mrr_difference_vs_symbolic": {m: b.to_json() for m, b in self.versus_symbolic.items()},
            "fallbacks": self.fallbacks,
            "import_seconds": self.import_seconds,
            "seconds": self.seconds,
        }
        if self.learning is not None:
            out["learning"] = {m: v.to_json() for m, v in self.learning.items()}
        return out


@dataclass(frozen=True)
class Learning:
    """One mode on the learning protocol: the same queries asked of the vault without the
    written-back evidence, and the paired bootstrap of the MRR gain (with − without)."""

    without: ModeSummary
    gain: BootstrapResult

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Learning:
        return cls(ModeSummary.from_json(data["without"]), BootstrapResult.from_json(data["gain"]))

    def to_json(self) -> dict[str, Any]:
        return {"without": self.without.to_json(), "gain": self.gain.to_json()}


def vault_order(snap: Snapshot) -> list[str]:
    t = snap.table
    seen: list[str] = []
    for i in range(t.n):
        concept = t.ref(i).rsplit("@", 1)[0]
        if not seen or seen[-1] != concept:
            seen.append(concept)
    return seen


def write_evidence(vault: Vault, dataset: Dataset) -> None:
    """Write ``dataset.evidence`` back: one positive evidence record a pair (its reprs
    stored), in one write-back, as a solver does after verifying its program on them."""
    records: list[tuple[Any, str]] = []
    reprs: list[dict[str, Any]] = []
    for ev in dataset.evidence:
        for p in ev.pairs:
            record = {
                "schema_version": 1,
                "kind": "evidence",
                "concept": ev.concept,
                "version": "1.0.0",
                "polarity": "positive",
                "task": ev.task,
                "pair": dict(zip(("input", "output"), p.ids, strict=True)),
            }
            records.append((record, ev.task))
            reprs += [p.input, p.output]
    vault.write_back((), records, op="evidence", detail={"learning": len(records)}, reprs=reprs)


Embedder = bytes | str | None  # a weights object's bytes, "builtin", or None: a new vault's


@contextmanager
def _throwaway(
    dataset: Dataset, weights: Embedder
) -> Iterator[tuple[Snapshot, Snapshot | None, float, Path]]:
    """A throwaway vault holding ``dataset``'s concepts, embedded with what a new vault
    starts with (``weights`` None: the shipped embedder), the built-in embedder
    (``"builtin"``) or the weights object ``weights`` (chosen as ``vault embedder use``
    does): its snapshot, the snapshot after the dataset's evidence is written back (None
    without evidence), the import time and the vault's directory."""
    with tempfile.TemporaryDirectory(prefix="vault-eval-") as tmp:
        chosen = "shipped" if weights is None else "builtin"
        vault = Vault.init(Path(tmp) / "v", clock=fixed_clock(0), embedder=chosen)
        if isinstance(weights, bytes):
            set_embedder(vault, vault.objects.put(weights))
        elif weights not in (None, "builtin"):
            raise ValueError(f"embedder must be weights bytes, 'builtin' or None: {weights!r}")
        t0 = time.perf_counter()
        # (a task of one train pair is no query's: a whole concept, a distractor)
        import_tasks(vault, dataset.tasks, holdout_last=dataset.holdout_last, keep_single=True)
        import_seconds = time.perf_counter() - t0
        before = vault.snapshot()
        after = None
        if dataset.evidence:
            write_evidence(vault, dataset)
            after = vault.snapshot()
        yield before, after, import_seconds, vault.root


def run_variants(
    dataset: Dataset,
    variants: dict[str, Config],
    mode: str = "hybrid",
    *,
    k_max: int = 50,
    weights: Embedder = None,
) -> dict[str, ModeSummary]:
    """One retrieval ``mode`` under each configuration of ``variants`` (name -> Config), on
    one throwaway vault: how each setting changes the figures, everything else equal."""
    out: dict[str, ModeSummary] = {}
    with _throwaway(dataset, weights) as (before, after, _, _):
        snap = after or before
        order = vault_order(snap)
        for name, cfg in variants.items():
            vcfg = cfg.with_overrides(k=k_max)
            rows = []
            for q in dataset.queries:
                ranking, seconds, fell = rank(snap, q, mode, vcfg, order, k_max)
                if fell:
                    raise RuntimeError(f"{name}: {q.qid} fell back from {mode}")
                rows.append(QueryOutcome(q.qid, ranking, q.relevant, seconds))
            out[name] = summarize(rows, KS)
    return out


def run(
    dataset: Dataset,
    cfg: Config | None = None,
    modes: Sequence[str] = tuple(MODES),
    *,
    k_max: int = 50,
    progress: Progress | None = None,
    weights: Embedder = None,
    scheduler: str | None = None,
    workers: int = 2,
) -> StudyResult:
    """Run every mode over ``dataset``'s queries on a throwaway vault (embedding with the
    fitted ``weights`` object, chosen as ``vault embedder use`` does; ``"builtin"``: the
    built-in embedder; None: what a new vault starts with, the shipped embedder).

    ``scheduler`` (an address, or ``auto``: see ``vault.distributed``): the queries are
    ranked in partitions on a Dask cluster, each worker opening the throwaway vault's
    snapshots once (its directory, under ``TMPDIR``, must be one every worker sees); the
    rankings are the same, in the same order — only the timings differ, as between two
    runs of one process."""
    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown mode {m!r} (known: {', '.join(MODES)})")
    if not any(q.relevant for q in dataset.queries):  # (the data sets refuse it already)
        raise InvalidInputError(
            "no query with a relevant concept: nothing to measure", source=dataset.name
        )
    start = time.perf_counter()
    base = cfg or Config()
    rounds = 2 if dataset.evidence else 1
    total = rounds * len(modes) * len(dataset.queries)
    done = 0
    with _throwaway(dataset, weights) as (before, after, import_seconds, root):
        snap = after or before
        embedder_id = snap.embedder_id
        snaps = [before, after] if after else [before]
        # the steps per query: (mode name, retrieval mode, config, which snapshot, rows)
        outcomes: dict[str, list[QueryOutcome]] = {}
        without: dict[str, list[QueryOutcome]] = {}
        fallbacks: dict[str, int] = {}
        plan: list[tuple[str, str, Config, int, list[QueryOutcome]]] = []
        for m in modes:
            mode, strategy = MODES[m]
            mcfg = base.with_overrides(k=k_max, strategy=strategy)
            fallbacks[m] = 0
            outcomes[m] = []
            plan.append((m, mode, mcfg, len(snaps) - 1, outcomes[m]))
            if after:
                without[m] = []
                plan.append((m, mode, mcfg, 0, without[m]))
        if scheduler is None:
            order = vault_order(snap)
            for m, mode, mcfg, where, rows in plan:
                for q in dataset.queries:
                    ranking, seconds, fell = rank(snaps[where], q, mode, mcfg, order, k_max)
                    fallbacks[m] += fell
                    rows.append(QueryOutcome(q.qid, ranking, q.relevant, seconds))
                    done += 1
                    if progress:
                        progress(done, total)
        else:
            from vault.distributed import map_partitions

            steps = [(mode, mcfg.to_json(), where) for _, mode, mcfg, where, _ in plan]
            common = (str(root), [s.ref for s in snaps], steps, k_max)
            queries = list(dataset.queries)
            parts = [queries[i : i + PARTITION] for i in range(0, len(queries), PARTITION)]
            ranked = (
                row
                for rows in map_partitions(scheduler, workers, rank_partition, common, parts)
                for row in rows
            )
            for q, per_step in zip(dataset.queries, ranked, strict=True):
                for (m, _, _, _, rows), (ranking, seconds, fell) in zip(
                    plan, per_step, strict=True
                ):
                    fallbacks[m] += fell
                    rows.append(QueryOutcome(q.qid, ranking, q.relevant, seconds))
                    done += 1
                if progress:
                    progress(done, total)
    summaries = {m: summarize(rows, KS) for m, rows in outcomes.items()}
    learning = None
    if without:
        learning = {
            m: Learning(
                summarize(without[m], KS),
                paired_bootstrap(
                    [reciprocal_rank(o.ranking, o.relevant) for o in without[m]],
                    [reciprocal_rank(o.ranking, o.relevant) for o in outcomes[m]],
                    resamples=2000,
                    seed=0,
                    confidence=BOOTSTRAP_CONFIDENCE,
                ),
            )
            for m in modes
        }
    curves = {
        m: [
            sum(recall_at(o.ranking, o.relevant, k) for o in rows if o.relevant)
            / max(1, sum(1 for o in rows if o.relevant))
            for k in range(1, k_max + 1)
        ]
        for m, rows in outcomes.items()
    }
    coverage_change: dict[str, float | None] = {}
    versus: dict[str, BootstrapResult] = {}
    if "symbolic" in summaries:
        sym = summaries["symbolic"].coverage
        sym_rr = [reciprocal_rank(o.ranking, o.relevant) for o in outcomes["symbolic"]]
        for m, s in summaries.items():
            coverage_change[m] = (s.coverage - sym) / sym if sym else None
            if m != "symbolic":
                rr = [reciprocal_rank(o.ranking, o.relevant) for o in outcomes[m]]
                versus[m] = paired_bootstrap(
                    sym_rr, rr, resamples=2000, seed=0, confidence=BOOTSTRAP_CONFIDENCE
                )
    settings = {
        "k_max": k_max,
        "modes": list(modes),
        "config": base.to_json(),
        "embedder": embedder_id,
    }
    return StudyResult(
        dataset.summary(),
        settings,
        summaries,
        curves,
        coverage_change,
        versus,
        fallbacks,
        import_seconds,
        time.perf_counter() - start,
        learning,
    )


def rank_partition(
    root: str,
    refs: list[Any],
    steps: list[tuple[str, dict[str, Any], int]],
    k_max: int,
    part: list[EvalQuery],
) -> list[list[tuple[tuple[str, ...], float, int]]]:
    """In a Dask worker: each query's ``rank`` under each step (retrieval mode, config,
    which snapshot of ``refs``), the throwaway vault's snapshots opened once a worker."""
    from vault.distributed import keep, kept
    from vault.errors import VaultError
    from vault.store.objects import ObjectStore

    key = ("eval", root, tuple(r.generation for r in refs))
    opened = kept(key)
    if opened is None:
        objects = ObjectStore(Path(root) / "objects", readonly=True)
        try:
            snaps = [Snapshot.open(objects, ref) for ref in refs]
        except (VaultError, OSError) as exc:
            raise VaultError(
                f"{root}: this worker cannot open the evaluation's throwaway vault ({exc}); "
                "on a cluster of several machines, TMPDIR must be a path they all share"
            ) from None
        opened = keep(key, (snaps, vault_order(snaps[-1])))
    snaps, order = opened
    configs = [Config(**cfg) for _, cfg, _ in steps]
    return [
        [
            rank(snaps[where], q, mode, cfg, order, k_max)
            for (mode, _, where), cfg in zip(steps, configs, strict=True)
        ]
        for q in part
    ]


def rank(
    snap: Snapshot, q: EvalQuery, mode: str, cfg: Config, order: list[str], k: int
) -> tuple[tuple[str, ...], float, int]:
    if mode == "none":
        t0 = time.perf_counter()
        ranking = tuple([c for c in order if c not in q.exclude][:k])
        return ranking, time.perf_counter() - t0, 0
    # a fresh copy and cold grid caches: nothing computed for an earlier mode is reused
    query = dataclasses.replace(q.query)
    clear_caches()
    t0 = time.perf_counter()
    result = retrieve_in(snap, query, cfg, mode, exclude=q.exclude)
    seconds = time.perf_counter() - t0
    return tuple(h.id for h in result.results), seconds, int(result.mode_used != mode)
