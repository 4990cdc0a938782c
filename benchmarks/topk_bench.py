"""Exact top-k over int8 vectors: ``vault.embedding.topk`` against numpy brute force,
faiss ``IndexFlatIP``, usearch exact search and numkong / simsimd int8 kernels.

    python benchmarks/topk_bench.py [--sizes 10000,100000,1000000] [--single 11]
        [--batch 1000] [--batch-runs 5] [--k 10] [--out benchmarks/TOPK.md] [--no-write]

Data: realistic int8 concept vectors — clustered floats quantised per block like the
embedder (shape [0,16), colour [16,26), transform [26,48), keys [48,64), each block
scaled to norm 127*w, w = 0.7, 0.6, 0.6, 0.55, rounded half to even), ~2% empty colour
blocks and 5% duplicate rows; queries are stored rows perturbed ("the same task again")
and fresh members of known clusters.

Each size runs in two fresh subprocesses: one loads the vectors as a read-only memory map
and runs only ``topk`` / ``topk_batch`` (its peak RSS is the memory figure); the other
runs every method, interleaved query by query (so machine load hits all alike), and
reports medians and the median of per-query time ratios measured side by side. Every
method's top-k ids are checked against the exact answer (``exact`` column: share of
queries whose ids equal it). faiss, usearch and numkong are benchmark-only imports
(``pip install faiss-cpu usearch numkong``); a missing one is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
BLOCKS = ((0, 16, 0.7), (16, 26, 0.6), (26, 48, 0.6), (48, 64, 0.55))
CHUNK = 65536
NK_BATCH = 160  # numkong's batch is timed on the first queries only (its cost is per query)


# ---------------------------------------------------------------------------------------
# data


def quantise(x: np.ndarray) -> np.ndarray:
    """Each block scaled to norm 127*w and rounded (half to even), as the embedder does."""
    out = np.zeros(x.shape, dtype=np.int8)
    for a, b, w in BLOCKS:
        blk = x[:, a:b].astype(np.float64)
        nrm = np.sqrt((blk * blk).sum(axis=1, keepdims=True))
        safe = np.where(nrm > 0, nrm, 1.0)
        out[:, a:b] = np.clip(np.round(127.0 * w * blk / safe), -127, 127).astype(np.int8)
    return out


def centres(rng: np.random.Generator, c: int) -> np.ndarray:
    x = np.zeros((c, 64), dtype=np.float32)
    x[:, 0:16] = np.clip(rng.normal(0.0, 0.6, (c, 16)), -1, 1)  # dense shape features
    col = rng.random((c, 10)) * (rng.random((c, 10)) < 0.35)  # a few colours
    col[np.arange(c), rng.integers(0, 10, c)] += 1.0
    x[:, 16:26] = col
    x[:, 26:48] = rng.normal(0, 1, (c, 22)) * (rng.random((c, 22)) < 0.4)  # sparse-ish
    x[:, 48:64] = rng.choice([-1.0, 0.0, 1.0], size=(c, 16), p=[0.15, 0.7, 0.15])  # keys
    return x


def members(rng: np.random.Generator, cen: np.ndarray, noise: float) -> np.ndarray:
    active = np.abs(cen) > 0
    x: np.ndarray = cen + rng.normal(0, noise, cen.shape).astype(np.float32) * active
    x += rng.normal(0, noise / 3, cen.shape).astype(np.float32)
    return x


def dataset(n: int, seed: int = 0, noise: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """(matrix int8 (n, 64), cluster centres): about 100 rows per cluster."""
    rng = np.random.default_rng(seed)
    cen = centres(rng, max(8, n // 100))
    m = np.empty((n, 64), dtype=np.int8)
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        x = members(rng, cen[rng.integers(0, len(cen), hi - lo)], noise)
        x[rng.random(hi - lo) < 0.02, 16:26] = 0.0  # an empty colour block
        m[lo:hi] = quantise(x)
    dup = np.flatnonzero(rng.random(n) < 0.05)
    m[dup] = m[rng.integers(0, n, len(dup))]
    return m, cen


def queries(m: np.ndarray, cen: np.ndarray, nq: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    half = nq // 2
    again = m[rng.integers(0, len(m), half)].astype(np.float32) / 127.0
    again += rng.normal(0, 0.05, again.shape).astype(np.float32)
    fresh = members(rng, cen[rng.integers(0, len(cen), nq - half)], 0.35)
    q = quantise(np.concatenate([again, fresh]))
    return q[rng.permutation(nq)]


def part_norms(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint32 squared norms of the appearance [0, 26) and behaviour [26, 64) dims."""
    na = np.empty(len(m), dtype=np.uint32)
    nb = np.empty(len(m), dtype=np.uint32)
    for lo in range(0, len(m), CHUNK):
        x = m[lo : lo + CHUNK].astype(np.int32)
        x *= x
        na[lo : lo + CHUNK] = x[:, :26].sum(axis=1)
        nb[lo : lo + CHUNK] = x[:, 26:].sum(axis=1)
    return na, nb


