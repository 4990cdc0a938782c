"""A 10^6-concept vector-level fixture for `make bench` (reads only).

Building a real vault of 10^6 generated concepts takes longer than the whole bench may (file
creation dominates), so this builds the table a generation would hold — its chunks (FORMAT §7.5:
columns, refs, key postings and the int8 matrix) — directly from generated data: concept vectors
are combined (by the embedder itself) from 1-2 pair vectors of a pool of generated grids under
ten transformation families, with their family's keys and random tags, as in benchmarks/gen.py.
The fixture's chunk files are written once (`build`) and joined by a fresh process (`measure`)
as a reader joins a generation's, whose peak memory is what retrieval over 10^6 concepts costs.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen  # noqa: E402

from vault.config import Config  # noqa: E402
from vault.embedding import builtin  # noqa: E402
from vault.grid.pairs import analyze_pair  # noqa: E402
from vault.grid.reprs import grid_to_repr  # noqa: E402
from vault.index import table as tables  # noqa: E402
from vault.records.keys import matchable  # noqa: E402
from vault.records.query import normalize_query  # noqa: E402

N = 1_000_000
STAGE_QUERIES = 40  # different query vectors timed once each by the embedding stage
DIR = Path(tempfile.gettempdir()) / "vault-bench-million"


def p90(xs: list[float]) -> float:
    return sorted(xs)[int(0.9 * len(xs))]


def build(n: int = N, out: Path | None = None) -> float:
    out = out or DIR
    t0 = time.perf_counter()
    rng = random.Random(0)
    grids = [gen.pool_grid(rng) for _ in range(2000)]
    families = sorted(gen.FAMILIES)
    protos: list[tuple[str, list[int]]] = []
    for g in grids:
        f = families[rng.randrange(len(families))]
        a, b = grid_to_repr(g), grid_to_repr(gen.FAMILIES[f][0](g))
        protos.append((f, builtin.pair_vector(a, analyze_pair(a, b))))
    by_family: dict[str, list[list[int]]] = {}
    for f, v in protos:
        by_family.setdefault(f, []).append(v)
    keys_of_row: list[tuple[str, ...]] = []
    matrix = np.zeros((n, builtin.DIM), dtype=np.int8)
    memo: dict[tuple[Any, ...], list[int]] = {}
    for i in range(n):
        f = families[rng.randrange(len(families))]
        keys = tuple(sorted(set(gen.FAMILIES[f][1] + rng.sample(gen.EXTRA, rng.randint(0, 3)))))
        pool = by_family[f]
        picks = tuple(sorted(rng.randrange(len(pool)) for _ in range(rng.randint(1, 2))))
        key = (f, picks, keys)
        vec = memo.get(key)
        if vec is None:
            items = [pool[p] for p in picks]
            vec = builtin.combine(items, items, keys)
            if len(memo) < 200_000:
                memo[key] = vec
        matrix[i] = vec
        keys_of_row.append(("domain:grid_2d", *matchable(keys)))
    # the table a generation would hold (format 3, FORMAT §7.5): rows in id order, cut into
    # chunks by the boundary rule, each chunk's two objects as `index build` makes them
    rows = [
        tables.Row(f"c{i:07d}@1.0.0", 0, 1, 0, tuple(sorted(keys_of_row[i])), ()) for i in range(n)
    ]
    out.mkdir(parents=True, exist_ok=True)
    chunks_dir = out / "chunks"
    chunks_dir.mkdir(exist_ok=True)
    metas, at = [], 0
    for i, part in enumerate(tables.chunk_rows(rows)):
        chunk = tables.make_chunk(part, matrix[at : at + len(part)])
        at += len(part)
        (chunks_dir / f"{i}.rows").write_bytes(chunk.blob)
        (chunks_dir / f"{i}.matrix").write_bytes(chunk.mblob)
        metas.append(chunk.meta)
    rows_list, matrix_list = tables.list_bytes(metas)
    (out / "rows.list").write_bytes(rows_list)
    (out / "matrix.list").write_bytes(matrix_list)
    seconds = time.perf_counter() - t0
    (out / "built").write_text(str(seconds))
    return seconds


class FixtureSnapshot:
    """Enough of a Snapshot for retrieval: a table, no drift, a generation name."""

    def __init__(self, table: tables.Table):
        self.table = table
        self.drift = False
        self.generation = "fixture-1e6"

    def embedder(self) -> Any:
        from vault.embedding import builtin

        return builtin.EMBEDDER  # the fixture's vectors are the built-in embedder's

    def read_ahead(self, metric: str) -> None:
        """(``load`` reads the matrix: a summary is read ahead there, when asked.)"""


def summaries(out: Path | None = None) -> None:
    """Place the fixture's matrix as a vault places a generation's (named by the sha256 of
    its bytes), with the summaries `vault index build` leaves in the cache written once."""
    from vault.embedding import summary
    from vault.embedding.topk import NA

    out = out or DIR
    name = _name(out)
    missing = [
        kind
        for kind in ("parts", "full")
        if not (out / "summaries" / f"{name}-{kind}.summary").exists()
    ]
    if missing:
        snap = load(out)
        for kind in missing:
            summary.write(out / "summaries", name, summary.build(snap.table.matrix, kind, NA))


def ensure(out: Path | None = None) -> None:
    """The fixture and its summaries, built if missing — in a subprocess, so that the
    measuring process's peak memory is that of reading them, as a vault's reader does."""
    import subprocess

    out = out or DIR
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import million; from pathlib import Path\n"
        f"out = Path({str(out)!r})\n"
        "if not ((out / 'built').exists() and (out / 'rows.list').exists()):\n"
        "    million.build(out=out)\n"
        "million.summaries(out)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _name(out: Path) -> str:
    """The matrix's name (as the manifest names a generation's matrix list object)."""
    import hashlib

    return hashlib.sha256((out / "matrix.list").read_bytes()).hexdigest()


def load(out: Path | None = None, metric: str | None = None) -> FixtureSnapshot:
    """The fixture's table, joined from its chunk files as a reader joins a generation's;
    with ``metric``, its summary for that metric read ahead meanwhile, as a vault's
    retrieval starts it before the matrix is read (``Generation.read_ahead``)."""
    from vault.embedding import summary

    out = out or DIR
    lists = ((out / "rows.list").read_bytes(), (out / "matrix.list").read_bytes())
    metas = tables.parse_lists(*lists, "fixture")
    if metric is not None:
        rows = sum(m.rows for m in metas)
        summary.read_ahead(out / "summaries", _name(out), summary.kind_for(metric), rows)
    chunks = out / "chunks"

    def fill(i: int, m: tables.Meta, bufs: list[memoryview]) -> None:
        tables.copy_into((chunks / f"{i}.rows").read_bytes(), bufs)

    def into(i: int, m: tables.Meta, buf: memoryview) -> None:
        tables.copy_into((chunks / f"{i}.matrix").read_bytes(), buf)

    def matrix() -> np.ndarray:
        return summary.seal(tables.read_matrix(metas, into))

    table = tables.join(metas, fill, matrix, lists, "fixture")
    summary.place(table.matrix, out / "summaries", _name(out), True)
    return FixtureSnapshot(table)


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM of /proc/self/status (per address space,
    so reset by exec — getrusage's ru_maxrss carries the forking parent's peak into a child
    started with subprocess, which made a 10^6 run report the 10^5 bench's 1.3 GB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(runs: int = 5) -> dict[str, Any]:
    from vault.embedding import builtin
    from vault.embedding.topk import topk
    from vault.embedding.vectors import query_vector
    from vault.retrieval import retrieve_in

    ensure()  # (in a subprocess: built, and summarised as `vault index build` leaves it)
    build_s = float((DIR / "built").read_text())
    snap = load()
    cfg = Config()
    rng = random.Random(5)
    queries = [
        normalize_query({"schema_version": 1, "grid": [list(r) for r in gen.pool_grid(rng)]})
        for _ in range(max(runs, 50))
    ]
    out: dict[str, Any] = {"build_s": build_s, "n": snap.table.n}
    for mode in ("symbolic", "hybrid", "soft"):
        retrieve_in(snap, queries[0], cfg, mode)  # warm the per-table arrays
        times = []
        for q in queries[:runs]:
            t = time.perf_counter()
            r = retrieve_in(snap, q, cfg, mode)
            times.append(time.perf_counter() - t)
            assert r.mode_used == mode, r.fallback_reason
        out[f"{mode}_ms"] = statistics.median(times) * 1000
    t = time.perf_counter()
    for q in queries:
        retrieve_in(snap, q, cfg, "hybrid")
    out["batch_qps"] = len(queries) / (time.perf_counter() - t)
    # retrieval as a process runs it: every mode with the configured metric (structured)
    out["rss_mb"] = peak_rss_mb()
    # the embedding stage: exact top-10 over every row, each query a different grid's
    # vector (one vector re-asked is a warm loop: its candidates are the same every time)
    qvs = [np.array(query_vector(builtin.EMBEDDER, q, None), dtype=np.int8) for q in queries]
    qv, stage_qvs = qvs[0], qvs[1 : 1 + STAGE_QUERIES]
    out["stage_queries"] = len(stage_qvs)
    table = snap.table
    n2a, n2b = table.col("norm2_appearance"), table.col("norm2_behaviour")
    tie = table.col("tail")

    from vault.embedding.summary import cached
    from vault.embedding.topk import MEASURED, NA

    def scan(metric: str, threads: int | None) -> Callable[[np.ndarray], Any]:
        return lambda v: topk(table.matrix, n2a, n2b, v, 10, metric, tie=tie, threads=threads)

    # every setting over the same query vectors, interleaved query by query (a slow window of
    # a shared host then hits every setting alike); the default (threads=None) is the thread
    # count this process measures faster (``Measured``: it times only its own scans)
    settings: dict[str, tuple[Callable[[], None], Callable[[np.ndarray], Any]]] = {}
    for metric in (cfg.similarity, "cosine"):
        for threads in (1, 2):
            settings[f"stage_{metric}_{threads}t"] = (lambda: None, scan(metric, threads))
    settings[f"stage_{cfg.similarity}_default"] = (lambda: None, scan(cfg.similarity, None))
    MEASURED.reset()
    for _, run in settings.values():
        run(qv)  # warm: the summaries read or built (the default's first scan, untimed)
    # the stage's cosine kernel adds a second metric's summary (vault.embedding.summary)
    out["rss_stage_mb"] = peak_rss_mb()  # before faiss
    summ = cached(table.matrix, "full", NA, 0)  # the cosine summary, built by the stage
    out["summary_mb"] = None if summ is None else summ.data.nbytes / 2**20
    try:
        import faiss  # benchmark-only

        index = faiss.IndexFlatIP(table.matrix.shape[1])
        index.add(table.matrix.astype(np.float32))
        omp_default = faiss.omp_get_max_threads()

        def searcher(threads: int) -> tuple[Callable[[], None], Callable[[np.ndarray], Any]]:
            return (
                lambda: faiss.omp_set_num_threads(threads),
                lambda v: index.search(v.astype(np.float32)[None, :], 10),
            )

        for threads in (1, 2):
            settings[f"faiss_{threads}t"] = searcher(threads)
            settings[f"faiss_{threads}t"][0]()
            settings[f"faiss_{threads}t"][1](qv)
    except ImportError:
        faiss = None
    times: dict[str, list[float]] = {name: [] for name in settings}
    names = list(settings)
    for i, v in enumerate(stage_qvs):
        for name in names[i % len(names) :] + names[: i % len(names)]:  # order rotated
            before, run = settings[name]
            before()
            t = time.perf_counter()
            run(v)
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        out[f"{name}_ms"] = statistics.median(ts) * 1000
        out[f"{name}_p90_ms"] = p90(ts) * 1000
    out["default_picked"] = {str(k): n for k, n in MEASURED.picked.items()}
    out["metric"] = cfg.similarity
    out["stage_ms"] = out["stage_cosine_1t_ms"]
    out["k"] = 10
    if faiss is not None:
        faiss.omp_set_num_threads(omp_default)
        best = min((out["faiss_1t_ms"], 1), (out["faiss_2t_ms"], 2))
        out["faiss_ms"], out["faiss_threads"] = best
        del index
    else:
        out["faiss_ms"] = None
    return out


FIRST = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import million
import numpy as np
from vault.config import Config
from vault.embedding.topk import topk
t = time.perf_counter()
snap = million.load(metric=Config().similarity)
opened = time.perf_counter() - t
table = snap.table
qs = [np.array(v, dtype=np.int8) for v in json.loads(sys.argv[2])]
metric = Config().similarity
times = []
for q in qs:
    t = time.perf_counter()
    topk(table.matrix, table.col("norm2_appearance"), table.col("norm2_behaviour"), q, 10,
         metric, tie=table.col("tail"))
    times.append(time.perf_counter() - t)
print(json.dumps({"open": opened, "times": times}))
"""


def first_queries(runs: int = 5) -> dict[str, Any]:
    """Exact top-10 with the default metric in fresh processes: the first, second and
    third query of each (new query vectors), the fixture's load apart."""
    import subprocess

    from vault.embedding import builtin
    from vault.embedding.vectors import query_vector

    ensure()  # (in a subprocess, as for measure)
    rng = random.Random(11)
    out: dict[str, list[float]] = {"open": [], "first": [], "second": [], "third": []}
    for _ in range(runs):
        qs = [
            query_vector(
                builtin.EMBEDDER,
                normalize_query(
                    {"schema_version": 1, "grid": [list(r) for r in gen.pool_grid(rng)]}
                ),
                None,
            )
            for _ in range(3)
        ]
        data = json.loads(
            subprocess.run(
                [sys.executable, "-c", FIRST, str(HERE), json.dumps(qs)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()[-1]
        )
        out["open"].append(data["open"])
        for name, t in zip(("first", "second", "third"), data["times"], strict=True):
            out[name].append(t)
    return {f"{k}_ms": statistics.median(v) * 1000 for k, v in out.items()}


if __name__ == "__main__":
    print(f"built in {build():.0f} s")
