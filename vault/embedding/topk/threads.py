"""BLAS thread control and the worker pool of the scans (see ``vault.embedding.topk``):
one worker thread unless a second was measured faster; OpenBLAS single-threaded while a
scan runs. Thread counts never change results."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from vault.embedding.topk._common import (
    SUPER,
)

if TYPE_CHECKING:  # the pool is made on the first threaded scan (few queries need one)
    from concurrent.futures import ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vault-topk")
        return _POOL


def _run(fn: Callable[..., None], jobs: list[tuple[object, ...]]) -> None:
    """``fn(*job)`` for each job, on the pool when there are several (numpy releases the
    GIL in conversions, products and comparisons)."""
    if len(jobs) == 1:
        fn(*jobs[0])
        return
    for fut in [_pool().submit(fn, *job) for job in jobs]:
        fut.result()


# numpy's bundled OpenBLAS: its worker threads spin-wait for each other, which on a busy
# 2-core machine makes a threaded product several times slower than a single-threaded one
# (measured: 450 vs 1600 queries/s). The scans split work over their own threads instead
# and run BLAS single-threaded meanwhile. Thread counts never change results.
_BLAS: tuple[Callable[[], int], Callable[[int], None]] | None = None
_BLAS_LOOKED = False
_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_SAVED = 0


def _openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """get / set of the thread count of numpy's scipy-openblas, if that is its BLAS."""
    global _BLAS, _BLAS_LOOKED
    if not _BLAS_LOOKED:
        _BLAS_LOOKED = True
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "scipy_openblas" in line}
            for path in sorted(paths):
                lib = ctypes.CDLL(path)
                for suffix in ("64_", ""):
                    get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
                    put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype = ctypes.c_int
                        put.argtypes = [ctypes.c_int]
                        _BLAS = (get, put)
                        break
                if _BLAS is not None:
                    break
        except (OSError, AttributeError, IndexError):
            _BLAS = None
    return _BLAS


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    global _BLAS_USERS, _BLAS_SAVED
    blas = _openblas()
    if blas is None:
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_SAVED = blas[0]()
            blas[1](1)
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                blas[1](_BLAS_SAVED)


THREADS_ENV = "VAULT_TOPK_THREADS"  # "2": a large scan splits over two worker threads


def default_threads(rows: int) -> int:
    """Worker threads for a scan of ``rows`` rows: 1, unless ``VAULT_TOPK_THREADS=2`` says a
    second one was measured faster on this machine (``benchmarks/bench.py`` times both).
    Measured on a 2-vCPU Xeon, exact top-10 over 10**6 rows: 14.8 ms on one thread, 16.9 on
    two — the old rule (two when the 1-minute load average left a core idle) counted this
    process's own load and picked the slower. Results never depend on it."""
    if rows < 4 * SUPER or os.environ.get(THREADS_ENV) != "2" or (os.cpu_count() or 1) < 2:
        return 1
    return 2
