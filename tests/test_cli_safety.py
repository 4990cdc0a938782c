"""Point 5 of the CLI issue — safe by default on destructive work: ``gc`` and ``rollback``
show what they will do and ask on a terminal (``--yes`` skips it; never asked when not a
terminal, and ``--help`` says so); the kill switch's undo is in the tour; ``vault status``
is now ``vault set-status``, the old name kept as an alias."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from vault.vault import Vault
from vault_cli import core
from vault_cli.app import app

from .conftest import EXAMPLES, card
from .helpers import tree

runner = CliRunner()


def run(root: Path, *args: str, code: int = 0, input: str | None = None) -> Result:
    result = runner.invoke(app, [*args, "--vault", str(root)], input=input, env={"VAULT_DIR": None})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def history(vault: Vault) -> Vault:
    """Three generations: init, add a, add b."""
    vault.add([(card("a", ["feature:square"]), "a")])
    vault.add([(card("b", ["feature:square"]), "b")])
    return vault


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if a person ran the command (stdin and stderr are terminals)."""
    monkeypatch.setattr(core, "can_prompt", lambda: True)


def current_number(v: Vault) -> int:
    cur = Vault.open(v.root).generations.current()
    assert cur is not None
    return cur.number


# --------------------------------------------------------------------------- rollback
def test_rollback_asks_on_a_terminal_and_no_changes_nothing(history: Vault, terminal: None) -> None:
    before = tree(history.root)
    result = run(history.root, "rollback", input="n\n", code=1)
    assert "rollback from generation 3" in result.stderr and "to generation 2" in result.stderr
    assert "Roll back? [y/N]" in result.stderr
    assert result.stderr.endswith("error: aborted; nothing changed\n")
    assert result.stdout == ""
    assert tree(history.root) == before
    # end of input (Ctrl-D) is a no as well
    run(history.root, "rollback", input="", code=1)
    assert tree(history.root) == before


def test_rollback_yes_answer_and_yes_flag(history: Vault, terminal: None) -> None:
    run(history.root, "rollback", input="y\n")
    assert current_number(history) == 2
    result = run(history.root, "rollback", "--yes")
    assert "Roll back?" not in result.stderr
    assert current_number(history) == 1
    result = run(history.root, "rollback", "--to", "3", input="yes\n")
    assert "to generation 3" in result.stderr and current_number(history) == 3


def test_rollback_never_asks_when_not_a_terminal(history: Vault) -> None:
    result = run(history.root, "rollback")  # no input at all: it must not wait for any
    assert "Roll back?" not in result.stderr
    assert current_number(history) == 2


def test_rollback_with_nothing_to_do_does_not_ask(vault: Vault, terminal: None) -> None:
    result = run(vault.root, "rollback", code=1)
    assert "Roll back?" not in result.stderr
    assert "no earlier generation" in result.stderr
    assert "Roll back?" not in run(vault.root, "rollback", "--list").stderr
    assert "Roll back?" not in run(vault.root, "rollback", "--mode", "symbolic").stderr


# --------------------------------------------------------------------------- gc
def test_gc_shows_what_it_will_delete_and_asks(history: Vault, terminal: None) -> None:
    before = tree(history.root)
    result = run(history.root, "gc", "--keep", "1", input="n\n", code=1)
    assert "gc would remove 2 generations" in result.stderr and "Delete? [y/N]" in result.stderr
    assert tree(history.root) == before
    out = json.loads(run(history.root, "gc", "--keep", "1", "--json", input="y\n").stdout)
    assert out["removed_generations"] == [1, 2] and out["dry_run"] is False
    # nothing left to delete: no question
    assert "Delete?" not in run(history.root, "gc", "--keep", "1").stderr


def test_gc_dry_run_and_yes_never_ask(history: Vault, terminal: None) -> None:
    before = tree(history.root)
    dry = run(history.root, "gc", "--keep", "1", "--dry-run")
    assert "Delete?" not in dry.stderr and "would remove" in dry.stderr
    assert {k: v for k, v in tree(history.root).items() if "audit" not in k} == {
        k: v for k, v in before.items() if "audit" not in k
    }
    assert "Delete?" not in run(history.root, "gc", "--keep", "1", "-y").stderr


