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


@pytest.mark.parametrize("no_color", ["1", ""])
def test_demo_prints_no_escape_codes_when_not_a_terminal(tmp_path: Path, no_color: str) -> None:
    """`make demo` under NO_COLOR (or piped) prints plain text; a stand-in `vault` on PATH keeps
    this fast (the real commands run in the tour test)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "vault"
    fake.write_text('#!/bin/sh\necho "ran vault $*"\n')
    fake.chmod(0o755)
    env = {**os.environ, "NO_COLOR": no_color, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh"), str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
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
