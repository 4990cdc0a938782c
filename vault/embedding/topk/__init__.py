"""Exact top-k over int8 vectors: the ``k`` rows most similar to a query (or to each query
of a batch) under the three metrics of ``vault.embedding.similarity`` — the same rows, in
the same order, with the same float64 scores, bit for bit, as scoring every row with
``similarity.similarity`` and sorting with ``np.lexsort((row, tie, -score))`` — without
scoring every row exactly and without a float32 copy of the matrix.

Single query (``topk``), one pass over the int8 matrix:

1. **Blocked conversion.** ``BLOCK`` rows at a time are converted to float32 (a 1 MiB
   buffer that stays in cache) and multiplied by the query: exact integer dot products,
   since every partial sum is at most 64 * 128**2 = 2**20 < 2**24 in magnitude (float32 is
   exact under any BLAS kernel, summation order or thread count).
2. **Floor.** ``floor`` is always a lower bound of the final k-th best score: the k-th
   best *exact* score among rows scored so far, or the k-th largest ``key - KEY_ERROR`` of
   a super-block (k distinct rows each score more than that).
3. **Safe-margin selection**, per super-block of ``SUPER`` rows: a cheap bound from the raw
   dots and the block's smallest norm (``_prefilter``), then a float32 *key* per surviving
   row, within 1e-6 of its score (proved per metric in ``_keys``). A row whose upper bound
   (key + KEY_ERROR) is below ``floor`` scores strictly below the final k-th best, so it
   cannot be in the top k whatever the ties, and is skipped; thresholds are rounded
   toward keeping rows.
4. **Exact re-rank.** Candidates get exact integer dots (``similarity.exact_dots``) and
   their scores from ``similarity.scores`` — the function the brute force uses, on the
   same integers, elementwise — so the scores are bit-identical; they are ordered by
   (score desc, tie asc, row asc). The candidates include the whole true top k, so their
   top k is the true top k. Which rows become candidates depends on block order and
   threads; the result does not.

Batch (``topk_batch``): a block of rows times a chunk of queries in one float32 product
of *normalized* operands (rows scaled by 1/|x| per part, queries by 1/|q|), which
approximates the cosines within 4.2e-6 (proved in ``_Batch.chunk``). Per query and block
the largest key bounds the whole block (block-max pruning, with monotone float rounding),
each query keeps its k largest keys to raise its floor, and only the rare (query, block)
pairs that can still reach a query's floor are examined row by row; survivors are then
re-ranked exactly as above. ``euclidean`` bounds its score through the cosine and the two
norms (upper and lower bounds kept apart, see ``_Batch``).

Threads: a single query's large scan (at least ``4 * SUPER`` rows) splits its blocks over
one or two worker threads (numpy releases the GIL in conversions, products and
comparisons), the count measured faster in this process (``threads.Measured``: both timed
in turns, then the faster, the other re-timed now and then); a batch scan uses one unless
told; ``threads=`` or ``VAULT_TOPK_THREADS=1|2`` fixes the count. Scans run numpy's OpenBLAS
single-threaded (``_single_threaded_blas``: its spin-waiting threads are several times slower
on a busy 2-core machine); neither changes any result. The process-wide BLAS thread count
is restored when the last scan ends.

Modules: ``single`` (the single-query scan, ``topk``), ``batch`` (the batch kernel,
``topk_batch``), ``threads`` (BLAS thread control and the scans' worker pool) and
``_common`` (constants, checks, the keys and the exact re-rank both use); this package
re-exports what callers use (the kernels, ``NA``, the block sizes the tests and benchmarks
read, the thread controls).

Memory: a few MiB of buffers beyond the caller's arrays; the matrix may be a read-only
memory map. Precondition: ``n2_app`` / ``n2_beh`` are the rows' squared norms over the
appearance / behaviour dims (as the table stores them).
"""

from vault.embedding.summary import cached
from vault.embedding.topk._common import BLOCK, NA, SUMMARY_BLOCK, SUMMARY_MIN_ROWS, SUPER
from vault.embedding.topk.batch import topk_batch
from vault.embedding.topk.single import _merge, _summary_block, topk
from vault.embedding.topk.threads import (
    MEASURED,
    THREADS_ENV,
    Measured,
    _openblas,
    _single_threaded_blas,
    default_threads,
)

__all__ = [
    "BLOCK",
    "MEASURED",
    "Measured",
    "NA",
    "SUMMARY_BLOCK",
    "SUMMARY_MIN_ROWS",
    "SUPER",
    "THREADS_ENV",
    "_merge",
    "_openblas",
    "_single_threaded_blas",
    "_summary_block",
    "cached",
    "default_threads",
    "topk",
    "topk_batch",
]
