"""FORMAT.md bound to the code: the layout block (§1) names every file a vault holds and
each name it lists exists; the audit-op table (§6) lists every op the code writes, with the
detail keys real lines carry; ``format.json``'s bytes (§3) and the manifest's schema
version (§7.3) are the code's. The facts are read from the document's own code blocks and
tables, and checked against a vault every operation has written to."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vault.arc import read_task_files
from vault.handle import FORMAT_VERSION, format_bytes
from vault.index.table import MANIFEST_SCHEMA_VERSION
from vault.ops.embedder import FIT_OP
from vault.store.audit import STATE_OPS
from vault.vault import Vault, fixed_clock

from .conftest import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "FORMAT.md").read_text()


def _section(number: str) -> str:
    start = re.search(rf"^## {re.escape(number)}\. .*$", DOC, re.M)
    assert start, number
    end = re.search(r"^## \d+\. ", DOC[start.end() :], re.M)
    return DOC[start.end() : start.end() + end.start()] if end else DOC[start.end() :]


def _layout() -> list[str]:
    block = _section("1").split("```")[1]
    lines = [line.strip() for line in block.splitlines() if re.match(r"^  \S", line)]
    return [re.split(r"\s{2,}|\s[┐│┘]", line)[0] for line in lines]


def _pattern(name: str) -> re.Pattern[str]:
    out = []
    for part in name.split("/"):
        if part == "ab":
            out.append("[0-9a-f]{2}")
        elif part == "cdef…":
            out.append("[0-9a-f]{62}")
        else:
            text = re.escape(part)
            text = re.sub(r"<(\d+)\\? hex>", r"[0-9a-f]{\1}", text)
            text = text.replace("<version>", r"[0-9]+\.[0-9]+\.[0-9]+")
            text = text.replace("NAME", r"[A-Za-z0-9_-]+").replace(r"\*", r"[^/]+")
            text = text.replace("<digest>", "[0-9a-f]{64}").replace("<kind>", r"\w+")
            text = text.replace("<N>", "[0-9]+")
            out.append(text)
    return re.compile("/".join(out))


def _ops_table() -> dict[str, set[str]]:
    """{op: the detail keys its row names}."""
    out: dict[str, set[str]] = {}
    for line in _section("6").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        keys = set(re.findall(r'"(\w+)":', cells[2]))
        for op in re.findall(r"^`(\w+)`|, `(\w+)`", cells[0]):
            out[next(o for o in op if o)] = keys
    return out


# Files the busy vault does not have, by their nature: a rebase's journal exists only while
# a lost race is re-applied, the staging journal only while a pull or clone stages objects
# (tests/test_remote.py); summaries only for tables of >= 131,072 rows (tests/test_topk.py).
SOMETIMES = {
    "index/format<N>.*",
    "remotes/NAME/rebase.jsonl",
    "remotes/staged",
    "embeddings/cache/summaries/<digest>-<kind>.summary",
}


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    """A vault every operation has written to."""
    root = tmp_path_factory.mktemp("format") / "v"
    v = Vault.init(root, clock=fixed_clock(1_700_000_000))
    tasks = read_task_files(sorted(str(p) for p in (EXAMPLES / "tasks").glob("*.json")))
    v.import_tasks(tasks)
    cards = [json.loads(line) for line in (EXAMPLES / "cards.jsonl").read_text().splitlines()]
    v.add([(c, "cards") for c in cards])
    changed = {**cards[0], "template": {"template_dsl": "(rotate_90 (identity grid))"}}
    v.add([(changed, "fork")], fork=True)  # (a fork of unchanged content makes none)
    with v.transaction() as t:
        t.set_status(cards[2]["id"], cards[2]["version"], "suppressed")
    v.import_records([{**cards[3], "kind": "concept", "version": "7.0.0"}])
    evidence = (EXAMPLES / "evidence.jsonl").read_text().splitlines()
    v.add_evidence([(json.loads(line), "evidence") for line in evidence])
    v.set_status(cards[1]["id"], cards[1]["version"], "deprecated", "superseded")
    v.fit_embedder(tasks, sources=["examples"])
    v.use_embedder("builtin")
    v.build_index()
    v.rollback()
    v.gc(keep=3)
    v.embed([([[1, 2], [3, 4]], "grid")])  # single cache entries (not packs)
    from vault.remote import push
    from vault.remote.config import add_remote

    add_remote(v.config_path, "origin", (root.parent / "remote").as_uri())
    push(v, "origin")  # remotes/origin/head and its pack index
    v.set_mode("symbolic")
    return v


def test_the_layout_block_names_every_file_and_each_name_exists(busy: Vault) -> None:
    patterns = {name: _pattern(name) for name in _layout()}
    files = [
        str(p.relative_to(busy.root))
        for p in busy.root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(busy.root).parts)
    ]
    unnamed = [f for f in files if not any(p.fullmatch(f) for p in patterns.values())]
    assert unnamed == []
    absent = [n for n, p in patterns.items() if not any(p.fullmatch(f) for f in files)]
    assert set(absent) == SOMETIMES


def test_verify_expects_what_the_layout_block_names(busy: Vault) -> None:
    """What ``vault verify`` lets the root and ``index/`` hold is the layout block's: its
    top-level names, and the shapes of its ``index/`` names; a vault every operation wrote
    to has no entry it reports as unexpected."""
    from vault.ops.verify import INDEX_ENTRY, ROOT_ENTRIES, verify

    names = _layout()
    assert {n.split("/")[0] for n in names} == ROOT_ENTRIES
    index = [n.split("/", 1)[1] for n in names if n.startswith("index/")]
    for example in (n.replace("<N>", "2").replace("*", "CURRENT") for n in index):
        assert INDEX_ENTRY.fullmatch(example), example
    assert not INDEX_ENTRY.fullmatch("format2.junk")
    unexpected = [p for p in verify(busy).problems if p.kind.endswith("_unexpected")]
    assert unexpected == []


def test_the_audit_op_table_is_the_code_s(busy: Vault) -> None:
    table = _ops_table()
    source = "\n".join(p.read_text() for p in (ROOT / "vault").rglob("*.py"))
    appended = set(re.findall(r'audit\.append\(\s*"(\w+)"', source))
    assert set(table) == appended | STATE_OPS | {FIT_OP}
    seen: dict[str, set[str]] = {}
    for entry in busy.audit.entries():
        seen.setdefault(entry.op, set()).update(entry.detail)
    for op, keys in seen.items():
        assert keys <= table[op], (op, keys - table[op])
    assert set(table) - set(seen) == {"upgrade", "repair"}  # (tests/test_upgrade.py, test_store.py)


def test_the_constants_are_the_code_s() -> None:
    fmt = re.search(r"`format\.json` is exactly `([^`]+)\\n` \((\d+) bytes\)", _section("3"))
    assert fmt is not None
    assert (fmt[1] + "\n").encode() == format_bytes()
    assert int(fmt[2]) == len(format_bytes())
    assert DOC.splitlines()[0].endswith(f"(format {FORMAT_VERSION})")
    manifest = re.search(r"### 7\.3 .*`schema_version` (\d+)\)", DOC)
    assert manifest is not None and int(manifest[1]) == MANIFEST_SCHEMA_VERSION
    block = _section("7").split("### 7.3")[1].split("```")[1]
    assert f'"schema_version":{MANIFEST_SCHEMA_VERSION}' in block
