"""Item 7 — hostile input: what an attacker or an unlucky operator hands the CLI, and what
they can plant inside a vault before a write. Each case is run through the CLI in a child
process (bounded in time and memory) and must be refused in under a second with one
``error:`` line (exit 1, or 2 for usage), no traceback, the vault byte-identical (tree), and
not one byte written outside the vault (a sentinel directory beside it, and the directory
holding both, are compared too)."""

from __future__ import annotations

import io
import json
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import card
from tests.helpers import tree
from vault.canonical import canonical_bytes, dumps_line, sha256_hex
from vault.index.generations import CurrentRef
from vault.index.snapshot import clear_cache
from vault.store.objects import ObjectStore
from vault.vault import Vault

from .harness import Child, copy_vault, figure, fork_cli
from .workloads import GRID_A, Seed, write_json

LIMIT_S = 1.0  # "rejected in under a second"
GIB = 1 << 30


@dataclass
class Scene:
    """A vault copy, the inputs directory and the sentinel directory outside the vault."""

    base: Path
    root: Path
    inputs: Path
    outside: Path
    seed: Seed


@dataclass
class Case:
    name: str
    args: Callable[[Scene], list[str]]
    plant: Callable[[Scene], None] | None = None  # changes the vault before the command
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 3.0
    stdin: Callable[[Scene], Path] | None = None
    may_succeed: bool = False  # a reader that can do without the planted part (a cache)
    code: int | None = None  # the one exit code it must give (else 1 or 2)


def _card_file(name: str, **fields: Any) -> Callable[[Scene], list[str]]:
    def make(s: Scene) -> list[str]:
        c = card("hostile", ["transform:flip_h"])
        c.update(fields)
        return ["add", str(write_json(s.inputs / f"{name}.json", c)), "--json"]

    return make


def _text_file(
    name: str, data: Callable[[], bytes], cmd: tuple[str, ...] = ("add",)
) -> Callable[[Scene], list[str]]:
    def make(s: Scene) -> list[str]:
        p = s.inputs / name
        p.write_bytes(data())
        return [*cmd, str(p), "--json"]

    return make


def _sparse(s: Scene) -> list[str]:
    p = s.inputs / "sparse.json"
    with open(p, "wb") as f:
        f.write(b'{"schema_version": 1, "id": "')
        f.truncate(GIB)
    return ["add", str(p), "--json"]


def _big_task(pairs: int, side: int) -> Callable[[Scene], list[str]]:
    def make(s: Scene) -> list[str]:
        rng = random.Random(pairs)
        grid = [[rng.randrange(10) for _ in range(side)] for _ in range(side)]
        task = {
            "train": [{"input": grid, "output": grid} for _ in range(pairs)],
            "test": [{"input": grid}],
        }
        p = write_json(s.inputs / f"task-{pairs}x{side}.json", task)
        return ["retrieve", "--task", str(p), "--json"]

    return make


def _nested(depth: int) -> bytes:
    return b'{"schema_version": 1, "grid": ' + b"[" * depth + b"]" * depth + b"}"


# --------------------------------------------------------------------------- planted links
def _link(
    rel: str, target: str, *, copy: bool = True, directory: bool = False
) -> Callable[[Scene], None]:
    """Replace ``rel`` inside the vault by a symlink to ``outside/target`` (holding a copy of
    what was there, so the vault still reads the same)."""

    def plant(s: Scene) -> None:
        src = s.root / rel
        dst = s.outside / target
        if copy and src.exists():
            if src.is_dir():
                copy_vault(src, dst, link_objects=False)
            else:
                dst.write_bytes(src.read_bytes())
        elif directory:
            dst.mkdir()
        if src.is_dir() and not src.is_symlink():
            import shutil

            shutil.rmtree(src)
        elif src.exists() or src.is_symlink():
            src.unlink()
        os.symlink(dst, src)

    return plant


def _fan_of_next_card(s: Scene) -> str:
    c = card("next", ["transform:crop"])
    from vault.records.cards import normalize_card

    return "objects/" + sha256_hex(canonical_bytes(normalize_card(c, "x")))[:2]


