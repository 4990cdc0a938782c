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
            str(example_vault.root),
            gen,
            cfg,
            iter_requests(str(path)),
            scheduler=cluster,
            partition=5,
        )
    ]
    assert spread == alone
    assert len(alone) == 43 and sum("error" in json.loads(a) for a in alone) == 2


def test_raw_partitions_give_the_command_s_bytes(
    example_vault: Vault, tmp_path: Path, cluster: str
) -> None:
    """The workers parse, answer and encode raw lines: blank lines, a line that is not
    UTF-8 and one that is not JSON across partition edges keep their numbers and errors."""
    import io

    import jsonlines

    from vault.distributed import batch_lines
    from vault.input import iter_requests

    path = requests_file(tmp_path)
    data = path.read_bytes().split(b"\n")
    data[3:3] = [b"", b"   ", b'{"task": "\xff"}', b""]
    path.write_bytes(b"\n".join(data))
    cfg = example_vault.config()
    with example_vault.retriever(config=cfg) as r:
        buf = io.StringIO()
        writer = jsonlines.Writer(buf, compact=True, sort_keys=True)
        for answer in r.batch(iter_requests(str(path))):
            writer.write(answer)
        gen = r.generation
    alone = buf.getvalue()
    parts = list(
        batch_lines(str(example_vault.root), gen, cfg, str(path), scheduler=cluster, partition=3)
    )
    assert "".join(text for text, _, _ in parts) == alone
    assert sum(n for _, n, _ in parts) == alone.count("\n") == 44
    assert sum(bad for _, _, bad in parts) == 3 and len(parts) == 16
    assert "not UTF-8" in alone and f"{path.name}:6" in alone  # (line numbers of the file)


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
    wrong = runner.invoke(
        app,
        [
            "--vault",
            str(example_vault.root),
            "retrieve",
            "--repr",
            str(EXAMPLES / "grids" / "ring.json"),
            "--scheduler",
            cluster,
        ],
    )
    assert wrong.exit_code == 2


# --------------------------------------------------------------------------- vault embed
def embed_input(tmp_path: Path) -> Path:
    """Grids, tasks, a repr and a query, each several times (so partitions repeat work)."""
    rng = random.Random(7)
    grids = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "grids").glob("*.json"))]
    tasks = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "tasks").glob("*.json"))]
    query = json.loads((EXAMPLES / "queries" / "same-dims.json").read_text())
    fresh = [
        [[rng.randrange(10) for _ in range(rng.randint(1, 6))] for _ in range(3)] for _ in range(6)
    ]  # rows of one width each
    fresh = [[row[: len(g[0])] + [0] * (len(g[0]) - len(row)) for row in g] for g in fresh]
    items: list[Any] = [*grids, *tasks, query, *fresh, *tasks, *grids]
    path = tmp_path / "embed.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    return path


def cache_files(root: Path) -> dict[str, bytes]:
    cache = root / "embeddings" / "cache"
    return {
        str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()
    }


def test_embed_on_a_cluster_gives_the_same_lines_and_cache_files(
    example_vault: Vault, tmp_path: Path, cluster: str
) -> None:
    import shutil

    from typer.testing import CliRunner

    from vault_cli.app import app

    path = embed_input(tmp_path)
    twin = tmp_path / "twin"
    shutil.copytree(example_vault.root, twin, symlinks=True)
    before = cache_files(twin)
    runner = CliRunner()
    one = runner.invoke(app, ["--vault", str(example_vault.root), "embed", str(path)])
    many = runner.invoke(app, ["--vault", str(twin), "embed", str(path), "--scheduler", cluster])
    assert one.exit_code == many.exit_code == 0, many.output
    assert many.stdout == one.stdout and one.stdout.count("\n") == 17
    after = cache_files(twin)
    assert after == cache_files(example_vault.root)
    assert len(after) > len(before) + 6  # the workers wrote the new vectors to the cache


def test_embed_partitions_come_back_in_input_order(
    example_vault: Vault, tmp_path: Path, cluster: str
) -> None:
    from vault.distributed import embed
    from vault.input import read_records
    from vault.ops.embed import embed_records, parse_records

    path = embed_input(tmp_path)
    alone = list(embed_records(example_vault, read_records(str(path))))
    parsed = parse_records(example_vault, read_records(str(path)))
    gen = example_vault.snapshot().generation
    spread = list(embed(str(example_vault.root), gen, parsed, scheduler=cluster, partition=2))
    assert spread == alone
    assert [x["kind"] for x in alone].count("query") == 7  # 3 tasks twice and the query


def test_a_worker_that_sees_another_generation_refuses(
    example_vault: Vault, tmp_path: Path, cluster: str
) -> None:
    from vault.distributed import embed
    from vault.errors import VaultError
    from vault.input import read_records
    from vault.ops.embed import parse_records

    parsed = parse_records(example_vault, read_records(str(embed_input(tmp_path))))
    with pytest.raises(VaultError, match="the vault changed, or the path is not shared"):
        list(embed(str(example_vault.root), "0" * 64, parsed, scheduler=cluster))


# --------------------------------------------------------------------------- vault eval
def timeless(doc: Any) -> Any:
    """An eval result without what a clock measured (latencies, seconds)."""
    if isinstance(doc, dict):
        return {
            k: timeless(v)
            for k, v in doc.items()
            if k not in ("import_seconds", "seconds", "median_ms", "p95_ms", "mean_ms")
        }
    if isinstance(doc, list):
        return [timeless(v) for v in doc]
    return doc


@pytest.mark.parametrize("protocol", ["cross", "learning"])
def test_eval_on_a_cluster_is_the_single_process_study(protocol: str, cluster: str) -> None:
    from vault import distributed
    from vault.eval import datasets, study

    ds = datasets.load("synthetic", protocol=protocol, tasks_per_family=2, families="held-out")
    modes = ("none", "symbolic", "soft")
    ticks: list[tuple[int, int]] = []
    alone = study.run(ds, modes=modes)
    spread = study.run(
        ds, modes=modes, scheduler=cluster, progress=lambda d, t: ticks.append((d, t))
    )
    assert timeless(spread.to_json()) == timeless(alone.to_json())
    assert spread.curves == alone.curves and len(ds.queries) > study.PARTITION
    total = (2 if protocol == "learning" else 1) * len(modes) * len(ds.queries)
    assert ticks[-1] == (total, total)  # counted to the end
    assert any(k[0] == "eval" for k in distributed._OPEN)  # the workers opened it


def test_the_cli_eval_on_a_cluster(cluster: str) -> None:
    from typer.testing import CliRunner

    from vault_cli.app import app

    base = [
        "eval",
        "--dataset",
        "synthetic",
        "--tasks-per-family",
        "2",
        "--families",
        "held-out",
        "--modes",
        "symbolic,hybrid-weighted",
        "--json",
    ]
    runner = CliRunner()
    one = runner.invoke(app, base)
    many = runner.invoke(app, [*base, "--scheduler", cluster])
    assert one.exit_code == many.exit_code == 0, many.output
    assert timeless(json.loads(many.stdout)) == timeless(json.loads(one.stdout))
    assert json.loads(one.stdout)["modes"]["symbolic"]["n_queries"] == 18
    lone = runner.invoke(app, [*base, "--workers", "3"])  # (no cluster to size)
    assert lone.exit_code == 2 and "--workers applies to --scheduler" in lone.stderr
