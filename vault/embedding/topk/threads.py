"""BLAS thread control and the worker pool of the scans (see ``vault.embedding.topk``):
a single query's large scan on the thread count measured faster in this process
(``Measured``), a batch's on one unless told; OpenBLAS single-threaded while a scan runs.
Thread counts never change results."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from vault import forksafe
from vault.embedding.topk._common import (
    SUPER,
)

if TYPE_CHECKING:  # the pool is made on the first threaded scan (few queries need one)
    from concurrent.futures import ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = forksafe.lock(sys.modules[__name__], "_POOL_LOCK")


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            # (a scan runs on at most two threads: the caller's and this one)
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vault-topk")
        return _POOL


def _forget_pool_in_child() -> None:
    """In a forked child the pool's threads do not exist: a scan handed to them would wait
    forever (a solver forking after a threaded query, ``multiprocessing``'s default on
    Linux). The child makes its own pool on its first threaded scan (the module's locks,
    which a parent's thread may have held at the fork, are ``forksafe``). No scan runs in
    the child: BLAS's thread count, which a parent's scan had set to one, is restored."""
    global _POOL, _BLAS_USERS
    _POOL = None
    if _BLAS_USERS:
        _BLAS_USERS = 0
        if _BLAS is not None:
            _BLAS[1](_BLAS_SAVED)


def _run(fn: Callable[..., None], jobs: list[tuple[object, ...]]) -> None:
    """``fn(*job)`` for each job: the first on the calling thread, the others meanwhile on
    the pool (numpy releases the GIL in conversions, products and comparisons). The
    calling thread's memory is warm: a pool thread's first scan faults in its own
    allocator arena's pages (~2,000 at 10**6 rows, ~10 ms here)."""
    if len(jobs) == 1:
        fn(*jobs[0])
        return
    from concurrent.futures import wait

    futures = [_pool().submit(fn, *job) for job in jobs[1:]]
    try:
        fn(*jobs[0])
    finally:
        wait(futures)  # (no job outlives the call, even when the first one failed)
    for fut in futures:
        fut.result()


# numpy's bundled OpenBLAS: its worker threads spin-wait for each other, which on a busy
# 2-core machine makes a threaded product several times slower than a single-threaded one
# (measured: 450 vs 1600 queries/s). The scans split work over their own threads instead
# and run BLAS single-threaded meanwhile. Thread counts never change results.
_BLAS: tuple[Callable[[], int], Callable[[int], None]] | None = None
_BLAS_LOOKED = False
_BLAS_LOCK = forksafe.lock(sys.modules[__name__], "_BLAS_LOCK")
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


THREADS_ENV = "VAULT_TOPK_THREADS"  # "1" or "2": a large scan's worker threads, fixed


def default_threads(rows: int) -> int:
    """Worker threads for a batch scan of ``rows`` rows: 1, unless ``VAULT_TOPK_THREADS=2``
    says a second one was measured faster on this machine. Never from the load average: it
    counts this process's own load (the old rule picked two threads, the slower one, on a
    2-vCPU Xeon: 16.9 vs 14.8 ms over 10**6 rows). Results never depend on it."""
    if rows < 4 * SUPER or os.environ.get(THREADS_ENV) != "2" or (os.cpu_count() or 1) < 2:
        return 1
    return 2


class Measured:
    """The worker threads of a single query's large scans, chosen by measuring both in this
    process: the first scan on each count is not counted (the first of all reads a summary;
    the first on two threads faults the pool thread's allocator arena in: ~10 ms more at
    10**6 rows, which counted among the first two timings made two threads look slower);
    scans go one, one, two, two, then alternate until each count has ``EXPLORE`` timings;
    then each runs on the count whose median time per row over its
    last ``SAMPLES`` scans is lower, except every ``PROBE``-th, which re-measures the other
    (a machine's load changes). ``VAULT_TOPK_THREADS=1`` or ``2`` fixes the count; one core,
    or fewer than ``4 * SUPER`` rows: one thread. Results never depend on it."""

    EXPLORE = 2
    SAMPLES = 5
    PROBE = 16

    def __init__(self) -> None:
        self._lock = forksafe.lock(self, "_lock")
        self.reset()

    def reset(self) -> None:
        """Forget every timing (the next large scan is a first one again)."""
        with self._lock:
            self._scans = 0
            self._costs: dict[int, list[float]] = {1: [], 2: []}
            self.picked = {1: 0, 2: 0}  # the counts chosen so far (the benchmark reports it)

    def choose(self, rows: int) -> tuple[int, bool]:
        """(worker threads, whether the scan is to be timed and ``note``d)."""
        fixed = os.environ.get(THREADS_ENV)
        if rows < 4 * SUPER or (os.cpu_count() or 1) < 2 or fixed == "1":
            return 1, False
        if fixed == "2":
            return 2, False
        with self._lock:
            self._scans += 1
            if min(len(self._costs[1]), len(self._costs[2])) < self.EXPLORE:
                pick = 1 if len(self._costs[1]) <= len(self._costs[2]) else 2
            else:
                best = 1 if _median(self._costs[1]) <= _median(self._costs[2]) else 2
                pick = 3 - best if self._scans % self.PROBE == 0 else best
            timed = self.picked[pick] > 0  # (a count's first scan: not counted)
            self.picked[pick] += 1
            return pick, timed

    def note(self, workers: int, seconds: float, rows: int) -> None:
        """A timed scan's wall time over its ``rows`` rows, on ``workers`` threads."""
        with self._lock:
            costs = self._costs[workers]
            costs.append(seconds / max(rows, 1))
            del costs[: -self.SAMPLES]


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


MEASURED = Measured()  # this process's choice for single-query scans

os.register_at_fork(after_in_child=_forget_pool_in_child)
