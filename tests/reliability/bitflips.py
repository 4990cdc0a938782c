"""Single-byte changes across every kind of file of a vault, and what each command makes of
them (used by ``test_bitflips.py``).

For each change, on a fresh copy of the seeded vault: ``vault verify --json`` (detected =
exit 1; named = an error names the changed file; verify must not change a byte); library
``retrieve`` in the three modes against the unchanged vault's answers (ok = a clean
``VaultError``, the same answer, or a stated fallback; anything else is *silent*); every
command once (reads first, then ``index build`` — followed by a retrieval, which must again
not be silently wrong — and a write-back), none of which may crash: print a traceback or
``error: internal error``, or fall back after an internal error. A crashed verify does not
count as detecting the change."""

from __future__ import annotations

import json
import random
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault.config import load as load_config
from vault.errors import VaultError
from vault.index.snapshot import Generation, clear_cache
from vault.index.table import TABLE_OBJECTS
from vault.records.query import task_query
from vault.retrieval import retrieve
from vault.vault import Vault

from .harness import InProc, copy_vault, crashed_in, fingerprint, run_inproc

MODES = ("symbolic", "hybrid", "soft")


# --------------------------------------------------------------------------- the kinds
def classify(root: Path) -> dict[str, list[str]]:
    """kind -> relative paths of the files of that kind, in a stable order."""
    v = Vault.open(root)
    kinds: dict[str, list[str]] = {}
    seen: set[str] = set()

    def put(kind: str, digest: str) -> None:
        if digest not in seen:
            seen.add(digest)
            kinds.setdefault(kind, []).append(str(v.objects.path(digest).relative_to(root)))

    closure: set[str] = set()
    for g in v.generations.history():
        data = Generation(v.objects, g.generation)
        m = data.manifest
        put("manifest", g.generation)
        for name in TABLE_OBJECTS:
            put(f"table {name} list", m["table"][name])
        for chunk in data.metas:  # (FORMAT §7.5)
            put("table rows chunk", chunk.digest)
            put("table matrix chunk", chunk.matrix)
        put("embedder json", m["embedder"])
        put("state list", m["state"])
        shards = data.state_shards
        for kind in ("concepts", "reprs"):
            for d in shards[kind]:
                put(f"{kind[:-1]} shard", d)
                shard = v.objects.get_record(d)
                if kind == "concepts":
                    for entry in shard.values():
                        closure.add(entry["card"])
                        closure.update(entry["evidence"])
                        closure.update(entry["events"])
                else:
                    closure.update(shard["known"])
    for digest in v.objects:
        if digest in seen:
            continue
        if digest not in closure:
            put("orphan object", digest)
            continue
        rec = json.loads(v.objects.get(digest))
        put(
            {"concept": "card", "status": "status event"}.get(rec.get("kind"), rec.get("kind")),
            digest,
        )
    for name in ("embedder.json", "concept_vectors.jsonl", "ann.index.sha256"):
        kinds[f"view {name}"] = [f"embeddings/{name}"]
    for path in v.cache.entries():
        entry = json.loads(path.read_bytes())
        kind = "cache repr entry" if "grid" in entry["source"] else "cache pair entry"
        kinds.setdefault(kind, []).append(str(path.relative_to(root)))
    for rel, kind in (
        ("index/CURRENT", "index CURRENT"),
        ("index/generations.jsonl", "generations log"),
        ("audit/commits.jsonl", "audit log"),
        ("refs/mode.json", "refs mode.json"),
        ("config.toml", "config.toml"),
        ("format.json", "format.json"),
    ):
        kinds[kind] = [rel]
    return {k: sorted(v) for k, v in sorted(kinds.items())}


@dataclass(frozen=True)
class Flip:
    kind: str
    rel: str
    offset: int
    value: int
    why: str = "random"

    def label(self) -> str:
        return f"{self.kind}: {self.rel} byte {self.offset} -> {self.value:#04x} ({self.why})"


