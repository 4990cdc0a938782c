"""Point 1 of the CLI issue — discoverable: ``--version``, shell completion, an example in
every command's help, ``python -m vault``, ``--vault`` after the command, and the vault
found from a subdirectory of it (as git and dvc find their repository)."""

from __future__ import annotations

import importlib.metadata
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

import vault
from vault.vault import Vault, fixed_clock
from vault_cli.app import app

from .conftest import EXAMPLES, card

runner = CliRunner()
ROOT_COMMAND = typer.main.get_command(app)


def invoke(args: list[str], env: dict[str, str | None] | None = None) -> Result:
    result = runner.invoke(app, args, env={"VAULT_DIR": None, **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def leaf_commands(cmd: Any = ROOT_COMMAND, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every runnable command, hidden aliases included."""
    subs = getattr(cmd, "commands", None)
    if not subs:
        return [path]
    return [p for name, sub in sorted(subs.items()) for p in leaf_commands(sub, (*path, name))]


LEAVES = leaf_commands()
IDS = [" ".join(p) for p in LEAVES]


# --------------------------------------------------------------------------- version
def test_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"vault {vault.__version__}\n"
    assert importlib.metadata.version("concept-vault") == vault.__version__


@pytest.mark.parametrize("module", ["vault", "vault_cli"])
def test_python_dash_m(module: str) -> None:
    for args, needle in ((["--version"], f"vault {vault.__version__}"), (["--help"], "retrieve")):
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert needle in proc.stdout
        assert proc.stderr == ""
    assert "Usage: vault " in proc.stdout  # the program is called vault, whatever ran it


# --------------------------------------------------------------------------- completion
def test_completion_options_are_offered() -> None:
    help_text = invoke(["--help"]).stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete --command")],
)
def test_show_completion_prints_a_script(
    shell: str, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script for the shell named. (typer detects the running shell from the process's
    ancestors unless told not to — then ``--show-completion`` takes the shell's name; a test
    run whose ancestors hold no shell, e.g. under nohup, would detect none.)"""
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = invoke(["--show-completion", shell])
    assert result.exit_code == 0, result.output
    assert "_VAULT_COMPLETE" in result.stdout and marker in result.stdout


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [
        ("vault ind", 1, {"index"}),
        ("vault set", 1, {"set-status"}),
        ("vault retrieve --mode ", 3, {"symbolic", "hybrid", "soft"}),
        ("vault rollback --mode ", 3, {"symbolic", "hybrid", "soft", "config"}),
        ("vault index ", 2, {"build", "status"}),
    ],
)
def test_completion_completes_commands_and_choices(
    words: str, cword: int, expected: set[str]
) -> None:
    env: dict[str, str | None] = {
        "_VAULT_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
    }
    result = runner.invoke(app, [], env=env, prog_name="vault")
    assert set(result.stdout.split()) == expected, result.output


# --------------------------------------------------------------------------- examples
def parse(argv: list[str]) -> None:
    """Parse a command line as `vault` would, down to the leaf command (no side effects)."""
    cmd: Any = ROOT_COMMAND
    ctx = cmd.make_context("vault", argv)
    while getattr(cmd, "commands", None):
        rest = [*ctx._protected_args, *ctx.args]
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)


def examples(path: tuple[str, ...]) -> list[str]:
    text = invoke([*path, "--help"]).stdout
    assert "Example" in text, f"`vault {' '.join(path)} --help` shows no example"
    block = text.split("Example", 1)[1].splitlines()[1:]
    return [line.strip() for line in block if line.startswith("    vault ")]


GROUPS = [(), ("evidence",), ("index",), ("arc",), ("embedder",), ("remote",)]


@pytest.mark.parametrize("path", [*GROUPS, *LEAVES])
def test_every_help_shows_an_example_that_parses(path: tuple[str, ...]) -> None:
    lines = examples(path)
    assert lines
    for line in lines:
        words = shlex.split(line.split(" # ")[0].split(" || ")[0].split(" > ")[0])
        assert words[0] == "vault"
        if path:
            assert tuple(words[1 : 1 + len(path)]) == path or path == ("status",), line
        for cmd in " ".join(words[1:]).split(" ; "):
            parse(shlex.split(cmd))


# --------------------------------------------------------------------------- --vault
def minimal_args(tmp_path: Path) -> dict[str, list[str]]:
    """A well-formed command line for every command (what it points at may not exist)."""
    grid = tmp_path / "g.json"
    grid.write_text("[[1]]")
    c = tmp_path / "c.json"
    c.write_text(json.dumps(card("x", [])))
    return {
        "add": ["add", str(c)],
        "arc import": ["arc", "import", str(EXAMPLES / "tasks" / "rotate.json")],
        "embed": ["embed", str(grid)],
        "embedder fit": ["embedder", "fit", "--from-vault"],
        "embedder status": ["embedder", "status"],
        "embedder use": ["embedder", "use", "builtin"],
        "eval": ["eval", "--dataset", "synthetic", "--tasks-per-family", "2", "--modes", "none"],
        "evidence add": ["evidence", "add", str(c)],
        "gc": ["gc", "--keep", "1"],
        "index build": ["index", "build"],
        "index status": ["index", "status"],
        "init": ["init"],
        "export": ["export"],
        "import": ["import", str(c)],
        "list": ["list"],
        "log": ["log"],
        "ls": ["ls"],
        "repr": ["repr", str(grid)],
        "retrieve": ["retrieve", "--repr", str(grid)],
        "rollback": ["rollback", "--list"],
        "set-status": ["set-status", "x", "1.0.0", "active"],
        "show": ["show", "x"],
        "status": ["status", "x", "1.0.0", "active"],
        "upgrade": ["upgrade"],
        "verify": ["verify"],
        "remote add": ["remote", "add", "origin", (tmp_path / "r").as_uri()],
        "remote list": ["remote", "list"],
        "remote remove": ["remote", "remove", "origin"],
        "push": ["push"],
        "pull": ["pull"],
        "clone": ["clone", (tmp_path / "no-remote").as_uri()],
    }


def test_minimal_args_cover_every_command(tmp_path: Path) -> None:
    assert sorted(minimal_args(tmp_path)) == sorted(IDS)


@pytest.mark.parametrize("name", IDS)
def test_vault_option_after_the_command(tmp_path: Path, name: str) -> None:
    """`vault cmd --vault B` uses B (VAULT_DIR loses to it); `vault --vault A cmd --vault B`
    (it silently used B) is conflicting options: a usage error, nothing made."""
    argv = minimal_args(tmp_path)[name]
    a, b, env = tmp_path / "A", tmp_path / "B", tmp_path / "ENV"
    both = invoke(["--vault", str(a), *argv, "--vault", str(b)], env={"VAULT_DIR": str(env)})
    assert both.exit_code == 2 and "--vault given twice" in both.stderr, both.output
    assert not a.exists() and not b.exists()
    result = invoke([*argv, "--vault", str(b)], env={"VAULT_DIR": str(env)})
    if name in ("repr", "eval"):  # need no vault; the option is accepted all the same
        assert result.exit_code == 0, result.output
    elif name == "init":
        assert result.exit_code == 0, result.output
        assert (b / "format.json").is_file()
    else:
        assert result.exit_code == 1, result.output
        assert str(b) in result.stderr, result.stderr
    assert not a.exists() and not env.exists()


def test_index_status_with_vault_after_the_command(vault: Vault) -> None:
    """The issue's example: `vault index status --vault X` failed."""
    result = invoke(["index", "status", "--vault", str(vault.root), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stale"] is False


@pytest.mark.parametrize("group", ["index", "evidence", "arc"])
def test_vault_option_between_a_group_and_its_command(tmp_path: Path, group: str) -> None:
    args = next(a for n, a in sorted(minimal_args(tmp_path).items()) if n.startswith(group + " "))
    b = tmp_path / "B"
    result = invoke([group, "--vault", str(b), *args[1:]])
    assert result.exit_code == 1 and str(b) in result.stderr, result.output
    # a different --vault before the group too: conflicting options, not the last one
    result = invoke(["--vault", str(tmp_path / "A"), group, "--vault", str(b), *args[1:]])
    assert result.exit_code == 2 and "--vault given twice" in result.stderr, result.output
    assert group in invoke([group, "--help"]).stdout


def test_vault_before_the_command_and_vault_dir(vault: Vault, tmp_path: Path) -> None:
    assert invoke(["--vault", str(vault.root), "log"]).exit_code == 0
    assert invoke(["log"], env={"VAULT_DIR": str(vault.root)}).exit_code == 0
    # --vault beats VAULT_DIR
    result = invoke(["log", "--vault", str(vault.root)], env={"VAULT_DIR": str(tmp_path / "no")})
    assert result.exit_code == 0


# --------------------------------------------------------------------------- discovery
@pytest.fixture
def inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Vault:
    """A vault, with the current directory deep inside it."""
    v = Vault.init(tmp_path / "myvault", clock=fixed_clock(1_700_000_000))
    monkeypatch.chdir(v.root / "embeddings" / "cache")
    return v


def test_vault_found_from_a_subdirectory(inside: Vault, tmp_path: Path) -> None:
    c = tmp_path / "c.json"
    c.write_text(json.dumps(card("found", ["feature:square"])))
    result = invoke(["add", str(c), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == ["found@1.0.0"]
    assert Vault.open(inside.root).concept_card("found")[1]["id"] == "found"
    assert invoke(["init"]).stderr == f"already a vault: {inside.root}\n"


def test_vault_dir_and_vault_beat_discovery(inside: Vault, tmp_path: Path) -> None:
    other = tmp_path / "missing"
    result = invoke(["log"], env={"VAULT_DIR": str(other)})
    assert result.exit_code == 1 and str(other) in result.stderr
    result = invoke(["log", "--vault", str(other)])
    assert result.exit_code == 1 and str(other) in result.stderr


def test_outside_any_vault_the_default_is_dot_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(["log"])
    assert result.exit_code == 1
    assert result.stderr == "error: vault: no such directory; create a vault with `vault init`\n"
    assert invoke(["init"]).exit_code == 0
    assert (tmp_path / "vault" / "format.json").is_file()
    assert invoke(["log", "--json"]).exit_code == 0


def test_an_old_format_vault_is_found_and_upgrade_suggested(inside: Vault) -> None:
    (inside.root / "format.json").write_text('{"format":"concept-vault","version":1}\n')
    result = invoke(["log"])
    assert result.exit_code == 1
    assert "vault upgrade" in result.stderr and str(inside.root) in result.stderr


def test_a_foreign_format_json_is_not_a_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "format.json").write_text('{"format":"something-else","version":1}\n')
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    result = invoke(["log"])
    assert result.exit_code == 1 and "error: vault: no such directory" in result.stderr


def test_discovery_is_documented() -> None:
    assert "containing the current" in invoke(["--help"]).stdout
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert "containing the current directory" in readme