# ---------------------------------------------------------------------------------------
# children


def _rss_mb() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss it does not carry the parent's
    peak over fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load(d: Path) -> tuple[np.ndarray, ...]:
    return tuple(
        np.load(d / f"{name}.npy", mmap_mode="r") for name in ("matrix", "na", "nb", "queries")
    )


def child_memory(d: Path, k: int, nbatch: int) -> dict[str, Any]:
    """Only vault: peak RSS of single queries and a batch over a memory-mapped matrix."""
    from vault.embedding.topk import topk, topk_batch

    m, na, nb, qs = _load(d)
    base = _rss_mb()
    t = time.perf_counter()
    for metric in ("cosine", "euclidean", "structured"):
        for q in qs[:5]:
            topk(m, na, nb, np.asarray(q), k, metric)
    single = _rss_mb()
    for metric in ("cosine", "structured"):
        topk_batch(m, na, nb, np.asarray(qs[:nbatch]), k, metric)
    return {
        "rss_base_mb": base,
        "rss_single_mb": single,
        "rss_peak_mb": _rss_mb(),
        "seconds": time.perf_counter() - t,
    }


def _parts(q: np.ndarray) -> np.ndarray:
    p = np.zeros((64, 2), dtype=np.float32)
    p[:26, 0] = q[:26]
    p[26:, 1] = q[26:]
    return p


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


class Method:
    """A timed method: ``fn(i)`` answers run i; ``metric`` is what its ids are checked
    against (None: not comparable, e.g. faiss inner products for the structured metric)."""

    def __init__(self, name: str, metric: str | None, fn: Callable[[int], Any]):
        self.name = name
        self.metric = metric
        self.fn = fn
        self.times: list[float] = []
        self.outs: list[Any] = []


def _interleave(methods: list[Method], runs: int) -> None:
    """Every method does run i before any does run i + 1, in a shuffled order (seeded), so
    that machine load and cache state fall on all alike; ratios are taken run by run."""
    rng = np.random.default_rng(12345)
    for i in range(runs):
        for j in rng.permutation(len(methods)).tolist():
            meth = methods[j]
            t = time.perf_counter()
            out = meth.fn(i)
            meth.times.append(time.perf_counter() - t)
            meth.outs.append(out)


def _libs(res: dict[str, Any]) -> dict[str, Any]:
    lib: dict[str, Any] = {}
    try:
        import faiss

        lib["faiss"] = faiss
        res["faiss_threads"] = faiss.omp_get_max_threads()
    except ImportError:
        res["missing"].append("faiss-cpu (not installed)")
    try:
        import usearch.index as ui

        lib["usearch"] = ui
    except ImportError:
        res["missing"].append("usearch (not installed)")
    try:
        import numkong as nk

        lib["numkong"] = nk
    except ImportError:
        res["missing"].append("numkong (not installed)")
    # simsimd is not loaded: numkong is its successor, and simsimd 6.5 + numkong 7.8 +
    # usearch 2.26 in one process die of SIGILL (their bundled kernels clash)
    res["missing"].append("simsimd (numkong's predecessor: SIGILL when loaded with both)")
    return lib