def _plant_fan(s: Scene) -> None:
    fan = _fan_of_next_card(s)
    _link(fan, "fan", copy=(s.root / fan).exists(), directory=True)(s)


class _Evil:
    """Unpickling this runs a command: it must never happen."""

    def __init__(self, flag: Path):
        self.flag = str(flag)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.flag}",))


def _plant_npy(pickled: bool) -> Callable[[Scene], None]:
    """A generation whose table ``rows`` list is an object-dtype .npy (with a pickle that
    would create ``outside/pwned``), stored under its own address, made current."""

    def plant(s: Scene) -> None:
        buf = io.BytesIO()
        arr = np.array([_Evil(s.outside / "pwned") if pickled else None, 1], dtype=object)
        np.save(buf, arr, allow_pickle=True)
        objects = ObjectStore(s.root / "objects")
        evil = objects.put(buf.getvalue())
        v = Vault.open(s.root)
        cur = v.generations.current()
        assert cur is not None
        manifest = json.loads(objects.get(cur.generation))
        manifest["table"]["rows"] = evil  # (a chunk list that is an object-dtype .npy)
        gen = objects.put(canonical_bytes(manifest))
        ref = CurrentRef(gen, cur.number, cur.audit_seq, cur.reverted)
        (s.root / "index/CURRENT").write_bytes(dumps_line(ref.to_json()))
        clear_cache()

    return plant


def _query(s: Scene) -> list[str]:
    return ["retrieve", "--task", str(s.seed.query_task), "--json"]


def _new_query(s: Scene) -> list[str]:
    """A query no cache entry exists for (so retrieval writes the cache)."""
    task = {"train": [{"input": [[5, 6], [6, 5]], "output": [[6, 5], [5, 6]]}]}
    return ["retrieve", "--task", str(write_json(s.inputs / "fresh.json", task)), "--json"]


def _next(s: Scene) -> list[str]:
    return ["add", str(s.seed.inputs / "next-card.json"), "--json"]


