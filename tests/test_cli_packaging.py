"""Packaging hygiene: the SPDX license form, and a demo without raw escape codes."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_uses_the_spdx_license_expression() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"  # not the deprecated {text = ...} table
    # SPDX expressions need setuptools >= 77 (older ones reject the string form)
    (req,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert req == "setuptools>=77"


# A stand-in `vault`: says what it ran; `init` refuses a non-empty directory as the real one does.
FAKE_VAULT = """#!/bin/sh
echo "ran vault $*"
if [ "$1" = init ] && [ -n "$(ls -A "$VAULT_DIR")" ]; then echo "not empty" >&2; exit 1; fi
"""


def _fake_path(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "vault"
    fake.write_text(FAKE_VAULT)
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def _demo(target: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh"), str(target)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("no_color", ["1", ""])
def test_demo_prints_no_escape_codes_when_not_a_terminal(tmp_path: Path, no_color: str) -> None:
    """`make demo` under NO_COLOR (or piped) prints plain text; a stand-in `vault` on PATH keeps
    this fast (the real commands run in the tour test)."""
    proc = _demo(tmp_path / "demo", {**_fake_path(tmp_path), "NO_COLOR": no_color})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    assert "$ vault verify" in proc.stderr and "ran vault verify" in proc.stdout


def test_no_color_means_no_escape_codes_even_when_colour_is_forced(tmp_path: Path) -> None:
    """Rich keeps bold and italics under NO_COLOR; vault drops every style."""
    from typer.testing import CliRunner

    from vault.vault import Vault
    from vault_cli.app import app

    v = Vault.init(tmp_path / "v")
    runner = CliRunner()
    args = ["log", "--vault", str(v.root)]
    forced = runner.invoke(app, args, env={"FORCE_COLOR": "1", "NO_COLOR": None})
    assert forced.exit_code == 0 and "\x1b[" in forced.stdout  # the check can see codes
    plain = runner.invoke(app, args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert plain.exit_code == 0 and "\x1b" not in plain.output
    assert "init" in plain.stdout


# --------------------------------------------------------------------------- issue 20, item 9
def test_a_license_file_says_what_pyproject_says() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    text = (ROOT / "LICENSE").read_text()
    assert meta["project"]["license"] == "MIT"
    assert text.startswith("MIT License\n")
    assert "Copyright (c) the vault authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_the_readme_opens_with_how_vault_gets_on_path() -> None:
    """`make demo` installs into .venv: `which vault` found nothing, and the README never
    said so. Its first lines now do."""
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:20])
    assert "make demo" in head
    assert ". .venv/bin/activate" in head and "pipx install ." in head


def test_the_demo_refuses_a_non_empty_directory_it_did_not_make(tmp_path: Path) -> None:
    """`make demo DEMO=~/work` ran `rm -rf ~/work`. Now: refused, every file kept."""
    mine = tmp_path / "precious"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    proc = _demo(mine, _fake_path(tmp_path))
    assert proc.returncode == 1
    assert "not made by the demo" in proc.stderr and "ran vault" not in proc.stdout
    assert (mine / "thesis.tex").read_text() == "years of work"
    # a file, or a symbolic link to a directory, is refused too
    link = tmp_path / "link"
    link.symlink_to(mine)
    assert _demo(link, _fake_path(tmp_path)).returncode == 1
    assert (mine / "thesis.tex").exists()


def test_the_demo_replaces_its_own_directory_and_uses_an_empty_one(tmp_path: Path) -> None:
    env = _fake_path(tmp_path)
    target = tmp_path / "demo"
    first = _demo(target, env)
    assert first.returncode == 0, first.stderr
    assert (target / ".vault-demo").is_file()
    (target / "stale-from-the-last-run").write_text("x")
    second = _demo(target, env)  # its own marker: deleted and made again
    assert second.returncode == 0, second.stderr
    assert not (target / "stale-from-the-last-run").exists()
    assert (target / ".vault-demo").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _demo(empty, env).returncode == 0
