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


# --------------------------------------------------------------------------- interrupts
def _without_fan_outs(t: dict[str, Any]) -> dict[str, Any]:
    """A tree without the empty fan-out directories of ``objects/`` (an interrupted write
    may leave one it made: nothing names it, verify and readers ignore it)."""
    fans = {k for k, v in t.items() if v[0] == "dir" and k.startswith("objects/")}
    full = {k.rsplit("/", 1)[0] for k in t if k.count("/") == 2 and k.startswith("objects/")}
    return {k: v for k, v in t.items() if k not in fans - full}


def _object_writes(objects: Path, at: int, then: Any) -> Any:
    """``os.write`` calling ``then()`` before the ``at``-th write to an object file (a
    staged object: created exclusively under its name, empty until this write)."""
    real, seen = os.write, [0]

    def write(fd: int, data: Any) -> int:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(f"{objects}/") and not Path(target).name.startswith("."):
            seen[0] += 1
            if seen[0] == at:
                then()
        return real(fd, data)

    return write


def _check_clean(v: Vault, before: dict[str, Any], digests: list[str]) -> None:
    """What an interrupted large add must leave: the vault's files as they were (no
    journal, no ``remotes/``, no staged object, no empty object file), verify clean."""
    from .helpers import tree

    assert not staging.journal_path(v.root).exists()
    assert not any(v.objects.path(d).exists() for d in digests)
    assert not [p for p in v.objects.root.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert _without_fan_outs(tree(v.root)) == before
    report = verify(v)
    assert report.ok and not report.problems, report.to_json()
    assert_sound(v)


@pytest.mark.parametrize("where", ["first object", "40th object", "last object", "syncfs"])
def test_an_interrupt_while_staging_removes_what_it_staged(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ctrl-C in the middle of a large ``vault add`` (a ``KeyboardInterrupt`` between the
    exclusive creation of a staged object file and its first byte, or in the one
    ``syncfs``) is cleaned up as an error is (FORMAT §3): it left the staging journal,
    every object staged so far and one empty file under a content address, which verify
    reported (``object_staged_damaged``). Now the vault's files are as they were, verify
    reports nothing, and the retry adds every card."""
    from vault.store import fs

    from .helpers import tree

    vault.add(example_cards())
    cards = [card(f"many-{i:03d}", ["transform:rotate_90"]) for i in range(120)]
    digests = [sha256_hex(canonical_bytes(normalize_card(c, "t"))) for c in cards]
    before = tree(vault.root)

    def interrupt(*_: Any) -> int:
        raise KeyboardInterrupt

    syncfs = fs._syncfs() or (lambda fd: 0)  # (staged as on Linux >= 5.8 wherever it runs)
    with monkeypatch.context() as m:
        m.setattr(fs, "_syncfs", lambda: interrupt if where == "syncfs" else syncfs)
        at = {"first object": 1, "40th object": 40, "last object": 120}.get(where, 0)
        m.setattr(os, "write", _object_writes(vault.objects.root, at, interrupt))
        with pytest.raises(KeyboardInterrupt):
            vault.add([(c, "t") for c in cards])
    _check_clean(vault, before, digests)
    assert len(vault.add([(c, "t") for c in cards]).added) == 120
    assert_sound(vault)


def test_a_sigint_during_a_large_add_leaves_the_vault_as_it_was(
    vault: Vault, tmp_path: Path
) -> None:
    """The red-team case end to end: ``vault add`` of many cards in a process that receives
    a real SIGINT while it stages them (sent by the process itself before its 50th object
    file's first byte, so that it lands there every time): exit 130 ``error:
    interrupted``, and nothing it staged is left (journal, objects, an empty object)."""
    import subprocess
    import sys

    from .helpers import tree

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc (Linux)")
    vault.add(example_cards())
    cards = [card(f"many-{i:03d}", ["transform:rotate_90"]) for i in range(200)]
    digests = [sha256_hex(canonical_bytes(normalize_card(c, "many.jsonl"))) for c in cards]
    src = tmp_path / "many.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in cards))
    before = tree(vault.root)
    child = f"""
import os, signal, sys
objects, real, seen = {str(vault.objects.root)!r} + "/", os.write, [0]
def write(fd, data):
    target = os.readlink(f"/proc/self/fd/{{fd}}")
    if target.startswith(objects) and not os.path.basename(target).startswith("."):
        seen[0] += 1
        if seen[0] == 50:
            os.kill(os.getpid(), signal.SIGINT)
    return real(fd, data)
os.write = write
from vault.store import fs
fs._syncfs = lambda real=fs._syncfs(): real or (lambda fd: 0)
sys.argv = ["vault", "--vault", {str(vault.root)!r}, "add", {str(src)!r}]
from vault_cli.app import main
main()
"""
    repo = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=120
    )
    assert (proc.returncode, proc.stderr) == (130, "error: interrupted\n")
    _check_clean(vault, before, digests)


def test_a_writer_removes_an_empty_object_an_interrupted_staging_left(vault: Vault) -> None:
    """After a kill -9 (no cleanup) the journal stays with what it lists — here one staged
    object left empty (created, killed before its first byte): verify warns, the next
    writer's recheck removes it and the journal, and verify is clean again."""
    vault.add(example_cards())
    data = b'{"staged": "never written"}'
    digest = sha256_hex(data)
    staging.begin(vault.root, [digest])
    empty = vault.objects.path(digest)
    empty.parent.mkdir(exist_ok=True)
    empty.touch(0o444)
    assert [p.kind for p in verify(vault).problems] == ["object_staged_damaged"]
    vault.add([(card("after-the-kill", ["transform:flip_h"]), "t")])
    assert not empty.exists() and not staging.journal_path(vault.root).exists()
    assert_sound(vault)
    assert not verify(vault).problems


def test_an_interrupted_stage_leaves_no_torn_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ObjectStore.stage`` (a pull's or a large write's objects) interrupted before or
    in the middle of an object's bytes removes that file: never a torn or empty object
    under a content address (it left one, empty, for the next writer's recheck)."""
    store = ObjectStore(tmp_path / "objects")
    blobs = [f'{{"object": {i}}}'.encode() for i in range(10)]
    items = [(sha256_hex(b), b) for b in blobs]

    def interrupt() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", _object_writes(store.root, 4, interrupt))
    with pytest.raises(KeyboardInterrupt):
        store.stage(items)
    monkeypatch.undo()
    left = sorted(p for p in store.root.rglob("*") if p.is_file())
    assert left == sorted(store.path(d) for d, _ in items[:3])
    assert all(store.get(d, check=True) == b for d, b in items[:3])