def test_gc_never_asks_when_not_a_terminal(history: Vault) -> None:
    result = run(history.root, "gc", "--keep", "1")
    assert "Delete?" not in result.stderr and result.stderr.startswith("removed 2 generations")


@pytest.mark.parametrize("command", ["gc", "rollback"])
def test_help_says_when_it_asks(command: str) -> None:
    text = runner.invoke(app, [command, "--help"]).stdout
    assert "--yes" in text
    assert "asks only when stdin and stderr are terminals" in " ".join(text.split())
    assert "scripts and CI are never asked" in " ".join(text.split())


# --------------------------------------------------------------------------- kill switch
def test_kill_switch_round_trip_is_in_the_tour(example_vault: Vault) -> None:
    root = example_vault.root
    assert json.loads(run(root, "rollback", "--mode", "symbolic", "--json").stdout) == {
        "mode_default": "symbolic"
    }
    assert json.loads(run(root, "rollback", "--mode", "config", "--json").stdout) == {
        "mode_default": "hybrid"
    }
    assert not (root / "refs" / "mode.json").exists()
    readme = (EXAMPLES.parent / "README.md").read_text()
    tour = readme.split("## A tour of the CLI", 1)[1].split("```", 2)[1]
    assert "vault rollback --mode config" in tour


# --------------------------------------------------------------------------- set-status
def test_set_status_and_its_alias_do_the_same(vault: Vault, tmp_path: Path) -> None:
    vault.add([(card("x", []), "x"), (card("y", []), "y")])
    a = json.loads(run(vault.root, "set-status", "x", "1.0.0", "deprecated", "--json").stdout)
    b = json.loads(run(vault.root, "status", "y", "1.0.0", "deprecated", "--json").stdout)
    assert a["op"] == b["op"] == "status"
    assert a["status"] == ["x@1.0.0"] and b["status"] == ["y@1.0.0"]
    events = [e for e in Vault.open(vault.root).audit.entries() if e.op == "status"]
    assert [e.detail for e in events] == [
        {"concept": "x@1.0.0", "status": "deprecated"},
        {"concept": "y@1.0.0", "status": "deprecated"},
    ]


def test_the_alias_is_documented_not_listed() -> None:
    listing = runner.invoke(app, ["--help"]).stdout
    assert "set-status" in listing
    assert "\n  status " not in listing
    assert "vault status" in " ".join(runner.invoke(app, ["set-status", "--help"]).stdout.split())
    assert "Alias of `vault set-status`" in runner.invoke(app, ["status", "--help"]).stdout
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert "`vault status ID VERSION STATUS` is the old name of\n`vault set-status`" in readme


# ------------------------------------------------------------------ files written for the user
TASK = str(EXAMPLES / "tasks" / "rotate.json")
WRITERS = [  # (the command's arguments before the path, its option)
    (["export", "-o"], "--output"),
    (["retrieve", "--task", TASK, "--html"], "--html"),
    (["show", "rotate-90", "--html"], "--html"),
]


@pytest.mark.parametrize(("args", "option"), WRITERS)
def test_an_output_in_the_vault_a_folder_or_a_missing_folder_is_refused(
    example_vault: Vault, tmp_path: Path, args: list[str], option: str
) -> None:
    """``export -o`` and ``--html`` never write over the vault's own files (directly or
    through a link: that broke the vault), a folder, or into a folder that does not exist
    (none is made); each is a usage error naming the option, and nothing changes."""
    root = example_vault.root
    (tmp_path / "link").symlink_to(root / "format.json")
    (tmp_path / "folder").mkdir()
    outside = tree(tmp_path / "folder")
    cases = {
        str(root / "format.json"): "inside the vault",
        str(root / "audit" / "commits.jsonl"): "inside the vault",
        str(root / "new.html"): "inside the vault",
        str(tmp_path / "link"): "inside the vault",
        str(tmp_path / "folder"): "is a folder",
        str(tmp_path / "no" / "such" / "x.out"): "no folder",
    }
    for path, why in cases.items():
        before = tree(root)
        result = run(root, *args, path, code=2)
        assert f"{option} {path}: {why}" in result.output, result.output
        assert tree(root) == before, path
    assert not (tmp_path / "no").exists()
    assert tree(tmp_path / "folder") == outside


