"""Bounded memory (issue 18, item 5): every cache a long-lived process keeps is bounded in
bytes, not entries — the grid-analysis memo, the embedding cache's vectors and a batch's
pending pack lines, the object store's parsed records, the loaded generations, the key
terms — and the answers do not depend on the budgets (byte-identical with tiny ones).
The peak of a whole `--batch` is measured by benchmarks/batch_memory.py (`make bench`)."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import vault.embedding.cache as cache_module
from vault.canonical import canonical_bytes
from vault.embedding import builtin
from vault.embedding.cache import EmbeddingCache
from vault.grid import objects as grid_objects
from vault.grid import reprs as grid_reprs
from vault.grid.grid import parse_grid
from vault.grid.reprs import grid_to_repr
from vault.index import snapshot
from vault.memo import BoundedMemo
from vault.store.objects import ObjectStore
from vault.vault import Vault

from .conftest import card


def noise(rng: random.Random, side: int = 30) -> list[list[int]]:
    return [[rng.randrange(10) for _ in range(side)] for _ in range(side)]


def big_task(rng: random.Random, pairs: int = 4, side: int = 16) -> dict[str, Any]:
    return {
        "train": [{"input": noise(rng, side), "output": noise(rng, side)} for _ in range(pairs)],
        "test": [{"input": noise(rng, side)}],
    }


# --------------------------------------------------------------------------- the memo
def test_bounded_memo_keeps_the_most_recent_within_its_bytes() -> None:
    memo: BoundedMemo[int, str] = BoundedMemo(100)
    for i in range(10):
        memo.put(i, f"v{i}", 30)
    assert memo.bytes <= 100 and len(memo) == 3
    assert [memo.get(i) for i in (6, 7, 8, 9)] == [None, "v7", "v8", "v9"]
    memo.get(7)  # used: 8 is now the oldest
    memo.put(10, "v10", 30)
    assert memo.get(8) is None and memo.get(7) == "v7"
    memo.put(11, "huge", 101)  # larger than the budget: not kept, nothing evicted for it
    assert memo.get(11) is None and len(memo) == 3
    memo.put(7, "again", 30)  # a replaced entry is counted once
    assert memo.bytes == 90


def test_grid_analysis_estimates_cover_what_an_entry_really_holds() -> None:
    """The memo's size estimate of an analysis is at least what tracemalloc measures it
    holds (the analysis, its objects' cached bbox and shape, the grid kept as the key)."""
    rng = random.Random(1)
    for make in (noise, lambda r: [[0] * 15 + [r.randrange(1, 10)] * 15 for _ in range(30)]):
        grid_reprs.clear_caches()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        g = parse_grid(make(rng))
        for o in grid_objects.objects(g):
            o.bbox, o.shape  # noqa: B018 - cached on the object: part of what is held
        grid_objects.blobs(g)
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert grid_objects._memo.bytes >= held, (grid_objects._memo.bytes, held)
    grid_reprs.clear_caches()


def test_grid_analysis_memo_stays_within_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    memo: BoundedMemo[Any, Any] = BoundedMemo(2 << 20)
    monkeypatch.setattr(grid_objects, "_memo", memo)
    rng = random.Random(2)
    grids = [parse_grid(noise(rng)) for _ in range(12)]  # ~0.7 MB of analysis each
    first = [grid_objects.objects(g) for g in grids]
    assert memo.bytes <= 2 << 20 and 0 < len(memo) < 12
    assert [grid_objects.objects(g) for g in grids] == first  # recomputed: equal


# --------------------------------------------------------------------------- embedding cache
def test_embedding_memo_is_bounded_in_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "MEMO_BYTES", 64 * 1024)
    c = EmbeddingCache(tmp_path / "cache", writable=False)
    vectors = {f"{i:064x}": [(i * 7 + j) % 255 - 127 for j in range(64)] for i in range(2000)}
    for content, vector in vectors.items():
        c.put(content, {"grid": [[1]]}, vector)
    assert c._memo.bytes <= 64 * 1024 and len(c._memo) < 2000
    kept = [k for k in vectors if c.get(k) is not None]
    assert kept and all(c.get(k) == vectors[k] for k in kept)  # int8 storage, same lists


def test_a_long_bulk_writes_a_pack_each_time_its_budget_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "PENDING_BYTES", 20_000)
    c = EmbeddingCache(tmp_path / "cache")
    rng = random.Random(3)
    expected = {}
    with c.bulk():
        for i in range(300):
            g = [[rng.randrange(10) for _ in range(5)] for _ in range(5)]
            vector = [rng.randrange(-127, 128) for _ in range(64)]
            c.put(f"{i:064x}", {"grid": g}, vector)
            expected[c.key(f"{i:064x}")] = vector
            assert c._pending_bytes <= 20_000
    packs = c.packs()
    assert len(packs) > 3
    got = {}
    for p in packs:
        assert p.stat().st_size <= 20_000 + 1_000  # the budget plus the line that crossed it
        for line in p.read_bytes().splitlines():
            e = json.loads(line)
            got[e["key"]] = e["vector"]
    assert got == expected  # every entry written once, in some pack


