"""Which features, augmentations and retrieval defaults generalise — judged on the training
side only (issue 22). Writes the tables of benchmarks/FIT.md's "Issue 22" section (between
its markers) and benchmarks/features_study.json (read by benchmarks/evaluation.py for
EVALUATION.md's defaults table).

    python benchmarks/features_study.py [--quick] [--no-write]

**Data (training side only).** Two folds, each fitting on one half and validating on the
other: the ARC-AGI-1 *training* split (even / odd positions by task id) and the synthetic
``TRAIN_FAMILIES`` (even / odd positions; fitted on seed 1, validated on seed 0). Neither the
ARC-AGI-1 evaluation split, nor the synthetic held-out families, nor any ARC-AGI-2 task is
read. A fold's map is fitted like the shipped one (``vault.embedding.recipe``: each ARC task
a class with its augmented copies, each synthetic family a class of weight
``fitted.LABEL_WEIGHT``), on its fitting half only.

**Protocols** (on each fold's validation half; the figure is the mean of the two folds):
``d4``, ``colour``, ``self`` and ``learning`` on the ARC tasks (MRR; 200 concepts);
``fresh`` on the synthetic families (MRR) and cross-task ``mixed``: the synthetic
families' tasks (10 per family) among the ARC tasks as distractors, relevant = the other
tasks of the family (P@5). The score of a variant is the mean over these six.

**Retrieval** is an in-memory replica of ``hybrid``-``weighted`` (no diversity term) and
``soft`` with the exact similarity of ``vault.embedding.similarity``: the same shortlist
(the symbolic order's head), scores and ties as ``vault.retrieval``. The run checks it
against ``vault.eval.study.run`` (the real pipeline) on one fold's ``d4`` set, for the
built-in and a fitted embedder, and stops if any figure differs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import command, commit, provenance  # noqa: E402

from vault.arc import concept_id, load_dataset  # noqa: E402
from vault.config import Config  # noqa: E402
from vault.embedding import Embedder, builtin, fitted, recipe  # noqa: E402
from vault.embedding.select import fitted_embedder  # noqa: E402
from vault.embedding.similarity import similarity  # noqa: E402
from vault.eval import datasets, study  # noqa: E402
from vault.eval.metrics import ModeSummary, QueryOutcome, summarize  # noqa: E402
from vault.eval.synthetic import TRAIN_FAMILIES, generate  # noqa: E402
from vault.grid.pairs import analyze_pair  # noqa: E402
from vault.grid.reprs import repr_id  # noqa: E402
from vault.records.keys import matchable, task_keys  # noqa: E402
from vault.records.query import parse_task  # noqa: E402

BEGIN, END = "<!-- features-study:begin -->", "<!-- features-study:end -->"
FIT_MD = HERE / "FIT.md"
JSON_OUT = HERE / "features_study.json"
KINDS = ("arc-d4", "arc-colour", "arc-self", "arc-learning", "syn-fresh", "syn-mixed")


# ------------------------------------------------------------------ the replica
@dataclass
class Item:
    pair: bool
    a: dict[str, Any]
    b: dict[str, Any] | None
    key: tuple[str, ...]


@dataclass
class Concept:
    cid: str
    keys: frozenset[str]
    pairs: list[Item]


@dataclass
class Ask:
    qid: str
    keys: frozenset[str]
    pairs: list[Item]
    rep: Item | None
    relevant: frozenset[str]
    exclude: frozenset[str]


def _pair(a: dict[str, Any], b: dict[str, Any]) -> Item:
    return Item(True, a, b, ("p", repr_id(a), repr_id(b)))


def replica_data(ds: datasets.Dataset, evidence: bool = True) -> tuple[list[Concept], list[Ask]]:
    """The concepts ``import_tasks`` (plus the dataset's evidence) makes and the queries."""
    concepts = []
    for task_id, task, src in ds.tasks:
        pairs, _ = parse_task(task, src)
        if ds.holdout_last and len(pairs) > 1:
            pairs = pairs[:-1]
        facts = [analyze_pair(p.input, p.output) for p in pairs]
        keys = frozenset(matchable(task_keys(facts, [p.input for p in pairs])))
        concepts.append(
            Concept(concept_id(task_id), keys, [_pair(p.input, p.output) for p in pairs])
        )
    if evidence and ds.evidence:
        by = {c.cid: c for c in concepts}
        for ev in ds.evidence:
            by[ev.concept].pairs += [_pair(p.input, p.output) for p in ev.pairs]
    asks = [
        Ask(
            q.qid,
            frozenset(matchable(q.query.all_keys())),
            [_pair(p.input, p.output) for p in q.query.pairs],
            Item(False, q.query.repr, None, ("r", repr_id(q.query.repr))) if q.query.repr else None,
            q.relevant,
            q.exclude,
        )
        for q in ds.queries
    ]
    return concepts, asks


class Vectors:
    def __init__(self, emb: Embedder):
        self.emb = emb
        self.memo: dict[tuple[str, ...], list[int]] = {}

    def item(self, it: Item) -> list[int]:
        v = self.memo.get(it.key)
        if v is None:
            if it.pair:
                assert it.b is not None
                v = self.emb.pair_vector(it.a, it.b, analyze_pair(it.a, it.b))
            else:
                v = self.emb.repr_vector(it.a)
            self.memo[it.key] = v
        return v

    def concept(self, c: Concept) -> list[int]:
        pv = [self.item(p) for p in c.pairs]
        return self.emb.combine(pv, pv, c.keys)

    def ask(self, q: Ask) -> list[int]:
        pv = [self.item(p) for p in q.pairs]
        return self.emb.combine(pv + ([self.item(q.rep)] if q.rep else []), pv, q.keys)


def rank(
    concepts: list[Concept], asks: list[Ask], emb: Embedder, cfg: Config, k: int = 50
) -> dict[str, ModeSummary]:
    """hybrid-weighted (delta 0) and soft, as vault.retrieval ranks them (one version per
    concept, all active, no negative evidence: utility 1)."""
    if cfg.delta != 0.0:
        raise ValueError("the replica has no diversity term")
    concepts = sorted(concepts, key=lambda c: c.cid)
    ids = [c.cid for c in concepts]
    vecs = Vectors(emb)
    matrix = np.array([vecs.concept(c) for c in concepts], dtype=np.int8)
    out: dict[str, list[QueryOutcome]] = {"hybrid-weighted": [], "soft": []}
    for q in asks:
        sims = similarity(matrix, np.array(vecs.ask(q), dtype=np.int8), cfg.similarity)
        eligible = [i for i in range(len(ids)) if ids[i] not in q.exclude]
        soft = sorted(eligible, key=lambda i: (-sims[i], i))[:k]
        out["soft"].append(QueryOutcome(q.qid, tuple(ids[i] for i in soft), q.relevant, 0.0))
        overlap = {i: len(q.keys & concepts[i].keys) for i in eligible}
        short = sorted((i for i in eligible if overlap[i]), key=lambda i: (-overlap[i], i))
        short = short[: cfg.shortlist_max]
        if len(short) < cfg.shortlist_min:
            rest = sorted((i for i in eligible if not overlap[i]), key=lambda i: (-sims[i], i))
            short += rest[: cfg.shortlist_min - len(short)]
        n = len(q.keys)
        score = {
            i: cfg.alpha * sims[i] + cfg.beta + (cfg.gamma * overlap[i] / n if n else 0.0)
            for i in short
        }
        short.sort(key=lambda i: (-score[i], i))
        out["hybrid-weighted"].append(
            QueryOutcome(q.qid, tuple(ids[i] for i in short[:k]), q.relevant, 0.0)
        )
    return {m: summarize(rows) for m, rows in out.items()}


# ------------------------------------------------------------------ folds and fits
ARC_TRAIN: list[tuple[str, Any]] = []


def arc_train() -> list[tuple[str, Any]]:
    if not ARC_TRAIN:
        ARC_TRAIN.extend((t, task) for t, task, _ in load_dataset("arc1-train"))
    return ARC_TRAIN


@dataclass
class Fold:
    fit_arc: list[tuple[str, Any]]
    fit_syn: list[tuple[str, str, Any]]  # (task id, family, task), seed 1
    sets: dict[str, Callable[[], datasets.Dataset]]


def _mixed(families: Sequence[str], val_arc: list[tuple[str, Any]]) -> datasets.Dataset:
    gen = generate(0, 10, 4, families)
    tasks = [(t.task_id, t.task, f"synthetic:{t.task_id}") for t in gen]
    tasks += [(t, task, f"arc1-train:{t}") for t, task in val_arc]
    groups = {t.task_id: t.family for t in gen}
    return datasets._cross("mixed", tasks, groups, "synthetic among ARC distractors", None)


def folds() -> list[Fold]:
    train = arc_train()
    out = []
    for i in (0, 1):
        fit_arc, val_arc = (train[0::2], train[1::2]) if i == 0 else (train[1::2], train[0::2])
        fit_fam = TRAIN_FAMILIES[0::2] if i == 0 else TRAIN_FAMILIES[1::2]
        val_fam = TRAIN_FAMILIES[1::2] if i == 0 else TRAIN_FAMILIES[0::2]
        syn = generate(recipe.SYNTHETIC_SEED, recipe.SYNTHETIC_TASKS, 4, fit_fam)
        val = [(t, task, f"arc1-train:{t}") for t, task in val_arc]

        def arc(protocol: str, val: list[Any] = val) -> datasets.Dataset:
            return datasets.changed("arc", protocol, val, "arc1-train half", 0)

        sets: dict[str, Callable[[], datasets.Dataset]] = {
            "arc-d4": lambda arc=arc: arc("d4"),
            "arc-colour": lambda arc=arc: arc("colour"),
            "arc-self": lambda val=val: datasets._own("arc", "self", val, "arc1-train half", None),
            "arc-learning": lambda arc=arc: arc("learning"),
            "syn-fresh": lambda f=val_fam: datasets.synthetic(families=f, protocol="fresh"),
            "syn-mixed": lambda f=val_fam, v=val_arc: _mixed(f, v),
        }
        out.append(Fold(fit_arc, [(t.task_id, t.family, t.task) for t in syn], sets))
    return out


_ITEMS: dict[tuple[str, tuple[str, ...]], list[list[int]]] = {}


def _items(task_id: str, task: Any, augs: tuple[str, ...]) -> list[list[int]]:
    key = (task_id, augs)
    if key not in _ITEMS:
        _ITEMS[key] = [
            i
            for t in recipe.augmented(task_id, task, augs)
            for i in fitted.task_items(t, task_id, blocks=None)  # every raw block
        ]
    return _ITEMS[key]


def fit_fold(
    fold: Fold, augs: tuple[str, ...], output_blocks: fitted.OutputBlocks
) -> fitted.FittedWeights:
    classes: dict[str, list[list[int]]] = {}
    weights: dict[str, float] = {}
    for task_id, task in fold.fit_arc:
        classes[f"task:{task_id}"] = _items(task_id, task, augs)
        weights[f"task:{task_id}"] = 1.0
    for task_id, family, task in fold.fit_syn:
        classes.setdefault(f"group:{family}", []).extend(_items(task_id, task, augs))
        weights[f"group:{family}"] = fitted.LABEL_WEIGHT
    return fitted.fit(classes, class_weights=weights, output_blocks=output_blocks)


def transform_reads(groups: Collection[str]) -> fitted.OutputBlocks:
    a, t, k = fitted.OUTPUT_BLOCKS
    return (a, (t[0], t[1], t[2], ("transform", *groups), t[4]), k)


_DATA: dict[tuple[int, str], tuple[Any, Any]] = {}


def evaluate(
    all_folds: list[Fold], embs: Sequence[Embedder], cfg: Config, mode: str = "hybrid-weighted"
) -> dict[str, float]:
    """Per protocol kind, the mean over the folds (P@5 for mixed, else MRR)."""
    out: dict[str, list[float]] = {k: [] for k in KINDS}
    for i, (fold, emb) in enumerate(zip(all_folds, embs, strict=True)):
        for kind, make in fold.sets.items():
            if (i, kind) not in _DATA:
                ds = make()
                _DATA[(i, kind)] = (replica_data(ds), None)
            (concepts, asks), _ = _DATA[(i, kind)]
            s = rank(concepts, asks, emb, cfg)[mode]
            out[kind].append(s.precision_at_5 if kind == "syn-mixed" else s.mrr)
    return {k: sum(v) / len(v) for k, v in out.items()}


def mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


# ------------------------------------------------------------------ the replica check
def check_replica(fold: Fold, w: fitted.FittedWeights) -> str:
    ds = fold.sets["arc-d4"]()
    cfg = Config()
    lines = []
    for name, emb, weights in (
        ("built-in", builtin.EMBEDDER, "builtin"),
        ("fitted", fitted_embedder(w), w.to_bytes()),
    ):
        real = study.run(ds, cfg, ("hybrid-weighted", "soft"), weights=weights)
        mine = rank(*replica_data(ds), emb, cfg)
        for mode in ("hybrid-weighted", "soft"):
            a, b = real.summaries[mode], mine[mode]
            if (a.mrr, a.precision_at_5, a.recall) != (b.mrr, b.precision_at_5, b.recall):
                raise SystemExit(f"the replica differs from vault eval ({name}, {mode})")
            lines.append(f"{name} {mode} MRR {a.mrr:.4f}")
    return "; ".join(lines)


# ------------------------------------------------------------------ the study
def table(rows: list[tuple[str, dict[str, float]]], best: bool = True) -> list[str]:
    head = ["variant", *KINDS, "mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    top = max(mean(s) for _, s in rows) if best else None
    for name, s in rows:
        m = mean(s)
        cell = f"**{m:.4f}**" if top is not None and m == top else f"{m:.4f}"
        lines.append(f"| {name} | " + " | ".join(f"{s[k]:.3f}" for k in KINDS) + f" | {cell} |")
    return lines


def run(quick: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    all_folds = folds()
    cfg = Config()
    chosen = recipe.AUGMENTATIONS
    base = ("none", *chosen)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:5.0f} s] {msg}", file=sys.stderr, flush=True)

    def fitted_scores(
        augs: tuple[str, ...], blocks: fitted.OutputBlocks, c: Config = cfg
    ) -> dict[str, float]:
        embs = [fitted_embedder(fit_fold(f, augs[1:], blocks)) for f in all_folds]
        return evaluate(all_folds, embs, c)

    result: dict[str, Any] = {"config": cfg.to_json(), "augmentations": list(chosen)}
    log("replica check")
    result["replica_check"] = check_replica(
        all_folds[0], fit_fold(all_folds[0], chosen, fitted.OUTPUT_BLOCKS)
    )
    groups = ("roles", "objects", "sizes", "counts")
    features: list[tuple[str, dict[str, float]]] = []
    both_builtin = [builtin.EMBEDDER, builtin.EMBEDDER]
    features.append(("built-in (hand-set map)", evaluate(all_folds, both_builtin, cfg)))
    log("features")
    features.append(
        (
            "fitted, version-1 features, no augmentation",
            fitted_scores(("none",), transform_reads(())),
        )
    )
    features.append(("fitted, version-1 features", fitted_scores(base, transform_reads(()))))
    for g in groups:
        features.append((f"+ {g}", fitted_scores(base, transform_reads((g,)))))
        log(f"+ {g}")
    if not quick:
        features.append(("+ all four groups", fitted_scores(base, transform_reads(groups))))
        for g in groups:
            rest = tuple(x for x in groups if x != g)
            features.append((f"all four but {g}", fitted_scores(base, transform_reads(rest))))
            log(f"all but {g}")
    kept = f"+ {' + '.join(fitted.STRUCTURE_READ)} (shipped)"
    features.append((kept, fitted_scores(base, fitted.OUTPUT_BLOCKS)))
    result["features"] = features
    log("augmentations")
    augmentations: list[tuple[str, dict[str, float]]] = []
    aug_variants = {
        "none": ("none",),
        "colour ×2": ("none", "colour:0", "colour:1"),
        "D4 ×2": ("none", "d4:0", "d4:1"),
        "colour ×2 + D4 ×2": ("none", "colour:0", "colour:1", "d4:0", "d4:1"),
    }
    aug_variants[f"{' + '.join(chosen)} (shipped)"] = base
    if not quick:
        aug_variants["colour ×4 + D4 ×4"] = (
            "none",
            *(f"{k}:{i}" for k in ("colour", "d4") for i in range(4)),
        )
    for name, augs in aug_variants.items():
        augmentations.append((name, fitted_scores(augs, fitted.OUTPUT_BLOCKS)))
        log(f"augmentation {name}")
    result["augmentations_table"] = augmentations
    log("defaults")
    embs = [fitted_embedder(fit_fold(f, chosen, fitted.OUTPUT_BLOCKS)) for f in all_folds]
    grid: list[tuple[str, dict[str, float]]] = []
    settings = [("structured", g) for g in (0.0, 0.1, 0.2, 0.3)]
    settings += [("cosine", g) for g in (0.0, 0.1, 0.2, 0.3)]
    settings += [("euclidean", g) for g in (0.1, 0.2)]
    for metric, gamma in settings:
        c = cfg.with_overrides(similarity=metric, gamma=gamma)
        grid.append((f"hybrid weighted, {metric}, gamma {gamma}", evaluate(all_folds, embs, c)))
    for metric in ("structured", "cosine"):
        c = cfg.with_overrides(similarity=metric)
        grid.append((f"soft, {metric}", evaluate(all_folds, embs, c, "soft")))
    b = [builtin.EMBEDDER, builtin.EMBEDDER]
    grid.append(
        (
            "built-in embedder, hybrid weighted, structured, gamma 0.2 (the old default)",
            evaluate(all_folds, b, cfg.with_overrides(similarity="structured", gamma=0.2)),
        )
    )
    result["defaults"] = grid
    result["seconds"] = time.perf_counter() - t0
    return result


def markdown(result: dict[str, Any], cmd: str) -> str:
    cfg = result["config"]
    lines = [
        BEGIN,
        "",
        provenance(cmd),
        "",
        "Training side only: each fold fits on half of the ARC-AGI-1 *training* split and of "
        "the synthetic training families and validates on the other half (module docstring "
        "of `benchmarks/features_study.py`); figures are means over the two folds (MRR; P@5 "
        "for `syn-mixed`), with the default retrieval configuration "
        f"({cfg['mode']} {cfg['strategy']}, {cfg['similarity']}, gamma {cfg['gamma']}) "
        f"unless the row says otherwise. Replica check against `vault eval`: "
        f"{result['replica_check']}.",
        "",
        "### Features from structure (each a raw block of `vault/embedding/relations.py`)",
        "",
        *table(result["features"]),
        "",
        "### Augmentations (the shipped features)",
        "",
        *table(result["augmentations_table"]),
        "",
        "### Retrieval defaults (the shipped recipe, fitted per fold)",
        "",
        *table(result["defaults"]),
        "",
        f"({result['seconds']:.0f} s.)",
        "",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer variants (a smoke run)")
    ap.add_argument("--no-write", action="store_true", help="print, do not write the files")
    args = ap.parse_args()
    cmd = command()
    result = run(args.quick)
    result["command"] = cmd
    result["commit"] = commit()
    text = markdown(result, cmd)
    print(text)
    if args.no_write:
        return
    JSON_OUT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    doc = FIT_MD.read_text()
    if BEGIN in doc and END in doc:
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: text, doc, flags=re.S)
    else:
        doc = (
            doc.rstrip("\n")
            + "\n\n## Issue 22: features, augmentations and defaults\n\n"
            + text
            + "\n"
        )
    FIT_MD.write_text(doc)
    print(f"wrote {FIT_MD} and {JSON_OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