CASES = [
    # ids, paths and text
    Case("id ../ traversal", _card_file("dotdot", id="../../escape")),
    Case("id absolute path", _card_file("abs", id="/etc/passwd")),
    Case("id with NUL", _card_file("nul", id="a\u0000b")),
    Case("id of 10k characters", _card_file("long", id="a" * 10_000)),
    Case("id Unicode look-alike", _card_file("lookalike", id="r\u043etate-90")),
    Case("id right-to-left mark", _card_file("rtl", id="\u202erotate-90")),
    Case("version with path", _card_file("ver", version="1.0.0/../../x")),
    Case("show ../ id", lambda s: ["show", "../../etc/passwd", "--json"]),
    Case("status ../ id", lambda s: ["status", "../x", "1.0.0", "deprecated", "--json"]),
    Case("status RTL id", lambda s: ["status", "\u202erotate-90", "1.0.0", "deprecated"]),
    Case("rollback --to path", lambda s: ["rollback", "--to", "../../etc", "--json"]),
    Case(
        "evidence ../ repr id",
        _text_file(
            "ev-path.json",
            lambda: json.dumps(
                {
                    "schema_version": 1,
                    "concept": "rotate-90",
                    "version": "1.0.0",
                    "polarity": "positive",
                    "repr_id": "../../../etc/passwd",
                }
            ).encode(),
            ("evidence", "add"),
        ),
    ),
    # JSON that parsers choke on
    Case(
        "10^6-digit integer",
        _text_file("bigint.json", lambda: b'{"schema_version": 1' + b"0" * 10**6 + b', "id": "x"}'),
    ),
    Case("NaN", _text_file("nan.json", lambda: b'{"schema_version": NaN}')),
    Case("Infinity", _text_file("inf.json", lambda: b'{"schema_version": 1, "x": -Infinity}')),
    Case(
        "duplicate keys",
        _text_file(
            "dup.json",
            lambda: (
                json.dumps(card("d", ["feature:a"]))
                .replace('"schema_version": 1', '"schema_version": 1, "id": "e", "id": "f"')
                .encode()
            ),
        ),
    ),
    Case(
        "10^4-deep nesting",
        _text_file("deep.json", lambda: _nested(10_000), ("retrieve", "--query")),
    ),
    Case("10^5-deep nesting", _text_file("deeper.json", lambda: b"[" * 100_000 + b"]" * 100_000)),
    Case("binary garbage", _text_file("garbage.json", lambda: random.Random(7).randbytes(4096))),
    Case("empty file", _text_file("empty.json", lambda: b"")),
    Case("whitespace only", _text_file("blank.json", lambda: b" \n\t\n")),
    # (a UTF-8 BOM is accepted on purpose, like editors write it: tests/test_cli_output.py)
    Case(
        "lone surrogate",
        _text_file(
            "surrogate.json", lambda: json.dumps(card("s", ["feature:a"], dsl="\ud800")).encode()
        ),
    ),
    # sizes
    Case("1 GiB sparse file", _sparse, timeout=3.0),
    Case("/dev/zero", lambda s: ["add", "/dev/zero", "--json"], timeout=3.0),
    Case("/dev/urandom", lambda s: ["add", "/dev/urandom", "--json"], timeout=3.0),
    Case(
        "stdin of 1 GiB zeros",
        lambda s: ["add", "-", "--json"],
        stdin=lambda s: Path("/dev/zero"),
        timeout=3.0,
    ),
    Case(
        "grid of 10^6 cells",
        _text_file(
            "huge-grid.json",
            lambda: json.dumps([[1] * 1000] * 1000).encode(),
            ("retrieve", "--repr"),
        ),
    ),
    Case(
        "grid of 31x31",
        _text_file(
            "grid31.json", lambda: json.dumps([[1] * 31] * 31).encode(), ("retrieve", "--repr")
        ),
    ),
    Case("task of 1000 pairs of 30x30", _big_task(1000, 30), timeout=3.0),
    Case(
        "task with no train pairs",
        _text_file(
            "notrain.json",
            lambda: json.dumps({"train": [], "test": [{"input": GRID_A}]}).encode(),
            ("retrieve", "--task"),
        ),
    ),
    Case(
        "task with train not a list",
        _text_file(
            "badtrain.json",
            lambda: json.dumps({"train": {"input": GRID_A}}).encode(),
            ("arc", "import"),
        ),
    ),
    Case(
        "grid of floats", _text_file("floats.json", lambda: b"[[1.0, 2.0]]", ("retrieve", "--repr"))
    ),
    Case(
        "grid of bools",
        _text_file("bools.json", lambda: b"[[true, false]]", ("retrieve", "--repr")),
    ),
    # the environment
    # a bad SOURCE_DATE_EPOCH is a usage error (README: exit 2)
    Case("SOURCE_DATE_EPOCH of 30 digits", _next, env={"SOURCE_DATE_EPOCH": "9" * 30}, code=2),
    Case("SOURCE_DATE_EPOCH past 9999", _next, env={"SOURCE_DATE_EPOCH": "9" * 12}, code=2),
    Case("SOURCE_DATE_EPOCH negative", _next, env={"SOURCE_DATE_EPOCH": "-5"}, code=2),
    Case("SOURCE_DATE_EPOCH of other digits", _next, env={"SOURCE_DATE_EPOCH": "\u0661"}, code=2),
    # planted inside the vault before a write
    Case("symlinked objects fan-out", _next, plant=_plant_fan),
    Case("symlinked objects/", _next, plant=_link("objects", "objects")),
    Case("symlinked audit log", _next, plant=_link("audit/commits.jsonl", "commits.jsonl")),
    Case("symlinked audit/", _next, plant=_link("audit", "audit")),
    Case(
        "symlinked generations.jsonl",
        _next,
        plant=_link("index/generations.jsonl", "generations.jsonl"),
    ),
    Case("symlinked index/CURRENT", _next, plant=_link("index/CURRENT", "CURRENT")),
    Case("symlinked index/", _next, plant=_link("index", "index")),
    Case("symlinked lock (dangling)", _next, plant=_link("lock", "lock-target", copy=False)),
    Case(  # the cache is rebuildable: ignored (neither read nor written), as if absent
        "symlinked embeddings cache",
        _new_query,
        plant=_link("embeddings/cache", "cache"),
        may_succeed=True,
    ),
    Case("symlinked view file", _next, plant=_link("embeddings/concept_vectors.jsonl", "vectors")),
    Case(
        "symlinked refs/",
        lambda s: ["rollback", "--mode", "symbolic", "--json"],
        plant=_link("refs", "refs", directory=True),
    ),
    Case("pickled .npy in a generation", _query, plant=_plant_npy(True)),
    Case("object-dtype .npy in a generation", _query, plant=_plant_npy(False)),
]


