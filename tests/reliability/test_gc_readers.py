"""Issue 18, item 3 — readers survive ``vault gc``. A reader that opened a generation keeps
reading that generation after ``gc --keep 1`` removed it from the vault (the objects it
reads later are held open from the moment it opens), and one told its generation is gone
says so and refreshes — never a silent fallback.

The cases the issue reported (each failed on ``main``): a ``Retriever`` opened before its
first query, then write-backs and ``gc --keep 1`` by another handle; the same after one
symbolic query (hybrid and soft fell back with "embedding error: CorruptionError");
``vault retrieve --batch - --workers 2`` fed through a slow pipe with a gc in the middle.
Then the concurrency run: a writer process mixing write-backs, ``embedder use`` and
``gc --keep 1`` while long-lived readers (``Retriever`` processes, a ``--batch --workers 2``
on a slow pipe) answer in every mode; a crash or a fallback nobody planned is a failure.
``runs(…)`` gc-during-read runs (>= 200 under ``make stress``)."""

from __future__ import annotations

import fcntl
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, card, example_cards, example_evidence
from vault.errors import CorruptionError, GenerationGoneError
from vault.index.snapshot import Generation, Snapshot, clear_cache
from vault.ops.embedder import fit_embedder, use_embedder
from vault.retriever import GenerationGoneWarning
from vault.vault import Vault, fixed_clock

from .harness import CLI_ENV, STRESS, figure, runs
from .workloads import EPOCH, rot90

TASKS = sorted((EXAMPLES / "tasks").glob("*.json"))
MODES = ("symbolic", "hybrid", "soft")


def _task(i: int = 0) -> dict[str, Any]:
    return json.loads(TASKS[i % len(TASKS)].read_text())


def _vault(root: Path) -> Path:
    v = Vault.init(root, clock=fixed_clock(EPOCH))
    v.add(example_cards())
    v.add_evidence(example_evidence())
    clear_cache()
    return root


def _answers(root: Path) -> dict[str, Any]:
    """The answer of every mode to every example task, from a fresh handle (what a reader of
    the current generation must keep answering)."""
    clear_cache()
    r = Vault.open(root).retriever()
    out = {f"{i}:{m}": r.retrieve(_task(i), mode=m).to_json() for i in range(3) for m in MODES}
    clear_cache()  # the readers under test must load their generation themselves
    return out


def _write_and_gc(root: str, tag: str, n: int) -> None:
    w = Vault.open(root, clock=fixed_clock(EPOCH))
    for i in range(n):
        w.add([(card(f"{tag}-{i}", ["transform:rotate_90", f"feature:{tag}"]), tag)])
    w.gc(keep=1)


def _supersede_and_collect(root: Path, tag: str, n: int = 2) -> None:
    """Write-backs by another process (the reader's generation is no longer current), then
    ``gc --keep 1``: the reader's generation and its objects are deleted. (Another process:
    one in this process would share the reader's loaded generation.)"""
    p = mp.get_context("fork").Process(target=_write_and_gc, args=(str(root), tag, n))
    p.start()
    p.join(120)
    assert p.exitcode == 0


def _gone(root: Path, generation: str) -> bool:
    return not Vault.open(root).objects.path(generation).exists()


def test_retriever_opened_before_its_first_query_survives_gc(tmp_path: Path) -> None:
    root = _vault(tmp_path / "v")
    expected = _answers(root)
    r = Vault.open(root).retriever()
    gen = r.generation
    _supersede_and_collect(root, "later")
    assert _gone(root, gen)  # the case under test: its generation was collected
    for i in range(3):
        for mode in MODES:
            got = r.retrieve(_task(i), mode=mode)
            assert got.fallback_reason is None and got.mode_used == mode, got.fallback_reason
            assert got.to_json() == expected[f"{i}:{mode}"]
            assert got.generation == gen


def test_hybrid_and_soft_after_a_symbolic_query_do_not_fall_back(tmp_path: Path) -> None:
    root = _vault(tmp_path / "v")
    expected = _answers(root)
    r = Vault.open(root).retriever()
    assert r.retrieve(_task(0), mode="symbolic").to_json() == expected["0:symbolic"]
    _supersede_and_collect(root, "later")
    assert _gone(root, r.generation)
    for mode in ("hybrid", "soft"):
        got = r.retrieve(_task(0), mode=mode)
        assert got.fallback_reason is None, got.fallback_reason
        assert got.to_json() == expected[f"0:{mode}"]


