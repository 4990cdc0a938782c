"""``vault verify``: rehash and recompute everything; never modifies the vault.

Checks, each problem reported with the file and a kind:
objects rehashed against their addresses; the current ref, its generation manifest and
the generations log; the embedding files equal to the current generation's objects and
``ann.index.sha256`` recomputed; every concept vector re-embedded (without the cache) and
compared; the symbolic index compared with a fresh fold of the audit log; the index
built twice in memory (once without, once with the cache) to detect nondeterminism;
cache entries (all, or a sample) recomputed from their source; the audit log well formed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import xxhash

from vault.canonical import canonical_bytes, dumps_line, loads, sha256_hex
from vault.embedding import embedder
from vault.embedding.vectors import (
    EMBEDDER_FILE,
    HASH_FILE,
    VECTORS_FILE,
    ann_hash,
    embedder_bytes,
    source_vector,
    vectors_bytes,
)
from vault.errors import InvalidInputError, VaultError
from vault.index.generations import read_manifest
from vault.vault import Vault


@dataclass(frozen=True)
class Problem:
    kind: str
    path: str
    detail: str
    severity: str = "error"

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "path": self.path,
            "detail": self.detail,
            "severity": self.severity,
        }


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def add(self, kind: str, path: Any, detail: str, severity: str = "error") -> None:
        self.problems.append(Problem(kind, str(path), detail, severity))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "problems": [p.to_json() for p in self.problems],
        }


def verify(
    vault: Vault, *, sample: int | None = None, progress: Callable[[str], None] | None = None
) -> VerifyReport:
    report = VerifyReport()
    step = progress or (lambda _: None)
    step("objects")
    _objects(vault, report)
    step("audit log")
    entries_ok = _audit(vault, report)
    step("generation")
    manifest, audit_seq = _generation(vault, report)
    if manifest is not None:
        step("embedding files")
        _files(vault, manifest, report)
    if manifest is not None and entries_ok:
        step("rebuild")
        _rebuild(vault, manifest, audit_seq, report)
    step("cache")
    _cache(vault, report, sample)
    return report


def _objects(vault: Vault, report: VerifyReport) -> None:
    n = 0
    for digest in vault.objects:
        n += 1
        path = vault.objects.path(digest)
        if sha256_hex(path.read_bytes()) != digest:
            report.add("object_hash_mismatch", path, "content does not match its address")
    report.checked["objects"] = n


def _audit(vault: Vault, report: VerifyReport) -> bool:
    path = vault.audit.path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        report.add("audit_missing", path, "audit log missing")
        return False
    lines = data.split(b"\n")
    tail = lines.pop()
    if tail:
        report.add(
            "audit_torn_tail", path, "unterminated last line (repaired on next write)", "warning"
        )
    ok = True
    for number, line in enumerate(lines, start=1):
        try:
            obj = loads(line, source=f"{path}:{number}")
            if obj.get("seq") != number:
                raise InvalidInputError(f"expected seq {number}")
            if dumps_line(obj) != line + b"\n":
                raise InvalidInputError("not canonical JSON")
            for digest in obj["records"]:
                if not vault.objects.has(digest):
                    report.add(
                        "audit_missing_object", f"{path}:{number}", f"record {digest} missing"
                    )
                    ok = False
        except (InvalidInputError, KeyError, TypeError, AttributeError) as exc:
            report.add("audit_malformed", f"{path}:{number}", str(exc))
            ok = False
    report.checked["audit_entries"] = len(lines)
    return ok


def _generation(vault: Vault, report: VerifyReport) -> tuple[dict[str, Any] | None, int]:
    gens = vault.generations
    try:
        history = gens.history()
        cur = gens.current()
    except VaultError as exc:
        report.add("ref_corrupt", gens.current_path, str(exc))
        return None, 0
    if cur is None:
        report.add("ref_missing", gens.current_path, "no current generation")
        return None, 0
    listed = [g for g in history if g.number == cur.number and g.generation == cur.generation]
    if not listed:
        report.add(
            "ref_inconsistent",
            gens.current_path,
            f"generation {cur.number} ({cur.generation[:12]}) is not in {gens.log_path.name}",
        )
    elif cur.audit_seq < listed[0].audit_seq:  # (a rollback moves audit_seq forward, never back)
        report.add(
            "ref_inconsistent", gens.current_path, "audit_seq is older than its generation's"
        )
    try:
        manifest = read_manifest(vault.objects, cur.generation)
    except VaultError as exc:
        report.add("generation_unreadable", vault.objects.path(cur.generation), str(exc))
        return None, cur.audit_seq
    for name in ("symbolic", "embedder", "vectors", "ann_hash_file"):
        if not vault.objects.has(manifest.get(name, "")):
            report.add(
                "generation_incomplete",
                vault.objects.path(cur.generation),
                f"{name} object missing",
            )
            return None, cur.audit_seq
    report.checked["generations"] = len(history)
    return manifest, cur.audit_seq


def _files(vault: Vault, manifest: dict[str, Any], report: VerifyReport) -> None:
    paths = vault.files.paths()
    expected = {
        EMBEDDER_FILE: manifest["embedder"],
        VECTORS_FILE: manifest["vectors"],
        HASH_FILE: manifest["ann_hash_file"],
    }
    data: dict[str, bytes] = {}
    for name, path in paths.items():
        try:
            data[name] = path.read_bytes()
        except FileNotFoundError:
            report.add("embedding_file_missing", path, "missing")
            continue
        if sha256_hex(data[name]) != expected[name]:
            report.add(
                "embedding_file_mismatch", path, "differs from the current generation's object"
            )
    if len(data) < 3:
        return
    actual = ann_hash(data[EMBEDDER_FILE], data[VECTORS_FILE])
    if data[HASH_FILE] != f"{actual}\n".encode():
        report.add(
            "ann_hash_mismatch",
            paths[HASH_FILE],
            "does not match embedder.json + concept_vectors.jsonl",
        )
    if actual != manifest["ann_hash"]:
        report.add(
            "ann_hash_mismatch",
            paths[VECTORS_FILE],
            "embedding files are not the current generation's",
        )
    if data[EMBEDDER_FILE] != embedder_bytes():
        report.add(
            "embedder_drift",
            paths[EMBEDDER_FILE],
            "built by another embedder: run `vault index build`",
        )
    for number, line in enumerate(data[VECTORS_FILE].splitlines(), start=1):
        try:
            obj = loads(line, source=f"{paths[VECTORS_FILE]}:{number}")
            if canonical_bytes(obj) != line:
                raise InvalidInputError("not canonical JSON")
        except InvalidInputError as exc:
            report.add("vector_line_malformed", f"{paths[VECTORS_FILE]}:{number}", str(exc))


def _rebuild(vault: Vault, manifest: dict[str, Any], audit_seq: int, report: VerifyReport) -> None:
    paths = vault.files.paths()
    try:
        plan_a = vault.full_index(upto=audit_seq, cache=False)
        plan_b = vault.full_index(upto=audit_seq, cache=True)
    except VaultError as exc:
        report.add("rebuild_failed", vault.audit.path, str(exc))
        return
    sym_a, vec_a = canonical_bytes(plan_a.index), vectors_bytes(plan_a.vectors)
    if sym_a != canonical_bytes(plan_b.index) or vec_a != vectors_bytes(plan_b.vectors):
        report.add("nondeterminism", vault.root, "two in-memory builds differ (cache hit vs miss)")
    if sym_a != vault.objects.get(manifest["symbolic"]):
        report.add(
            "symbolic_index_mismatch",
            vault.objects.path(manifest["symbolic"]),
            "differs from a fresh build of the audit log",
        )
    if manifest.get("embedder_id") == embedder.identity():
        stored = vault.objects.get(manifest["vectors"]).splitlines()
        fresh = vec_a.splitlines()
        if stored != fresh:
            bad = [i for i, (x, y) in enumerate(zip(stored, fresh, strict=False), 1) if x != y]
            where = f"{paths[VECTORS_FILE]}:{bad[0]}" if bad else str(paths[VECTORS_FILE])
            report.add(
                "vector_mismatch",
                where,
                f"{len(bad) + abs(len(stored) - len(fresh))} concept vector(s) differ from "
                "re-embedding with the current embedder",
            )
    report.checked["concepts"] = len(plan_a.index["concepts"])


def _cache(vault: Vault, report: VerifyReport, sample: int | None) -> None:
    entries = list(vault.cache.entries())
    if sample is not None and sample < len(entries):
        entries = sorted(random.Random(0).sample(entries, sample))
    for path in entries:
        try:
            entry = loads(path.read_bytes(), source=str(path))
            key = entry["key"]
            content, version, weights = key.split(":")
            if (version, weights) != (embedder.VERSION, embedder.WEIGHTS_HASH):
                report.add("cache_stale", path, "entry of another embedder (unused)", "warning")
                continue
            h = xxhash.xxh3_128_hexdigest(key.encode())
            if path.parent.name + path.stem != h:
                raise InvalidInputError("file name does not match the key")
            cid, vector = source_vector(entry["source"])
            if cid != content:
                raise InvalidInputError("key does not match the source")
            if vector != entry["vector"]:
                raise InvalidInputError("vector differs from recomputation")
        except (InvalidInputError, KeyError, TypeError, ValueError, AttributeError) as exc:
            report.add("cache_entry_bad", path, str(exc))
    report.checked["cache_entries"] = len(entries)