#: what fails today (strict: the fix flips them); name -> reason
FAILING: dict[str, str] = {}


def _params() -> list[Any]:
    out = []
    for case in CASES:
        marks = []
        if case.name in FAILING:
            marks.append(pytest.mark.xfail(strict=True, reason=FAILING[case.name]))
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


def _scene(seed: Seed, base: Path) -> Scene:
    base.mkdir(parents=True, exist_ok=True)
    root = copy_vault(seed.root, base / "vault", link_objects=False)
    inputs = base / "inputs"
    inputs.mkdir()
    outside = base / "outside"
    outside.mkdir()
    (outside / "sentinel.txt").write_text("nothing may change here\n")
    return Scene(base, root, inputs, outside, seed)


RESULTS: dict[str, dict[str, Any]] = {}


def run_case(case: Case, s: Scene) -> tuple[Child | None, list[str], float]:
    args = case.args(s)
    if case.plant is not None:
        case.plant(s)
    before_vault = tree(s.root)
    before_outside = tree(s.outside)
    before_base = sorted(p.name for p in s.base.iterdir())
    problems: list[str] = []
    child: Child | None
    try:
        child = fork_cli(
            s.root,
            args,
            env=case.env,
            timeout=case.timeout,
            memory=GIB // 2,
            stdin=case.stdin(s) if case.stdin else None,
        )
    except TimeoutError:
        child = None
        problems.append(f"no answer in {case.timeout:g} s")
    elapsed = child.elapsed if child else case.timeout
    if child is not None:
        if child.crashed:
            problems.append(f"crashed: {child.stderr.strip().splitlines()[-1][:200]}")
        elif case.may_succeed and child.code == 0:
            pass
        elif child.code not in (1, 2):
            problems.append(f"exit {child.code}: accepted")
        elif case.code is not None and child.code != case.code:
            problems.append(f"exit {child.code}, expected {case.code}")
        elif not child.one_line_error:
            problems.append(f"not one error line: {child.stderr[:200]!r}")
        if child.cpu >= LIMIT_S:  # CPU time: the machine's other load does not count
            problems.append(f"took {child.cpu:.2f} s of CPU")
    if tree(s.root) != before_vault:
        problems.append("the vault changed")
    if tree(s.outside) != before_outside or (s.outside / "pwned").exists():
        problems.append("bytes written outside the vault")
    if sorted(p.name for p in s.base.iterdir()) != before_base:
        problems.append("a file appeared beside the vault")
    return child, problems, elapsed


@pytest.mark.parametrize("case", _params())
def test_hostile_input_is_refused_cleanly(seed: Seed, fast: Path, case: Case) -> None:
    s = _scene(seed, fast / "h")
    child, problems, elapsed = run_case(case, s)
    figure(
        "hostile",
        case=case.name,
        seconds=round(elapsed, 3),
        cpu=round(child.cpu, 3) if child else None,
        refused=not problems,
        problems=problems,
        message=(child.stderr.strip()[:160] if child else None),
    )
    assert not problems, problems