def test_a_reader_told_its_generation_is_gone_says_so_and_refreshes(tmp_path: Path) -> None:
    """What a snapshot reads on demand beyond retrieval (state entries for ``show``) may be
    collected: reading it says which generation went and what to do — and the Retriever
    refreshes to the current generation by itself."""
    root = _vault(tmp_path / "v")
    snap = Vault.open(root).snapshot()
    _supersede_and_collect(root, "later")
    with pytest.raises(GenerationGoneError, match=r"collected by `vault gc`.*refresh"):
        snap.concept("later-0@1.0.0")  # (its shard changed: the old one was collected)
    # a reader whose next open finds CURRENT moved and the generation it named collected
    # (CURRENT read, then a write-back and gc before the manifest is read) opens the new one
    clear_cache()  # (this process's cache still holds the old generation, held open)
    v = Vault.open(root)
    with pytest.raises(GenerationGoneError):
        Snapshot.open(v.objects, snap.ref)
    calls = iter([snap.ref])
    real = v.generations.current
    v.generations.current = lambda: next(calls, None) or real()  # type: ignore[method-assign]
    assert v.snapshot().generation == real().generation  # type: ignore[union-attr]


def test_a_missing_object_of_the_current_generation_is_corruption_not_gone(
    tmp_path: Path,
) -> None:
    root = _vault(tmp_path / "v")
    v = Vault.open(root)
    cur = v.generations.current()
    assert cur is not None
    matrix = v.objects.path(v.snapshot().manifest["table"]["matrix"])
    clear_cache()
    os.chmod(matrix.parent, 0o755)
    matrix.unlink()
    with pytest.raises(CorruptionError, match="is missing") as exc:
        Vault.open(root).snapshot()
    assert not isinstance(exc.value, GenerationGoneError)


def test_readers_hold_no_descriptor_after_they_drop_a_generation(tmp_path: Path) -> None:
    """Held descriptors are released with the generation: 30 generations opened and
    dropped one after another leave the process's descriptor count where it was."""
    root = _vault(tmp_path / "v")
    w = Vault.open(root, clock=fixed_clock(EPOCH))
    before = len(os.listdir("/proc/self/fd"))
    for i in range(30):
        w.add([(card(f"fd-{i}", ["transform:crop"]), "fd")])
        clear_cache()
        r = Vault.open(root).retriever()
        r.retrieve(_task(i), mode="hybrid")
        r.close()
    clear_cache()
    assert len(os.listdir("/proc/self/fd")) <= before + 2


def _deleted_held() -> list[str]:
    """Files this process holds open that were deleted (their space is not back yet)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith(" (deleted)") and "/objects/" in target:
            out.append(target)
    return out


def test_the_space_of_a_collected_generation_comes_back_when_its_readers_drop_it(
    tmp_path: Path,
) -> None:
    root = _vault(tmp_path / "v")
    r = Vault.open(root).retriever()
    r.retrieve(_task(0), mode="symbolic")
    _supersede_and_collect(root, "later")
    assert _deleted_held()  # held open by the retriever: it still answers from them
    assert r.retrieve(_task(0), mode="hybrid").fallback_reason is None
    r.close()
    del r
    Vault.open(root).snapshot()  # (the process's cache forgets collected generations)
    assert not _deleted_held()


# --------------------------------------------------------------------------- --batch
def _cli(root: Path, *args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vault_cli", "--vault", str(root), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **CLI_ENV},
    )


def _unread(fd: int) -> int:
    """Bytes written to a pipe that its reader has not read yet."""
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


def _wait_drained(p: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the CLI has read what was written to its stdin (it opened its snapshot before
    reading its first request)."""
    assert p.stdin is not None
    deadline = time.monotonic() + timeout
    while _unread(p.stdin.fileno()) and time.monotonic() < deadline:
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        time.sleep(0.02)
    assert not _unread(p.stdin.fileno()), "the CLI never read its first request"


