"""Named remotes, kept in ``config.toml`` as ``[remote.NAME]`` tables holding ``url`` only
(never a credential: those come from the object-store library's environment)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from vault.errors import ConfigError, ConflictError, InputError, NotFoundError, UsageError
from vault.handle import REMOTE_NAME
from vault.remote.store import check_url
from vault.store.fs import atomic_write
from vault.store.staging import JOURNAL

NAME = REMOTE_NAME  # (the form ``vault verify`` expects of ``remotes/NAME``)
DEFAULT = "origin"


def _tables(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None


def remotes(config_path: Path) -> dict[str, str]:
    """{name: url} of the vault's remotes."""
    table = _tables(config_path).get("remote", {})
    out = {}
    if not isinstance(table, dict):
        raise ConfigError(f"{config_path}: 'remote' must be a table of [remote.NAME] tables")
    for name, value in table.items():
        if _bad_name(name):
            raise ConfigError(f"{config_path}: [remote.{name}]: {_bad_name(name)}")
        if (
            not isinstance(value, dict)
            or set(value) != {"url"}
            or not isinstance(value["url"], str)
        ):
            raise ConfigError(f"{config_path}: [remote.{name}] holds exactly one key, url")
        out[name] = value["url"]
    return out


def _bad_name(name: str) -> str:
    """What is wrong with a remote's name ("" if nothing): its form, or ``staged`` — the
    staging journal's place, ``remotes/staged`` (``vault.store.staging``), is not free to
    be a remote's directory."""
    if not NAME.fullmatch(name):
        return f"remote name {name!r}: letters, digits, '.', '_', '-' (at most 64)"
    if name == JOURNAL[-1]:
        return f"remote name {name!r} is reserved (remotes/{name} is the staging journal)"
    return ""


def check_name(name: str) -> str:
    if _bad_name(name):
        raise UsageError(_bad_name(name))
    return name


def check(name: str, url: str) -> None:
    """The form of a remote's name and URL (a ``UsageError``: told from the command line
    alone, before the vault is read)."""
    check_name(name)
    check_url(url)
    if any(ord(c) < 32 or c in '"\\' for c in url):
        raise UsageError(
            f"remote URL {url!r}: control characters, quotes and backslashes are not allowed"
        )


def add_text(text: str, name: str, url: str) -> str:
    """``config.toml`` text with ``[remote.NAME]`` appended."""
    check(name, url)
    sep = "" if not text or text.endswith("\n") else "\n"
    return f'{text}{sep}\n[remote.{name}]\nurl = "{url}"\n'


def without_remotes(text: str) -> str:
    """``config.toml`` text with every ``[remote.*]`` table removed (what a remote keeps)."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            skipping = stripped.startswith("[remote.") or stripped == "[remote]"
        if not skipping:
            out.append(line)
    return "".join(out).rstrip("\n") + "\n"


def add_remote(config_path: Path, name: str, url: str) -> None:
    """Add ``[remote.NAME]`` (call under the vault's write lock). A name the vault has
    already is found by reading its config.toml: a ``ConflictError`` (exit 1), not a usage
    error (the form of the name and URL is checked first: that one is)."""
    check(name, url)
    known = remotes(config_path)
    if name in known:
        raise ConflictError(
            f"remote {name!r} exists already ({known[name]}): `vault remote remove {name}` "
            "first to point it elsewhere, or choose another name"
        )
    try:
        text = config_path.read_text("utf-8")
    except FileNotFoundError:
        text = ""
    atomic_write(config_path, add_text(text, name, url).encode())


def remove_remote(config_path: Path, name: str) -> None:
    if name not in remotes(config_path):
        raise NotFoundError(f"no remote named {name!r}")
    text = config_path.read_text("utf-8")
    kept = {n: u for n, u in remotes(config_path).items() if n != name}
    text = without_remotes(text)
    for n, u in kept.items():
        text = add_text(text, n, u)
    atomic_write(config_path, text.encode())


def resolve(config_path: Path, name: str | None) -> tuple[str, str]:
    """(name, url) of the remote meant: ``name``, else the only one or ``origin``. None to
    mean, or several and none named, is found by reading the vault's config.toml: an
    ``InputError`` (exit 1), not a usage error (exit 2: told from the command line alone)."""
    known = remotes(config_path)
    if name is None:
        if DEFAULT in known:
            name = DEFAULT
        elif len(known) == 1:
            name = next(iter(known))
        elif not known:
            raise NotFoundError("this vault has no remote: `vault remote add NAME URL`")
        else:
            raise InputError(f"several remotes ({', '.join(sorted(known))}): name one")
    if name not in known:
        raise NotFoundError(f"no remote named {name!r} (known: {', '.join(sorted(known))})")
    return name, known[name]