def random_flips(root: Path, kinds: dict[str, list[str]], per_kind: int, seed: int) -> list[Flip]:
    rng = random.Random(seed)
    out = []
    for kind, paths in kinds.items():
        for _ in range(per_kind):
            rel = rng.choice(paths)
            data = (root / rel).read_bytes()
            if not data:
                continue
            offset = rng.randrange(len(data))
            value = rng.choice([b for b in range(256) if b != data[offset]])
            out.append(Flip(kind, rel, offset, value))
    return out


def _at(root: Path, kind: str, rel: str, needle: bytes, shift: int, new: bytes, why: str) -> Flip:
    data = (root / rel).read_bytes()
    i = data.index(needle) + shift
    assert data[i : i + 1] != new
    return Flip(kind, rel, i, new[0], why)


def query_cache_entries(root: Path, task_path: Path) -> list[tuple[str, str]]:
    """(kind, path) of the cache entries a retrieval of the task reads."""
    from vault.embedding.cache import pair_id
    from vault.grid.reprs import repr_id

    v = Vault.open(root)
    cache = v.cache.bound(v.snapshot().embedder())  # the vault's embedder's entries
    q = task_query(json.loads(task_path.read_text()))
    out = []
    for p in q.pairs[:1]:
        key = cache.key(pair_id(repr_id(p.input), repr_id(p.output)))
        out.append(("cache pair entry", str(cache.path(key).relative_to(root))))
    if q.repr is not None:
        out.append(
            ("cache repr entry", str(cache.path(cache.key(repr_id(q.repr))).relative_to(root)))
        )
    return out


def targeted_flips(root: Path, kinds: dict[str, list[str]], task_path: Path) -> list[Flip]:
    """Changes that keep the file well formed (the hard ones), one or more per kind."""
    out = []
    for kind, rel in query_cache_entries(root, task_path):  # read by the retrieval itself
        data = (root / rel).read_bytes()
        i = data.index(b'"vector":[') + 10
        while not (data[i : i + 2].isdigit() and data[i - 1 : i] in (b",", b"[", b"-")):
            i += 1
        new = b"9" if data[i : i + 1] != b"9" else b"1"
        out.append(Flip(kind, rel, i, new[0], "a digit of a vector the query reads"))
    log = "audit/commits.jsonl"
    out.append(_at(root, "audit log", log, b'"time":"1970', 9, b"8", "a digit of a time"))
    out.append(_at(root, "audit log", log, b'"evidence":', 11, b"9", "a count in a detail"))
    out.append(_at(root, "audit log", log, b'"op":"add"', 6, b"b", "op add -> bdd"))
    gen = "index/generations.jsonl"
    out.append(_at(root, "generations log", gen, b'"time":"1970', 9, b"8", "a digit of a time"))
    out.append(_at(root, "generations log", gen, b'"op":"evidence"', 6, b"f", "an op name"))
    out.append(_at(root, "generations log", gen, b'"active":', 9, b"9", "a count"))
    out.append(_at(root, "index CURRENT", "index/CURRENT", b'"number":', 9, b"5", "the number"))
    # an audit seq one past the log's last reads as a write whose line was torn: a digit that
    # names an older entry than the generation's is the hard, well-formed case
    out.append(_at(root, "index CURRENT", "index/CURRENT", b'"audit_seq":', 12, b"1", "audit_seq"))
    cfg = "config.toml"
    out.append(_at(root, "config.toml", cfg, b"k = 10", 4, b"\xff", "undecodable byte"))
    out.append(_at(root, "config.toml", cfg, b'mode = "hybrid"', 8, b"j", "an invalid mode"))
    out.append(_at(root, "config.toml", cfg, b"[retrieval]", 1, b"R", "the table name"))
    out.append(_at(root, "refs mode.json", "refs/mode.json", b"symbolic", 0, b"h", "another mode"))
    out.append(_at(root, "format.json", "format.json", b'"version":3', 10, b"4", "version 4"))
    out.append(_at(root, "format.json", "format.json", b'"version":3', 10, b"0", "version 0"))
    for kind in ("cache repr entry", "cache pair entry"):
        rel = kinds[kind][0]
        data = (root / rel).read_bytes()
        i = data.index(b'"vector":[') + 10
        while not data[i : i + 1].isdigit() or data[i : i + 1] == b"0":
            i += 1
        new = b"1" if data[i : i + 1] != b"1" else b"2"
        out.append(Flip(kind, rel, i, new[0], "a digit of the vector"))
        j = data.index(b'"key":"') + 8
        out.append(
            Flip(kind, rel, j, (data[j] ^ 1) if chr(data[j] ^ 1).isalnum() else ord("0"), "the key")
        )
        j = data.index(b'","source"') - 3  # inside the key's weights hash
        out.append(
            Flip(
                kind,
                rel,
                j,
                ord("0") if data[j] != ord("0") else ord("1"),
                "the embedder part of the key",
            )
        )
    card = next(p for p in kinds["card"] if b'"id":"rotate-90"' in (root / p).read_bytes())
    out.append(_at(root, "card", card, b"palette_preserved", 8, b"f", "a letter of a key"))
    lone = next(
        p for p in kinds["card"] if b'"id":"crop-largest-object"' in (root / p).read_bytes()
    )
    out.append(
        _at(root, "card", lone, b'"id":"crop-largest-object"', 7, b"R", "a letter of the id")
    )
    ev = next(p for p in kinds["evidence"] if b'"polarity":"positive"' in (root / p).read_bytes())
    out.append(_at(root, "evidence", ev, b'"polarity":"positive"', 19, b"f", "the polarity"))
    for kind in ("card", "evidence", "status event", "repr", "manifest", "concept shard"):
        rel = kinds[kind][0]
        data = (root / rel).read_bytes()
        i = data.index(b'":') - 1  # the last letter of the first key: still parses
        out.append(
            Flip(kind, rel, i, ord("_") if data[i] != ord("_") else ord("x"), "a renamed key")
        )
    return out