def _request(i: int, mode: str) -> bytes:
    return (json.dumps({"task": _task(i), "mode": mode, "id": i}) + "\n").encode()


def _problems(lines: list[dict[str, Any]]) -> list[str]:
    """Errors and fallbacks nobody planned (no request here plans one)."""
    out = []
    for a in lines:
        if "error" in a:
            out.append(f"line {a.get('line')}: error {a['error']}")
        elif a.get("fallback_reason") is not None:
            out.append(f"line {a.get('line')}: fallback {a['fallback_reason']}")
    return out


def test_batch_on_a_slow_pipe_survives_gc(tmp_path: Path) -> None:
    root = _vault(tmp_path / "v")
    p = _cli(root, "retrieve", "--batch", "-", "--workers", "2", stdin=subprocess.PIPE)
    assert p.stdin is not None and p.stdout is not None
    try:
        p.stdin.write(_request(0, "hybrid"))  # sent before the gc
        p.stdin.flush()
        _wait_drained(p)
        gen = Vault.open(root).generations.current()
        assert gen is not None
        _supersede_and_collect(root, "during")
        assert _gone(root, gen.generation)
        for i in range(1, 40):
            p.stdin.write(_request(i, MODES[i % 3]))
        out, err = p.communicate(timeout=300)  # (closes stdin: the end of the requests)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    answers = [json.loads(line) for line in out.splitlines()]
    assert p.returncode == 0, err
    assert len(answers) == 40
    assert not _problems(answers), _problems(answers)[:5]
    assert {a["generation"] for a in answers} == {gen.generation}


def test_a_retriever_whose_generation_went_refreshes_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were a retriever ever to hold nothing open (simulated: its generation pins no
    object), a retrieve after gc finds its generation collected: it warns, refreshes to the
    current generation and answers from it, in every mode — no error, no fallback."""
    root = _vault(tmp_path / "v")
    with monkeypatch.context() as m:
        m.setattr(Generation, "_pin", lambda self, table=True: None)
        r = Vault.open(root).retriever()
    old = r.generation
    r.retrieve(_task(0), mode="symbolic")  # the table's columns are loaded, not its matrix
    _supersede_and_collect(root, "later")
    for mode in ("hybrid", "soft", "symbolic"):
        if mode == "hybrid":  # its matrix is read inside the embedding path: still no fallback
            with pytest.warns(GenerationGoneWarning, match="collected by `vault gc`"):
                got = r.retrieve(_task(0), mode=mode)
        else:
            got = r.retrieve(_task(0), mode=mode)
        assert got.fallback_reason is None and got.mode_used == mode
        assert got.generation == r.generation != old
    assert r.gone == [old]
    expected = _answers(root)
    assert got.to_json() == expected["0:symbolic"]


def test_like_whose_generation_went_refreshes_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Retriever.like`` the same (it raised GenerationGoneError: a state shard of the
    collected generation was unreadable): a warning, a refresh, the current generation's
    answer — the one a fresh retriever gives."""
    root = _vault(tmp_path / "v")
    with monkeypatch.context() as m:
        m.setattr(Generation, "_pin", lambda self, table=True: None)
        r = Vault.open(root).retriever()
    old = r.generation
    _supersede_and_collect(root, "later")
    assert _gone(root, old)
    with pytest.warns(GenerationGoneWarning, match="collected by `vault gc`"):
        got = r.like("rotate-90")
    assert got.generation == r.generation != old and r.gone == [old]
    clear_cache()
    assert got.to_json() == Vault.open(root).retriever().like("rotate-90").to_json()


# --------------------------------------------------------------------------- concurrency
READER_RUNS = runs(6, 100)  # per Retriever process (2 of them)
BATCH_RUNS = runs(1, 10)  # --batch --workers 2 processes on a slow pipe
BATCH_LINES = 48


def _expected_path(answers: Path, generation: str) -> Path:
    return answers / f"{generation}.json"


def _record_answers(v: Vault, answers: Path) -> None:
    """The answers of the current generation (from this process, which just published it:
    its table is in memory, nothing is read back), for the readers to compare with."""
    r = v.retriever()
    out = {f"{i}:{m}": r.retrieve(_task(i), mode=m).to_json() for i in range(3) for m in MODES}
    path = _expected_path(answers, r.generation)
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(out))
        tmp.rename(path)


