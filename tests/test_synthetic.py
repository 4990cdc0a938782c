"""The synthetic task generator: determinism, validity, and an independent check per family.

The checkers below re-derive every output from the task's ``params`` and input without
using the generator's code, and ``test_checkers_reject_corrupted_outputs`` proves that
each of them can fail.
"""

from __future__ import annotations

import ast
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vault.eval import synthetic
from vault.eval.synthetic import FAMILIES, SyntheticTask, fingerprint, generate

Grid = list[list[int]]
Checker = Callable[[dict[str, Any], Grid, Grid], None]

PINNED = "d68d579d06ea090cbd59464a3b78d56ab091fa7d7d67b26a5ec6c5ef6f0216d6"
SEEDS = (0, 1, 7)
STEPS4 = ((1, 0), (-1, 0), (0, 1), (0, -1))


def pairs_of(t: SyntheticTask) -> list[dict[str, Grid]]:
    return list(t.task["train"]) + list(t.task["test"])


def cells(g: Grid) -> list[tuple[int, int, int]]:
    return [(y, x, v) for y, row in enumerate(g) for x, v in enumerate(row)]


def objects8(g: Grid, bg: int) -> list[list[tuple[int, int]]]:
    """8-connected components of non-background cells (objects are placed apart, so 8 == 4)."""
    h, w = len(g), len(g[0])
    label: dict[tuple[int, int], int] = {}
    comps: list[list[tuple[int, int]]] = []
    for y, x, v in cells(g):
        if v == bg or (y, x) in label:
            continue
        label[(y, x)] = len(comps)
        queue, comp = [(y, x)], []
        while queue:
            cy, cx = queue.pop(0)
            comp.append((cy, cx))
            for ny in range(cy - 1, cy + 2):
                for nx in range(cx - 1, cx + 2):
                    if 0 <= ny < h and 0 <= nx < w and g[ny][nx] != bg and (ny, nx) not in label:
                        label[(ny, nx)] = len(comps)
                        queue.append((ny, nx))
        comps.append(comp)
    return comps


def check_flip_h(p: dict[str, Any], i: Grid, o: Grid) -> None:
    assert o == [row[::-1] for row in i]


def check_flip_v(p: dict[str, Any], i: Grid, o: Grid) -> None:
    assert o == i[::-1]


def check_rotate_90(p: dict[str, Any], i: Grid, o: Grid) -> None:
    h, w = len(i), len(i[0])
    assert (len(o), len(o[0])) == (w, h)
    assert all(o[x][h - 1 - y] == v for y, x, v in cells(i))


def check_rotate_180(p: dict[str, Any], i: Grid, o: Grid) -> None:
    h, w = len(i), len(i[0])
    assert (len(o), len(o[0])) == (h, w)
    assert all(o[h - 1 - y][w - 1 - x] == v for y, x, v in cells(i))


def check_transpose(p: dict[str, Any], i: Grid, o: Grid) -> None:
    assert (len(o), len(o[0])) == (len(i[0]), len(i))
    assert all(o[x][y] == v for y, x, v in cells(i))


def check_recolor(p: dict[str, Any], i: Grid, o: Grid) -> None:
    m = {int(k): v for k, v in p["map"].items()}
    assert sorted(m) == sorted(m.values()) and all(k != v for k, v in m.items())
    assert set(m) <= {v for row in i for v in row}  # every mapped colour is shown
    assert o == [[m.get(v, v) for v in row] for row in i]


def check_crop_object(p: dict[str, Any], i: Grid, o: Grid) -> None:
    fg = [(y, x) for y, x, v in cells(i) if v != p["bg"]]
    assert fg
    y0, y1 = min(y for y, _ in fg), max(y for y, _ in fg)
    x0, x1 = min(x for _, x in fg), max(x for _, x in fg)
    assert o == [row[x0 : x1 + 1] for row in i[y0 : y1 + 1]]
    assert len(objects8(i, p["bg"])) == 1


