"""The embedding cache repairs itself (issue 18, item 4). Cache files are written atomically
but not fsynced (they are derived data), so after a power loss an entry may be empty and a
pack truncated or zero-filled. Readers ignore such files (a miss: recomputed, never a wrong
vector); ``vault verify`` names each with the command that drops it; ``vault gc --cache``
(audited) drops them, after which verify passes; ``vault gc --keep N`` drops a torn pack too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from vault.canonical import loads
from vault.embedding.cache import EmbeddingCache
from vault.grid.reprs import grid_to_repr, repr_id
from vault.index.build import plan_full
from vault.index.snapshot import clear_cache
from vault.index.state import State
from vault.records.query import normalize_query
from vault.retrieval import retrieve
from vault.vault import Vault
from vault_cli.app import app

runner = CliRunner()
GRID = [[1, 2], [3, 4]]


def cli(root: Path, *args: str, code: int = 0) -> Result:
    result = runner.invoke(app, ["--vault", str(root), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    return result


def verify_json(root: Path, code: int) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cli(root, "verify", "--json", code=code).stdout)
    return out


def cache_problems(report: dict[str, Any]) -> list[dict[str, str]]:
    return [p for p in report["problems"] if p["kind"].startswith("cache_")]


def query_entry(v: Vault) -> Path:
    """A retrieval of a one-grid query: its item's single-entry cache file."""
    q = normalize_query({"schema_version": 1, "grid": GRID})
    assert retrieve(v, q, v.config()).mode_used == "hybrid"
    cache = v.cache.bound(v.snapshot().embedder())  # the vault's embedder (shipped or built-in)
    path = cache.path(cache.key(repr_id(grid_to_repr(GRID))))
    assert path.is_file()
    return path


def fresh_answer(v: Vault) -> dict[str, Any]:
    """The query answered by a new handle (a new process's view: nothing remembered)."""
    clear_cache()
    w = Vault.open(v.root)
    q = normalize_query({"schema_version": 1, "grid": GRID})
    return retrieve(w, q, w.config()).to_json()


def full_build_with_cache(v: Vault) -> str:
    """The generation a full build gives reading the cache as a build does (packs loaded)."""
    cur = v.generations.current()
    assert cur is not None
    entries = [e for e in v.audit.entries() if e.seq <= cur.audit_seq]
    cache = EmbeddingCache(v.cache.root, writable=False)
    return plan_full(entries, State(v.objects), v.records, cache).generation


def test_an_empty_entry_is_a_miss_reported_and_dropped(example_vault: Vault) -> None:
    v = example_vault
    entry = query_entry(v)
    expected = fresh_answer(v)
    entry.write_bytes(b"")  # what a power cut leaves of an entry that was never fsynced
    report = verify_json(v.root, 1)
    [problem] = cache_problems(report)
    assert problem["kind"] == "cache_entry_bad" and problem["path"] == str(entry)
    assert "`vault gc --cache`" in problem["detail"]
    assert fresh_answer(v) == expected  # a miss: recomputed (and rewritten), no fallback
    assert entry.stat().st_size > 0 and verify_json(v.root, 0)["ok"]
    entry.write_bytes(b"")
    items = len(list(v.cache.entries())) + sum(
        len(p.read_bytes().splitlines()) for p in v.cache.packs()
    )
    before = v.audit.last_seq()
    out = json.loads(cli(v.root, "gc", "--cache", "--json").stdout)
    assert out["removed_cache_entries"] == 1 and out["removed_objects"] == 0
    assert out["removed_generations"] == [] and not entry.exists()
    [line] = [e for e in v.audit.entries() if e.seq > before]
    assert line.op == "gc" and line.detail == {"cache": {"checked": items, "removed": 1}}
    assert verify_json(v.root, 0)["ok"]
    assert fresh_answer(v) == expected


def test_a_truncated_pack_is_ignored_reported_and_dropped(example_vault: Vault) -> None:
    v = example_vault
    [pack] = v.cache.packs()
    generation = full_build_with_cache(v)
    lines = pack.read_bytes().splitlines(keepends=True)
    pack.write_bytes(b"".join(lines[:3]) + lines[3][:20])  # torn after 3 whole lines
    assert full_build_with_cache(v) == generation  # nothing of it used, nothing wrong
    report = verify_json(v.root, 1)
    [problem] = cache_problems(report)
    assert problem["kind"] == "cache_pack_bad" and problem["path"] == str(pack)
    assert "`vault gc --cache`" in problem["detail"]
    cli(v.root, "gc", "--keep", "1")  # gc drops a torn pack too (it used to leave it)
    assert not pack.exists()
    assert verify_json(v.root, 0)["ok"]


