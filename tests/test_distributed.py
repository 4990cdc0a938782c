"""``retrieve --batch`` on a Dask cluster (issue 21): a local cluster of two workers
started by the fixture answers the partitions; the lines are byte-identical to the
single-process batch, in input order. Skipped only when the ``dask`` extra is absent."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dask.distributed")

from vault.distributed import batch  # noqa: E402
from vault.vault import Vault  # noqa: E402

from .conftest import EXAMPLES  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as c:
        yield c.scheduler_address


def requests_file(tmp_path: Path) -> Path:
    """Every example request and task, the tasks under random options, and bad lines."""
    rng = random.Random(21)
    lines = (EXAMPLES / "requests.jsonl").read_text().splitlines()
    tasks = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "tasks").glob("*.json"))]
    for i in range(40):
        req: dict[str, Any] = {"task": rng.choice(tasks), "id": i}
        if rng.random() < 0.5:
            req["k"] = rng.randint(1, 5)
        if rng.random() < 0.3:
            req["mode"] = rng.choice(["symbolic", "hybrid", "soft"])
        lines.append(json.dumps(req))
    lines[7] = "{not json"
    lines[12] = json.dumps({"task": tasks[0], "k": "many"})
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_cluster_batch_is_byte_identical_to_one_process(
    example_vault: Vault, tmp_path: Path, cluster: str
) -> None:
    from vault.input import iter_requests

    path = requests_file(tmp_path)
    cfg = example_vault.config()
    with example_vault.retriever(config=cfg) as r:
        alone = [json.dumps(a, sort_keys=True) for a in r.batch(iter_requests(str(path)))]
        gen = r.generation
    spread = [
        json.dumps(a, sort_keys=True)
        for a in batch(
            str(example_vault.root), gen, cfg, iter_requests(str(path)),
            scheduler=cluster, partition=5,
        )
    ]
    assert spread == alone
    assert len(alone) == 43 and sum("error" in json.loads(a) for a in alone) == 2


def test_the_cli_batch_on_a_cluster(example_vault: Vault, tmp_path: Path, cluster: str) -> None:
    from typer.testing import CliRunner

    from vault_cli.app import app

    path = requests_file(tmp_path)
    runner = CliRunner()
    base = ["--vault", str(example_vault.root), "retrieve", "--batch", str(path)]
    one = runner.invoke(app, base)
    many = runner.invoke(app, [*base, "--scheduler", cluster])
    # the requests hold 2 bad lines: every line answered, exit 1 by the --batch rule
    assert one.exit_code == many.exit_code == 1, many.output
    assert "2 of 43 request lines failed" in many.stderr
    assert many.stdout == one.stdout and one.stdout.count("\n") == 43
    wrong = runner.invoke(app, ["--vault", str(example_vault.root), "retrieve", "--repr",
                                str(EXAMPLES / "grids" / "ring.json"), "--scheduler", cluster])
    assert wrong.exit_code == 2