# --------------------------------------------------------------------------- other sites
def test_object_store_memo_is_bounded_in_bytes(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects", memo_bytes=2_000_000)
    rng = random.Random(4)
    digests = [store.put(canonical_bytes(grid_to_repr(noise(rng, 12)))) for _ in range(30)]
    for d in digests:
        assert store.get_record(d)["kind"] == "repr"
        assert store._memo_bytes <= 2_000_000
    assert 0 < len(store._memo) < 30


def test_loaded_generations_are_bounded_in_bytes(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = example_vault
    snapshot.clear_cache()
    first = v.snapshot()
    first.table  # noqa: B018 - loaded: it has a size now
    one = first._data.nbytes()
    assert one > 0
    monkeypatch.setattr(snapshot, "CACHE_BYTES", one + one // 2)  # room for one generation
    v.add([(card("zz-more", ["transform:crop"]), "more")])
    snapshot.clear_cache()
    for _ in range(3):
        v.add([(card(f"zz-{_}", ["transform:crop"]), "more")])
        v.snapshot().table  # noqa: B018
    assert len(snapshot._loaded) == 1  # only the most recent
    assert first.table.n == first._data.table.n  # a reader keeps what it holds


def test_long_keys_are_not_memoised() -> None:
    before = builtin._key_term_memo.cache_info().currsize
    long_key = "feature:" + "x" * 10_000
    assert builtin._key_term(long_key) == builtin._key_term_of(long_key)
    assert builtin._key_term_memo.cache_info().currsize == before


# --------------------------------------------------------------------------- same answers
def _batch(v: Vault, requests: list[tuple[int, Any]], workers: int) -> bytes:
    snapshot.clear_cache()
    grid_reprs.clear_caches()
    fresh = Vault.open(v.root)  # (a new handle: nothing remembered)
    with fresh.retriever() as r:
        return b"".join(canonical_bytes(a) + b"\n" for a in r.batch(requests, workers=workers))


@pytest.mark.parametrize("workers", [1, 2])
def test_tiny_budgets_give_byte_identical_answers(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: int
) -> None:
    """Large noisy tasks answered with the real budgets, then with budgets so small that
    nothing is remembered and every few entries go to a pack: the same bytes."""
    rng = random.Random(5)
    requests = [
        (i, {"task": big_task(rng), "mode": ("hybrid", "soft", "symbolic")[i % 3]})
        for i in range(1, 7)
    ]
    requests += [(7, {"repr": noise(rng)}), (8, {"task": big_task(rng, 2, 30), "k": 3})]
    reference = _batch(example_vault, requests, workers)
    for path in example_vault.cache.packs():
        path.unlink()  # (nothing of the first run is read back by the second)
    monkeypatch.setattr(grid_objects, "_memo", BoundedMemo(1))
    monkeypatch.setattr(cache_module, "MEMO_BYTES", 1)
    monkeypatch.setattr(cache_module, "PENDING_BYTES", 20_000)
    assert _batch(example_vault, requests, workers) == reference
    assert len(example_vault.cache.packs()) > 1


def test_a_batch_stream_is_bounded_per_line_not_in_total(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `--batch` stream is answered line by line: a co-process may send more than the
    input limit in all (1,000 maximum-size tasks are ~400 MB of JSON; it used to stop at
    256 MiB). Files read whole stay limited (tests/test_hardening.py)."""
    from typer.testing import CliRunner

    import vault.input
    from vault_cli.app import app

    monkeypatch.setattr(vault.input, "MAX_INPUT_BYTES", 2_000)
    lines = "".join(json.dumps({"repr": [[i % 10, 1], [2, 3]], "id": i}) + "\n" for i in range(80))
    assert len(lines) > 2_000
    result = CliRunner().invoke(
        app, ["--vault", str(example_vault.root), "retrieve", "--batch", "-"], input=lines
    )
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["id"] for a in answers] == list(range(80))
    assert not any("error" in a for a in answers)


def test_a_parallel_batch_reads_ahead_a_bounded_amount() -> None:
    """The chunks a parallel batch reads ahead are cut by size too: small requests go 32 to
    a chunk, maximum-size tasks (100 pairs of 30x30) one to a chunk."""
    from vault import retriever

    rng = random.Random(6)
    small = [(i, {"repr": [[1, 2], [3, 4]]}) for i in range(70)]
    assert [len(c) for c in retriever._chunks(small, retriever.CHUNK)] == [32, 32, 6]
    huge = {
        "train": [{"input": noise(rng), "output": noise(rng)} for _ in range(100)],
        "test": [{"input": noise(rng)}],
    }
    big = [(i, {"task": huge}) for i in range(5)]
    assert [len(c) for c in retriever._chunks(big, retriever.CHUNK)] == [1] * 5
    mixed = [*small[:10], big[0], *small[10:20]]
    assert [len(c) for c in retriever._chunks(mixed, retriever.CHUNK)] == [11, 10]