# --------------------------------------------------------------------------- verify sees them
LINKS = {
    "objects fan-out": _plant_fan,
    "audit log": _link("audit/commits.jsonl", "commits.jsonl"),
    "generations.jsonl": _link("index/generations.jsonl", "generations.jsonl"),
    "index/CURRENT": _link("index/CURRENT", "CURRENT"),
    "lock": _link("lock", "lock-target", copy=False),
    "embeddings cache": _link("embeddings/cache", "cache"),
    "config.toml": _link("config.toml", "config.toml"),
}
VERIFY_MISSES: dict[str, str] = {}


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(
            k,
            marks=[pytest.mark.xfail(strict=True, reason=VERIFY_MISSES[k])]
            if k in VERIFY_MISSES
            else [],
        )
        for k in LINKS
    ],
)
def test_verify_reports_a_planted_symlink(seed: Seed, fast: Path, where: str) -> None:
    """A symlink where vault keeps a file or directory is reported by ``vault verify``
    (exit 1, the link named), and verify writes nothing through it."""
    s = _scene(seed, fast / "h")
    if where == "objects fan-out":  # a fan-out that exists already
        fan = sorted(p.name for p in (s.root / "objects").iterdir())[0]
        _link(f"objects/{fan}", "fan")(s)
        rel = f"objects/{fan}"
    else:
        LINKS[where](s)
        rel = {
            "audit log": "audit/commits.jsonl",
            "generations.jsonl": "index/generations.jsonl",
            "index/CURRENT": "index/CURRENT",
            "lock": "lock",
            "embeddings cache": "embeddings/cache",
            "config.toml": "config.toml",
        }[where]
    before = tree(s.outside)
    child = fork_cli(s.root, ["verify", "--json"])
    assert tree(s.outside) == before
    assert not child.crashed, child.stderr
    report = json.loads(child.stdout)
    named = [p for p in report["problems"] if rel in p["path"] and p["severity"] == "error"]
    assert child.code == 1 and named, report["problems"]


@pytest.mark.parametrize("value", ["0", "-3", "true", '"3"', "3.0", "null", "4"])
def test_format_version_other_than_3_is_refused(seed: Seed, fast: Path, value: str) -> None:
    s = _scene(seed, fast / "h")
    (s.root / "format.json").write_text(f'{{"format":"concept-vault","version":{value}}}\n')
    before = tree(s.root)
    for args in (["index", "status", "--json"], ["add", str(s.seed.inputs / "next-card.json")]):
        child = fork_cli(s.root, args)
        assert child.code == 1 and child.one_line_error, (args, child.stderr)
    verify = fork_cli(s.root, ["verify", "--json"])
    assert verify.code == 1 and not verify.crashed
    assert tree(s.root) == before


# --------------------------------------------------------------------------- crafted generations
def _craft(s: Scene, edit: Callable[[bytearray, list[Any]], None]) -> None:
    """Replace the current generation's first rows chunk (FORMAT §7.5) by an edited copy,
    stored under its own address, named by a new rows list and manifest made current: every
    hash checks, the content is inconsistent — what a hostile writer could plant."""
    objects = ObjectStore(s.root / "objects")
    v = Vault.open(s.root)
    cur = v.generations.current()
    assert cur is not None
    manifest = json.loads(objects.get(cur.generation))
    rows_list = json.loads(objects.get(manifest["table"]["rows"]))
    entry = rows_list["chunks"][0]
    blob = bytearray(objects.get(entry[0]))
    edit(blob, entry)
    entry[0] = objects.put(bytes(blob))
    manifest["table"]["rows"] = objects.put(canonical_bytes(rows_list))
    gen = objects.put(canonical_bytes(manifest))
    ref = CurrentRef(gen, cur.number, cur.audit_seq, cur.reverted)
    (s.root / "index/CURRENT").write_bytes(dumps_line(ref.to_json()))
    clear_cache()


def _at(entry: list[Any], section: str) -> int:
    """Where a section of a rows chunk starts (entry: its rows list entry)."""
    _digest, rows, ref_bytes, keys, key_bytes = entry[:5]
    at = {"status": 32 + 4 * rows, "refs": 32 + 36 * rows}
    at["keys"] = at["refs"] + ref_bytes
    at["counts"] = at["keys"] + key_bytes
    at["postings"] = at["counts"] + 4 * keys
    return at[section]