# --------------------------------------------------------------------------- one flip
@dataclass
class Outcome:
    flip: Flip
    detected: bool = False
    named: bool = False
    verify_unchanged: bool = True
    config_valid: bool = False  # a config.toml change that leaves a valid config
    tracebacks: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)  # retrievals wrong without saying so
    silent_after_build: list[str] = field(default_factory=list)
    verify_problems: list[str] = field(default_factory=list)


@dataclass
class Baseline:
    root: Path
    query: Any
    answers: dict[str, Any]
    task_path: Path
    next_card: Path


def baseline(root: Path, task_path: Path, next_card: Path) -> Baseline:
    clear_cache()
    v = Vault.open(root)
    q = task_query(json.loads(task_path.read_text()))
    answers = {m: _answer(retrieve(v, q, v.config(), m)) for m in MODES}
    return Baseline(root, q, answers, task_path, next_card)


def _answer(r: Any) -> Any:
    out = r.to_json()
    out.pop("index_stale", None)
    out.pop("generation", None)  # a rebuilt index may be another generation, same answer
    return out


def _retrievals(b: Baseline, root: Path, where: str) -> tuple[list[str], list[str]]:
    """(silent, tracebacks) of library retrievals in every mode."""
    silent, crashed = [], []
    for mode in MODES:
        clear_cache()
        try:
            v = Vault.open(root)
            r = retrieve(v, b.query, v.config(), mode)
        except VaultError:
            continue
        except Exception as exc:  # noqa: BLE001
            crashed.append(f"retrieve {mode}{where}: {type(exc).__name__}: {exc}")
            continue
        if (r.fallback_reason or "").startswith("internal error"):  # a bug, not a fallback
            crashed.append(f"retrieve {mode}{where}: fell back after {r.fallback_reason}")
            continue
        if _answer(r) == b.answers[mode]:
            continue
        if r.mode_used != mode and r.fallback_reason:
            continue
        silent.append(f"{mode}{where}: {[h.id for h in r.results][:5]} (mode {r.mode_used})")
    return silent, crashed


