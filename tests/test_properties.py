"""Property tests: canonical JSON round-trips, reprs and vectors are functions of the grid."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vault.canonical import canonical_bytes, loads
from vault.embedding import builtin
from vault.grid.grid import D4, parse_grid
from vault.grid.reprs import grid_to_repr, repr_id

grids = st.integers(1, 8).flatmap(
    lambda h: st.integers(1, 8).flatmap(
        lambda w: st.lists(
            st.lists(st.integers(0, 9), min_size=w, max_size=w), min_size=h, max_size=h
        )
    )
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_round_trips(value: Any) -> None:
    data = canonical_bytes(value)
    assert canonical_bytes(loads(data)) == data


@settings(max_examples=60, deadline=None)
@given(grids)
def test_repr_is_a_function_of_the_grid(grid: list[list[int]]) -> None:
    rep = grid_to_repr(grid)
    assert repr_id(rep) == repr_id(grid_to_repr([row[:] for row in grid]))
    assert repr_id({**rep, "provenance": {"source": "x"}}) == repr_id(rep)
    g = parse_grid(grid)
    sym = rep["globals"]["symmetry"]
    assert sym["rot180"] == (D4["rotate_180"](g) == g)
    assert sym["vertical"] == (D4["flip_h"](g) == g)
    assert sym["horizontal"] == (D4["flip_v"](g) == g)
    comps = [n for n in rep["nodes"] if n["type"] == "component"]
    bg = rep["globals"]["background"]
    assert sum(c["area"] for c in comps) == sum(1 for row in grid for c in row if c != bg)


@settings(max_examples=60, deadline=None)
@given(grids)
def test_vectors_are_int8_and_rotation_changes_nothing_but_dims(grid: list[list[int]]) -> None:
    vector = builtin.repr_vector(grid_to_repr(grid))
    assert len(vector) == builtin.DIM and all(-127 <= x <= 127 for x in vector)
    turned = [list(r) for r in D4["rotate_180"](parse_grid(grid))]
    # a 180-degree turn keeps every appearance feature (sizes, colours, components, symmetry)
    assert builtin.appearance_blocks(grid_to_repr(turned)) == builtin.appearance_blocks(
        grid_to_repr(grid)
    )