def test_gc_cache_drops_a_zero_filled_pack_and_keeps_good_files(example_vault: Vault) -> None:
    v = example_vault
    entry = query_entry(v)
    [pack] = v.cache.packs()
    good = entry.read_bytes()
    pack.write_bytes(b"\0" * pack.stat().st_size)  # size written, blocks never were
    assert not verify_json(v.root, 1)["ok"]
    dry = json.loads(cli(v.root, "gc", "--cache", "--dry-run", "--json").stdout)
    assert dry["removed_cache_entries"] == 1 and pack.exists()
    cli(v.root, "gc", "--cache")
    assert not pack.exists() and entry.read_bytes() == good
    assert verify_json(v.root, 0)["ok"]


def test_a_pack_whose_bytes_do_not_match_its_name_is_never_used(example_vault: Vault) -> None:
    """Every line well formed but one vector changed (a pack edited or damaged in place):
    its name no longer matches its bytes, so builds do not read it — never a wrong vector
    in an index."""
    v = example_vault
    [pack] = v.cache.packs()
    generation = full_build_with_cache(v)
    lines = pack.read_bytes().splitlines(keepends=True)
    entry = loads(lines[0].rstrip(b"\n"))
    entry["vector"][0] = 0 if entry["vector"][0] else 1
    lines[0] = json.dumps(entry, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    pack.chmod(0o644)
    pack.write_bytes(b"".join(lines))
    assert full_build_with_cache(v) == generation


def test_gc_cache_drops_a_wrong_vector_and_stale_entries(example_vault: Vault) -> None:
    """A well-formed entry whose vector differs from its recomputation, and an entry of an
    embedder no kept generation uses: both dropped; verify passes after."""
    v = example_vault
    entry = query_entry(v)
    data = json.loads(entry.read_bytes())
    data["vector"][0] = 0 if data["vector"][0] else 1
    entry.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True))
    stale_key = f"{'a' * 64}:0.0.1:{'b' * 64}"
    stale = v.cache.path(stale_key)
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text(json.dumps({"key": stale_key, "source": {}, "vector": [0] * 64}))
    assert not verify_json(v.root, 1)["ok"]
    out = json.loads(cli(v.root, "gc", "--cache", "--json").stdout)
    assert out["removed_cache_entries"] == 2
    assert not entry.exists() and not stale.exists() and v.cache.packs()
    assert verify_json(v.root, 0)["ok"]


def test_gc_needs_a_scope_and_says_both() -> None:
    result = runner.invoke(app, ["--vault", "/nonexistent", "gc"])
    assert result.exit_code == 2
    assert "--keep N" in result.output and "--cache" in result.output


def test_gc_keep_and_cache_together_never_merge_a_bad_pack(example_vault: Vault) -> None:
    """A well-formed pack whose vector is wrong, beside a good one: ``--keep`` merges the
    packs of a kept embedder, ``--cache`` drops the wrong one first — its entry must not
    live on in the merged pack."""
    v = example_vault
    [pack] = v.cache.packs()
    first, *rest = (json.loads(line) for line in pack.read_bytes().splitlines())
    others = v.cache.write_pack({e["key"]: (e["source"], e["vector"]) for e in rest})
    pack.unlink()  # (the wrong vector's key is in the wrong pack only)
    first["vector"][0] = 0 if first["vector"][0] else 1
    wrong = v.cache.write_pack({first["key"]: (first["source"], first["vector"])})
    assert wrong is not None and others is not None and len(v.cache.packs()) == 2
    cli(v.root, "gc", "--keep", "1", "--cache")
    assert not wrong.exists()
    assert verify_json(v.root, 0)["ok"]


def test_gc_cache_says_what_it_removed(example_vault: Vault) -> None:
    entry = query_entry(example_vault)
    entry.write_bytes(b"")
    out = cli(example_vault.root, "gc", "--cache", "--dry-run")
    assert out.stderr.strip() == "would remove 1 cache file" and entry.exists()
    out = cli(example_vault.root, "gc", "--cache")
    assert out.stderr.strip() == "removed 1 cache file" and not entry.exists()
