"""Batch work on a Dask cluster (``--scheduler ADDRESS|auto``), in partitions, the results
in input order and byte-identical to one process:

* ``vault retrieve --batch FILE`` (``batch_lines``; ``batch`` for the library): the client
  only reads raw lines (bounded as ``iter_requests`` bounds them); each worker parses,
  answers and encodes its partition exactly as the command does, so the client writes the
  text it gets back — no JSON parsed, pickled or encoded on the client's core;
* ``vault embed FILE`` (``embed``): records checked on the client first (nothing is
  written unless all are good), embedded by the workers, which write the vectors they
  compute to the vault's cache — the same files, the same bytes, as one process;
* ``vault eval`` (``vault.eval.study.run(..., scheduler=...)`` with ``map_partitions``):
  the queries ranked by the workers on the study's throwaway vault.

Dask distributed, not Ray: a Dask cluster is plain Python processes (a scheduler and
workers, ``pip install dask[distributed]``, nothing to build or to run beside them), a
``LocalCluster`` starts in about a second on a laptop or a CI runner, and its client submits
ordinary functions whose results come back as they finish — what a partitioned batch over a
shared vault path needs. Ray brings a C++ runtime, an object store and a dashboard of its
own, heavier than this job wants, and its local start-up is several times longer.

Each worker opens the vault at the shared path once per (path, generation) — ``kept`` /
``keep`` remember it across partitions and runs — and answers the partitions it is given
with the same code as one process; the client keeps ``AHEAD`` partitions per worker in
flight and yields the results in input order. Every worker must see the generation the
client saw (a vault path shared by every machine of the cluster: NFS, a clone on each, …):
a worker that finds another one refuses.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from vault.config import Config
from vault.errors import UsageError, VaultError

PARTITION = 64  # requests per task sent to a worker ...
PARTITION_BYTES = 4 << 20  # ... or fewer, when their lines hold this many bytes
AHEAD = 3  # partitions in flight per worker
_OPEN: dict[tuple[Any, ...], Any] = {}  # in a worker: what it opened, by (what, root, generation)
KEEP_OPEN = 4  # snapshots a worker keeps open (a long-lived cluster serves many runs)
ADDRESS_FORM = "a Dask scheduler address [tcp://]HOST:PORT (or tls, ws, wss, ucx)"
_ADDRESS = re.compile(
    r"(?:(?:tcp|tls|ws|wss|ucx)://)?(?:[^\s:/\[\]]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})"
    r"|inproc://\S+"  # (a cluster in this process: a library caller's, or a test's)
)


def is_address(text: str) -> bool:
    """Whether ``text`` is an address a Dask client can connect to (``ADDRESS_FORM``)."""
    m = _ADDRESS.fullmatch(text)
    return m is not None and (m[1] is None or 0 < int(m[1]) < 65536)


def _client(scheduler: str, workers: int) -> tuple[Any, Any]:
    """(client, the local cluster it started or None). ``auto``: DASK_SCHEDULER_ADDRESS
    (Dask's own variable) when set, else a local cluster of ``workers`` processes."""
    address = scheduler
    if scheduler == "auto":
        address = os.environ.get("DASK_SCHEDULER_ADDRESS", "")
        if address and not is_address(address):
            raise UsageError(f"DASK_SCHEDULER_ADDRESS: expected {ADDRESS_FORM}, got {address!r}")
    elif not is_address(scheduler):
        raise UsageError(f"--scheduler: expected auto or {ADDRESS_FORM}, got {scheduler!r}")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise VaultError(  # (a missing extra is a failure, exit 1, as the arc extra's)
            "--scheduler needs the `dask` extra: pip install 'concept-vault[dask]'"
        ) from None
    if address:
        try:
            return Client(address, timeout=30), None  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise VaultError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster), cluster  # type: ignore[no-untyped-call]


def kept(key: tuple[Any, ...]) -> Any:
    """What a worker opened under ``key`` before (None: nothing)."""
    return _OPEN.get(key)


def keep(key: tuple[Any, ...], value: Any) -> Any:
    """Remember what a worker opened (the oldest forgotten beyond ``KEEP_OPEN``)."""
    while len(_OPEN) >= KEEP_OPEN:
        del _OPEN[next(iter(_OPEN))]
    _OPEN[key] = value
    return value


def _retriever(root: str, generation: str, config: dict[str, Any]) -> Any:
    """In a worker: the retriever of ``root`` at ``generation``, opened once."""
    r = kept((root, generation))
    if r is None:
        from vault.vault import Vault

        r = Vault.open(root, readonly=True).retriever(config=Config(**config))
        if r.generation != generation:
            raise VaultError(
                f"{root}: this worker sees generation {r.generation[:12]}, the batch was "
                f"started on {generation[:12]} (the vault changed, or the path is not shared)"
            )
        keep((root, generation), r)
    return r


def _answer_partition(
    root: str, generation: str, config: dict[str, Any], part: list[tuple[int, Any, str | None]]
) -> list[dict[str, Any]]:
    """In a worker: the answers of one partition, with the vault's snapshot opened once."""
    r = _retriever(root, generation, config)
    out = []
    for line, value, error in part:
        if error is not None:
            out.append({"line": line, "error": error})
        else:
            out.append(r._answer(line, value))
    return out


def _partitions(
    requests: Iterable[tuple[int, Any]], size: int
) -> Iterator[list[tuple[int, Any, str | None]]]:
    part: list[tuple[int, Any, str | None]] = []
    for line, value in requests:
        if isinstance(value, VaultError):  # a line that did not parse: answered as such
            part.append((line, None, str(value)))
        else:
            part.append((line, value, None))
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


