"""`vault verify`: exit 0 on a healthy vault; one flipped byte anywhere is found and named."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from vault.ops.verify import verify
from vault.vault import Vault

from .helpers import concepts, tree


def flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    # keep JSON digits as digits / letters as letters, so the damage is silent to a parser
    c = data[i]
    data[i] = c + 1 if chr(c) in "012345678abcdefghijklmnopqrstuvwxy" else c ^ 1
    path.write_bytes(bytes(data))


def test_healthy_vault_verifies_and_verify_changes_nothing(example_vault: Vault) -> None:
    example_vault.build_index()
    before = tree(example_vault.root)
    report = verify(example_vault)
    assert report.ok, report.to_json()
    assert report.checked["concepts"] == 17 and report.checked["objects"] > 17
    assert report.checked["cache_entries"] > 0
    assert tree(example_vault.root) == before


def test_fresh_empty_vault_verifies(vault: Vault) -> None:
    assert verify(vault).ok


def _paths(report_json: dict[str, object]) -> str:
    return " ".join(p["path"] + ":" + p["kind"] for p in report_json["problems"])  # type: ignore[index,operator,attr-defined]


def test_flipped_object_byte_is_named(example_vault: Vault) -> None:
    entry = concepts(example_vault)["rotate-90@1.0.0"]
    path = example_vault.objects.path(entry["card"])
    flip(path, path.read_bytes().index(b"rotate_90"))
    report = verify(example_vault)
    assert not report.ok
    assert str(path) in _paths(report.to_json())
    assert "object_hash_mismatch" in _paths(report.to_json())


@pytest.mark.parametrize("name", ["concept_vectors.jsonl", "ann.index.sha256", "embedder.json"])
def test_flipped_embedding_file_byte_is_named(example_vault: Vault, name: str) -> None:
    path = example_vault.embeddings_dir / name
    data = path.read_bytes()
    offset = data.index(b"[") + 2 if name == "concept_vectors.jsonl" else 5
    flip(path, offset)
    report = verify(example_vault)
    assert str(path) in _paths(report.to_json()), report.to_json()
    # derived data of the current generation (FORMAT §8): a warning, and a build rewrites it
    assert report.ok and {p.severity for p in report.problems} == {"warning"}
    example_vault.build_index()
    assert path.read_bytes() == data
    assert verify(example_vault).problems == []


def test_flipped_cache_entry_is_named(example_vault: Vault) -> None:
    from vault.records.query import normalize_query
    from vault.retrieval import retrieve

    q = normalize_query({"schema_version": 1, "grid": [[1, 2], [3, 4]]})
    retrieve(example_vault, q, example_vault.config())  # a query item: a single-entry file
    entry = next(iter(example_vault.cache.entries()))
    data = entry.read_bytes()
    flip(entry, data.index(b'"vector":[') + 11)
    report = verify(example_vault)
    assert not report.ok
    assert f"{entry}:cache_entry_bad" in _paths(report.to_json())


def test_flipped_cache_pack_is_named(example_vault: Vault) -> None:
    pack = example_vault.cache.packs()[0]
    flip(pack, pack.read_bytes().index(b'"vector":[') + 11)
    report = verify(example_vault)
    assert not report.ok
    assert f"{pack}:cache_pack_bad" in _paths(report.to_json())


def test_sampled_cache_check(example_vault: Vault) -> None:
    report = verify(example_vault, sample=3)
    assert report.ok and report.checked["cache_entries"] == 3


def test_doctored_generation_is_reported(example_vault: Vault) -> None:
    """A generation whose state disagrees with the audit log is reported, by part."""
    from vault.index.build import point_current
    from vault.index.generations import CurrentRef
    from vault.index.snapshot import Snapshot
    from vault.index.state import State

    v = example_vault
    snap = v.snapshot()
    state = State(v.objects, snap.state_shards)
    state.edit("rotate-90@1.0.0")["negative"] = 7  # a doctored state entry
    from vault.index.build import Plan

    plan = Plan(state, snap.table, snap.audit_seq, (), snap.embedder())
    gen, manifest, blobs = plan.materialize()
    v.objects.put_digested(blobs)
    point_current(v, CurrentRef(gen, snap.number, snap.audit_seq), manifest)
    report = verify(v)
    kinds = {p["kind"] for p in report.to_json()["problems"]}
    assert not report.ok and "state_mismatch" in kinds
    assert Snapshot.open(v.objects, CurrentRef(gen, 1, 0)).concept("rotate-90@1.0.0")


def test_torn_audit_tail_is_a_warning_not_a_failure(example_vault: Vault) -> None:
    with open(example_vault.audit.path, "ab") as f:
        f.write(b'{"seq": 99, "op": "ad')
    report = verify(example_vault)
    assert report.ok
    assert [p.kind for p in report.problems] == ["audit_torn_tail"]
    # the next write repairs it
    example_vault.set_status("rotate-90", "1.0.0", "deprecated")
    assert verify(example_vault).problems == []


def test_a_cache_entry_that_disagrees_with_a_fresh_computation_is_nondeterminism(
    example_vault: Vault,
) -> None:
    """A well-formed pack (its name matches its bytes) whose vector for an item the index
    uses differs from the item's recomputation: verify says nondeterminism, names the line."""
    from vault.embedding.cache import EmbeddingCache

    v = example_vault
    pack = v.cache.packs()[0]
    first = json.loads(pack.read_bytes().splitlines()[0])
    first["vector"][0] = (first["vector"][0] + 1) % 100
    crafted = EmbeddingCache(v.cache.root, embedder=v.snapshot().embedder())  # the vault's
    path = crafted.write_pack({first["key"]: (first["source"], first["vector"])})
    assert path is not None
    report = verify(v)
    kinds = {(p.kind, p.path) for p in report.problems}
    assert not report.ok and ("nondeterminism", f"{path}:1") in kinds