def check_scale_up(p: dict[str, Any], i: Grid, o: Grid) -> None:
    k = p["factor"]
    assert k in (2, 3)
    assert (len(o), len(o[0])) == (k * len(i), k * len(i[0]))
    assert all(v == i[y // k][x // k] for y, x, v in cells(o))


def check_tile(p: dict[str, Any], i: Grid, o: Grid) -> None:
    ry, rx = p["reps"]
    h, w = len(i), len(i[0])
    assert (len(o), len(o[0])) == (ry * h, rx * w) and ry * rx > 1
    assert all(v == i[y % h][x % w] for y, x, v in cells(o))


def check_gravity(p: dict[str, Any], i: Grid, o: Grid) -> None:
    bg, d = p["bg"], p["direction"]
    assert (len(o), len(o[0])) == (len(i), len(i[0]))
    if d in ("down", "up"):
        lines_in = [[row[x] for row in i] for x in range(len(i[0]))]
        lines_out = [[row[x] for row in o] for x in range(len(o[0]))]
    else:
        lines_in, lines_out = i, o
    toward_end = d in ("down", "right")
    for a, b in zip(lines_in, lines_out, strict=True):
        assert sorted(a) == sorted(b)  # colour multiset of the line preserved
        fg = [v for v in a if v != bg]
        seq = b[len(b) - len(fg) :] if toward_end else b[: len(fg)]
        rest = b[: len(b) - len(fg)] if toward_end else b[len(fg) :]
        assert seq == fg and all(v == bg for v in rest)  # packed, order kept


def check_fill_enclosed(p: dict[str, Any], i: Grid, o: Grid) -> None:
    bg, h, w = p["bg"], len(i), len(i[0])
    reach = {(y, x) for y, x, v in cells(i) if v == bg and (y in (0, h - 1) or x in (0, w - 1))}
    frontier = list(reach)
    while frontier:
        y, x = frontier.pop()
        for dy, dx in STEPS4:
            q = (y + dy, x + dx)
            if 0 <= q[0] < h and 0 <= q[1] < w and i[q[0]][q[1]] == bg and q not in reach:
                reach.add(q)
                frontier.append(q)
    expected = [
        [p["fill"] if v == bg and (y, x) not in reach else v for x, v in enumerate(r)]
        for y, r in enumerate(i)
    ]
    assert o == expected
    assert p["fill"] != bg


def check_draw_line_to_border(p: dict[str, Any], i: Grid, o: Grid) -> None:
    dy, dx = {"down": (1, 0), "up": (-1, 0), "left": (0, -1), "right": (0, 1)}[p["direction"]]
    h, w = len(i), len(i[0])
    seeds = [(y, x, v) for y, x, v in cells(i) if v != p["bg"]]
    assert 1 <= len(seeds) <= 4
    expected = [row[:] for row in i]
    for y, x, v in seeds:
        ray = []
        while 0 <= y + dy < h and 0 <= x + dx < w:
            y, x = y + dy, x + dx
            ray.append((y, x))
        assert ray  # every seed extends at least one cell
        for ry, rx in ray:
            assert i[ry][rx] == p["bg"]  # rays never cross another seed
            expected[ry][rx] = v
    assert o == expected


def check_keep_largest_object(p: dict[str, Any], i: Grid, o: Grid) -> None:
    comps = sorted(objects8(i, p["bg"]), key=len, reverse=True)
    assert len(comps) >= 2 and len(comps[0]) > len(comps[1])
    keep = set(comps[0])
    assert o == [
        [v if (y, x) in keep else p["bg"] for x, v in enumerate(r)] for y, r in enumerate(i)
    ]


def check_count_to_bar(p: dict[str, Any], i: Grid, o: Grid) -> None:
    if p["mode"] == "objects":
        n = len(objects8(i, p["bg"]))
    else:
        n = sum(1 for _, _, v in cells(i) if v == p["color"])
    assert n >= 1
    assert o == ([[p["bar"]] * n] if p["orient"] == "row" else [[p["bar"]]] * n)


def check_move_object(p: dict[str, Any], i: Grid, o: Grid) -> None:
    dy, dx, bg = p["dy"], p["dx"], p["bg"]
    assert (dy, dx) != (0, 0)
    assert len(objects8(i, bg)) == 1
    expected = [[bg] * len(i[0]) for _ in i]
    for y, x, v in cells(i):
        if v != bg:
            assert 0 <= y + dy < len(i) and 0 <= x + dx < len(i[0])  # never leaves the grid
            expected[y + dy][x + dx] = v
    assert o == expected


def check_mirror_complete(p: dict[str, Any], i: Grid, o: Grid) -> None:
    side, bg = p["side"], p["bg"]
    assert (len(o), len(o[0])) == (len(i), len(i[0]))
    if side in ("top", "bottom"):  # reduce to left/right on the transposes
        i, o = ([[row[x] for row in g] for x in range(len(g[0]))] for g in (i, o))
        side = "left" if side == "top" else "right"
    w = len(i[0])
    blank = range(w // 2) if side == "left" else range(w - w // 2, w)
    for a, b in zip(i, o, strict=True):
        assert b == b[::-1]  # the output is mirror-symmetric
        assert all(a[x] == bg for x in blank)  # the blanked half is background
        assert all(a[x] == b[x] for x in range(w) if x not in blank)  # the rest is kept


def check_denoise(p: dict[str, Any], i: Grid, o: Grid) -> None:
    bg = p["bg"]
    comps = objects8(i, bg)
    noise = {comp[0] for comp in comps if len(comp) == 1}  # 8-isolated pixels
    assert noise and all(len(comp) >= 4 for comp in comps if len(comp) > 1)
    assert o == [[bg if (y, x) in noise else v for x, v in enumerate(r)] for y, r in enumerate(i)]


def check_outline_objects(p: dict[str, Any], i: Grid, o: Grid) -> None:
    bg, h, w = p["bg"], len(i), len(i[0])
    expected = [row[:] for row in i]
    for y, x, v in cells(i):
        nbrs = [(y + dy, x + dx) for dy, dx in STEPS4]
        if v != bg and all(0 <= a < h and 0 <= b < w and i[a][b] != bg for a, b in nbrs):
            expected[y][x] = p["inner"]
    assert o == expected


CHECKERS: dict[str, Checker] = {
    name.removeprefix("check_"): fn
    for name, fn in dict(globals()).items()
    if name.startswith("check_") and callable(fn)
}


def test_every_family_has_a_checker_and_there_are_at_least_16() -> None:
    assert len(FAMILIES) >= 16 and len(set(FAMILIES)) == len(FAMILIES)
    assert sorted(CHECKERS) == sorted(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_transformation_holds_on_every_pair(family: str) -> None:
    for seed in SEEDS:
        for t in generate(seed, tasks_per_family=6, pairs=3, families=[family]):
            for pair in pairs_of(t):
                CHECKERS[family](t.params, pair["input"], pair["output"])


@pytest.mark.parametrize("family", FAMILIES)
def test_checkers_reject_corrupted_outputs(family: str) -> None:
    t0, t1 = generate(0, tasks_per_family=2, pairs=2, families=[family])
    pair = t0.task["train"][0]
    bad = [row[:] for row in pair["output"]]
    bad[0][0] = (bad[0][0] + 1) % 10
    corrupted = [bad, t0.task["train"][1]["output"], t1.task["test"][0]["output"]]
    for out in corrupted:
        if out == pair["output"]:
            continue
        with pytest.raises(AssertionError):
            CHECKERS[family](t0.params, pair["input"], out)


def test_deterministic_and_pinned() -> None:
    a, b = generate(0), generate(0)
    assert a == b and fingerprint(a) == fingerprint(b)
    assert fingerprint(generate(seed=0, tasks_per_family=2, pairs=3)) == PINNED


def test_seed_changes_tasks() -> None:
    assert fingerprint(generate(1, 2, 3)) != fingerprint(generate(0, 2, 3))


def test_family_subset_is_independent_and_in_family_order() -> None:
    full = generate(3, tasks_per_family=3)
    subset = ["tile", "flip_h", "gravity", "tile"]
    part = generate(3, tasks_per_family=3, families=subset)
    assert part == [t for t in full if t.family in subset]
    assert [t.family for t in part] == ["flip_h"] * 3 + ["tile"] * 3 + ["gravity"] * 3


def test_more_pairs_extend_the_same_draws() -> None:
    short, long = generate(5, 2, pairs=2), generate(5, 2, pairs=4)
    for s, lo in zip(short, long, strict=True):
        assert lo.task["train"][:2] == s.task["train"]


def test_shape_of_the_output() -> None:
    tasks = generate(2, tasks_per_family=4, pairs=5)
    assert len(tasks) == 4 * len(FAMILIES)
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert [t.family for t in tasks] == [f for f in FAMILIES for _ in range(4)]
    for n, t in enumerate(tasks):
        assert t.task_id == f"{t.family}-{n % 4:02d}"
        assert set(t.task) == {"train", "test"}
        assert len(t.task["train"]) == 5 and len(t.task["test"]) == 1
        assert all(set(p) == {"input", "output"} for p in pairs_of(t))


def test_every_grid_is_valid_and_no_pair_is_identity() -> None:
    for t in generate(0) + generate(11, tasks_per_family=3, pairs=2):
        inputs = []
        for pair in pairs_of(t):
            for g in (pair["input"], pair["output"]):
                assert isinstance(g, list) and 1 <= len(g) <= 30
                assert all(isinstance(r, list) and len(r) == len(g[0]) for r in g)
                assert 1 <= len(g[0]) <= 30
                assert all(type(v) is int and 0 <= v <= 9 for r in g for v in r)
            assert pair["input"] != pair["output"]
            inputs.append(json.dumps(pair["input"]))
        assert len(set(inputs)) == len(inputs)  # no repeated input within a task


def test_tasks_of_a_family_vary() -> None:
    tasks = generate(0)
    for family in FAMILIES:
        ts = [t for t in tasks if t.family == family]
        params = {json.dumps(t.params, sort_keys=True) for t in ts}
        assert len(params) == len(ts), family
        sizes = {(len(p["input"]), len(p["input"][0])) for t in ts for p in pairs_of(t)}
        assert len(sizes) > 1, family


def test_the_defining_parameter_varies_across_tasks() -> None:
    tasks = generate(0)
    defining = {
        "recolor": "map",
        "crop_object": "shape",
        "scale_up": "factor",
        "tile": "reps",
        "gravity": "direction",
        "fill_enclosed": "fill",
        "draw_line_to_border": "direction",
        "count_to_bar": "mode",
        "move_object": "dy",
        "mirror_complete": "side",
        "outline_objects": "inner",
        "flip_h": "style",
    }
    for family, key in defining.items():
        values = [json.dumps(t.params[key]) for t in tasks if t.family == family]
        assert len(set(values)) > 1, (family, key)


def test_params_are_json_round_trippable() -> None:
    for t in generate(4, tasks_per_family=3):
        assert json.loads(json.dumps(t.params)) == t.params
        assert json.loads(json.dumps(t.task)) == t.task


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate(pairs=1)
    with pytest.raises(ValueError):
        generate(families=["flip_h", "no_such_family"])
    with pytest.raises(ValueError):
        generate(tasks_per_family=-1)
    assert generate(tasks_per_family=0) == [] and generate(families=[]) == []


def test_global_random_is_untouched() -> None:
    random.seed(1234)
    state = random.getstate()
    generate(9, tasks_per_family=1)
    assert random.getstate() == state


def test_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(synthetic.__file__).read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module
            roots.add(node.module.split(".")[0])
    assert roots and roots <= set(sys.stdlib_module_names) | {"__future__"}
    source = Path(synthetic.__file__).read_text(encoding="utf-8")
    assert ".choices(" not in source and "random.seed(" not in source