def child_compare(d: Path, k: int, nsingle: int, nbatch: int, batch_runs: int) -> dict[str, Any]:
    from vault.embedding.similarity import scores
    from vault.embedding.topk import _single_threaded_blas, topk, topk_batch

    m_map, na_map, nb_map, qs_all = _load(d)
    m = np.ascontiguousarray(m_map)
    na, nb = np.asarray(na_map), np.asarray(nb_map)
    qs = np.asarray(qs_all[:nsingle])
    bq = np.asarray(qs_all[:nbatch])  # its first queries are the single queries
    n = len(m)
    res: dict[str, Any] = {"n": n, "batch_size": len(bq), "missing": []}
    lib = _libs(res)
    f32 = m.astype(np.float32)  # the reference methods' float32 copy (256 MB at 10^6)
    na64, nb64 = na.astype(np.int64), nb.astype(np.int64)

    def brute(q: np.ndarray, metric: str) -> np.ndarray:
        """What retrieval does today: every score, then one lexsort. (Its product runs
        single-threaded: OpenBLAS workers spin-wait after a threaded call and would slow
        whichever method runs next — measured 80 vs 45 ms for the next vault query.)"""
        with _single_threaded_blas():
            dots = (f32 @ _parts(q)).astype(np.int64)
        s = scores(dots, na64, nb64, q, metric)
        return np.lexsort((np.arange(n), -s))[:k]

    def ours(i: int, metric: str, threads: int | None) -> np.ndarray:
        rows: np.ndarray = topk(m, na, nb, qs[i], k, metric, threads=threads)[0]
        return rows

    def ours_batch(i: int, metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
        return topk_batch(m, na, nb, bq, k, metric)

    single: list[Method] = []
    for metric in ("cosine", "structured", "euclidean"):
        single.append(Method("vault topk", metric, partial(ours, metric=metric, threads=None)))
        single.append(
            Method("vault topk (1 thread)", metric, partial(ours, metric=metric, threads=1))
        )
        single.append(
            Method(
                "numpy brute force (float32 copy, exact)",
                metric,
                partial(lambda i, mt: brute(qs[i], mt), mt=metric),
            )
        )
    batch = [
        Method("vault topk_batch", metric, partial(ours_batch, metric=metric))
        for metric in ("cosine", "structured")
    ]
    if "faiss" in lib:
        faiss = lib["faiss"]
        nrm = np.sqrt((f32 * f32).sum(axis=1, keepdims=True))
        flat = faiss.IndexFlatIP(64)
        flat.add(f32 / np.where(nrm > 0, nrm, 1))  # normalized: inner product = cosine
        qf = bq.astype(np.float32)
        qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
        nt = int(res["faiss_threads"])

        def faiss_single(i: int, threads: int) -> np.ndarray:
            faiss.omp_set_num_threads(threads)
            ids: np.ndarray = flat.search(qn[i : i + 1], k)[1][0]
            return ids

        def faiss_batch(i: int) -> Any:
            faiss.omp_set_num_threads(nt)
            return flat.search(qn, k)

        for t in sorted({nt, 1}, reverse=True):
            name = f"faiss IndexFlatIP ({t} thread{'s' * (t > 1)})"
            single.append(Method(name, "cosine", partial(faiss_single, threads=t)))
        batch.append(Method(f"faiss IndexFlatIP ({nt} threads)", None, faiss_batch))
    if "usearch" in lib:
        ui = lib["usearch"]
        cos_kind = ui.MetricKind.Cos

        def us_single(i: int) -> np.ndarray:
            keys: np.ndarray = ui.search(m, qs[i], k, cos_kind, exact=True).keys
            return keys

        single.append(Method("usearch exact i8 (cos)", "cosine", us_single))
    if "numkong" in lib:
        nk = lib["numkong"]

        def nk_single(i: int) -> np.ndarray:
            dist = np.asarray(nk.cdist(qs[i][None], m, metric="angular"))[0]
            top = np.argpartition(dist, k)[:k]
            out: np.ndarray = top[np.lexsort((top, dist[top]))]
            return out

        packed = nk.dots_pack(m, dtype="int8")

        def nk_batch(i: int) -> None:
            for lo in range(0, NK_BATCH, 16):
                dots = np.asarray(nk.dots_packed(bq[lo : lo + 16], packed))
                np.argpartition(-dots, k, axis=1)[:, :k]

        single.append(Method("numkong cdist i8 (angular)", "cosine", nk_single))
        name = f"numkong dots_packed i8 (raw dots + argpartition; first {NK_BATCH} queries)"
        batch.append(Method(name, None, nk_batch))
    _interleave(single, len(qs))
    _interleave(batch, batch_runs)

    truth = {x.metric: x.outs for x in single if x.name.startswith("numpy")}
    faiss_times = {x.name: x.times for x in single if x.name.startswith("faiss")}
    res["single"] = []
    for x in single:
        base = next(y for y in single if y.name == "vault topk" and y.metric == x.metric)
        exact = sum(
            np.array_equal(np.asarray(o), t) for o, t in zip(x.outs, truth[x.metric], strict=True)
        )
        row = {
            "name": x.name,
            "metric": x.metric,
            "ms": 1e3 * _median(x.times),
            "ratio": _median([a / b for a, b in zip(base.times, x.times, strict=True)]),
            "exact": exact / len(qs),
            "runs": len(x.times),
        }
        # vault vs the fastest faiss configuration, query by query
        if x.name.startswith("vault") and faiss_times:
            best = [min(ts) for ts in zip(*faiss_times.values(), strict=True)]
            row["vs_faiss"] = _median([a / b for a, b in zip(x.times, best, strict=True)])
        res["single"].append(row)
    res["batch"] = []
    for x in batch:
        count = NK_BATCH if x.name.startswith("numkong") else len(bq)
        row = {
            "name": x.name,
            "metric": x.metric or "cosine (inner product)",
            "qps": count / _median(x.times),
            "runs": len(x.times),
        }
        if x.name.startswith("vault"):
            got = x.outs[0]
            row["exact"] = sum(
                np.array_equal(got[i][0], t) for i, t in enumerate(truth[x.metric])
            ) / len(qs)
            row["checked"] = len(qs)
            fa = [y for y in batch if y.name.startswith("faiss")]
            if fa:  # throughput ratio, run by run
                row["vs_faiss"] = _median(
                    [b / a for a, b in zip(x.times, fa[0].times, strict=True)]
                )
        res["batch"].append(row)
    res["rss_mb"] = _rss_mb()
    res["mechanics"] = mechanics(m, na, nb, qs, f32, k)
    return res


def mechanics(
    m: np.ndarray, na: np.ndarray, nb: np.ndarray, qs: np.ndarray, f32: np.ndarray, k: int
) -> dict[str, Any]:
    """What a single cosine scan is made of, measured after the timed comparison: the int8
    -> float32 conversion and the float32 product of the whole matrix, block by block as
    ``topk`` does (median of 3 passes), and, when the matrix is large enough for one, the
    summary of ``vault.embedding.summary``: its build time, its size and the share of rows
    its bound rules out once the floor is the exact k-th score (per query; the scan's floor
    only rises to that, so it scores at least the rows not ruled out here)."""
    from vault.embedding import summary as summary_mod
    from vault.embedding import topk as topk_mod
    from vault.embedding.similarity import scores

    n = len(m)
    block = topk_mod.SUMMARY_BLOCK
    buf = np.empty((block, m.shape[1]), dtype=np.float32)
    col = np.ones(m.shape[1], dtype=np.float32)  # a cosine scan's one column
    out = np.empty(block, dtype=np.float32)
    conv, prod = [], []
    passes = 3
    with topk_mod._single_threaded_blas():  # as topk runs its products
        for _ in range(passes):
            tc = tp = 0.0
            for lo in range(0, n, block):
                hi = min(lo + block, n)
                t = time.perf_counter()
                np.copyto(buf[: hi - lo], m[lo:hi], casting="unsafe")
                t2 = time.perf_counter()
                np.matmul(buf[: hi - lo], col, out=out[: hi - lo])
                tc += t2 - t
                tp += time.perf_counter() - t2
            conv.append(tc)
            prod.append(tp)
    res: dict[str, Any] = {
        "convert_ms": 1e3 * _median(conv),
        "convert_ns_per_value": 1e9 * _median(conv) / m.size,
        "product_ms": 1e3 * _median(prod),
        "passes": passes,
        "summary_min_rows": topk_mod.SUMMARY_MIN_ROWS,
    }
    if n < topk_mod.SUMMARY_MIN_ROWS:
        return res
    t = time.perf_counter()
    summ = summary_mod.build(m, "full", topk_mod.NA)
    res["summary_build_s"] = time.perf_counter() - t
    res["summary_mb"] = summ.data.nbytes / 2**20
    res["summary_columns"] = summ.data.shape[1]
    sdata = summ.data.astype(np.float32)
    na64, nb64 = na.astype(np.int64), nb.astype(np.int64)
    ruled_out = []
    for q in qs:
        w, bound, qn = summ.column(q, None)
        if qn == 0:
            continue
        dots = (f32 @ _parts(q)).astype(np.int64)
        kth = float(np.sort(scores(dots, na64, nb64, q, "cosine"))[-k])
        t_rows = sdata @ w
        ruled_out.append(float(np.mean(t_rows < kth * qn - bound)))
    res["summary_ruled_out"] = _median(ruled_out)
    res["summary_ruled_out_min"] = min(ruled_out)
    return res


# ---------------------------------------------------------------------------------------
# parent


def machine() -> dict[str, str]:
    from machine import cpu_name  # benchmarks/ is the script's directory

    cpu = cpu_name()
    blas = "?"
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')}"
    except Exception:  # noqa: BLE001 - informational only
        pass
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "load": load,
    }


