"""Every CLI command through typer's CliRunner, plus content addressing and determinism."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from vault.canonical import canonical_bytes
from vault.grid.reprs import grid_to_repr, repr_id
from vault.vault import Vault, fixed_clock
from vault_cli.app import app

from .conftest import EXAMPLES, card, example_cards, example_evidence

runner = CliRunner()
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}

SQ, SO = "feature:square", "feature:single_object"
SH, SV, SD = "feature:symmetry_horizontal", "feature:symmetry_vertical", "feature:symmetry_diagonal"
DOT = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]  # keys: square, single_object, every symmetry


# --------------------------------------------------------------------------- helpers
def snapshot(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[p.relative_to(root).as_posix()] = p.read_bytes() if p.is_file() else None
    return out


def run(
    root: Path,
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    code: int = 0,
) -> Result:
    result = runner.invoke(app, ["--vault", str(root), *args], input=input, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"unhandled {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    return result


def run_json(root: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    result = run(root, *args, "--json", env=env)
    return json.loads(result.stdout)


def write(path: Path, obj: Any) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def write_lines(path: Path, objs: list[Any]) -> str:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return str(path)


def audit_lines(root: Path) -> list[str]:
    return (root / "audit" / "commits.jsonl").read_text().splitlines()


# --------------------------------------------------------------------------- help
def _walk(cmd: Any, path: list[str]) -> list[list[str]]:
    out = [path]
    commands = getattr(cmd, "commands", None)  # a group (typer vendors its own click)
    if commands:
        for name, sub in sorted(commands.items()):
            out += _walk(sub, [*path, name])
    return out


ALL_COMMANDS = _walk(typer.main.get_command(app), [])


def test_command_tree_has_the_documented_commands() -> None:
    names = {" ".join(p) for p in ALL_COMMANDS}
    for expected in (
        "init",
        "add",
        "evidence add",
        "status",
        "repr",
        "embed",
        "retrieve",
        "index build",
        "index status",
        "log",
        "show",
        "rollback",
    ):
        assert expected in names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=[" ".join(p) or "vault" for p in ALL_COMMANDS])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_for_every_command(path: list[str], flag: str) -> None:
    result = runner.invoke(app, [*path, flag])
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Usage" in result.stdout
    assert "Traceback" not in result.output


def test_python_dash_m_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vault_cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    for name in ("init", "add", "retrieve", "rollback"):
        assert name in proc.stdout
    assert "Traceback" not in proc.stderr


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- init
def test_init_creates_a_vault(tmp_path: Path) -> None:
    root = tmp_path / "v"
    out = run_json(root, "init", env=EPOCH)
    assert out == {"vault": str(root), "created": True}
    assert json.loads((root / "format.json").read_text()) == {
        "format": "concept-vault",
        "version": 3,
    }
    assert (root / "config.toml").is_file()
    for sub in ("objects", "audit", "index", "refs"):
        assert (root / sub).is_dir()
    assert Vault.open(root).snapshot().table.n == 0


def test_init_twice_is_fine_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "v"
    run(root, "init", env=EPOCH)
    before = snapshot(root)
    assert run_json(root, "init", env=EPOCH) == {"vault": str(root), "created": False}
    result = run(root, "init")
    assert "already a vault" in result.stderr
    assert snapshot(root) == before


def test_init_with_path_argument(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    result = runner.invoke(app, ["--vault", str(tmp_path / "unused"), "init", str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "format.json").is_file()
    assert not (tmp_path / "unused").exists()


def test_vault_dir_env_var(tmp_path: Path) -> None:
    root = tmp_path / "env-vault"
    result = runner.invoke(app, ["init", "--json"], env={"VAULT_DIR": str(root)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["vault"] == str(root)
    result = runner.invoke(app, ["log", "--json"], env={"VAULT_DIR": str(root)})
    assert result.exit_code == 0
    # a new vault starts with the shipped fitted embedder, chosen by an audited write
    assert [e["op"] for e in json.loads(result.stdout)] == ["init", "embedder"]


# ------------------------------------------------------------------ add / content addressing
def test_add_json_output_and_show(vault: Vault, tmp_path: Path) -> None:
    f = write(tmp_path / "c.json", card("x", [SQ], proof_obligations=["same_dims"]))
    out = run_json(vault.root, "add", f)
    assert out["op"] == "add"
    assert out["added"] == ["x@1.0.0"]
    assert out["unchanged"] == []
    assert isinstance(out["audit_seq"], int) and len(out["generation"]) == 64
    shown = run_json(vault.root, "show", "x")
    assert set(shown) >= {"card", "status", "keys", "positive", "negative", "penalty", "object"}
    assert shown["status"] == "active"
    assert shown["keys"] == ["domain:grid_2d", SQ, "invariant:same_dims"]
    assert (shown["positive"], shown["negative"], shown["penalty"]) == (0, 0, 0)
    assert shown["card"]["id"] == "x" and shown["card"]["version"] == "1.0.0"
    assert shown["object"] == hashlib.sha256(canonical_bytes(shown["card"])).hexdigest()


def test_show_human_output(vault: Vault, tmp_path: Path) -> None:
    run(vault.root, "add", write(tmp_path / "c.json", card("x", [SQ], dsl="(rotate_90 grid)")))
    out = run(vault.root, "show", "x").stdout
    assert "x" in out and "1.0.0" in out and "status=active" in out
    assert "transform:rotate_90" in out and "(rotate_90 grid)" in out


def test_show_version_option(vault: Vault, tmp_path: Path) -> None:
    cards = [card("x", [SQ]), card("x", [SO], version="1.2.0")]
    run(vault.root, "add", write_lines(tmp_path / "c.jsonl", cards))
    assert run_json(vault.root, "show", "x")["card"]["version"] == "1.2.0"
    assert run_json(vault.root, "show", "x", "--version", "1.0.0")["card"]["version"] == "1.0.0"


def test_add_from_stdin_jsonl(vault: Vault) -> None:
    text = "".join(json.dumps(card(f"s{i}", [SQ])) + "\n" for i in range(3))
    result = run(vault.root, "add", "-", "--json", input=text)
    assert json.loads(result.stdout)["added"] == ["s0@1.0.0", "s1@1.0.0", "s2@1.0.0"]


def test_add_json_array_file(vault: Vault, tmp_path: Path) -> None:
    f = write(tmp_path / "cards.json", [card("a", [SQ]), card("b", [SO])])
    assert run_json(vault.root, "add", f)["added"] == ["a@1.0.0", "b@1.0.0"]


def test_add_human_output_goes_to_stderr(vault: Vault, tmp_path: Path) -> None:
    result = run(vault.root, "add", write(tmp_path / "c.json", card("x", [SQ])))
    assert result.stdout == ""
    assert "x@1.0.0" in result.stderr


@pytest.mark.parametrize(
    ("newest", "advice"),
    [("7.999999999.3", "; add it as 8.0.0 instead"), ("999999999.999999999.999999999", "")],
)
def test_a_fork_past_the_largest_minor_version_says_so(
    vault: Vault, tmp_path: Path, newest: str, advice: str
) -> None:
    """--fork when the newest minor version is 999999999: the error names the concept and
    its newest version, not a version the user never wrote ("999999999.1000000000.0")."""
    run(vault.root, "add", write(tmp_path / "c.json", card("c", [SQ], version=newest)))
    before = snapshot(vault.root)
    changed = write(tmp_path / "fork.json", card("c", [SO], version=newest))
    err = run(vault.root, "add", "--fork", changed, code=1).stderr
    assert err == (
        f"error: {changed}: cannot fork 'c': the next minor version after its newest, "
        f"{newest}, would exceed 999999999 (the largest a version part may be){advice}\n"
    )
    assert "1000000000" not in err and snapshot(vault.root) == before


def test_objects_are_content_addressed(vault: Vault) -> None:
    result = run(vault.root, "add", str(EXAMPLES / "cards.jsonl"))
    run(vault.root, "evidence", "add", str(EXAMPLES / "evidence.jsonl"))
    files = [p for p in (vault.root / "objects").rglob("*") if p.is_file()]
    assert len(files) > 20
    for p in files:
        fan, name = p.parent.name, p.name
        assert p.parent.parent == vault.root / "objects"
        assert len(fan) == 2 and len(name) == 62
        assert fan + name == hashlib.sha256(p.read_bytes()).hexdigest(), p
    assert result.exit_code == 0


def test_readd_identical_content_writes_nothing(vault: Vault, tmp_path: Path) -> None:
    run(vault.root, "add", str(EXAMPLES / "cards.jsonl"))
    run(vault.root, "evidence", "add", str(EXAMPLES / "evidence.jsonl"))
    before = snapshot(vault.root)
    n = len(audit_lines(vault.root))
    out = run_json(vault.root, "add", str(EXAMPLES / "cards.jsonl"))
    assert out["added"] == [] and len(out["unchanged"]) == len(example_cards())
    assert out["audit_seq"] is None
    ev = run_json(vault.root, "evidence", "add", str(EXAMPLES / "evidence.jsonl"))
    assert ev["added"] == []
    # the same card, pretty-printed with keys in another order and defaults spelled out
    c = json.loads((EXAMPLES / "cards.jsonl").read_text().splitlines()[0])
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(dict(reversed(list(c.items()))), indent=4))
    assert run_json(vault.root, "add", str(pretty))["unchanged"] == [f"{c['id']}@{c['version']}"]
    assert len(audit_lines(vault.root)) == n
    assert snapshot(vault.root) == before


# ------------------------------------------------------------------ evidence / status / log
def test_evidence_add_and_counts(vault: Vault, tmp_path: Path) -> None:
    run(vault.root, "add", write(tmp_path / "c.json", card("x", [SQ])))
    evs = [
        {
            "schema_version": 1,
            "concept": "x",
            "version": "1.0.0",
            "polarity": "positive",
            "grid": DOT,
        },
        {
            "schema_version": 1,
            "concept": "x",
            "version": "1.0.0",
            "polarity": "negative",
            "tier": "runtime",
            "reason": "exception",
        },
    ]
    out = run_json(vault.root, "evidence", "add", write_lines(tmp_path / "e.jsonl", evs))
    assert out["op"] == "evidence" and len(out["added"]) == 2
    assert all(len(d) == 64 for d in out["added"])
    shown = run_json(vault.root, "show", "x")
    assert (shown["positive"], shown["negative"]) == (1, 1)
    # FORMAT §10's penalty (Wilson lower bound of 1 failure in 2, minus 5%), not the count
    assert shown["penalty"] == pytest.approx(0.0445287, abs=1e-7)
    assert shown["utility"] == 1.0 - shown["penalty"]
    # the inline grid was stored as its repr
    assert Vault.open(vault.root).objects.get_json(repr_id(grid_to_repr(DOT))) == grid_to_repr(DOT)


def test_status_command_changes_status(vault: Vault, tmp_path: Path) -> None:
    run(vault.root, "add", write(tmp_path / "c.json", card("x", [SQ])))
    out = run_json(vault.root, "status", "x", "1.0.0", "deprecated", "--reason", "superseded")
    assert out["op"] == "status" and (out["added"], out["status"]) == ([], ["x@1.0.0"])
    assert run_json(vault.root, "show", "x")["status"] == "deprecated"
    entries = run_json(vault.root, "log")
    last = entries[-1]
    assert last["op"] == "status"
    assert last["detail"] == {"concept": "x@1.0.0", "status": "deprecated"}
    event = Vault.open(vault.root).objects.get_json(last["records"][0])
    assert event == {
        "schema_version": 1,
        "kind": "status",
        "concept": "x",
        "version": "1.0.0",
        "status": "deprecated",
        "reason": "superseded",
    }
    # same status again: nothing new
    before = snapshot(vault.root)
    same = run_json(vault.root, "status", "x", "1.0.0", "deprecated")
    assert (same["added"], same["status"], same["unchanged"]) == ([], [], ["x@1.0.0"])
    assert snapshot(vault.root) == before
    # and back
    run(vault.root, "status", "x", "1.0.0", "active")
    assert run_json(vault.root, "show", "x")["status"] == "active"


def test_log_json_and_limit(vault: Vault, tmp_path: Path) -> None:
    run(vault.root, "add", write(tmp_path / "c.json", card("x", [SQ])), env=EPOCH)
    run(vault.root, "status", "x", "1.0.0", "suppressed", env=EPOCH)
    entries = run_json(vault.root, "log")
    assert [e["op"] for e in entries] == ["init", "embedder", "add", "status"]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    for e in entries:
        assert set(e) == {"seq", "op", "time", "records", "detail", "check"}
        assert e["time"] == "2023-11-14T22:13:20Z"  # fixture clock / SOURCE_DATE_EPOCH
    assert [e["op"] for e in run_json(vault.root, "log", "-n", "2")] == ["add", "status"]
    assert run_json(vault.root, "log", "-n", "0") == []
    human = run(vault.root, "log").stdout
    assert "init" in human and "status" in human


def test_log_lines_match_audit_file(vault: Vault, tmp_path: Path) -> None:
    run(vault.root, "add", write(tmp_path / "c.json", card("x", [SQ])))
    entries = run_json(vault.root, "log")
    lines = [json.loads(line) for line in audit_lines(vault.root)]
    assert entries == lines


# --------------------------------------------------------------------------- index / rollback
def test_index_build_and_status(vault: Vault, tmp_path: Path) -> None:
    run(vault.root, "add", write(tmp_path / "c.json", card("x", [SQ])))
    status = run_json(vault.root, "index", "status")
    for key in (
        "generation",
        "number",
        "stale",
        "drift",
        "counts",
        "embedder",
        "running_embedder",
        "mode_default",
    ):
        assert key in status
    assert status["stale"] is False and status["drift"] is False
    assert status["counts"]["concepts"] == 1
    assert status["mode_default"] == "hybrid"
    build = run_json(vault.root, "index", "build")
    assert build["generation"] == status["generation"]  # same content, same generation
    assert build["changed"] is False and build["concepts"] == 1
    assert run_json(vault.root, "log")[-1]["op"] == "index_build"
    human = run(vault.root, "index", "status").stdout
    # a table (TSV when piped, issue 20), the generation by number and short id
    assert f"generation\t{status['number']} ({status['generation'][:12]})" in human


def test_rollback_list_and_rollback(vault: Vault, tmp_path: Path) -> None:
    listing = run_json(vault.root, "rollback", "--list")
    assert set(listing) >= {"current", "generations"}
    assert len(listing["generations"]) == 1
    run(vault.root, "add", write(tmp_path / "a.json", card("a", [SQ])))
    run(vault.root, "add", write(tmp_path / "b.json", card("b", [SQ])))
    listing = run_json(vault.root, "rollback", "--list")
    gens = listing["generations"]
    assert [g["number"] for g in gens] == [1, 2, 3]
    assert [g["op"] for g in gens] == ["init", "add", "add"]
    assert listing["current"] == gens[-1]["generation"]
    assert [g["counts"]["concepts"] for g in gens] == [0, 1, 2]

    out = run_json(vault.root, "rollback")
    assert out["previous"] == gens[2]["generation"]
    assert out["current"]["number"] == 2
    assert out["current"]["generation"] == gens[1]["generation"]
    assert run_json(vault.root, "rollback", "--list")["current"] == gens[1]["generation"]
    assert run_json(vault.root, "log")[-1]["op"] == "rollback"

    out = run_json(vault.root, "rollback", "--to", "1")
    assert out["current"]["generation"] == gens[0]["generation"]
    out = run_json(vault.root, "rollback", "--to", gens[2]["generation"][:10])
    assert out["current"]["generation"] == gens[2]["generation"]
    human = run(vault.root, "rollback", "--list").stdout
    assert gens[2]["generation"][:12] in human


def test_rollback_mode_kill_switch(vault: Vault, tmp_path: Path) -> None:
    run(vault.root, "add", write(tmp_path / "c.json", card("x", [SQ, SO])))
    g = write(tmp_path / "g.json", DOT)
    assert run_json(vault.root, "retrieve", "--repr", g)["mode_used"] == "hybrid"
    assert run_json(vault.root, "rollback", "--mode", "symbolic") == {"mode_default": "symbolic"}
    assert run_json(vault.root, "index", "status")["mode_default"] == "symbolic"
    out = run_json(vault.root, "retrieve", "--repr", g)
    assert out["mode_requested"] == "symbolic" and out["mode_used"] == "symbolic"
    # an explicit --mode still wins
    assert run_json(vault.root, "retrieve", "--repr", g, "--mode", "soft")["mode_used"] == "soft"
    assert run_json(vault.root, "log")[-1]["op"] == "mode"
    assert run_json(vault.root, "rollback", "--mode", "config") == {"mode_default": "hybrid"}
    assert run_json(vault.root, "retrieve", "--repr", g)["mode_used"] == "hybrid"


# --------------------------------------------------------------------------- retrieve
RANKING_CARDS = [
    card("top", [SQ, SO, SH]),
    card("two-new", [SQ, SO], version="2.0.0"),
    card("multi", [SQ, SO]),
    card("multi", [SQ], version="1.1.0"),
    card("two-b", [SQ, SO]),
    card("two-a", [SQ, SO]),
    card("two-neg", [SQ, SO], version="3.0.0"),
    card("one", [SQ]),
    card("dep", [SQ, SO, SH, SV]),
    card("sup", [SQ, SO, SH, SV, SD]),
    card("nomatch", ["transform:rotate_90"]),
    card("textual", [SQ, SO, SH], domain="text"),
]
SYMBOLIC_ORDER = ["top", "two-new", "multi", "two-a", "two-b", "two-neg", "one", "dep"]


@pytest.fixture
def ranked(vault: Vault, tmp_path: Path) -> tuple[Path, str]:
    root = vault.root
    run(root, "add", write_lines(tmp_path / "cards.jsonl", RANKING_CARDS))
    neg = {
        "schema_version": 1,
        "concept": "two-neg",
        "version": "3.0.0",
        "polarity": "negative",
        "tier": "test",
        "reason": "wrong_output",
    }
    run(root, "evidence", "add", write(tmp_path / "neg.json", neg))
    run(root, "status", "dep", "1.0.0", "deprecated")
    run(root, "status", "sup", "1.0.0", "suppressed")
    return root, write(tmp_path / "dot.json", DOT)


def test_retrieve_symbolic_json_shape(ranked: tuple[Path, str]) -> None:
    root, grid = ranked
    out = run_json(root, "retrieve", "--mode", "symbolic", "--repr", grid)
    assert set(out) >= {"mode_requested", "mode_used", "fallback_reason", "keys", "results"}
    assert out["mode_requested"] == "symbolic" and out["mode_used"] == "symbolic"
    assert out["fallback_reason"] is None
    assert out["keys"] == sorted(out["keys"])
    assert {SQ, SO, SH, SV, SD, "domain:grid_2d"} <= set(out["keys"])
    for i, hit in enumerate(out["results"], start=1):
        assert set(hit) >= {
            "rank",
            "id",
            "version",
            "score",
            "key_overlap",
            "penalty",
            "similarity",
            "utility",
            "status",
        }
        assert hit["rank"] == i
        assert hit["score"] == float(hit["key_overlap"])


def test_retrieve_symbolic_ranking_order(ranked: tuple[Path, str]) -> None:
    root, grid = ranked
    out = run_json(root, "retrieve", "--mode", "symbolic", "--repr", grid)
    hits = out["results"]
    assert [h["id"] for h in hits] == SYMBOLIC_ORDER
    by_id = {h["id"]: h for h in hits}
    assert [by_id[i]["key_overlap"] for i in SYMBOLIC_ORDER] == [3, 2, 2, 2, 2, 2, 1, 4]
    assert by_id["two-neg"]["evidence"] == {"positive": 0, "negative": 1}
    assert by_id["two-neg"]["penalty"] > 0 and by_id["two-a"]["penalty"] == 0
    assert by_id["multi"]["version"] == "1.0.0"  # its best-ranked version, once
    assert by_id["dep"]["status"] == "deprecated"
    assert all(h["status"] == "active" for h in hits if h["id"] != "dep")
    assert "sup" not in by_id and "nomatch" not in by_id and "textual" not in by_id


def test_retrieve_k_limits(ranked: tuple[Path, str]) -> None:
    root, grid = ranked
    out = run_json(root, "retrieve", "--mode", "symbolic", "--repr", grid, "-k", "3")
    assert [h["id"] for h in out["results"]] == SYMBOLIC_ORDER[:3]


@pytest.mark.parametrize("mode", ["hybrid", "soft"])
def test_retrieve_other_modes_respect_status(ranked: tuple[Path, str], mode: str) -> None:
    root, grid = ranked
    out = run_json(root, "retrieve", "--mode", mode, "--repr", grid)
    assert out["mode_requested"] == mode
    assert out["mode_used"] == mode, out["fallback_reason"]
    assert out["fallback_reason"] is None
    ids = [h["id"] for h in out["results"]]
    assert len(ids) == len(set(ids))
    assert "sup" not in ids and "textual" not in ids
    assert ids[-1] == "dep"
    assert [h["rank"] for h in out["results"]] == list(range(1, len(ids) + 1))
    for h in out["results"]:
        assert isinstance(h["similarity"], float)
    if mode == "hybrid":
        assert ids[0] == "top"
        # the symbolic shortlist, topped up to shortlist_min from embedding neighbours
        assert set(ids) >= set(SYMBOLIC_ORDER)


def test_retrieve_weighted_strategy(ranked: tuple[Path, str]) -> None:
    root, grid = ranked
    out = run_json(root, "retrieve", "--repr", grid, "--mode", "hybrid", "--strategy", "weighted")
    assert out["mode_used"] == "hybrid" and out["strategy"] == "weighted"
    ids = [h["id"] for h in out["results"]]
    assert "sup" not in ids and ids[-1] == "dep"


def test_negative_evidence_pushes_concept_down(vault: Vault, tmp_path: Path) -> None:
    root = vault.root
    run(root, "add", write_lines(tmp_path / "c.jsonl", [card("aa", [SQ]), card("bb", [SQ])]))
    grid = write(tmp_path / "g.json", DOT)
    before = run_json(root, "retrieve", "--mode", "symbolic", "--repr", grid)["results"]
    assert [h["id"] for h in before] == ["aa", "bb"]
    neg = {
        "schema_version": 1,
        "concept": "aa",
        "version": "1.0.0",
        "polarity": "negative",
        "tier": "train",
        "reason": "wrong_output",
    }
    run(root, "evidence", "add", write(tmp_path / "n.json", neg))
    after = run_json(root, "retrieve", "--mode", "symbolic", "--repr", grid)["results"]
    assert [(h["id"], h["evidence"]["negative"]) for h in after] == [("bb", 0), ("aa", 1)]
    assert after[0]["penalty"] == 0 and after[1]["penalty"] > 0
    assert after[1]["utility"] < after[0]["utility"]


def symbolic_ids(root: Path, grid: str) -> list[str]:
    out = run_json(root, "retrieve", "--mode", "symbolic", "--repr", grid)
    return [h["id"] for h in out["results"]]


def test_deprecated_after_active_even_with_more_overlap(vault: Vault, tmp_path: Path) -> None:
    root = vault.root
    run(
        root,
        "add",
        write_lines(tmp_path / "c.jsonl", [card("best", [SQ, SO, SH]), card("meh", [SQ])]),
    )
    grid = write(tmp_path / "g.json", DOT)
    ids = symbolic_ids(root, grid)
    assert ids == ["best", "meh"]
    run(root, "status", "best", "1.0.0", "deprecated")
    ids = symbolic_ids(root, grid)
    assert ids == ["meh", "best"]
    run(root, "status", "best", "1.0.0", "suppressed")
    ids = symbolic_ids(root, grid)
    assert ids == ["meh"]


def test_retrieve_query_file_with_constraints(vault: Vault, tmp_path: Path) -> None:
    root = vault.root
    run(
        root,
        "add",
        write_lines(
            tmp_path / "c.jsonl",
            [
                card("dims", [], proof_obligations=["same_dims"]),
                card("alias", [], proof_obligations=["shape_preserved"]),
                card("other", [], proof_obligations=["palette_preserved"]),
            ],
        ),
    )
    q = write(
        tmp_path / "q.json",
        {
            "schema_version": 1,
            "kind": "query",
            "grid": [[1, 2], [3, 4]],
            "constraints": ["same_dims"],
        },
    )
    out = run_json(root, "retrieve", "--mode", "symbolic", "--query", q)
    assert "invariant:same_dims" in out["keys"]
    assert [h["id"] for h in out["results"]] == ["alias", "dims"]


def test_retrieve_example_query_and_task(example_vault: Vault) -> None:
    root = example_vault.root
    out = run_json(
        root,
        "retrieve",
        "--mode",
        "symbolic",
        "--query",
        str(EXAMPLES / "queries" / "same-dims.json"),
    )
    assert "invariant:same_dims" in out["keys"] and out["results"]
    for mode in ("symbolic", "hybrid", "soft"):
        out = run_json(
            root, "retrieve", "--mode", mode, "--task", str(EXAMPLES / "tasks" / "rotate.json")
        )
        assert out["mode_used"] == mode
        assert out["results"][0]["id"] == "rotate-90"


def test_list_with_several_keys_lists_the_concepts_holding_every_one(
    example_vault: Vault,
) -> None:
    """A repeated --key is an AND (it kept only the last one): each key alone, then both."""
    root = example_vault.root
    palette, r90 = "invariant:palette_preserved", "transform:rotate_90"

    def ids(*keys: str) -> list[str]:
        args = [a for k in keys for a in ("--key", k)]
        return [c["id"] for c in run_json(root, "list", *args)]

    with_palette, with_r90 = ids(palette), ids(r90)
    assert len(with_palette) > 1 and with_r90 == ["rotate-90"]
    assert ids(palette, r90) == ids(r90, palette) == ["rotate-90"]
    assert ids("transform:rotate_270") == ["rotate-270"] and ids(r90, "transform:rotate_270") == []
    assert [c.id for c in example_vault.concepts(key=[palette, r90])] == ["rotate-90"]
    bad = run(root, "list", "--key", r90, "--key", "transform:rotate90", code=2)
    assert "did you mean transform:rotate_90" in bad.stderr


def test_retrieve_human_table(ranked: tuple[Path, str]) -> None:
    root, grid = ranked
    result = run(root, "retrieve", "--mode", "symbolic", "--repr", grid)
    for cid in SYMBOLIC_ORDER:
        assert cid in result.stdout
    assert "deprecated" in result.stdout
    assert "sup" not in result.stdout.replace("symbolic", "")


def test_retrieve_json_identical_across_runs(ranked: tuple[Path, str]) -> None:
    root, grid = ranked
    for mode in ("symbolic", "hybrid", "soft"):
        first = run(root, "retrieve", "--mode", mode, "--repr", grid, "--json").stdout
        second = run(root, "retrieve", "--mode", mode, "--repr", grid, "--json").stdout
        assert first == second
        json.loads(first)


def test_retrieve_repr_file_accepts_a_repr(vault: Vault, tmp_path: Path) -> None:
    run(vault.root, "add", write(tmp_path / "c.json", card("x", [SQ, SO])))
    g = write(tmp_path / "g.json", DOT)
    rep = json.loads(run(vault.root, "repr", g).stdout)
    r = write(tmp_path / "r.json", rep)
    a = run_json(vault.root, "retrieve", "--mode", "symbolic", "--repr", g)
    b = run_json(vault.root, "retrieve", "--mode", "symbolic", "--repr", r)
    assert a == b


# --------------------------------------------------------------------------- embed
def test_embed_json_lines(vault: Vault, tmp_path: Path) -> None:
    grids = [DOT, [[1, 2], [3, 4]], [[5]]]
    query = {"schema_version": 1, "grid": DOT, "constraints": ["same_dims"]}
    f = write_lines(tmp_path / "in.jsonl", [*grids, query])
    result = run(vault.root, "embed", f)
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    outs = [json.loads(line) for line in lines]
    for out, grid in zip(outs, grids, strict=False):
        assert out["kind"] == "repr"
        assert out["id"] == repr_id(grid_to_repr(grid))
    assert outs[3]["kind"] == "query"
    dims = {len(o["vector"]) for o in outs}
    assert len(dims) == 1 and dims.pop() > 0
    for o in outs:
        assert all(isinstance(x, int) and -128 <= x <= 127 for x in o["vector"])
        assert "embedder" in o
    assert len({tuple(o["vector"]) for o in outs[:3]}) == 3
    # deterministic (the second run reads the cache)
    assert run(vault.root, "embed", f).stdout == result.stdout


def test_embed_stdin_and_task(vault: Vault) -> None:
    task = json.loads((EXAMPLES / "tasks" / "rotate.json").read_text())
    result = run(vault.root, "embed", "-", input=json.dumps(task) + "\n" + json.dumps(DOT) + "\n")
    outs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["kind"] for o in outs] == ["query", "repr"]


def test_an_empty_list_is_no_records_to_add_or_import(vault: Vault, tmp_path: Path) -> None:
    """``[]`` is a list of no records for add and import (nothing written, exit 0); embed
    refuses it as an empty grid (tests/test_cli_errors.py)."""
    before = snapshot(vault.root)
    empty = write(tmp_path / "empty.json", [])
    assert "nothing to write" in run(vault.root, "add", empty).stderr
    assert "nothing to write" in run(vault.root, "import", "-", input="[]").stderr
    assert snapshot(vault.root) == before
    bad = run(vault.root, "embed", "-", input="[]", code=1)
    assert bad.stdout == "" and "expected a non-empty list of rows" in bad.stderr


def test_embed_single_grid_file(vault: Vault) -> None:
    result = runner.invoke(
        app, ["--vault", str(vault.root), "embed", str(EXAMPLES / "grids" / "ring.json")]
    )
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    ring = json.loads((EXAMPLES / "grids" / "ring.json").read_text())
    assert json.loads(line)["id"] == repr_id(grid_to_repr(ring))


# --------------------------------------------------------------------------- determinism
def _cli_sequence(root: Path, tmp_path: Path) -> list[str]:
    """A realistic session; returns every stdout."""
    forked = tmp_path / "forked.json"
    forked.write_text(
        json.dumps(card("rotate-90", ["transform:rotate_90", SQ], dsl="(rotate_90 grid)"))
    )
    steps = [
        ["init"],
        ["add", str(EXAMPLES / "cards.jsonl")],
        ["evidence", "add", str(EXAMPLES / "evidence.jsonl")],
        ["status", "rotate-270", "1.0.0", "deprecated"],
        ["add", "--fork", str(forked)],
        ["index", "build"],
        ["retrieve", "--task", str(EXAMPLES / "tasks" / "rotate.json")],
        ["rollback"],
        ["rollback", "--mode", "symbolic"],
        ["retrieve", "--repr", str(EXAMPLES / "grids" / "ring.json")],
        ["log"],
        ["index", "status"],
        ["rollback", "--list"],
    ]
    outs = []
    for step in steps:
        outs.append(run(root, *step, "--json", env=EPOCH).stdout)
    return outs


def test_cli_same_commands_give_byte_identical_vaults(tmp_path: Path) -> None:
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    out1 = _cli_sequence(tmp_path / "one", tmp_path / "w1")
    out2 = _cli_sequence(tmp_path / "two", tmp_path / "w2")
    tree1, tree2 = snapshot(tmp_path / "one"), snapshot(tmp_path / "two")
    assert sorted(tree1) == sorted(tree2)
    for path in tree1:
        assert tree1[path] == tree2[path], path
    # outputs agree too, except where they name the vault's own path
    assert out1[1:] == out2[1:]
    times = {e["time"] for e in json.loads(out1[10])}
    assert times == {"2023-11-14T22:13:20Z"}


def _library_sequence(root: Path) -> Vault:
    v = Vault.init(root, clock=fixed_clock(1_234_567_890))
    v.add(example_cards())
    v.add_evidence(example_evidence())
    v.set_status("rotate-180", "1.0.0", "suppressed")
    v.add([(card("rotate-90", [SQ], dsl="(rotate_90 grid)"), "fork.json")], fork=True)
    v.build_index()
    v.set_mode("soft")
    return v


def test_library_same_calls_with_fixed_clock_give_identical_vaults(tmp_path: Path) -> None:
    a = _library_sequence(tmp_path / "a")
    b = _library_sequence(tmp_path / "b")
    assert snapshot(a.root) == snapshot(b.root)
    assert {e.time for e in a.audit.entries()} == {"2009-02-13T23:31:30Z"}