def test_retrieval_falls_back_when_a_query_item_is_cached_differently(
    example_vault: Vault,
) -> None:
    from vault.grid.reprs import grid_to_repr, repr_id
    from vault.records.query import normalize_query
    from vault.retrieval import retrieve

    v = example_vault
    grid = [[1, 2], [3, 4]]
    q = normalize_query({"schema_version": 1, "grid": grid})
    assert retrieve(v, q, v.config()).mode_used == "hybrid"  # writes the query item's entry
    cache = v.cache.bound(v.snapshot().embedder())  # the entries of the vault's embedder
    path = cache.path(cache.key(repr_id(grid_to_repr(grid))))
    entry = json.loads(path.read_bytes())
    entry["vector"][0] += 1
    path.write_text(json.dumps(entry))
    fresh = Vault.open(v.root)  # a new process's view (an instance remembers its vectors)
    r = retrieve(fresh, q, fresh.config())
    assert r.mode_used == "symbolic" and "nondeterminism detected" in (r.fallback_reason or "")


def test_an_object_deleted_while_verify_reads_is_not_reported(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object `vault gc` deletes after verify listed the objects and before it reads
    that one (verify ran beside gc) is no longer in the vault: not an unreadable object
    (verify failed a healthy vault). One the vault still names is reported missing."""
    from vault.ops import verify as V

    v = example_vault
    orphan = json.dumps({"garbage": 1}).encode()
    digest = hashlib.sha256(orphan).hexdigest()
    v.put_objects([(digest, orphan)])
    named = v.snapshot().manifest["state"]  # what the current generation names
    real = V._hashes

    def gc_meanwhile(paths: list[str]) -> list[Any]:
        for gone in (digest, named):
            os.unlink(v.objects.path(gone))
        return real(paths)

    monkeypatch.setattr(V, "_hashes", gc_meanwhile)
    report = verify(v)
    problems = {p.kind for p in report.problems if p.severity == "error"}
    assert "object_unreadable" not in problems, report.problems
    assert problems and all(named[:12] in str(p) for p in report.problems if p.severity == "error")


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_lost_generations_log_is_reported(example_vault: Vault, how: str) -> None:
    """``index/generations.jsonl`` deleted or emptied: CURRENT names a generation no record
    holds — an error (verify passed it, and the next write-back restarted the numbering)."""
    log = example_vault.root / "index" / "generations.jsonl"
    if how == "deleted":
        log.unlink()
    else:
        log.write_bytes(b"")
    report = verify(example_vault)
    assert not report.ok
    assert any(
        p.kind == "ref_inconsistent" and "generations.jsonl" in p.detail for p in report.problems
    )


def test_a_generation_gc_removes_while_verify_checks_it_is_not_reported(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vault gc` (verify takes no lock) drops generations 1 and 2 — their records, then
    their objects — after verify read the log and while it checks generation 1's closure:
    they are no longer in the vault, not damage (verify reported generation_unreadable
    for them and failed a healthy vault)."""
    from vault.ops import verify as V
    from vault.ops.gc import gc

    v = example_vault
    oldest = v.generations.history()[0]
    real = V.Generation
    ran: list[Any] = []

    def gc_meanwhile(objects: Any, generation: str, **kwargs: Any) -> Any:
        if generation == oldest.generation and not ran:
            ran.append(gc(v, 1))
        return real(objects, generation, **kwargs)

    monkeypatch.setattr(V, "Generation", gc_meanwhile)
    report = verify(v)
    assert ran and ran[0].removed_generations == [1, 2] and ran[0].removed_objects > 0
    assert not v.objects.has(oldest.generation)  # (it is gone indeed)
    assert report.ok, report.problems
    assert report.checked["generations"] == 3  # (the log verify read listed them)


def test_a_listed_generation_missing_mid_check_is_still_reported(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generation's manifest deleted while verify checks it, its record still in the log
    (not gc's doing): still an error naming it."""
    from vault.ops import verify as V

    v = example_vault
    oldest = v.generations.history()[0]
    real = V.Generation

    def deleted_meanwhile(objects: Any, generation: str, **kwargs: Any) -> Any:
        if generation == oldest.generation:
            v.objects.path(generation).unlink(missing_ok=True)
        return real(objects, generation, **kwargs)

    monkeypatch.setattr(V, "Generation", deleted_meanwhile)
    report = verify(v)
    assert not report.ok
    errors = [p for p in report.problems if p.severity == "error"]
    assert [(p.kind, p.path) for p in errors] == [
        ("generation_unreadable", str(v.objects.path(oldest.generation)))
    ], errors
    assert errors[0].detail.startswith("generation 1:")


def test_a_malformed_log_line_is_located_once(example_vault: Vault) -> None:
    """A malformed audit line and generation record: `vault verify` names the file and line
    once (the problem's path), not again inside its detail — in the text and in --json."""
    from typer.testing import CliRunner

    from vault.index.snapshot import clear_cache
    from vault_cli.app import app

    v = example_vault
    audit, log = v.audit.path, v.generations.log_path
    audit.write_bytes(b"{" + audit.read_bytes())  # line 1: `{{"detail":...`
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 2
    lines[1] = b"x" + lines[1][1:]
    log.write_bytes(b"".join(lines))
    clear_cache()
    result = CliRunner().invoke(app, ["--vault", str(v.root), "verify"])
    assert result.exit_code == 1, result.output
    said = result.stderr.splitlines()
    assert (
        f"error: audit_malformed: {audit}:1: malformed JSON: Expecting property name enclosed "
        "in double quotes (line 1, column 2)"
    ) in said, said
    assert (
        f"error: generations_corrupt: {log}:2: malformed generation record "
        "(malformed JSON: Expecting value (line 2, column 1))"
    ) in said, said
    result = CliRunner().invoke(app, ["--vault", str(v.root), "verify", "--json"])
    problems = json.loads(result.stdout)["problems"]
    assert {
        "kind": "audit_malformed",
        "path": f"{audit}:1",
        "detail": "malformed JSON: Expecting property name enclosed in double quotes "
        "(line 1, column 2)",
        "severity": "error",
    } in problems, problems
    assert {
        "kind": "generations_corrupt",
        "path": f"{log}:2",
        "detail": "malformed generation record (malformed JSON: Expecting value "
        "(line 2, column 1))",
        "severity": "error",
    } in problems, problems


def test_reading_a_malformed_log_line_names_its_place_once(example_vault: Vault) -> None:
    """The library's whole-log reads (``AuditLog.entries``, ``Generations.history``) name the
    file and line once, then what is wrong."""
    from vault.errors import CorruptionError

    v = example_vault
    audit, log = v.audit.path, v.generations.log_path
    audit.write_bytes(b"{" + audit.read_bytes())
    lines = log.read_bytes().splitlines(keepends=True)
    lines[1] = b"x" + lines[1][1:]
    log.write_bytes(b"".join(lines))
    with pytest.raises(CorruptionError) as audit_error:
        v.audit.entries()
    assert str(audit_error.value) == (
        f"{audit}:1: malformed audit line (malformed JSON: Expecting property name enclosed "
        "in double quotes (line 1, column 2))"
    )
    with pytest.raises(CorruptionError) as log_error:
        v.generations.history()
    assert str(log_error.value) == (
        f"{log}:2: malformed generation record (malformed JSON: Expecting value (line 2, column 1))"
    )


@pytest.mark.parametrize(
    ("where", "kind"),
    [
        ("index/junk", "index_unexpected"),
        ("index/CURRENT.bak", "index_unexpected"),
        ("index/format2.junk", "index_unexpected"),
        ("index/subdir/", "index_unexpected"),
        ("junk", "root_unexpected"),
        ("notes/", "root_unexpected"),
        ("audit/commits.jsonl.bak", "audit_unexpected"),
        ("audit/old/", "audit_unexpected"),
        ("refs/HEAD", "refs_unexpected"),
        ("embeddings/ann.index", "embeddings_unexpected"),
        ("embeddings/vectors/", "embeddings_unexpected"),
        ("remotes/notes.txt", "remotes_unexpected"),
        ("remotes/bad name/", "remotes_unexpected"),
        ("remotes/origin/junk", "remotes_unexpected"),
        ("remotes/origin/packs/abc.pack", "remotes_unexpected"),
        ("remotes/origin/packs/sub/", "remotes_unexpected"),
    ],
)
def test_a_stray_entry_in_the_root_or_index_is_an_error(
    example_vault: Vault, where: str, kind: str
) -> None:
    """``echo x > v/index/junk`` passed verify, while ``objects/junk`` was an error
    (``object_unexpected``): an entry FORMAT §1 does not list, in the root or ``index/``,
    is now one too, named — and so in ``audit/``, ``refs/``, ``embeddings/`` and
    ``remotes/`` (there: beside the journal and the remote directories, and in each of
    those beside ``head``, ``rebase.jsonl`` and ``packs/*.idx``), which passed before."""
    path = example_vault.root / where.rstrip("/")
    if where.startswith("remotes/origin/"):
        (example_vault.root / "remotes" / "origin" / "packs").mkdir(parents=True)
    elif where.startswith("remotes/"):
        (example_vault.root / "remotes").mkdir()
    if where.endswith("/"):
        path.mkdir()
    else:
        path.write_text("x\n")
    report = verify(example_vault)
    assert not report.ok
    assert [(p.kind, p.path, p.severity) for p in report.problems] == [(kind, str(path), "error")]
    assert "move it out" in report.problems[0].detail


def test_what_a_vault_may_hold_in_the_root_and_index_is_not_reported(
    example_vault: Vault,
) -> None:
    """The lock, a writer's temporaries (swept by the next writer), an interrupted clone's
    ``.clone-partial`` marker, ``remotes/``, ``refs/mode.json`` and the format-N files
    ``vault upgrade`` moved aside are part of a vault: verify reports none of them — nor
    what FORMAT §1 lists in ``audit/``, ``refs/``, ``embeddings/`` and ``remotes/`` (the
    staging journal, a remote's ``head``, ``rebase.jsonl`` and pack indexes, the directory
    of a remote ``vault remote remove`` forgot) and the temporaries a crash leaves there
    (§12)."""
    v = example_vault
    v.set_mode("symbolic")
    for name in ("origin", "forgotten"):
        (v.root / "remotes" / name / "packs").mkdir(parents=True)
        (v.root / "remotes" / name / "head").write_text("{}\n")
    (v.root / "remotes" / "origin" / "rebase.jsonl").write_text("")
    (v.root / "remotes" / "origin" / "packs" / f"{'ab' * 32}.idx").write_text("{}\n")
    (v.root / "remotes" / "origin" / "packs" / f".{'ab' * 32}.idx.k1lled00.tmp").touch()
    (v.root / "remotes" / "origin" / ".head.k1lled00.tmp").write_text("partial")
    (v.root / "remotes" / "staged").write_text("")  # (a journal listing nothing)
    (v.root / "remotes" / ".staged.k1lled00.tmp").write_text("partial")
    (v.root / "audit" / ".commits.jsonl.k1lled00.tmp").write_text("partial")
    (v.root / "refs" / ".mode.json.k1lled00.tmp").write_text("partial")
    (v.root / "embeddings" / ".embedder.json.link").write_text("partial")
    (v.root / "embeddings" / ".concept_vectors.jsonl.k1lled00.tmp").write_text("partial")
    (v.root / ".clone-partial").touch()
    (v.root / ".config.toml.k1lled00.tmp").write_text("partial")
    (v.root / "index" / ".CURRENT.k1lled00.tmp").write_text("partial")
    for name in ("CURRENT", "generations.jsonl"):
        for n in (1, 2):
            (v.root / "index" / f"format{n}.{name}").write_bytes(
                (v.root / "index" / name).read_bytes()
            )
    assert (v.root / "lock").is_file()
    report = verify(v)
    assert report.ok, report.to_json()
    assert not [p for p in report.problems if p.kind.endswith("_unexpected")]


def test_a_lock_that_is_a_directory_is_an_error(example_vault: Vault) -> None:
    """``lock`` replaced by a directory passed verify, though every write then fails
    (``error: …/lock: Is a directory``): it is an error now (``lock_unusable``) whose
    message says what to do; once it is moved away a write recreates the file and verify
    passes. A missing lock is no problem (the next writer creates it), nor a FIFO (writers
    open and lock it as they do the file). The writer that cannot run says so in verify's
    words, with the remedy (it said only ``…/lock: Is a directory``), exit 1."""
    from typer.testing import CliRunner

    from vault.errors import CorruptionError
    from vault_cli.app import app

    from .conftest import card

    v = example_vault
    lock = v.root / "lock"
    lock.unlink()
    assert verify(v).ok and not verify(v).problems
    lock.mkdir()
    said = (
        "is a directory, not the empty file writers lock: every write fails until it is moved "
        "away or removed (nothing in it is vault data; the next write creates the file)"
    )
    with pytest.raises(CorruptionError) as blocked:  # (what it costs: no write can run)
        v.add([(card("blocked", ["transform:flip_h"]), "t")])
    assert str(blocked.value) == f"{lock}: {said}; nothing was written"
    result = CliRunner().invoke(app, ["--vault", str(v.root), "gc", "--keep", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == f"error: {lock}: {said}; nothing was written\n"
    report = verify(v)
    assert not report.ok
    assert [(p.kind, p.path, p.severity, p.detail) for p in report.problems] == [
        ("lock_unusable", str(lock), "error", said)
    ]
    lock.rmdir()
    v.add([(card("unblocked", ["transform:flip_h"]), "t")])
    assert lock.is_file()
    assert verify(v).ok and not verify(v).problems
    lock.unlink()
    os.mkfifo(lock)
    v.add([(card("through-a-fifo", ["transform:flip_h"]), "t")])
    assert verify(v).ok and not verify(v).problems