def _ordered(
    client: Any, fn: Any, common: tuple[Any, ...], parts: Iterable[Any], n: int
) -> Iterator[Any]:
    """Submit ``fn(*common, part)`` for each partition, ``AHEAD`` per worker in flight;
    yields each partition's result in input order."""
    window: deque[Any] = deque()
    for part in parts:
        window.append(client.submit(fn, *common, part, pure=False))
        while len(window) > AHEAD * n:
            yield window.popleft().result()
    while window:
        yield window.popleft().result()


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    part: list[Any] = []
    for item in items:
        part.append(item)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


def map_partitions(
    scheduler: str, workers: int, fn: Any, common: tuple[Any, ...], parts: Iterable[Any]
) -> Iterator[Any]:
    """``fn(*common, part)`` for every partition, on the workers of a cluster reached (or
    started) here; yields the results in input order. ``fn`` must be importable by the
    workers (a module-level function of this package)."""
    client, cluster = _client(scheduler, workers)
    try:
        n = max(1, len(client.scheduler_info().get("workers", {})) or workers)
        yield from _ordered(client, fn, common, parts, n)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def batch(
    root: str,
    generation: str,
    config: Config,
    requests: Iterable[tuple[int, Any]],
    *,
    scheduler: str = "auto",
    workers: int = 2,
    partition: int = PARTITION,
) -> Iterator[dict[str, Any]]:
    """Answer ``retrieve --batch`` requests on a Dask cluster; yields the answers in input
    order, each as ``Retriever.batch`` yields it."""
    common = (root, generation, config.to_json())
    parts = _partitions(requests, partition)
    for answers in map_partitions(scheduler, workers, _answer_partition, common, parts):
        yield from answers


def _answer_lines(
    root: str,
    generation: str,
    config: dict[str, Any],
    source: str,
    part: tuple[int, list[bytes | None]],
) -> tuple[str, int, int]:
    """In a worker: one partition of raw request lines (the first one's number - 1, the
    lines) parsed, answered and encoded as ``retrieve --batch`` prints them; returns (the
    JSON lines, how many, how many failed)."""
    import io

    import jsonlines

    from vault.input import requests_of

    r = _retriever(root, generation, config)
    start, lines = part
    buf = io.StringIO()
    writer = jsonlines.Writer(buf, compact=True, sort_keys=True)  # (as the CLI writes)
    n = failed = 0
    for line, value in requests_of(lines, source, start):
        out = r._answer(line, value)
        writer.write(out)
        n += 1
        failed += "error" in out
    return buf.getvalue(), n, failed


def _raw_partitions(
    lines: Iterable[tuple[int, bytes | None]], size: int, most: int
) -> Iterator[tuple[int, list[bytes | None]]]:
    """Partitions of ``size`` lines, or fewer holding ``most`` bytes (None: a line too long)."""
    part: list[bytes | None] = []
    start = held = 0
    for number, line in lines:
        if not part:
            start = number - 1
        part.append(line)
        held += len(line or b"")
        if len(part) == size or held >= most:
            yield start, part
            part, held = [], 0
    if part:
        yield start, part


def batch_lines(
    root: str,
    generation: str,
    config: Config,
    path: str,
    *,
    scheduler: str = "auto",
    workers: int = 2,
    partition: int = PARTITION,
) -> Iterator[tuple[str, int, int]]:
    """``retrieve --batch PATH`` on a Dask cluster, as the command prints it: for each
    partition in input order, (its JSON lines, how many, how many failed). The client only
    reads raw lines (bounded as ``iter_requests`` bounds them); the workers parse, answer
    and encode — the same bytes as one process writes."""
    from vault.input import request_lines, source_name

    common = (root, generation, config.to_json(), source_name(path))
    parts = _raw_partitions(request_lines(path), partition, PARTITION_BYTES)
    yield from map_partitions(scheduler, workers, _answer_lines, common, parts)


# --------------------------------------------------------------------------- vault embed
def _embed_partition(
    root: str, generation: str, part: list[tuple[str, Any]]
) -> list[dict[str, Any]]:
    """In a worker: the ``vault embed`` lines of one partition of parsed records; the
    vectors it computes are written to the vault's cache as the single-process run writes
    them (the same files, the same bytes)."""
    key = ("embed", root, generation)
    opened = kept(key)
    if opened is None:
        from vault.vault import Vault

        vault = Vault.open(root)
        snap = vault.snapshot()
        if snap.generation != generation:
            raise VaultError(
                f"{root}: this worker sees generation {snap.generation[:12]}, the embedding "
                f"was started on {generation[:12]} (the vault changed, or the path is not "
                "shared)"
            )
        emb = snap.embedder()
        opened = keep(key, (emb, vault.cache.bound(emb)))
    from vault.ops.embed import embed_parsed

    emb, cache = opened
    return list(embed_parsed(emb, cache, part))


def embed(
    root: str,
    generation: str,
    parsed: list[tuple[str, Any]],
    *,
    scheduler: str = "auto",
    workers: int = 2,
    partition: int = PARTITION,
) -> Iterator[dict[str, Any]]:
    """``vault embed`` on a Dask cluster: the lines of ``parsed`` records (validated by
    ``vault.ops.embed.parse_records``) in input order, byte-identical to one process."""
    parts = _chunks(parsed, partition)
    for lines in map_partitions(scheduler, workers, _embed_partition, (root, generation), parts):
        yield from lines
