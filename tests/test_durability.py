"""Nothing is acknowledged that is not durable (issue 18, deliverable 1).

The cases of the issue, each from what it reported: an existing object file that is damaged
(a power cut left it empty) is rewritten, not trusted; a batch of more than 64 objects is
fsynced file by file, or — where ``syncfs(2)`` reports write-back errors — a write's 64 or
more new records are staged and made durable by one ``syncfs`` (never ``sync(2)``, which
reports no write-back error); ``rollback --mode config``
makes the unlink of ``refs/mode.json`` durable. The power-loss harness
(``tests/reliability/powerloss.py``) checks the same properties over every prefix of each
command's file-system operations; these are the direct cases.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vault.canonical import canonical_bytes, sha256_hex
from vault.ops.verify import verify
from vault.records.cards import normalize_card
from vault.store import staging
from vault.store.objects import ObjectStore
from vault.vault import Vault
from vault_cli.app import app

from .conftest import card, example_cards, example_evidence
from .helpers import assert_sound, concepts, durable_once_before, record_durability

runner = CliRunner()


def cli(root: Path, *args: str) -> Any:
    return runner.invoke(app, ["--vault", str(root), *args], env={"NO_COLOR": "1"})


def card_path(v: Vault, c: dict[str, Any]) -> Path:
    data = canonical_bytes(normalize_card(c, "test"))
    return v.objects.path(sha256_hex(data))


# --------------------------------------------------------------------------- damaged object
@pytest.mark.parametrize("damage", ["empty", "zeros", "torn"])
def test_add_over_a_damaged_object_file_rewrites_it(
    vault: Vault, tmp_path: Path, damage: str
) -> None:
    """The issue's case: the card's object file exists but is damaged (``: > file``, as a
    power cut leaves an un-fsynced file); ``vault add card.json`` must not trust it: exit 0,
    and the vault is sound — verify exit 0, ``show`` works, ``index build`` ok."""
    c = card("lost-card", ["transform:rotate_90"])
    src = tmp_path / "card.json"
    src.write_text(json.dumps(c))
    path = card_path(vault, c)
    good = canonical_bytes(normalize_card(c, "test"))
    path.parent.mkdir(parents=True, exist_ok=True)
    bad = {"empty": b"", "zeros": bytes(len(good)), "torn": good[: len(good) // 2]}[damage]
    path.write_bytes(bad)
    path.chmod(0o444)

    r = cli(vault.root, "add", str(src))
    assert r.exit_code == 0, r.output
    assert path.read_bytes() == good
    v = Vault.open(vault.root)
    assert_sound(v)
    assert cli(vault.root, "verify").exit_code == 0
    shown = cli(vault.root, "show", "lost-card", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["card"]["id"] == "lost-card"
    built = cli(vault.root, "index", "build")
    assert built.exit_code == 0, built.output
    again = cli(vault.root, "add", str(src))
    assert again.exit_code == 0, again.output
    assert "already stored" in again.output


def test_a_repair_is_logged_and_leaves_the_index_a_function_of_the_log(
    vault: Vault, tmp_path: Path
) -> None:
    """The rewrite is recorded in the audit log (op ``repair``, the object in its detail)
    and changes no generation: the index equals a full build of the log."""
    c = card("lost-card", ["transform:rotate_90"])
    path = card_path(vault, c)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    vault.add([(c, "c")])
    repairs = [e for e in vault.audit.entries() if e.op == "repair"]
    assert len(repairs) == 1
    assert repairs[0].detail == {"objects": [path.parent.name + path.name]}
    assert repairs[0].records == ()
    assert "lost-card@1.0.0" in concepts(vault)
    assert_sound(vault)


@pytest.mark.parametrize("damage", ["flipped", "deleted"])
def test_writing_a_stored_card_or_evidence_again_restores_its_damaged_object(
    example_vault: Vault, damage: str
) -> None:
    """A card or evidence the vault already holds, whose object file was damaged (a byte
    flipped) or lost after it was stored, given again: the same record, so it is left
    unchanged — not refused as different content (it was, or "object … is missing") — and
    its object is rewritten (the damaged one's repair logged); the vault is sound again."""
    v = example_vault
    c = example_cards()[0][0]
    entry = concepts(v)[f"{c['id']}@{c['version']}"]
    paths = [v.objects.path(entry["card"]), v.objects.path(entry["evidence"][0])]
    good = [p.read_bytes() for p in paths]
    for p in paths:
        p.chmod(0o644)
        if damage == "deleted":
            p.unlink()
        else:
            p.write_bytes(p.read_bytes()[:3] + b"X" + p.read_bytes()[4:])
    assert not verify(Vault.open(v.root)).ok
    added = v.add([(c, "c")])
    assert added.added == [] and added.unchanged == [f"{c['id']}@{c['version']}"]
    assert paths[0].read_bytes() == good[0]
    v.add_evidence(example_evidence())  # (all of it again: one is the damaged one)
    assert paths[1].read_bytes() == good[1]
    repairs = [e for e in v.audit.entries() if e.op == "repair"]
    assert len(repairs) == (2 if damage == "flipped" else 0)
    assert verify(Vault.open(v.root)).ok
    assert_sound(v)


def test_a_sound_existing_object_is_left_untouched(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    digest = store.put(b"hello")
    st = store.path(digest).stat()
    store.put_digested([(digest, b"hello")])
    after = store.path(digest).stat()
    assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert store.repairs == []


def test_put_rewrites_a_damaged_object_through_a_new_file(tmp_path: Path) -> None:
    """The damaged file is replaced (a new inode, renamed into place), never written in
    place: a view file hard-linked to it keeps its own bytes until it is relinked."""
    store = ObjectStore(tmp_path / "objects")
    digest = store.put(b"hello")
    path = store.path(digest)
    path.chmod(0o644)
    path.write_bytes(b"hellO")
    old = path.stat().st_ino
    assert store.put(b"hello") == digest
    assert path.read_bytes() == b"hello"
    assert path.stat().st_ino != old
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    assert store.repairs == [digest]
    assert not [p for p in store.root.rglob(".*")]  # no temporary left


# --------------------------------------------------------------------------- batches
def _fsynced_inodes(monkeypatch: pytest.MonkeyPatch) -> set[tuple[int, int]]:
    """Record the (device, inode) of every fsync'ed descriptor; sync(2) is refused."""
    seen: set[tuple[int, int]] = set()
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        st = os.fstat(fd)
        seen.add((st.st_dev, st.st_ino))

    def no_sync() -> None:
        raise AssertionError("sync(2) reports no write-back error: never rely on it")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fsync)
    monkeypatch.setattr(os, "sync", no_sync)
    return seen


def _ino(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_dev, st.st_ino


def test_a_batch_fsyncs_every_object_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than 64 new objects: each file and each fan-out directory is fsynced (with its
    error checked), no ``sync()``."""
    seen = _fsynced_inodes(monkeypatch)
    store = ObjectStore(tmp_path / "objects")
    digests = store.put_many([f"object {i}".encode() for i in range(200)])
    for d in digests:
        assert _ino(store.path(d)) in seen, d
        assert _ino(store.path(d).parent) in seen, d[:2]
    assert _ino(store.root) in seen


@pytest.mark.parametrize("syncfs", [True, False])
def test_a_batch_add_acknowledges_only_durable_records(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, syncfs: bool
) -> None:
    """``vault add`` of 80 cards: every card object is durable before the audit line — staged
    and made durable by one ``syncfs`` of the vault (its journal listing them), or, where
    the kernel would not report a write-back error to ``syncfs``, fsynced one by one."""
    cards = [card(f"batch-{i:03d}", ["transform:rotate_90"]) for i in range(80)]
    digests = [sha256_hex(canonical_bytes(normalize_card(c, "t"))) for c in cards]
    before = len(vault.audit.entries())
    events = record_durability(monkeypatch, syncfs)
    recorded, audit_ino = os.fsync, _ino(vault.audit.path)
    before_ack: set[tuple[int, int]] = set()  # the inodes fsynced before the audit line's
    acked: list[bool] = []

    def fsync(fd: int) -> None:  # (the recorder's, plus the inode: a temporary is linked)
        recorded(fd)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == audit_ino:
            acked.append(True)
        elif not acked:
            before_ack.add((st.st_dev, st.st_ino))

    monkeypatch.setattr(os, "fsync", fsync)
    result = vault.add([(c, "t") for c in cards])
    assert len(result.added) == 80
    assert len(vault.audit.entries()) == before + 1
    audit = str(vault.audit.path)
    ack = events.index(("fsync", audit))
    staged = [f for kind, f in events[:ack] if kind == "stage"]  # (publishing stages after)
    if syncfs:
        durable_once_before(events[: ack + 1], vault.root, (audit,), True)
        assert set(staged) == {str(vault.objects.path(d)) for d in digests}
        assert not staging.journal_path(vault.root).exists()
    else:
        assert not staged
        assert {_ino(vault.objects.path(d)) for d in digests} <= before_ack
    assert_sound(vault)


def test_a_write_back_error_in_a_batch_fails_the_write(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delayed EIO on one object of a batch (its fsync reports it, where objects are
    fsynced one by one) fails the add before the acknowledgement, with a one-line error
    naming the object; nothing is acknowledged, and the retry succeeds."""
    from vault.store import fs

    monkeypatch.setattr(fs, "_syncfs", lambda: None)
    real = os.fsync
    calls = {"n": 0}
    objects = str(vault.objects.root)

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(objects + "/") and os.path.isfile(path):
            calls["n"] += 1
            if calls["n"] == 40:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    cards = [card(f"batch-{i:03d}", ["transform:rotate_90"]) for i in range(80)]
    lines = len(vault.audit.entries())
    with pytest.raises(OSError) as info:
        vault.add([(c, "t") for c in cards])
    assert info.value.errno == errno.EIO
    assert info.value.filename and str(info.value.filename).startswith(objects)
    assert len(vault.audit.entries()) == lines
    monkeypatch.setattr(os, "fsync", real)
    assert len(vault.add([(c, "t") for c in cards]).added) == 80
    assert_sound(vault)


def test_a_write_back_error_of_the_one_syncfs_fails_the_write(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staged records whose one ``syncfs`` reports a write-back error (EIO): the add fails
    before the acknowledgement naming the vault, what it staged and its journal are removed
    (nothing names them) — the vault as it was — and the retry succeeds."""
    from vault.store import fs

    monkeypatch.setattr(fs, "_syncfs", lambda: lambda fd: errno.EIO)
    cards = [card(f"batch-{i:03d}", ["transform:rotate_90"]) for i in range(80)]
    digests = [sha256_hex(canonical_bytes(normalize_card(c, "t"))) for c in cards]
    lines = len(vault.audit.entries())
    with pytest.raises(OSError) as info:
        vault.add([(c, "t") for c in cards])
    assert info.value.errno == errno.EIO
    assert str(info.value.filename) == str(vault.root)
    assert len(vault.audit.entries()) == lines
    assert not any(vault.objects.has(d) for d in digests)
    assert not staging.journal_path(vault.root).parent.exists()
    monkeypatch.setattr(fs, "_syncfs", lambda: lambda fd: 0)
    assert len(vault.add([(c, "t") for c in cards]).added) == 80
    assert not staging.journal_path(vault.root).exists()
    assert_sound(vault)


# --------------------------------------------------------------------------- unlinks
def test_mode_config_makes_the_unlink_durable(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rollback --mode config`` unlinks ``refs/mode.json``: ``refs/`` is fsynced after the
    unlink and before the audit line that acknowledges it."""
    vault.set_mode("symbolic")
    refs = vault.mode_path.parent
    events: list[str] = []
    real = os.fsync
    real_unlink = os.unlink

    def fsync(fd: int) -> None:
        real(fd)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == _ino(refs):
            events.append("fsync refs/")
        elif (st.st_dev, st.st_ino) == _ino(vault.audit.path):
            events.append("fsync audit")

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path) == vault.mode_path:
            events.append("unlink mode.json")
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)
    vault.set_mode(None)
    assert events == ["unlink mode.json", "fsync refs/", "fsync audit"]
    assert vault.mode_override() is None


@pytest.mark.parametrize("syncfs", [True, False])
def test_put_durably_leaves_every_object_sound_whatever_was_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool
) -> None:
    """``put_durably`` over new objects (more than ``STAGE_MIN``), a sound one already there
    (left as it is: same inode) and a damaged one (repaired): every file then holds its
    bytes, the journal and the ``remotes/`` it made are gone — staged under one syncfs
    where the kernel reports its errors, else fsynced one by one (nothing staged)."""
    root = tmp_path / "v"
    root.mkdir()
    store = ObjectStore(root / "objects")
    blobs = [f'{{"object": {i}}}'.encode() for i in range(staging.STAGE_MIN + 10)]
    items = [(sha256_hex(b), b) for b in blobs]
    store.put_digested(items[:2])
    sound, damaged = store.path(items[0][0]), store.path(items[1][0])
    inode = sound.stat().st_ino
    damaged.chmod(0o644)
    damaged.write_bytes(b"")
    events = record_durability(monkeypatch, syncfs)
    staging.put_durably(store, root, items)
    for digest, data in items:
        assert store.get(digest, check=True) == data
    assert sound.stat().st_ino == inode
    assert store.repairs == [items[1][0]]
    assert not (root / "remotes").exists()
    staged = {f for kind, f in events if kind == "stage"}
    assert staged == ({str(store.path(d)) for d, _ in items[2:]} if syncfs else set())
    assert [kind for kind, _ in events].count("syncfs") == (1 if syncfs else 0)


def test_a_journal_temporary_left_by_a_killed_writer_is_swept(vault: Vault) -> None:
    """A writer killed while writing the staging journal leaves its temporary in
    ``remotes/``; the next writer sweeps it there as in every other directory it writes."""
    remotes = staging.journal_path(vault.root).parent
    remotes.mkdir()
    left = remotes / ".staged.k1lled00.tmp"
    left.write_bytes(b"partial")
    vault.add([(card("after-a-kill", ["transform:rotate_90"]), "t")])
    assert not left.exists()
    assert_sound(vault)
