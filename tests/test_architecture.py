"""The layers of ARCHITECTURE.md, checked from the code: every module of the library sits in
a layer of ``.importlinter`` (whose contracts ``lint-imports`` checks in ``make check``),
the import graph — function-level and TYPE_CHECKING imports included — has no cycle, and
the facade (``vault/vault.py``) imports every operation at the top, none inside a method."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def _layers() -> list[str]:
    ini = configparser.ConfigParser()
    ini.read(ROOT / ".importlinter")
    out = []
    for line in ini["importlinter:contract:layers"]["layers"].split("\n"):
        out += [m.strip() for m in line.replace(":", "|").split("|") if m.strip()]
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer() -> None:
    layers = _layers()
    graph = grimp.build_graph("vault", "vault_cli")
    packages = {"vault", "vault_cli"} | {m for m in graph.modules if graph.find_children(m)}
    missing = [
        m
        for m in sorted(graph.modules)
        if m not in packages and not any(m == la or m.startswith(la + ".") for la in layers)
    ]
    assert not missing, f"place these modules in a layer of .importlinter: {missing}"


def test_the_import_graph_has_no_cycle() -> None:
    graph = grimp.build_graph("vault", "vault_cli")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_facade_has_no_lazy_import() -> None:
    tree = ast.parse((ROOT / "vault" / "vault.py").read_text())
    top = set(tree.body)
    lazy = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and node not in top
    ]
    assert lazy == []


VOCABULARY = ("D4", "D4_ORDER", "FEATURE_KEYS", "INVARIANTS", "KEY_VOCABULARY", "SYMMETRIES")
VOCABULARY += ("DIM", "Feature", "BUILTIN")  # the space's dims, a feature spec, the choice


def test_the_key_vocabulary_is_defined_once() -> None:
    """Each vocabulary constant is assigned in one module (the fitted embedder used to
    re-declare the D4 order and the feature keys)."""
    where: dict[str, list[str]] = {}
    for path in sorted((ROOT / "vault").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id in VOCABULARY:
                    where.setdefault(t.id, []).append(str(path.relative_to(ROOT)))
    assert {name: len(paths) for name, paths in where.items()} == {name: 1 for name in where}, where


def test_the_d4_names_are_spelt_out_once() -> None:
    """No module re-declares the D4 order (``vault.grid.grid.D4`` is it)."""
    from vault.grid.grid import D4

    names = set(D4)
    copies = []
    for path in sorted((ROOT / "vault").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Dict):
                elts = node.keys if isinstance(node, ast.Dict) else node.elts
                found = {e.value for e in elts if isinstance(e, ast.Constant)}
                if found == names:
                    copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert [c.split(":")[0] for c in copies] == ["vault/grid/grid.py"]  # D4 itself, once


def test_the_feature_keys_are_the_ones_emitted() -> None:
    """Every ``feature:`` key ``repr_keys`` / ``pair_keys`` emits on the example tasks is in
    ``FEATURE_KEYS``, the fitted embedder's one-hot slots."""
    import json

    from vault.embedding.fitted.raw import KEY_VOCABULARY
    from vault.grid.pairs import analyze_pair
    from vault.records.keys import FEATURE_KEYS, pair_keys, repr_keys
    from vault.records.query import parse_task

    emitted: set[str] = set()
    for path in sorted((ROOT / "examples" / "tasks").glob("*.json")):
        pairs, _ = parse_task(json.loads(path.read_text()), str(path))
        for p in pairs:
            emitted |= repr_keys(p.input) | repr_keys(p.output)
            emitted |= pair_keys(analyze_pair(p.input, p.output))
    features = {k.split(":", 1)[1] for k in emitted if k.startswith("feature:")}
    assert features and features <= set(FEATURE_KEYS)
    assert all(f"feature:{f}" in KEY_VOCABULARY for f in FEATURE_KEYS)


# The rules both embedders apply to raw features (vault/embedding/features.py); before, the
# fitted embedder and the structure groups carried their own copies of several of them.
SHARED_RULES = {"clip", "normalize", "quantize", "requantize", "flag", "ratio", "array"}
SHARED_RULES |= {"grid_of", "grids_of", "other_key_sign", "read"}


def test_the_feature_rules_are_defined_once() -> None:
    """No module of ``vault/embedding`` but ``features.py`` defines a function of the shared
    raw-feature rules, nor one of their former private names (``_b``, ``_quantize`` ...)."""
    former = {"_b", "_grid", "_clip", "_normalize", "_quantize", "_requantize", "_ratio", "_array"}
    names = SHARED_RULES | former
    where = sorted(
        f"{path.relative_to(ROOT)}:{node.name}"
        for path in (ROOT / "vault" / "embedding").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name in names
    )
    assert where == sorted(f"vault/embedding/features.py:{n}" for n in SHARED_RULES)


def test_every_spec_reads_a_computed_feature() -> None:
    """Each name of the built-in and the fitted specs is a value ``features`` computes (the
    built-in one's through ``READS``), for a grid and for a pair; each value computed has
    its constants in ``features.SCALES``, and nothing else has."""
    from vault.embedding import builtin, features
    from vault.embedding.fitted import raw
    from vault.grid.pairs import analyze_pair
    from vault.grid.reprs import grid_to_repr

    a = grid_to_repr([[0, 1, 1], [0, 2, 0], [3, 0, 0]])
    b = grid_to_repr([[1, 1, 0], [0, 2, 0], [0, 0, 3]])
    f = analyze_pair(a, b)
    lean = features.shape_values(a, full=False) | features.colour_values(a, full=False)
    assert {builtin.READS.get(n, n) for n, _, _ in builtin.SHAPE + builtin.COLOUR} == set(lean)
    assert {n for n, _, _ in builtin.TRANSFORM} == set(features.facts_values(f, full=False))
    full = features.shape_values(a) | features.colour_values(a)
    pair = features.pair_values(a, b, f) | features.facts_values(f, full=False)
    assert set(features.SCALES) == set(full) | set(pair)
    assert {n for n, _, _ in raw.SHAPE_RAW + raw.COLOUR_RAW} == set(full) - {"mirror_symmetry"}
    assert {n for n, _, _ in raw.TRANSFORM_RAW} == set(features.pair_values(a, b, f)) - {
        "rotate_quarter",
        "rotate_half",
        "flip",
        "diagonal_flip",
    }