def _writer(root: str, answers: str, stop: Any, out: Any) -> None:
    """Write-backs, embedder switches and gc --keep 1, in turn, until told to stop."""
    rng = random.Random(7)
    v = Vault.open(root, clock=fixed_clock(EPOCH))
    counts = {"add": 0, "evidence": 0, "embedder": 0, "gc": 0, "problems": []}
    fitted = True
    i = 0
    while not stop.is_set():
        i += 1
        try:
            step = i % 6
            if step in (1, 3):
                v.add([(card(f"g{i}", ["transform:rotate_90", f"feature:g{i % 7}"]), "w")])
                counts["add"] += 1
            elif step == 5:
                g = [[rng.randrange(4) for _ in range(3)] for _ in range(3)]
                ev = {
                    "schema_version": 1,
                    "concept": "rotate-90",
                    "version": "1.0.0",
                    "polarity": "positive",
                    "pair": {"input": g, "output": rot90(g)},
                }
                v.add_evidence([(ev, "w")])
                counts["evidence"] += 1
            if step in (1, 3, 5):
                _record_answers(v, Path(answers))
                v.gc(keep=1)
                counts["gc"] += 1
            elif step == 0:
                use_embedder(v, "fitted" if fitted else "builtin")
                fitted = not fitted
                counts["embedder"] += 1
                _record_answers(v, Path(answers))
                v.gc(keep=1)
                counts["gc"] += 1
        except Exception as exc:  # noqa: BLE001 - reported, never hidden
            counts["problems"].append(f"writer: {type(exc).__name__}: {exc}")
    out.put(("writer", counts))


def _compare(answers: Path, generation: str, key: str, got: dict[str, Any]) -> str | None:
    path = _expected_path(answers, generation)
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # (the writer records it just after publishing)
    if not path.exists():
        return f"no recorded answers for generation {generation[:12]}"
    want = json.loads(path.read_text())[key]
    return None if got == want else f"generation {generation[:12]} {key}: answer differs"


def _reader(root: str, answers: str, seed: int, runs_: int, out: Any) -> None:
    """``runs_`` times: open a Retriever, maybe ask one question, wait until gc has
    collected its generation, then ask every mode; any error or fallback is a problem."""
    rng = random.Random(seed)
    done = {"runs": 0, "collected": 0, "queries": 0, "crashes": 0, "fallbacks": 0, "wrong": 0}
    problems: list[str] = []
    for n in range(runs_):
        try:
            clear_cache()
            r = Vault.open(root).retriever()
            gen = r.generation
            if n % 3 == 1:
                r.retrieve(_task(n), mode="symbolic")  # the columns loaded, not the matrix
            elif n % 3 == 2:
                r.retrieve(_task(n), mode="hybrid")  # everything loaded
            deadline = time.monotonic() + 30
            while r.vault.objects.path(gen).exists() and time.monotonic() < deadline:
                time.sleep(0.005 + rng.random() * 0.01)
            collected = not r.vault.objects.path(gen).exists()
            for i in range(3):
                for mode in MODES:
                    got = r.retrieve(_task(i), mode=mode)
                    done["queries"] += 1
                    if got.fallback_reason is not None or got.mode_used != mode:
                        done["fallbacks"] += 1
                        problems.append(f"fallback: {got.fallback_reason}")
                    bad = _compare(Path(answers), gen, f"{i}:{mode}", got.to_json())
                    if bad:
                        done["wrong"] += 1
                        problems.append(bad)
            done["runs"] += 1
            done["collected"] += collected
            r.close()
        except Exception as exc:  # noqa: BLE001 - a crash is counted, never hidden
            done["crashes"] += 1
            problems.append(f"{type(exc).__name__}: {exc}")
    out.put(("reader", done, problems[:5]))