def run_child(args: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def fmt_ms(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def report(results: list[dict[str, Any]], info: dict[str, str], cmd: str, k: int) -> str:
    from machine import provenance  # benchmarks/ is the script's directory

    lines = [
        "# Exact top-k over int8 vectors (`vault.embedding.topk`)",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, numpy "
        f"{info['numpy']}, BLAS {info['blas']}; load average at the start {info['load']} "
        "(on a shared machine read the ratios, measured back to back, rather than absolute "
        "times).",
        "",
        provenance(cmd),
        "",
        f"Top-{k}. Single query: median over the queries (*runs*). *vault/this* = median "
        "over queries of (vault topk time / this method's time), measured back to back "
        "(< 1: vault is faster); *vault/faiss* = median over queries of (this vault "
        "variant's time / the faster faiss configuration's time on the same query). "
        "*exact* = share of queries whose top-k ids equal the exact answer (score desc, row "
        "asc; faiss, usearch and numkong differ on ties and float rounding). faiss gets the "
        "float32 vectors normalized (IndexFlatIP = cosine; same cost as raw IP); the "
        "competitors have no structured or euclidean metric. Batch: throughput on one batch "
        "of queries; *vault/faiss* = median over runs of faiss time / vault time.",
        "",
    ]
    lines += targets(results[-1])
    for r in results:
        c = r["compare"]
        mem = r["memory"]
        lines += [
            f"## N = {c['n']:,}",
            "",
            "| single query | metric | ms | vault/this | vault/faiss | exact | runs |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in c["single"]:
            vf = f"{row['vs_faiss']:.2f}" if "vs_faiss" in row else ""
            lines.append(
                f"| {row['name']} | {row['metric']} | {fmt_ms(row['ms'])} | "
                f"{row['ratio']:.2f} | {vf} | {row['exact']:.0%} | {row['runs']} |"
            )
        lines += [
            "",
            "| batch | metric | queries/s | vault/faiss | exact | runs |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in c["batch"]:
            vf = f"{row['vs_faiss']:.2f}" if "vs_faiss" in row else ""
            ex = f"{row['exact']:.0%} of {row['checked']}" if "exact" in row else ""
            lines.append(
                f"| {row['name']} | {row['metric']} | {row['qps']:.0f} | {vf} | {ex} | "
                f"{row['runs']} |"
            )
        lines += [
            "",
            f"Peak RSS of a process running only vault (read-only memory-mapped int8 matrix; "
            f"single queries of every metric, then a batch of each): "
            f"**{mem['rss_peak_mb']:.0f} MB** (after imports and mapping "
            f"{mem['rss_base_mb']:.0f} MB, after the single queries {mem['rss_single_mb']:.0f} "
            f"MB). The comparison process (float32 copies for the references, the faiss "
            f"index, numkong's packed copy) peaked at {c['rss_mb']:.0f} MB.",
            "",
        ]
        if c["missing"]:
            lines += [f"Not measured: {'; '.join(c['missing'])}.", ""]
    return "\n".join(lines)


def targets(r: dict[str, Any]) -> list[str]:
    """The issue's targets at the largest size, as measured in this run."""
    c, mem = r["compare"], r["memory"]
    out = [f"## Targets at N = {c['n']:,} (this run)", "", "| target | measured | |"]
    out.append("|---|---|---|")
    for metric in ("cosine", "structured"):
        row = next(
            (x for x in c["single"] if x["name"] == "vault topk" and x["metric"] == metric), None
        )
        if row and "vs_faiss" in row:
            v = row["vs_faiss"]
            out.append(
                f"| single query, {metric}: <= 0.5x faiss IndexFlatIP time | "
                f"{v:.2f}x (the faster faiss setting, query by query) | "
                f"{'reached' if v <= 0.5 else 'not reached'} |"
            )
    for row in c["batch"]:
        if row["name"] == "vault topk_batch" and "vs_faiss" in row:
            v = row["vs_faiss"]
            out.append(
                f"| batch of {c['batch_size']:,} queries, {row['metric']}: >= 1.2x faiss "
                "throughput | "
                f"{v:.2f}x | {'reached' if v >= 1.2 else 'not reached'} |"
            )
    peak = mem["rss_peak_mb"]
    out.append(
        f"| peak RSS <= 300 MB | {peak:.0f} MB | {'reached' if peak <= 300 else 'not reached'} |"
    )
    exact = all(x["exact"] == 1.0 for x in c["single"] if x["name"].startswith("vault")) and all(
        x.get("exact", 1.0) == 1.0 for x in c["batch"]
    )
    out.append(
        f"| exact (ids of every vault answer = the brute force's) | "
        f"{'all' if exact else 'NOT ALL'} | {'reached' if exact else 'FAILED'} |"
    )
    return out + ["", *notes(r), ""]


def notes(r: dict[str, Any]) -> list[str]:
    """How to read the figures at the largest size: prose around figures of this run only."""
    c = r["compare"]
    mech = c["mechanics"]
    ms = {(x["name"], x["metric"]): x["ms"] for x in c["single"]}
    text = (
        f"Notes (N = {c['n']:,}, this run). A full single-query scan converts every int8 "
        f"value to float32 before its product: {mech['convert_ns_per_value']:.2f} ns per "
        f"value, {mech['convert_ms']:.1f} ms for the whole matrix, and "
        f"{mech['product_ms']:.1f} ms for the float32 product after it (median of "
        f"{mech['passes']} passes, block by block as `topk` converts); faiss streams its float32 "
        "copy instead."
    )
    if "summary_mb" in mech:
        text += (
            " From the second query of an immutable matrix (a loaded table's) `topk` first "
            f"scans a derived int8 summary (`vault.embedding.summary`: "
            f"{mech['summary_columns']} columns per row, {mech['summary_mb']:.0f} MB here, "
            f"built in {mech['summary_build_s']:.2f} s, which a one-query process never pays) "
            "that bounds every row's cosine from above; with the exact k-th score as the "
            f"floor the bound rules out {100 * mech['summary_ruled_out']:.2f}% of the rows "
            f"(median over the queries; at least {100 * mech['summary_ruled_out_min']:.2f}%), "
            "so mostly the summary is converted. On data the summary does not fit (isotropic, "
            "all ties) the scan falls back to the full path after one super-block."
        )
    else:
        text += (
            f" Below {mech['summary_min_rows']:,} rows `topk` never builds a summary: every "
            "scan is a full one."
        )
    for metric in ("cosine", "structured"):
        both = ms.get(("vault topk", metric)), ms.get(("vault topk (1 thread)", metric))
        if None not in both:
            text += (
                f" {metric.capitalize()}: vault topk {both[0]:.2f} ms with its default scan "
                f"workers, {both[1]:.2f} ms with 1 (the default: the count "
                "`threads.Measured` timed faster in the process)."
            )
    faiss = {name: v for (name, metric), v in ms.items() if name.startswith("faiss")}
    if len(faiss) == 2:
        (many, t_many), (one, t_one) = sorted(faiss.items(), key=lambda x: "(1 " in x[0])
        text += (
            f" {many} takes {t_many / t_one:.2f}x the time of {one} here; the targets compare "
            "with the faster setting, query by query."
        )
    text += " Batches convert a block once for all their queries."
    return textwrap.wrap(text, 92)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--single", type=int, default=11, help="single queries (runs) per metric")
    ap.add_argument("--batch", type=int, default=1000, help="queries per batch")
    ap.add_argument("--batch-runs", type=int, default=5)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", default=str(HERE / "TOPK.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--child", choices=("memory", "compare"), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        d = Path(a.dir)
        if a.child == "memory":
            out = child_memory(d, a.k, a.batch)
        else:
            out = child_compare(d, a.k, a.single, a.batch, a.batch_runs)
        print(json.dumps(out))
        return
    info = machine()
    from machine import command

    cmd = command()
    results = []
    for n in (int(x) for x in a.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            t = time.perf_counter()
            m, cen = dataset(n)
            na, nb = part_norms(m)
            qs = queries(m, cen, max(a.single, a.batch))
            for name, arr in (("matrix", m), ("na", na), ("nb", nb), ("queries", qs)):
                np.save(d / f"{name}.npy", arr)
            del m, na, nb
            print(f"N={n:,}: data in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            common = ["--dir", tmp, "--k", str(a.k), "--batch", str(a.batch)]
            mem = run_child(["--child", "memory", *common])
            cmp_ = run_child(
                [
                    "--child",
                    "compare",
                    *common,
                    "--single",
                    str(a.single),
                    "--batch-runs",
                    str(a.batch_runs),
                ]
            )
            print(f"N={n:,}: done in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            results.append({"memory": mem, "compare": cmp_})
    text = report(results, info, cmd, a.k)
    print(text)
    if not a.no_write:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
