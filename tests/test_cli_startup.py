"""Start-up of a one-shot ``vault`` process (issue 9, point 5): ``main`` builds only the
command it runs, loads no module that command does not need, keeps numpy's BLAS to one
thread unless told otherwise, and ends without the interpreter's teardown — with every
byte of output written and the exit handlers run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import vault
from vault.vault import Vault
from vault_cli.app import app, invoked, only

from .conftest import EXAMPLES

runner = CliRunner()
ROOT = typer.main.get_command(app)
NAMES = sorted(ROOT.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["retrieve", "--json"], "retrieve"),
        (["--vault", "v", "retrieve"], "retrieve"),
        (["--vault=v", "index", "status"], "index"),
        (["status", "a", "1.0.0", "active"], "status"),  # the hidden alias
        (["set-status"], "set-status"),
        (["eval", "--help"], "eval"),
        ([], None),
        (["--help"], None),  # the root's help lists every command
        (["--version"], None),
        (["-h", "retrieve"], None),
        (["retriev"], None),  # a misspelt name: the whole tree, for its suggestion
        (["--vault"], None),
    ],
)
def test_the_command_a_command_line_names(argv: list[str], name: str | None) -> None:
    assert invoked(argv) == name


def test_every_command_is_found_by_its_name() -> None:
    assert NAMES and all(invoked([n]) == n for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_pruned_tree_behaves_as_the_whole(name: str) -> None:
    """`vault NAME --help` and a usage error read the same from either tree."""
    for args in ([name, "--help"], [name, "--no-such-option"]):
        whole = runner.invoke(app, args)
        pruned = runner.invoke(only(name), args)
        assert (pruned.exit_code, pruned.output) == (whole.exit_code, whole.output)
    assert sorted(typer.main.get_command(only(name)).commands) == [name]  # type: ignore[attr-defined]


def _run(
    code: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**full, "VAULT_DIR": "", **(env or {})},
        timeout=120,
    )


# An exit handler registered before main(): it sees what the run imported, and that it ran.
PROBE = (
    "import atexit, os, sys\n"
    "def probe():\n"
    "    heavy = ('vault.embedding.fitted', 'multiprocessing', 'concurrent.futures',\n"
    "             'vault.index.build', 'importlib.resources')\n"
    "    sys.stderr.write(json.dumps({'loaded': [m for m in heavy if m in sys.modules],\n"
    "        'blas': os.environ.get('OPENBLAS_NUM_THREADS'), 'numpy': 'numpy' in sys.modules}))\n"
    "import json\n"
    "atexit.register(probe)\n"
    "from vault_cli.app import main\n"
    "main()\n"
)


def test_a_query_loads_only_what_it_needs(example_vault: Vault) -> None:
    """A new vault's embedder is the shipped fitted one: a query loads the fitted model (it
    embeds with it, reading the weights from the vault) and nothing else heavy — not the
    package data loader (importlib.resources)."""
    grid = str(EXAMPLES / "grids" / "ring.json")
    out = _run(PROBE, "--vault", str(example_vault.root), "retrieve", "--repr", grid, "--json")
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stderr)
    assert probe == {"loaded": ["vault.embedding.fitted"], "blas": "1", "numpy": True}
    assert json.loads(out.stdout)["results"]  # the whole result, written before the exit


def test_a_query_of_a_builtin_vault_loads_no_fitted_model(example_builtin_vault: Vault) -> None:
    grid = str(EXAMPLES / "grids" / "ring.json")
    root = str(example_builtin_vault.root)
    out = _run(PROBE, "--vault", root, "retrieve", "--repr", grid, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stderr) == {"loaded": [], "blas": "1", "numpy": True}


def test_an_explicit_blas_thread_count_is_kept(example_vault: Vault) -> None:
    out = _run(
        PROBE,
        "--vault",
        str(example_vault.root),
        "log",
        "--json",
        env={"OPENBLAS_NUM_THREADS": "2"},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stderr)["blas"] == "2"


def test_exit_codes_and_large_output_survive_the_fast_exit(tmp_path: Path) -> None:
    grid = [[(r * c) % 10 for c in range(30)] for r in range(30)]
    task = {"train": [{"input": grid, "output": grid}] * 40, "test": [{"input": grid}]}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(task))
    main = "from vault_cli.app import main; main()"
    out = _run(main, "repr", str(path))
    assert out.returncode == 0 and len(out.stdout) > 100_000
    in_process = runner.invoke(app, ["repr", str(path)])
    assert out.stdout == in_process.stdout  # every byte flushed before the process ends
    assert _run(main, "retrieve", "-k", "0").returncode == 2
    missing = _run(main, "--vault", str(tmp_path / "none"), "log")
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")
    assert _run(main, "--version").stdout == f"vault {vault.__version__}\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["--version"], ["repr", str(EXAMPLES / "grids" / "ring.json")]])
def test_output_to_a_full_disk_is_an_error_not_a_traceback(args: list[str]) -> None:
    """`vault --version > /dev/full` printed a traceback (its callback writes before any
    command runs); output that cannot be written is one error line and exit 1."""
    with open("/dev/full", "w") as full:
        out = subprocess.run(
            [sys.executable, "-m", "vault", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "No space left" in out.stderr