def _postings_beyond(blob: bytearray, entry: list[Any]) -> None:
    start, n = _at(entry, "postings"), entry[5]
    for i in range(n // 2, n):  # the postings of the later keys
        struct.pack_into("<I", blob, start + 4 * i, 10_000)


def _postings_back(blob: bytearray, entry: list[Any]) -> None:
    start = _at(entry, "postings")
    first = struct.unpack_from("<I", blob, _at(entry, "counts"))[0]
    assert first >= 2
    struct.pack_into("<I", blob, start + 4, struct.unpack_from("<I", blob, start)[0])


def _status_7(blob: bytearray, entry: list[Any]) -> None:
    for i in range(entry[1]):
        struct.pack_into("<I", blob, _at(entry, "status") + 4 * i, 7)


def _counts_more(blob: bytearray, entry: list[Any]) -> None:
    at = _at(entry, "counts")
    struct.pack_into("<I", blob, at, struct.unpack_from("<I", blob, at)[0] + 1)


def _keys_reversed(blob: bytearray, entry: list[Any]) -> None:
    at, n = _at(entry, "keys"), entry[4]
    lines = bytes(blob[at : at + n]).split(b"\n")[:-1]
    blob[at : at + n] = b"".join(k + b"\n" for k in reversed(lines))


def _refs_without_at(blob: bytearray, entry: list[Any]) -> None:
    at, n = _at(entry, "refs"), entry[2]
    blob[at : at + n] = bytes(blob[at : at + n]).replace(b"@", b"#")


def _header_rows(blob: bytearray, entry: list[Any]) -> None:
    struct.pack_into("<I", blob, 8, entry[1] + 1)


# case -> (edit, what a refusal of `vault show` names; None: show reads no postings, which
# are joined and checked on first use, so it may answer)
CRAFTED: dict[str, tuple[Callable[[bytearray, list[Any]], None], str | None]] = {
    "postings: rows beyond the chunk": (_postings_beyond, None),
    "postings: a key's rows out of order": (_postings_back, None),
    "columns: status 7": (_status_7, " columns: "),
    "counts: more rows than postings": (_counts_more, " postings: "),
    "keys: not ascending": (_keys_reversed, " keys: "),
    "refs: refs without @": (_refs_without_at, " refs: "),
    "header: another row count": (_header_rows, "header"),
}
CRAFTED_FAILING: dict[str, str] = {}


@pytest.mark.parametrize(
    "what",
    [
        pytest.param(
            k,
            marks=[pytest.mark.xfail(strict=True, reason=CRAFTED_FAILING[k])]
            if k in CRAFTED_FAILING
            else [],
        )
        for k in CRAFTED
    ],
)
def test_crafted_generation_never_crashes_a_command(seed: Seed, fast: Path, what: str) -> None:
    """A generation whose objects all match their addresses but disagree with each other:
    no command crashes (a traceback or ``error: internal error``), a reader refuses it with
    one line naming the generation and the object (a ``CorruptionError`` on load), and
    verify reports it (exit 1)."""
    s = _scene(seed, fast / "h")
    edit, name = CRAFTED[what]
    _craft(s, edit)
    crashed = []
    for args in (
        _query(s),
        [*_query(s)[:-1], "--mode", "symbolic", "--json"],
        ["index", "status", "--json"],
        ["show", "rotate-90", "--json"],
        ["rollback", "--list", "--json"],
        ["verify", "--json"],
        _next(s),
        ["index", "build", "--json"],
    ):
        child = fork_cli(s.root, args)
        if child.crashed:
            crashed.append(f"{args[0]}: {child.stderr.strip().splitlines()[-1][:160]}")
        elif child.code != 0 and args[0] != "verify" and not child.one_line_error:
            crashed.append(f"{args[0]}: not one error line: {child.stderr[-160:]!r}")
        if args[0] == "verify" and child.code != 1:
            crashed.append(f"verify exit {child.code}")
        if (
            args[0] == "show"
            and name is not None
            and not (
                child.code == 1
                and child.stderr.startswith("error: generation ")
                and name in child.stderr
            )
        ):
            crashed.append(f"show: not a refusal naming {name}: {child.stderr.strip()[:160]}")
    assert not crashed, crashed
