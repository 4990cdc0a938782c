"""Remotes on object storage (issue 21): push, pull, clone and the many-writer commit
protocol, against a file:// remote and a real S3 server (moto's server mode, started on
127.0.0.1 by the fixture). Skipped only when the ``remote`` / ``dev`` extras are absent."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("obstore")

from vault.canonical import dumps_line, with_check  # noqa: E402
from vault.errors import ConflictError, CorruptionError, UsageError  # noqa: E402
from vault.remote import clone, pull, push  # noqa: E402
from vault.remote.config import add_remote  # noqa: E402
from vault.vault import Vault, fixed_clock  # noqa: E402

from .conftest import card, example_cards, example_evidence  # noqa: E402
from .helpers import durable_once_before, record_durability, tree  # noqa: E402

CLOCK = fixed_clock(1_700_000_000)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server_mod = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["file", "s3"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: Any) -> str:
    """A fresh, empty remote: a directory, or a bucket of the local S3 server."""
    if request.param == "file":
        return (tmp_path / "remote").as_uri()
    endpoint = request.getfixturevalue("s3_endpoint")
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(key, value)
    import boto3

    bucket = f"vault-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/team/arc"


def origin(tmp_path: Path, url: str, name: str = "a") -> Vault:
    v = Vault.init(tmp_path / name, clock=CLOCK)
    add_remote(v.config_path, "origin", url)
    return v


def pushed(tmp_path: Path, url: str, *, evidence: bool = False) -> Vault:
    """``a``: the example cards (and evidence) written back, pushed to ``url``."""
    a = origin(tmp_path, url)
    a.add(example_cards())
    if evidence:
        a.add_evidence(example_evidence())
    push(a)
    return a


def cloned(tmp_path: Path, url: str, name: str = "b") -> Vault:
    clone(url, tmp_path / name, clock=CLOCK)
    return Vault.open(tmp_path / name, clock=CLOCK)


def cut_fetch(m: pytest.MonkeyPatch, keep: int | None = None) -> None:
    """``Remote.fetch`` stores the first ``keep`` objects asked for (half when None), then
    fails as a dropped connection does."""
    from vault.remote import sync

    real = sync.Remote.fetch

    def fetch_then_fail(self: Any, digests: Any, optional: Any, store: Any) -> tuple[int, int]:
        wanted = sorted(set(digests))
        real(self, wanted[: len(wanted) // 2 if keep is None else keep], optional, store)
        raise OSError("connection reset")

    m.setattr(sync.Remote, "fetch", fetch_then_fail)


def sync_fails(m: pytest.MonkeyPatch) -> None:
    """The one sync after staging reports a write-back error (EIO)."""
    import errno

    from vault.store import fs

    m.setattr(fs, "_syncfs", lambda: lambda fd: errno.EIO)


def tear(empty: Path, torn: Path) -> None:
    """What a power cut can leave of object files never fsynced: one empty, one torn."""
    for f in (empty, torn):
        f.chmod(0o644)
    empty.write_bytes(b"")
    torn.write_bytes(torn.read_bytes()[:-3] + b"xyz")


def log_bytes(v: Vault) -> bytes:
    return v.audit.path.read_bytes()


def current(v: Vault) -> bytes:
    return v.generations.current_path.read_bytes()


def generation(v: Vault) -> str:
    ref = v.current_ref()
    assert ref is not None
    return ref.generation


def full_build_generation(v: Vault) -> str:
    """The generation a full build of the log gives (an independent path: plan_full)."""
    from vault.index.build import plan_full
    from vault.index.state import State

    plan = plan_full(v.audit.entries(), State(v.objects), v.records, v.cache)
    return plan.generation


def test_push_then_clone_is_the_same_vault(tmp_path: Path, remote_url: str) -> None:
    a = origin(tmp_path, remote_url)
    a.add(example_cards())
    a.add_evidence(example_evidence())
    sent = push(a)
    assert sent.pushed == len(a.audit.entries()) and sent.objects_sent > 0
    got = clone(remote_url, tmp_path / "b", clock=CLOCK)
    b = Vault.open(tmp_path / "b")
    assert got.objects_received == sent.objects_sent
    assert log_bytes(b) == log_bytes(a)
    assert generation(b) == generation(a) == full_build_generation(b)
    assert b.verify().ok
    again = push(a)  # nothing new: nothing moves
    assert (again.pushed, again.objects_sent) == (0, 0)


def test_push_after_one_write_back_moves_only_its_records(tmp_path: Path) -> None:
    remote_url = (tmp_path / "remote").as_uri()
    a = origin(tmp_path, remote_url)
    a.add(example_cards())
    first = push(a)
    a.add([(card("one-more", ["transform:rotate_90"]), "x")])
    second = push(a)
    assert second.pushed == 1 and second.objects_sent == 1  # the one new card
    assert second.bytes_sent < first.bytes_sent / 10
    b = cloned(tmp_path, remote_url)
    a.add([(card("third", ["transform:flip_h"]), "x")])
    push(a)
    pulled = pull(b)
    assert (pulled.pulled, pulled.objects_received) == (1, 1)
    assert log_bytes(b) == log_bytes(a) and generation(b) == generation(a)


def test_a_writer_that_loses_the_race_reapplies_on_top(tmp_path: Path, remote_url: str) -> None:
    a = pushed(tmp_path, remote_url)
    b = cloned(tmp_path, remote_url)
    a.add([(card("from-a", ["transform:rotate_90"]), "a")])
    b.add([(card("from-b", ["transform:flip_h"]), "b")])
    push(a)
    r = push(b)  # b's seq 4 is taken: b pulls a's entry, re-applies its own, pushes
    assert (r.pulled, r.replayed, r.pushed) == (1, 1, 1)
    pull(a)
    assert log_bytes(a) == log_bytes(b)
    assert generation(a) == generation(b) == full_build_generation(a)
    for v in (a, b):
        snap = v.snapshot()
        assert snap.concept("from-a@1.0.0") and snap.concept("from-b@1.0.0")
        assert v.verify().ok


def test_the_cli_handle_reapplies_local_writes_on_a_push_race_and_a_pull(tmp_path: Path) -> None:
    """The CLI passes push and pull the bottom ``Handle`` (``vault_cli.core.open_vault``),
    not the ``Vault`` facade: a loser's push and a pull with unpushed local entries re-apply
    them through the operations (an add, a status event) — they failed with an internal
    AttributeError and left the local writes only in ``rebase.jsonl``."""
    from vault.handle import Handle

    url = (tmp_path / "remote").as_uri()
    a = pushed(tmp_path, url)
    b = cloned(tmp_path, url)
    c = cloned(tmp_path, url, "c")
    a.add([(card("from-a", ["transform:rotate_90"]), "a")])
    push(a)
    b.add([(card("from-b", ["transform:flip_h"]), "b")])
    b.set_status("flip-horizontal", "1.0.0", "deprecated", "superseded")
    r = push(Handle.open(b.root, clock=CLOCK))  # b's next seq is taken: pull, re-apply, push
    assert (r.pulled, r.replayed, r.pushed) == (1, 2, 2)
    c.add([(card("from-c", ["transform:flip_v"]), "c")])
    r = pull(Handle.open(c.root, clock=CLOCK))  # c's unpushed add re-applied on top
    assert (r.pulled, r.replayed) == (3, 1)
    pull(a)
    assert log_bytes(a) == log_bytes(b)
    for v in (a, b, c):
        v = Vault.open(v.root, clock=CLOCK)
        snap = v.snapshot()
        assert snap.concept("from-a@1.0.0") and snap.concept("from-b@1.0.0")
        assert snap.concept("flip-horizontal@1.0.0")["status"] == "deprecated"
        assert not (v.root / "remotes" / "origin" / "rebase.jsonl").exists()
        assert v.verify().ok
    assert Vault.open(c.root, clock=CLOCK).snapshot().concept("from-c@1.0.0")


def test_vault_push_through_the_cli_after_losing_the_race(tmp_path: Path) -> None:
    """``vault push`` of a clone whose next log segment another writer took (the red team's
    report): exit 0, the card acknowledged by ``vault add`` is kept and pushed."""
    from typer.testing import CliRunner

    from vault_cli.app import app

    url = (tmp_path / "remote").as_uri()
    a = pushed(tmp_path, url)
    b = cloned(tmp_path, url)
    a.add([(card("from-a", ["transform:rotate_90"]), "a")])
    push(a)
    (tmp_path / "b.json").write_text(json.dumps(card("from-b", ["transform:flip_h"])))
    runner = CliRunner()
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    for args in (["add", str(tmp_path / "b.json")], ["push", "--json"]):
        got = runner.invoke(app, ["--vault", str(b.root), *args], env=env)
        assert got.exit_code == 0 and "internal error" not in got.output, got.output
    assert json.loads(got.stdout)["replayed"] == 1
    got = runner.invoke(app, ["--vault", str(b.root), "show", "from-b", "--json"], env=env)
    assert got.exit_code == 0, got.output
    pull(a)
    assert a.snapshot().concept("from-b@1.0.0")


def test_two_writers_forking_one_concept_keep_both_forks(tmp_path: Path) -> None:
    remote_url = (tmp_path / "remote").as_uri()
    a = origin(tmp_path, remote_url)
    a.add([(card("base", ["transform:rotate_90"]), "x")])
    push(a)
    b = cloned(tmp_path, remote_url)
    a.add([(card("base", ["transform:rotate_90"], dsl="(rot90 a)"), "a")], fork=True)
    b.add([(card("base", ["transform:rotate_90"], dsl="(rot90 b)"), "b")], fork=True)
    push(a)
    push(b)
    pull(a)
    for v in (a, b):
        snap = v.snapshot()
        forks = {
            v.records(snap.concept(f"base@{ver}")["card"])["template"]["template_dsl"]
            for ver in ("1.1.0", "1.2.0")
        }
        assert forks == {"(rot90 a)", "(rot90 b)"}
    assert generation(a) == generation(b)


def test_contending_writers_lose_nothing(tmp_path: Path, remote_url: str) -> None:
    """Three clones write back and push at once (threads): the conditional create decides;
    every acknowledged push is in the final log, every clone builds the same index."""
    a = origin(tmp_path, remote_url)
    push(a)
    writers = []
    for i in range(3):
        writers.append(cloned(tmp_path, remote_url, f"w{i}"))
    acknowledged: list[str] = []
    errors: list[BaseException] = []

    def work(i: int, v: Vault) -> None:
        try:
            for j in range(2):
                name = f"w{i}-c{j}"
                v.add([(card(name, ["transform:rotate_90"]), name)])
                push(v)
                acknowledged.append(name)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, v)) for i, v in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(acknowledged) == 6
    for v in [a, *writers]:
        pull(v)
    logs = {log_bytes(v) for v in [a, *writers]}
    assert len(logs) == 1
    gens = {generation(v) for v in [a, *writers]}
    assert gens == {full_build_generation(a)}
    snap = a.snapshot()
    assert all(snap.concept(f"{n}@1.0.0") for n in acknowledged)


def test_a_rollback_that_lost_the_race_is_refused(tmp_path: Path) -> None:
    url = (tmp_path / "remote").as_uri()
    a = origin(tmp_path, url)
    a.add([(card("first", ["transform:rotate_90"]), "x")])
    a.add([(card("second", ["transform:flip_h"]), "x")])
    push(a)
    b = cloned(tmp_path, url)
    b.add([(card("b-only", ["transform:rotate_180"]), "x")])
    b.rollback()  # b's unpushed tail: an add, then a rollback of it
    a.add([(card("third", ["transform:flip_v"]), "x")])
    push(a)
    before = (log_bytes(b), current(b))
    with pytest.raises(ConflictError, match="discard-unpushed"):
        push(b)
    assert (log_bytes(b), current(b)) == before  # nothing changed
    pull(b, discard_unpushed=True)
    assert log_bytes(b) == log_bytes(a) and generation(b) == generation(a)
    assert b.verify().ok
    b.rollback()  # decided again, on the state it now sees: pushed without a race
    push(b)
    pull(a)
    assert generation(a) == generation(b) == full_build_generation(a)
    assert a.snapshot().concept("third@1.0.0") is None


def _remote_root(url: str) -> Path:
    return Path(url.removeprefix("file://"))


@pytest.mark.parametrize("tamper", ["object", "checksum", "op", "gap"])
def test_a_tampered_remote_is_refused_before_anything_changes(tmp_path: Path, tamper: str) -> None:
    url = (tmp_path / "remote").as_uri()
    a = pushed(tmp_path, url)
    b = cloned(tmp_path, url)
    a.add([(card("new-one", ["transform:rotate_90"]), "x")])
    push(a)
    root = _remote_root(url)
    segment = sorted((root / "log").iterdir())[-1]
    line = json.loads(segment.read_bytes())
    if tamper == "object":
        idx = json.loads(sorted(root.glob("packs/*.idx"))[-1].read_bytes())
        digest, offset, length = idx["objects"][0]
        pack = root / "packs" / f"{idx['pack']}.pack"
        data = bytearray(pack.read_bytes())
        data[offset + 5] ^= 1
        pack.chmod(0o644)
        pack.write_bytes(bytes(data))
    elif tamper == "checksum":
        line["time"] = "2030-01-01T00:00:00Z"
        segment.write_bytes(dumps_line(line))
    elif tamper == "op":
        line.pop("check")
        line["op"] = "teleport"
        segment.write_bytes(dumps_line(with_check(line)))
    else:
        segment.rename(segment.with_name(f"{line['seq'] + 1:012d}.jsonl"))
    before = (log_bytes(b), current(b), sorted(b.objects))
    with pytest.raises(CorruptionError):
        pull(b)
    assert (log_bytes(b), current(b), sorted(b.objects)) == before
    assert b.verify().ok


def test_an_interrupted_clone_resumes(tmp_path: Path, monkeypatch: Any) -> None:
    url = (tmp_path / "remote").as_uri()
    a = pushed(tmp_path, url, evidence=True)
    with monkeypatch.context() as m:
        cut_fetch(m)
        with pytest.raises(OSError):
            clone(url, tmp_path / "b", clock=CLOCK)
    assert not (tmp_path / "b" / "format.json").exists()
    total = push(a).objects_sent + len(set(sorted(a.objects)))  # (only for scale)
    got = clone(url, tmp_path / "b", clock=CLOCK)
    assert 0 < got.objects_received < total
    b = Vault.open(tmp_path / "b")
    assert b.verify().ok and generation(b) == generation(a)


def test_remote_urls_and_names_are_checked(tmp_path: Path) -> None:
    v = Vault.init(tmp_path / "v", clock=CLOCK)
    for bad in (
        "http://example.com/x",
        "s3://",
        "file://relative/x",
        "s3://b/p?key=secret",
        "s3://user:pw@bucket/x",
    ):
        with pytest.raises(UsageError):
            add_remote(v.config_path, "origin", bad)
    with pytest.raises(UsageError):
        add_remote(v.config_path, "bad name", "file:///tmp/x")
    add_remote(v.config_path, "origin", (tmp_path / "r").as_uri())
    assert v.config().mode == "hybrid"  # config.toml still loads with the remote table
    with pytest.raises(ConflictError, match="exists already") as taken:
        add_remote(v.config_path, "origin", (tmp_path / "r2").as_uri())
    assert not isinstance(taken.value, UsageError)  # found by reading config.toml: exit 1
    with pytest.raises(UsageError):  # a bad URL is told first, whatever the name
        add_remote(v.config_path, "origin", "http://example.com/x")


def test_the_remote_commands(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vault_cli.app import app

    runner = CliRunner()
    url = (tmp_path / "remote").as_uri()
    a, b = str(tmp_path / "a"), str(tmp_path / "b")

    def run(*args: str) -> Any:
        result = runner.invoke(app, list(args), env={"VAULT_DIR": None, "SOURCE_DATE_EPOCH": "0"})
        assert "Traceback" not in result.output
        return result

    assert run("init", a).exit_code == 0
    bad = run("--vault", a, "remote", "add", "origin", "http://example.com/v")
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    assert run("--vault", a, "remote", "add", "origin", url).exit_code == 0
    listed = run("--vault", a, "remote", "list", "--json")
    assert json.loads(listed.stdout) == {"origin": url}
    assert run("--vault", a, "add", str(Path(__file__).parent.parent / "examples" / "cards.jsonl"))
    pushed = run("--vault", a, "push", "--json")
    assert pushed.exit_code == 0 and json.loads(pushed.stdout)["pushed"] == 3
    cloned = run("clone", url, b, "--json")
    assert cloned.exit_code == 0 and json.loads(cloned.stdout)["head"] == 3
    assert run("--vault", b, "verify").exit_code == 0
    pulled = run("--vault", b, "pull")
    assert pulled.exit_code == 0 and "pulled 0 audit entries" in pulled.stderr
    again = run("clone", url, b)
    assert again.exit_code == 1 and "already" in again.stderr
    nothing = run("clone", (tmp_path / "nowhere").as_uri(), str(tmp_path / "c"))
    assert nothing.exit_code == 1 and not (tmp_path / "nowhere").exists()
    assert run("--vault", a, "remote", "remove", "origin").exit_code == 0
    assert run("--vault", a, "push").exit_code == 1  # no remote any more (read: not usage)
    for name in ("origin", "other"):
        assert run("--vault", a, "remote", "add", name, url).exit_code == 0
    assert run("--vault", a, "remote", "remove", "origin").exit_code == 0
    assert run("--vault", a, "remote", "add", "second", url).exit_code == 0
    several = run("--vault", a, "pull")
    assert several.exit_code == 1 and "several remotes (other, second): name one" in several.stderr


def test_a_taken_remote_name_or_a_used_clone_directory_is_exit_1(tmp_path: Path) -> None:
    """Both are found by reading the disk, not on the command line: exit 1 (README "Errors
    and exit codes"), one line naming the remedy. An empty directory is cloned into, as git
    does; a bad URL is still a usage error (exit 2), told first."""
    from typer.testing import CliRunner

    from vault_cli.app import app

    runner = CliRunner()
    url = (tmp_path / "remote").as_uri()
    a = str(tmp_path / "a")

    def run(*args: str) -> Any:
        result = runner.invoke(app, list(args), env={"VAULT_DIR": None, "SOURCE_DATE_EPOCH": "0"})
        assert "Traceback" not in result.output
        return result

    assert run("init", a).exit_code == 0
    assert run("--vault", a, "remote", "add", "origin", url).exit_code == 0
    taken = run("--vault", a, "remote", "add", "origin", (tmp_path / "other").as_uri())
    assert taken.exit_code == 1 and taken.stderr == (
        f"error: remote 'origin' exists already ({url}): `vault remote remove origin` first "
        "to point it elsewhere, or choose another name\n"
    )
    bad = run("--vault", a, "remote", "add", "origin", "http://example.com/v")
    assert bad.exit_code == 2
    assert run("--vault", a, "push").exit_code == 0
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    used = run("clone", url, str(full))
    assert used.exit_code == 1 and used.stderr == (
        f"error: cannot clone into {full}: it exists and is not empty; "
        "choose a new or empty directory\n"
    )
    assert sorted(p.name for p in full.iterdir()) == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    not_dir = run("clone", url, str(a_file))
    assert not_dir.exit_code == 1 and "it exists and is not a directory" in not_dir.stderr
    assert run("clone", "http://example.com/v", str(full)).exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("clone", url, str(empty)).exit_code == 0
    assert Vault.open(empty).verify().ok
    vault_again = run("clone", url, str(empty))
    assert vault_again.exit_code == 1 and vault_again.stderr == (
        f"error: cannot clone into {empty}: it is a vault already (`vault pull` there takes "
        "the remote's entries); choose a new or empty directory\n"
    )


def test_a_resumed_clone_checks_what_it_staged_before(tmp_path: Path, monkeypatch: Any) -> None:
    """Objects are staged without a fsync each: after an interruption (a power cut may tear
    them) each one there is checked against its address again, a damaged one fetched anew."""
    from vault.remote import sync

    url = (tmp_path / "remote").as_uri()
    a = pushed(tmp_path, url, evidence=True)
    with monkeypatch.context() as m:
        cut_fetch(m, 6)
        with pytest.raises(OSError):
            clone(url, tmp_path / "b", clock=CLOCK)
    staged = sorted(p for p in (tmp_path / "b" / "objects").rglob("*") if p.is_file())
    assert len(staged) == 6
    tear(staged[0], staged[1])
    got = clone(url, tmp_path / "b", clock=CLOCK)
    needed = {d for e in a.audit.entries() for d in sync.p.referenced(e)}
    assert got.objects_received == len(needed) - 4  # the 4 sound ones were kept
    b = Vault.open(tmp_path / "b")
    assert b.verify().ok and generation(b) == generation(a)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names descriptors by /proc")
@pytest.mark.parametrize("syncfs", [True, False])
def test_a_clone_makes_its_objects_durable_once_before_anything_names_them(
    tmp_path: Path, monkeypatch: Any, syncfs: bool
) -> None:
    """One syncfs (or, where the kernel would not report its errors, a fsync of every
    staged file and directory) after the last object is staged, before the log is written
    and long before format.json; no fsync of an object file while staging."""
    url = (tmp_path / "remote").as_uri()
    pushed(tmp_path, url, evidence=True)
    root = tmp_path / "b"
    events = record_durability(monkeypatch, syncfs)
    got = clone(url, root, clock=CLOCK)
    staged = durable_once_before(events, root, (str(root / "audit"),), syncfs)
    assert len(staged) == got.objects_received > 10
    assert (root / "format.json").exists()
    assert Vault.open(root).verify().ok


def test_a_write_back_error_at_the_clone_s_sync_leaves_no_vault(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from vault.errors import StorageError

    url = (tmp_path / "remote").as_uri()
    pushed(tmp_path, url)
    with monkeypatch.context() as m:
        sync_fails(m)
        with pytest.raises(StorageError, match="Input/output error"):
            clone(url, tmp_path / "b", clock=CLOCK)
    assert not (tmp_path / "b" / "format.json").exists()
    assert not (tmp_path / "b" / "audit" / "commits.jsonl").exists()
    clone(url, tmp_path / "b", clock=CLOCK)  # resumes (the staged objects checked again)
    assert Vault.open(tmp_path / "b").verify().ok


# --------------------------------------------------------------------------- pull stages
def _with_new_entries(tmp_path: Path, url: str) -> tuple[Vault, Vault, list[str]]:
    """``a`` pushed, ``b`` cloned from it, then ``a`` wrote back more and pushed: returns
    (a, b, the addresses of the records b lacks — from the log lines, not the code)."""
    a = pushed(tmp_path, url)
    b = cloned(tmp_path, url)
    seen = len(a.audit.entries())
    a.add_evidence(example_evidence())
    a.add([(card(f"new-{i}", ["transform:rotate_90"], dsl=f"(n{i} grid)"), "x") for i in range(3)])
    push(a)
    have = set(b.objects)
    lines = a.audit.path.read_bytes().splitlines()[seen:]
    new = {d for line in lines for d in json.loads(line)["records"]} - have
    return a, b, sorted(new)


def _journal(v: Vault) -> list[str] | None:
    path = v.root / "remotes" / "staged"
    return path.read_text().split() if path.exists() else None


def _state(v: Vault) -> tuple[bytes, bytes, bytes, bytes]:
    head = v.root / "remotes" / "origin" / "head"
    return log_bytes(v), current(v), v.generations.log_path.read_bytes(), head.read_bytes()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names descriptors by /proc")
@pytest.mark.parametrize("syncfs", [True, False])
def test_a_pull_makes_its_objects_durable_once_before_anything_names_them(
    tmp_path: Path, remote_url: str, monkeypatch: Any, syncfs: bool
) -> None:
    """As a clone: the staging journal durable first, then every fetched object staged
    without a fsync of its own, then one syncfs (or a fsync of each staged file and
    directory), the journal removed — and only then the log, the head and the index."""
    a, b, new = _with_new_entries(tmp_path, remote_url)
    root = b.root
    events = record_durability(monkeypatch, syncfs)
    got = pull(b)
    names = (str(root / "audit"), str(root / "index"), str(root / "remotes" / "origin"))
    staged = durable_once_before(events, root, names, syncfs)
    assert sorted(Path(f).parent.name + Path(f).name for f in staged) == new
    assert got.objects_received == len(new) > 5
    first_stage = min(i for i, (kind, _) in enumerate(events) if kind == "stage")
    tmp = str(root / "remotes" / ".staged.")  # (atomic_write's temporary, fsynced)
    journal = [i for i, (_, f) in enumerate(events) if f.startswith(tmp)]
    assert journal and max(journal) < first_stage  # the journal durable before any object
    assert _journal(b) is None
    assert log_bytes(b) == log_bytes(a) and generation(b) == generation(a)
    assert b.verify().ok


@pytest.mark.parametrize("where", ["fetch", "sync"])
def test_a_pull_interrupted_after_staging_changes_nothing_and_a_retry_completes(
    tmp_path: Path, remote_url: str, monkeypatch: Any, where: str
) -> None:
    """Cut while fetching (half the objects staged) or at the sync (all staged, none
    durable): the log, CURRENT, the generations and the head are as they were, unpushed
    local entries included, and verify passes; the next pull takes what is left."""
    from vault.errors import StorageError

    a, b, new = _with_new_entries(tmp_path, remote_url)
    b.add([(card("b-local", ["transform:flip_h"]), "b")])  # an unpushed tail
    before = _state(b)
    with monkeypatch.context() as m:
        if where == "fetch":
            cut_fetch(m, 3)
        else:
            sync_fails(m)
        with pytest.raises((OSError, StorageError)):
            pull(b)
    assert _state(b) == before
    assert sorted(_journal(b) or []) == new
    staged = [d for d in new if (b.root / "objects" / d[:2] / d[2:]).exists()]
    assert len(staged) == (3 if where == "fetch" else len(new))
    assert b.verify().ok
    got = pull(b)
    assert got.objects_received == len(new) - len(staged)  # the staged ones kept
    assert (got.pulled, got.replayed) == (2, 1)
    assert _journal(b) is None
    assert b.snapshot().concept("b-local@1.0.0") and b.snapshot().concept("new-2@1.0.0")
    assert generation(b) == full_build_generation(b)
    assert b.verify().ok
    push(b)
    pull(a)
    assert log_bytes(a) == log_bytes(b) and generation(a) == generation(b)


@pytest.mark.parametrize("recheck", ["pull", "write-back"])
def test_a_torn_object_staged_by_an_interrupted_pull_is_fetched_again(
    tmp_path: Path, remote_url: str, monkeypatch: Any, recheck: str
) -> None:
    """A power cut after staging, before the sync, may leave staged objects empty or torn:
    verify warns (nothing names them), the next writer — a pull, or any write-back —
    rechecks every object the journal lists, keeps the sound ones and removes the damaged
    ones, which the pull fetches again."""
    from vault.errors import StorageError

    a, b, new = _with_new_entries(tmp_path, remote_url)
    before = _state(b)
    with monkeypatch.context() as m:
        sync_fails(m)
        with pytest.raises(StorageError):
            pull(b)
    files = [b.root / "objects" / d[:2] / d[2:] for d in new]
    tear(files[0], files[1])
    report = b.verify()
    assert report.ok
    warned = sorted(p.path for p in report.problems if p.kind == "object_staged_damaged")
    assert warned == sorted(str(f) for f in files[:2])
    assert _state(b) == before
    if recheck == "write-back":
        b.add([(card("b-local", ["transform:flip_h"]), "b")])
        assert _journal(b) is None
        assert [f.exists() for f in files] == [False, False] + [True] * (len(files) - 2)
    got = pull(b)
    assert got.objects_received == 2
    assert _journal(b) is None
    assert generation(b) == full_build_generation(b)
    assert b.snapshot().concept("new-2@1.0.0")
    assert b.verify().ok and not b.verify().problems
    if recheck == "pull":
        assert log_bytes(b) == log_bytes(a) and generation(b) == generation(a)


def test_the_staging_journal_excuses_no_object_the_log_names(tmp_path: Path) -> None:
    """A damaged object the journal lists is a warning only while nothing names it: one a
    live log entry names is still an error; a journal that is not one address a line is
    refused by writers and reported by verify."""
    v = Vault.init(tmp_path / "v", clock=CLOCK)
    v.add(example_cards())
    named = json.loads(v.audit.path.read_bytes().splitlines()[-1])["records"][0]
    journal = v.root / "remotes" / "staged"
    journal.parent.mkdir()
    journal.write_text(f"{named}\n")
    f = v.root / "objects" / named[:2] / named[2:]
    f.chmod(0o644)
    f.write_bytes(b"")
    kinds = {(p.kind, p.severity) for p in v.verify().problems}
    assert ("object_staged_damaged", "warning") in kinds
    assert ("audit_missing_object", "error") in kinds
    journal.write_text("not an address\n")
    assert any(p.kind == "staging_journal_bad" for p in v.verify().problems)
    with pytest.raises(CorruptionError, match="staging journal"):
        v.add([(card("more", ["transform:flip_h"]), "x")])


def test_a_pull_refuses_a_generations_log_that_lost_currents_record(tmp_path: Path) -> None:
    """``b``'s ``generations.jsonl`` deleted: a pull of newer entries refuses before it
    fetches, cuts or appends anything (it appended them, then refused or, before writers
    checked the log at all, indexed them as a new generation numbered 1)."""
    _, b, _ = _with_new_entries(tmp_path, (tmp_path / "remote").as_uri())
    b.generations.log_path.unlink()
    before = tree(b.root)
    with pytest.raises(CorruptionError, match=r"generations\.jsonl is missing but .*CURRENT"):
        pull(b)
    assert tree(b.root) == before


@pytest.mark.parametrize("crash", [False, True])
def test_a_pull_after_a_local_gc_left_no_generation_to_go_back_to(
    tmp_path: Path, monkeypatch: Any, crash: bool
) -> None:
    """``b`` wrote locally and ``vault gc --keep 1`` dropped every generation at or before
    the shared point; then the remote moved on. The pull goes back to that point with no
    generation to point ``CURRENT`` at: the index is built afresh from the log (it kept
    ``CURRENT`` on b's own newer generation while emptying the log — an index verify
    rejects, later refused by every writer). ``crash``: the first pull dies just after
    ``CURRENT`` went; the next one completes it."""
    from vault.index.generations import Generations
    from vault.ops.gc import gc

    url = (tmp_path / "remote").as_uri()
    a = pushed(tmp_path, url)
    b = cloned(tmp_path, url)
    b.add([(card("local", ["feature:square"]), "b")])
    gc(b, 1)
    assert all(g.audit_seq > _read_shared(b) for g in b.generations.history())
    a.add([(card("remote", ["feature:square"]), "a")])
    push(a)
    if crash:
        with monkeypatch.context() as m:

            def killed(self: Any, records: Any) -> None:
                raise OSError("killed")

            m.setattr(Generations, "rewrite", killed)
            with pytest.raises(OSError, match="killed"):
                pull(b)
        assert b.current_ref() is None  # no index until the pull is run again
    r = pull(b)
    assert (r.pulled, r.replayed) == (1, 2)  # b's add and its gc (audited) re-applied once
    assert [e.op for e in b.audit.entries()[3:]] == ["add", "add", "gc"]
    snap = b.snapshot()
    assert snap.concept("local@1.0.0") and snap.concept("remote@1.0.0")
    assert generation(b) == full_build_generation(b)
    history = b.generations.history()
    assert history[-1].generation == generation(b)
    assert b.verify().ok
    b.add([(card("later", ["feature:square"]), "b")])  # writers go on from it
    assert generation(b) == full_build_generation(b) and b.verify().ok


def _read_shared(v: Vault) -> int:
    """The audit seq ``v`` last shared with its remote (what it was cloned at)."""
    from vault.remote.sync import _read_head

    return _read_head(v, "origin")


def test_a_remote_cannot_take_the_staging_journals_place(tmp_path: Path) -> None:
    """``remotes/staged`` is the staging journal (FORMAT §14): a remote named ``staged``
    would sync into it. Refused when added (a usage error) and when config.toml names it or
    a name outside the form by hand (a path like ``../x`` would lead a sync out of
    ``remotes/``): a config error naming the table, nothing written."""
    from typer.testing import CliRunner

    from vault_cli.app import app

    runner = CliRunner()
    url = (tmp_path / "remote").as_uri()
    a = tmp_path / "a"

    def run(*args: str) -> Any:
        result = runner.invoke(app, list(args), env={"VAULT_DIR": None, "SOURCE_DATE_EPOCH": "0"})
        assert "Traceback" not in result.output
        return result

    assert run("init", str(a)).exit_code == 0
    staged = run("--vault", str(a), "remote", "add", "staged", url)
    assert staged.exit_code == 2
    assert "remote name 'staged' is reserved (remotes/staged is the staging journal)" in (
        staged.stderr
    )
    config = a / "config.toml"
    before = config.read_text()
    for name in ("staged", "../x"):
        config.write_text(before + f'\n[remote."{name}"]\nurl = "{url}"\n')
        pushed = run("--vault", str(a), "push")
        assert pushed.exit_code == 1, pushed.stderr
        assert f"[remote.{name}]: remote name {name!r}" in pushed.stderr
    assert not (a / "x").exists() and not (tmp_path / "x").exists()
    assert not (tmp_path / "remote").exists()