def cli(root: Path, *args: str) -> InProc:
    clear_cache()
    return run_inproc(root, list(args))


def _traceback(result: Any) -> str | None:
    """What shows the command crashed: an escaped exception, a traceback, or the CLI's
    ``error: internal error: …`` line (exit 1, like a clean refusal)."""
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        return f"{type(exc).__name__}: {exc}"
    if crashed_in(result.stdout, result.stderr):
        return result.output[-200:]
    return None


def apply_flip(root: Path, f: Flip) -> None:
    path = root / f.rel
    mode = stat.S_IMODE(path.stat().st_mode)
    path.chmod(0o644)  # objects are 0444; root could write anyway, others could not
    data = bytearray(path.read_bytes())
    data[f.offset] = f.value
    path.write_bytes(bytes(data))
    path.chmod(mode)


def run_flip(b: Baseline, f: Flip, work: Path) -> Outcome:
    w = copy_vault(b.root, work / "flip", link_objects=False)
    apply_flip(w, f)
    out = Outcome(f)
    if f.kind == "config.toml":
        try:
            load_config(w / "config.toml")
            out.config_valid = True
        except Exception:  # noqa: BLE001 - invalid (a crash here is counted by the CLI runs)
            pass
    # verify: exit 1, the file named, not a byte changed
    before = fingerprint(w)
    result = cli(w, "verify", "--json")
    out.verify_unchanged = fingerprint(w) == before
    tb = _traceback(result)
    if tb:
        out.tracebacks.append(f"verify: {tb}")
    out.detected = result.exit_code == 1 and not tb  # a crash detects nothing
    names = {f.rel}
    try:
        problems = json.loads(result.stdout)["problems"] if result.stdout else []
    except ValueError:
        problems = []
    errors = [p for p in problems if p["severity"] == "error"]
    if f.kind.startswith("view "):  # derived data (FORMAT §8): a warning naming the file
        errors = [p for p in problems if p["kind"].startswith("view_")]
        out.detected = result.exit_code == 0 and not tb and bool(errors)
    out.verify_problems = [f"{p['kind']}:{Path(p['path']).name}" for p in errors][:4]
    text = " ".join(p["path"] + " " + p["detail"] for p in errors) + " " + result.stderr
    out.named = out.detected and any(n in text for n in names)
    # retrieval never silently wrong
    if not out.config_valid:
        out.silent, crashed = _retrievals(b, w, "")
        out.tracebacks += crashed
    # every command: no traceback (reads, then the writers)
    task = str(b.task_path)
    for args in (
        ("retrieve", "--task", task, "--json"),
        ("retrieve", "--task", task, "--mode", "symbolic"),
        ("index", "status", "--json"),
        ("log", "--json"),
        ("show", "rotate-90", "--json"),
        ("rollback", "--list", "--json"),
        ("embed", task),
        ("gc", "--keep", "1", "--dry-run", "--json"),
        ("index", "build", "--json"),
    ):
        result = cli(w, *args)
        tb = _traceback(result)
        if tb:
            out.tracebacks.append(f"{' '.join(args[:2])}: {tb}")
        if args[:2] == ("index", "build") and result.exit_code == 0 and not out.config_valid:
            out.silent_after_build, crashed = _retrievals(b, w, " after index build")
            out.tracebacks += crashed
    result = cli(w, "add", str(b.next_card), "--json")
    tb = _traceback(result)
    if tb:
        out.tracebacks.append(f"add: {tb}")
    return out


def run_all(b: Baseline, flips: list[Flip], work: Path) -> Iterator[Outcome]:
    for f in flips:
        yield run_flip(b, f, work)
