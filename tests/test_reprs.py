"""Repr derivation from grids: components, geometry, relations, symmetry, ids, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vault.errors import InvalidInputError, VaultError
from vault.grid.reprs import grid_to_repr, normalize_repr, repr_id, strip_provenance, symmetry_flags
from vault.records.keys import repr_keys
from vault_cli.app import app

from .conftest import EXAMPLES

runner = CliRunner()


def components(rep: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in rep["nodes"] if n["type"] == "component"]


def edges(rep: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    return [(e["src"], e["dst"]) for e in rep["edges"] if e["type"] == kind]


# --------------------------------------------------------------------------- components
def test_diagonal_cells_are_separate_components() -> None:
    rep = grid_to_repr([[1, 0], [0, 1]])
    comps = components(rep)
    assert rep["globals"]["component_count"] == 2
    assert [c["bbox"] for c in comps] == [[0, 0, 0, 0], [1, 1, 1, 1]]
    assert [c["area"] for c in comps] == [1, 1]
    assert [c["colour"] for c in comps] == [1, 1]
    # diagonal neighbours do not touch: no adjacency, and nothing else but has_component
    assert edges(rep, "adjacent_to") == []
    assert rep["edges"] == [
        {"type": "has_component", "src": "grid", "dst": "c0"},
        {"type": "has_component", "src": "grid", "dst": "c1"},
    ]


def test_orthogonal_same_colour_cells_form_one_component() -> None:
    rep = grid_to_repr([[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    comps = components(rep)
    assert len(comps) == 1
    assert comps[0]["area"] == 3
    assert comps[0]["bbox"] == [0, 0, 1, 1]


def test_different_colours_touching_are_different_components() -> None:
    rep = grid_to_repr([[1, 2, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0]])
    comps = components(rep)
    assert [(c["id"], c["colour"], c["area"]) for c in comps] == [("c0", 1, 2), ("c1", 2, 2)]


def test_background_is_most_frequent_colour_ties_to_lowest() -> None:
    rep = grid_to_repr([[3, 5], [5, 3]])  # 3 and 5 tie: 3 is background
    assert rep["globals"]["background"] == 3
    comps = components(rep)
    assert [c["colour"] for c in comps] == [5, 5]
    assert [c["bbox"] for c in comps] == [[0, 1, 0, 1], [1, 0, 1, 0]]
    rep2 = grid_to_repr([[7, 7, 7], [7, 2, 7]])
    assert rep2["globals"]["background"] == 7
    assert [c["colour"] for c in components(rep2)] == [2]


def test_uniform_grid_has_no_components() -> None:
    rep = grid_to_repr([[4, 4], [4, 4]])
    assert rep["globals"]["component_count"] == 0
    assert components(rep) == []
    assert rep["edges"] == []
    assert rep["nodes"] == [{"id": "grid", "type": "grid"}]


def test_components_numbered_in_reading_order_of_first_cell() -> None:
    rep = grid_to_repr([[0, 0, 2, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    comps = components(rep)
    assert [(c["id"], c["colour"]) for c in comps] == [("c0", 2), ("c1", 1)]


# --------------------------------------------------------------------------- geometry
def test_l_shape_geometry_by_hand() -> None:
    rep = grid_to_repr([[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    (c,) = components(rep)
    assert c == {
        "id": "c0",
        "type": "component",
        "colour": 1,
        "bbox": [0, 0, 1, 1],
        "area": 3,
        "centroid": [0.667, 0.333],  # rows (0+1+1)/3, cols (0+0+1)/3, rounded to 3 places
        "colour_hist": {"1": 3},
        "perimeter": 8,
    }


def test_single_cell_geometry() -> None:
    rep = grid_to_repr([[0, 0, 0], [0, 6, 0], [0, 0, 0]])
    (c,) = components(rep)
    assert c["bbox"] == [1, 1, 1, 1]
    assert c["area"] == 1
    assert c["centroid"] == [1.0, 1.0]
    assert c["perimeter"] == 4
    assert c["colour_hist"] == {"6": 1}


def test_bar_geometry_and_perimeter_counts_grid_border() -> None:
    # a full-width bar along the top: its sides on the grid border count too
    rep = grid_to_repr([[2, 2, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0]])
    (c,) = components(rep)
    assert c["bbox"] == [0, 0, 0, 3]
    assert c["area"] == 4
    assert c["centroid"] == [0.0, 1.5]
    assert c["perimeter"] == 10  # 4 top + 4 bottom + 2 ends


def test_globals_by_hand() -> None:
    rep = grid_to_repr([[0, 0, 3], [0, 3, 3], [2, 0, 0]])
    g = rep["globals"]
    assert g["height"] == 3 and g["width"] == 3
    assert g["palette"] == [0, 2, 3]
    assert g["palette_size"] == 3
    assert g["background"] == 0
    assert g["colour_hist"] == {"0": 5, "2": 1, "3": 3}
    assert g["component_count"] == 2
    assert rep["grid"] == [[0, 0, 3], [0, 3, 3], [2, 0, 0]]
    assert rep["kind"] == "repr" and rep["domain"] == "grid_2d" and rep["schema_version"] == 1


def test_non_square_dims() -> None:
    rep = grid_to_repr([[1, 0, 0, 0, 0]])
    assert (rep["globals"]["height"], rep["globals"]["width"]) == (1, 5)


# --------------------------------------------------------------------------- relations
def test_adjacent_to_deduplicated_when_touching_along_several_cells() -> None:
    # colour 1 and colour 2 touch along two cell sides: still one edge
    rep = grid_to_repr([[1, 2, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0]])
    assert edges(rep, "adjacent_to") == [("c0", "c1")]


def test_adjacent_to_src_below_dst_even_when_found_in_reverse() -> None:
    # c0 = colour 3 (first cell (0,1)); c1 = colour 1 at (1,0), found touching c0 from its left
    rep = grid_to_repr([[0, 3, 0], [1, 3, 0], [0, 0, 0]])
    assert [(c["id"], c["colour"]) for c in components(rep)] == [("c0", 3), ("c1", 1)]
    assert edges(rep, "adjacent_to") == [("c0", "c1")]


def test_adjacent_to_three_mutually_touching_components_each_pair_once() -> None:
    rep = grid_to_repr([[1, 1, 0, 0], [2, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    adj = edges(rep, "adjacent_to")
    assert adj == [("c0", "c1"), ("c0", "c2"), ("c1", "c2")]
    assert len(adj) == len(set(adj))
    for src, dst in adj:
        assert int(src[1:]) < int(dst[1:])


RING_DOT = [
    [0, 0, 0, 0, 0],
    [0, 2, 2, 2, 0],
    [0, 2, 5, 2, 0],
    [0, 2, 2, 2, 0],
    [0, 0, 0, 0, 0],
]


def test_ring_around_a_dot_by_hand() -> None:
    rep = grid_to_repr(RING_DOT)
    ring, dot = components(rep)
    assert ring["colour"] == 2 and dot["colour"] == 5
    assert ring["bbox"] == [1, 1, 3, 3]
    assert ring["area"] == 8
    assert ring["centroid"] == [2.0, 2.0]
    assert ring["perimeter"] == 16  # 12 outside + 4 facing the dot
    assert dot["bbox"] == [2, 2, 2, 2] and dot["area"] == 1 and dot["perimeter"] == 4
    assert rep["edges"] == [
        {"type": "has_component", "src": "grid", "dst": "c0"},
        {"type": "has_component", "src": "grid", "dst": "c1"},
        {"type": "adjacent_to", "src": "c0", "dst": "c1"},
        {"type": "contained_in", "src": "c1", "dst": "c0"},
    ]
    assert "feature:has_containment" in repr_keys(rep)


def test_dot_inside_a_ring_with_background_gap_is_contained() -> None:
    grid = [
        [0, 0, 0, 0, 0, 0, 0],
        [0, 2, 2, 2, 2, 2, 0],
        [0, 2, 0, 0, 0, 2, 0],
        [0, 2, 0, 5, 0, 2, 0],
        [0, 2, 0, 0, 0, 2, 0],
        [0, 2, 2, 2, 2, 2, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ]
    rep = grid_to_repr(grid)
    assert edges(rep, "contained_in") == [("c1", "c0")]
    assert edges(rep, "adjacent_to") == []


def test_open_ring_does_not_contain_the_dot() -> None:
    grid = [row[:] for row in RING_DOT]
    grid[2][3] = 0  # a gap in the ring's right side
    rep = grid_to_repr(grid)
    assert edges(rep, "contained_in") == []
    assert "feature:has_containment" not in repr_keys(rep)


def test_dot_outside_ring_not_contained() -> None:
    grid = [
        [0, 0, 0, 0, 0, 0],
        [0, 2, 2, 2, 0, 0],
        [0, 2, 0, 2, 0, 5],
        [0, 2, 2, 2, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]
    rep = grid_to_repr(grid)
    assert edges(rep, "contained_in") == []


def test_aligned_with_row_and_col() -> None:
    # two dots in the same row, and one below the first in the same column
    rep = grid_to_repr([[1, 0, 2], [0, 0, 0], [3, 0, 0], [0, 0, 0]])
    aligned = [(e["src"], e["dst"], e["axis"]) for e in rep["edges"] if e["type"] == "aligned_with"]
    assert aligned == [("c0", "c1", "row"), ("c0", "c2", "col")]


# --------------------------------------------------------------------------- symmetry
ALL_FALSE = dict.fromkeys(("horizontal", "vertical", "diagonal", "anti_diagonal", "rot180"), False)


@pytest.mark.parametrize(
    ("grid", "true_flags"),
    [
        # equal to its top-bottom mirror only
        ([[1, 2], [1, 2]], {"horizontal"}),
        # equal to its left-right mirror only
        ([[1, 1], [2, 2]], {"vertical"}),
        # equal to its transpose only
        ([[1, 2], [2, 3]], {"diagonal"}),
        # equal to its anti-transpose only
        ([[1, 2], [3, 1]], {"anti_diagonal"}),
        # equal to its 180 degree rotation only (non-square: no diagonals)
        ([[1, 2, 3], [3, 2, 1]], {"rot180"}),
        # no symmetry at all
        ([[1, 2], [3, 4]], set()),
        ([[1, 0, 0], [1, 1, 0], [0, 0, 0]], set()),
        # the diagonal pair: transpose, anti-transpose and rot180
        ([[1, 0], [0, 1]], {"diagonal", "anti_diagonal", "rot180"}),
        # one row palindrome: both mirrors and rot180, never diagonal (not square)
        ([[1, 2, 1]], {"horizontal", "vertical", "rot180"}),
        # a ring around a dot: everything
        (RING_DOT, {"horizontal", "vertical", "diagonal", "anti_diagonal", "rot180"}),
        # a 1x1 grid is symmetric in every way
        ([[7]], {"horizontal", "vertical", "diagonal", "anti_diagonal", "rot180"}),
        # symmetric about the vertical axis but not the horizontal one (3 rows)
        ([[1, 2, 1], [0, 3, 0], [0, 0, 0]], {"vertical"}),
    ],
)
def test_symmetry_flags(grid: list[list[int]], true_flags: set[str]) -> None:
    expected = {**ALL_FALSE, **dict.fromkeys(true_flags, True)}
    rep = grid_to_repr(grid)
    assert rep["globals"]["symmetry"] == expected
    assert symmetry_flags(tuple(tuple(r) for r in grid)) == expected
    for name, flag in expected.items():
        assert (f"feature:symmetry_{name}" in repr_keys(rep)) == flag


def test_non_square_never_diagonal_even_if_transpose_would_fit() -> None:
    flags = grid_to_repr([[5, 5, 5], [5, 5, 5]])["globals"]["symmetry"]
    assert flags["diagonal"] is False and flags["anti_diagonal"] is False
    assert flags["horizontal"] and flags["vertical"] and flags["rot180"]


# --------------------------------------------------------------------------- repr_id
def _sha_of_canonical(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def test_repr_id_is_sha256_of_canonical_json_without_provenance() -> None:
    rep = grid_to_repr(RING_DOT, {"source": "somewhere.json"})
    assert "provenance" in rep
    bare = {k: v for k, v in rep.items() if k != "provenance"}
    assert repr_id(rep) == _sha_of_canonical(bare)
    assert len(repr_id(rep)) == 64


def test_repr_id_independent_of_provenance() -> None:
    a = grid_to_repr(RING_DOT)
    b = grid_to_repr(RING_DOT, {"source": "x.json", "path": "train[0].input"})
    c = grid_to_repr(RING_DOT, {"source": "y.json"})
    assert "provenance" not in a
    assert repr_id(a) == repr_id(b) == repr_id(c)
    assert strip_provenance(b) == a


def test_repr_id_stable_across_calls_and_input_forms() -> None:
    grid = [[0, 0, 3], [0, 3, 3], [2, 0, 0]]
    first = repr_id(grid_to_repr(grid))
    assert repr_id(grid_to_repr(grid)) == first
    assert repr_id(grid_to_repr(tuple(tuple(r) for r in grid))) == first


def test_repr_id_differs_for_different_grids() -> None:
    ids = {
        repr_id(grid_to_repr(g)) for g in ([[1]], [[2]], [[1, 0]], [[0, 1]], [[1], [0]], RING_DOT)
    }
    assert len(ids) == 6


def test_repr_id_pinned_value_for_a_fixed_grid() -> None:
    """The id is a cross-machine contract: it equals the hash of the hand-built repr."""
    expected = {
        "schema_version": 1,
        "kind": "repr",
        "domain": "grid_2d",
        "grid": [[0, 1]],
        "globals": {
            "height": 1,
            "width": 2,
            "palette": [0, 1],
            "palette_size": 2,
            "background": 0,
            "colour_hist": {"0": 1, "1": 1},
            "component_count": 1,
            "symmetry": {
                "horizontal": True,
                "vertical": False,
                "diagonal": False,
                "anti_diagonal": False,
                "rot180": False,
            },
        },
        "nodes": [
            {"id": "grid", "type": "grid"},
            {
                "id": "c0",
                "type": "component",
                "colour": 1,
                "bbox": [0, 1, 0, 1],
                "area": 1,
                "centroid": [0.0, 1.0],
                "colour_hist": {"1": 1},
                "perimeter": 4,
            },
        ],
        "edges": [{"type": "has_component", "src": "grid", "dst": "c0"}],
    }
    rep = grid_to_repr([[0, 1]])
    assert rep == expected
    assert repr_id(rep) == _sha_of_canonical(expected)


def test_normalize_repr_accepts_derived_repr_and_rejects_tampered_one() -> None:
    rep = grid_to_repr(RING_DOT, {"source": "x"})
    assert strip_provenance(normalize_repr(rep, "r.json")) == strip_provenance(rep)
    bad = json.loads(json.dumps(rep))
    bad["globals"]["background"] = 2
    with pytest.raises(InvalidInputError) as exc:
        normalize_repr(bad, "r.json")
    assert "r.json" in str(exc.value)
    assert "does not match" in str(exc.value)


def test_grid_to_repr_rejects_bad_grid() -> None:
    with pytest.raises(VaultError):
        grid_to_repr([[1, 2], [3]])


# --------------------------------------------------------------------------- CLI
def _cli_repr(path: Path) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["repr", str(path)])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    lines = result.stdout.splitlines()
    return [json.loads(line) for line in lines]


def test_cli_repr_of_grid_file(tmp_path: Path) -> None:
    path = tmp_path / "ring.json"
    path.write_text(json.dumps(RING_DOT))
    (out,) = _cli_repr(path)
    assert out["provenance"] == {"source": str(path)}
    assert strip_provenance(out) == grid_to_repr(RING_DOT)
    assert repr_id(out) == repr_id(grid_to_repr(RING_DOT))


def test_cli_repr_output_is_one_compact_json_line(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text("[[1, 0],\n [0, 1]]\n")
    result = runner.invoke(app, ["repr", str(path)])
    assert result.exit_code == 0
    assert result.stdout.count("\n") == 1
    line = result.stdout.rstrip("\n")
    obj = json.loads(line)
    assert line == json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_cli_repr_of_example_grid() -> None:
    (out,) = _cli_repr(EXAMPLES / "grids" / "ring.json")
    grid = json.loads((EXAMPLES / "grids" / "ring.json").read_text())
    assert strip_provenance(out) == grid_to_repr(grid)
    assert out["globals"]["component_count"] == 1


def test_cli_repr_of_task_file_one_line_per_grid() -> None:
    path = EXAMPLES / "tasks" / "rotate.json"
    task = json.loads(path.read_text())
    outs = _cli_repr(path)
    expected_paths = []
    expected_grids = []
    for i, pair in enumerate(task["train"]):
        for side in ("input", "output"):
            expected_paths.append(f"train[{i}].{side}")
            expected_grids.append(pair[side])
    for i, t in enumerate(task["test"]):
        expected_paths.append(f"test[{i}].input")
        expected_grids.append(t["input"])
    assert len(outs) == len(expected_grids) == 2 * len(task["train"]) + len(task["test"])
    assert [o["provenance"]["path"] for o in outs] == expected_paths
    assert all(o["provenance"]["source"] == str(path) for o in outs)
    for out, grid in zip(outs, expected_grids, strict=True):
        assert out["grid"] == grid
        assert strip_provenance(out) == grid_to_repr(grid)


def test_cli_repr_of_task_with_bad_grid_prints_nothing(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text(
        json.dumps(
            {
                "train": [
                    {"input": [[1]], "output": [[1]]},
                    {"input": [[1, 2], [3]], "output": [[1]]},
                ]
            }
        )
    )
    result = runner.invoke(app, ["repr", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "train[1].input" in result.stderr