def _batch_run(root: Path, answers: Path, seed: int) -> tuple[dict[str, int], list[str]]:
    """One ``--batch --workers 2`` on a slow pipe (a request every few ms, for ~2 s)."""
    rng = random.Random(seed)
    p = _cli(root, "retrieve", "--batch", "-", "--workers", "2", stdin=subprocess.PIPE)
    assert p.stdin is not None
    try:
        for i in range(BATCH_LINES):
            p.stdin.write(_request(i % 3, MODES[(i // 3) % 3]))
            p.stdin.flush()
            time.sleep(0.02 + rng.random() * 0.04)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    problems = []
    lines = [json.loads(line) for line in out.splitlines()]
    if p.returncode != 0 or len(lines) != BATCH_LINES or "Traceback" in err.decode():
        problems.append(f"batch exit {p.returncode}, {len(lines)} answers: {err.decode()[-300:]}")
    problems += _problems(lines)
    gens = {a.get("generation") for a in lines}
    if len(gens) != 1:
        problems.append(f"batch answered from {len(gens)} generations")
    for a in lines:
        if "error" in a or a.get("generation") is None:
            continue
        got = {k: v for k, v in a.items() if k not in ("line", "id")}
        bad = _compare(answers, a["generation"], f"{a['id']}:{a['mode_requested']}", got)
        if bad:
            problems.append(bad)
    gen = next(iter(gens)) if len(gens) == 1 else None
    collected = gen is not None and not Vault.open(root).objects.path(gen).exists()
    return {"answers": len(lines), "collected": int(collected)}, problems


def test_readers_and_batches_survive_gc_during_their_reads(tmp_path: Path) -> None:
    """A writer process publishes a generation and collects the previous one (gc --keep 1)
    every few tenths of a second, switching the embedder between built-in and fitted now
    and then, while 2 Retriever processes and ``--batch --workers 2`` processes read. Every
    answer must come, unchanged (equal to what the writer computed for that generation),
    with no fallback; a run counts when gc collected the reader's generation before it
    asked."""
    from vault.arc import read_task_files

    root = _vault(tmp_path / "v")
    fit_embedder(Vault.open(root), read_task_files([str(p) for p in TASKS]), sources=["examples"])
    answers = tmp_path / "answers"
    answers.mkdir()
    _record_answers(Vault.open(root), answers)
    clear_cache()
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    out: Any = ctx.Queue()
    writer = ctx.Process(target=_writer, args=(str(root), str(answers), stop, out))
    readers = [
        ctx.Process(target=_reader, args=(str(root), str(answers), s, READER_RUNS, out))
        for s in range(2)
    ]
    start = time.monotonic()
    writer.start()
    for p in readers:
        p.start()
    batch = {"runs": 0, "answers": 0, "collected": 0}
    batch_problems: list[str] = []
    for s in range(BATCH_RUNS):
        got, problems = _batch_run(root, answers, s)
        batch["runs"] += 1
        batch["answers"] += got["answers"]
        batch["collected"] += got["collected"]
        batch_problems += problems
    results = [out.get(timeout=900) for _ in readers]
    stop.set()
    [(_, wrote)] = [out.get(timeout=300)]
    for p in [writer, *readers]:
        p.join(60)
        assert p.exitcode == 0
    done = {k: sum(r[1][k] for r in results) for k in results[0][1]}
    reader_problems = [x for r in results for x in r[2]]
    figure(
        "gc_readers",
        seconds=round(time.monotonic() - start, 1),
        reader_runs=done["runs"],
        reader_collected=done["collected"],
        queries=done["queries"],
        crashes=done["crashes"],
        fallbacks=done["fallbacks"],
        wrong=done["wrong"],
        batch_runs=batch["runs"],
        batch_answers=batch["answers"],
        batch_collected=batch["collected"],
        batch_problems=len(batch_problems),
        gc=wrote["gc"],
        writes=wrote["add"] + wrote["evidence"],
        embedder_switches=wrote["embedder"],
        writer_problems=len(wrote["problems"]),
    )
    assert not wrote["problems"], wrote["problems"][:5]
    assert done["crashes"] == done["fallbacks"] == done["wrong"] == 0, reader_problems
    assert not batch_problems, batch_problems[:5]
    assert done["runs"] == 2 * READER_RUNS
    # the runs where gc collected the generation under the reader (the case under test)
    assert done["collected"] + batch["collected"] >= (200 if STRESS else 6)