def test_an_eval_out_folder_in_a_vault_or_a_file_is_refused(vault: Vault, tmp_path: Path) -> None:
    """``eval --out DIR`` writes three files into DIR: never into a vault's folder (the
    --vault one, any other vault, or a vault's root itself: ``vault verify`` then finds
    unexpected objects) nor over a file; a usage error (exit 2) naming the option, told
    before any work, and nothing changes."""
    root = vault.root
    other = Vault.init(tmp_path / "other").root
    (tmp_path / "link").symlink_to(root / "objects")
    (tmp_path / "file").write_text("x")
    cases = {
        str(root): "inside the vault",
        str(root / "objects"): "inside the vault",
        str(root / "new" / "deeper"): "inside the vault",
        str(tmp_path / "link"): "inside the vault",
        str(other): "inside the vault",
        str(other / "audit"): "inside the vault",
        str(tmp_path / "file"): "is a file; give a folder",
    }
    args = ["eval", "--dataset", "synthetic", "--families", "flip_h", "--out"]
    for path, why in cases.items():
        before, others = tree(root), tree(other)
        result = run(root, *args, path, code=2)
        assert f"--out {path}: {why}" in result.stderr, result.output
        assert tree(root) == before and tree(other) == others, path
    assert run(root, "verify").exit_code == 0
    run(root, *args, str(tmp_path / "report"), "--tasks-per-family", "2", "--json")
    assert (tmp_path / "report" / "results.json").is_file()


def test_init_inside_a_vault_is_refused(vault: Vault, tmp_path: Path) -> None:
    """`vault init nv/inner` (or `nv/objects/zz`) was accepted, and then `vault verify nv`
    failed (root_unexpected) and gc broke on the stray: a new vault inside a vault's folder
    (named as PATH or --vault, through a link too) is refused, exit 1 naming the enclosing
    vault, nothing made; an existing vault is still fine."""
    root = vault.root
    home = os.path.realpath(root)
    (tmp_path / "link").symlink_to(root / "objects")
    for path in (
        root / "inner",
        root / "objects" / "zz",
        root / "a" / "b",
        tmp_path / "link" / "q",
    ):
        before = tree(root)
        for argv in (["init", str(path)], ["--vault", str(path), "init"]):
            result = runner.invoke(app, argv, env={"VAULT_DIR": None})
            assert (result.exit_code, result.stderr) == (
                1,
                f"error: {path}: inside the vault ({home}); create it elsewhere\n",
            ), argv
        assert tree(root) == before
    assert run(root, "verify").exit_code == 0
    run(root, "init")  # the vault itself: left as it is
    run(root, "init", str(tmp_path / "beside"))
    assert (tmp_path / "beside" / "format.json").is_file()


@pytest.mark.parametrize(("args", "option"), WRITERS)
def test_an_output_through_a_link_or_into_a_fifo_keeps_what_is_there(
    example_vault: Vault, tmp_path: Path, args: list[str], option: str
) -> None:
    """A link stays a link (its target gets the bytes); a FIFO stays a FIFO and its reader
    gets them (so do /dev/null and /dev/stdout: a device is written into, never replaced)."""
    root = example_vault.root
    plain = tmp_path / "plain.out"
    run(root, *args, str(plain))
    want = plain.read_bytes()
    assert want
    target = tmp_path / "target.out"
    target.write_text("old")
    (tmp_path / "link.out").symlink_to(target)
    run(root, *args, str(tmp_path / "link.out"))
    assert (tmp_path / "link.out").is_symlink() and target.read_bytes() == want
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    run(root, *args, str(fifo))
    reader.join(10)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and got == [want]
    if os.geteuid() == 0:  # (a device node: only root may make one)
        node = tmp_path / "null"
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        run(root, *args, str(node))
        assert stat.S_ISCHR(node.lstat().st_mode)
