"""Run the reliability suite and write ``RELIABILITY.md`` from the figures it records.

    python tests/reliability/report.py            # the long variants (VAULT_STRESS=1): make stress
    python tests/reliability/report.py --short    # the CI variants (quicker, smaller figures)
    python tests/reliability/report.py --figures F --no-run   # re-render from recorded figures

Each test appends JSON lines to the file named by ``VAULT_RELIABILITY_FIGURES`` (see
``harness.figure``) and ``conftest.py`` appends every test's outcome; this script renders
them. The exit status is pytest's, so ``make stress`` fails when the suite does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run(figures: Path, stress: bool, extra: list[str]) -> tuple[int, float]:
    env = {**os.environ, "VAULT_RELIABILITY_FIGURES": str(figures)}
    env["VAULT_STRESS"] = "1" if stress else "0"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "tests/reliability",
        "tests/test_reference.py",  # the ranking against the reference (§9 below)
        *extra,
    ]
    start = time.monotonic()
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    return code, time.monotonic() - start


def load(figures: Path) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    figs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    outcomes = []
    for line in figures.read_text().splitlines():
        obj = json.loads(line)
        if "outcome" in obj:
            outcomes.append(obj["outcome"])
        else:
            figs[obj["figure"]].append(obj)
    return figs, outcomes


_TMP = re.compile(r"/(?:tmp|dev/shm)/[^ ]*?/(?:v|vault|w|h/inputs|inputs)/")


def clean(text: Any) -> str:
    """A table cell or message: temporary directories shortened, pipes escaped."""
    return _TMP.sub(".../", str(text)).replace("|", "\\|")


def table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(clean(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _sum(rows: list[dict[str, Any]], key: str) -> int:
    return sum(int(r.get(key) or 0) for r in rows)


def _status(outcomes: list[dict[str, Any]], needle: str) -> str:
    """'pass' / 'FAIL' / 'n known failures' of the tests whose node id contains needle."""
    mine = [o for o in outcomes if needle in o["nodeid"]]
    if not mine:
        return "not run"
    failed = [o for o in mine if o["outcome"] in ("failed", "xpassed")]
    xfailed = [o for o in mine if o["outcome"] == "xfailed"]
    skipped = [o for o in mine if o["outcome"] == "skipped"]
    parts = [f"{len(mine) - len(failed) - len(xfailed) - len(skipped)} passed"]
    if xfailed:
        parts.append(f"{len(xfailed)} known failure(s) (xfail)")
    if skipped:
        parts.append(f"{len(skipped)} skipped")
    if failed:
        parts.append(f"**{len(failed)} FAILED**")
    return ", ".join(parts)


def _command() -> str:
    """This command line as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    shown = str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def _commit() -> str:
    """HEAD's full hash, and the tracked files that differ from it."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    if not head:
        return "unknown (not a git checkout)"
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    if not changed:
        return head
    names = [line[3:] for line in changed]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"{head} with uncommitted changes to {', '.join(names[:5])}{more}"


def render(
    figs: dict[str, list[dict[str, Any]]],
    outcomes: list[dict[str, Any]],
    code: int | None,
    seconds: float | None,
    stress: bool,
) -> str:
    L: list[str] = []
    add = L.append
    add("# RELIABILITY.md — what the reliability suite measured")
    add("")
    add(
        f"Produced by `{_command()}` at commit `{_commit()}` on "
        f"{dt.date.today().isoformat()} (`make stress` runs `python tests/reliability/report.py`), "
        f"{'long variants (`VAULT_STRESS=1`)' if stress else 'short (CI) variants'}"
        + (f", {seconds / 60:.1f} min" if seconds else "")
        + (f", pytest exit {code}" if code is not None else "")
        + "."
    )
    add(
        "The suite is `tests/reliability/` (one module per item of issue 10). CI (`make test`) "
        "runs the same tests with small run counts; `make stress` runs the long variants and "
        "rewrites this file. A test marked *xfail* (strict) is a failure found in the library: "
        "it fails today, CI stays green, and the fix flips it (an XPASS then fails CI until "
        "the mark is removed). Every such failure is listed in the last section."
    )
    add("")
    n_pass = sum(o["outcome"] == "passed" for o in outcomes)
    n_x = sum(o["outcome"] == "xfailed" for o in outcomes)
    n_fail = sum(o["outcome"] in ("failed", "xpassed") for o in outcomes)
    n_skip = sum(o["outcome"] == "skipped" for o in outcomes)
    add(
        f"**Tests**: {len(outcomes)} — {n_pass} passed, {n_x} known failures (xfail), "
        f"{n_skip} skipped, {n_fail} failed."
    )
    add("")

    # 1 -------------------------------------------------------------------------------
    add("## 1. Crash sweep — `test_crash_sweep.py`")
    add("")
    add(
        "**What**: each kind of write-back runs in a forked child whose file-system calls are "
        "numbered by a wrapper (`inject.py`: create/open-for-write, write, fsync, sync, "
        "rename/replace, link, unlink, mkdir, truncate under the vault); the child "
        "`os._exit(137)`s before point N, for every N (and in the middle of every non-object "
        "write: half the bytes written). **Pass**: after every abort the vault opens; `verify` "
        "exits 0 and changes nothing; `CURRENT`, `refs/mode.json`, `config.toml`, "
        "`format.json` hold the old or the new bytes, the logs lie between the old and the new "
        "log, the served state is the old or the new one; the next write-back succeeds and the "
        "state is exactly the clean run's (if the audit line was written) or the old one, plus "
        "the next write, and equals a full build; verify passes again."
    )
    add("")
    rows = []
    for r in figs.get("crash_sweep", []):
        f = r.get("failed", {})
        rows.append(
            [
                r["op"],
                r["points"],
                r["aborts"],
                r.get("acknowledged", "—"),
                sum(f.values()),
                r.get("left_temporaries", "—"),
                r.get("not_swept") if r.get("not_swept") is not None else "—",
            ]
        )
    if rows:
        add(
            table(
                [
                    "write-back",
                    "points (clean run)",
                    "aborts",
                    "aborted after ack",
                    "aborts failing a check",
                    "aborts leaving temporaries",
                    "temporaries not swept by next write + gc",
                ],
                rows,
            )
        )
        add("")
        add(
            f"Total: **{_sum(figs['crash_sweep'], 'aborts')} aborts**, "
            f"{sum(sum(r.get('failed', {}).values()) for r in figs['crash_sweep'])} "
            "failing a check. "
            f"Status: {_status(outcomes, 'test_crash_sweep.py')}."
        )
        init = [r for r in figs["crash_sweep"] if r["op"] == "init"]
        if init:
            add(
                f"`vault init` killed at each point leaves at most a `.<name>.init-*` sibling "
                f"(documented, FORMAT §1): {init[0].get('staging_left', 0)} left over "
                f"{init[0]['aborts']} aborts, never a half-made vault."
            )
    add("")

    # 2 -------------------------------------------------------------------------------
    add("## 2. Random kills — `test_kills.py`")
    add("")
    add(
        "**What**: one vault on the real disk; each run picks a kind of write-back (add, fork, "
        "evidence, status, import, index build, rollback, rollback --to, gc, the kill switch), "
        "starts it in a child and SIGKILLs it at a uniformly random moment of the time a clean "
        "run of that kind takes; verify after every run. *Acknowledged* = exit 0 with its JSON "
        "printed. **Pass**: 0 acknowledged records lost (unless an acknowledged rollback "
        "reverted them), 0 corrupt (index = full build, verify ok) after the next write-back, "
        "verify ok after every kill, no traceback; temporaries swept by the next writer or gc."
    )
    add("")
    for r in figs.get("kills", []):
        add(
            table(
                [
                    "runs",
                    "SIGKILLs",
                    "killed after the audit line",
                    "completed",
                    "acknowledged",
                    "lost",
                    "corrupt",
                    "verify failures",
                    "tracebacks",
                    "most temporaries at once",
                ],
                [
                    [
                        r["runs"],
                        r["sigkills"],
                        r.get("killed_after_ack", "—"),
                        r["completed"],
                        r["acknowledged"],
                        r["lost"],
                        r["corrupt"],
                        r["verify_failures"],
                        r["tracebacks"],
                        r["max_temporaries"],
                    ]
                ],
            )
        )
        add("")
        add(f"Runs by kind: {r['by_kind']}.")
    for r in figs.get("kills_temporaries", []):
        add(
            f"Temporaries left after the campaign, one more write-back and `gc`: "
            f"**{r['left_after_gc']}**."
        )
    add(f"Status: {_status(outcomes, 'test_kills.py')}.")
    add("")

    # 3 -------------------------------------------------------------------------------
    add("## 3. Disk full and I/O errors — `test_faults.py`")
    add("")
    add(
        "**What**: the same numbered points, each failed in turn with ENOSPC or EIO (the "
        "wrapper raises `OSError` instead of the call); then the same command is retried "
        "without a fault. Also a real full file system (a 4 MiB tmpfs filled to 0, 4, 8, … KiB "
        "short), and under `make stress` `strace -f -e inject=SYSCALL:error=E:when=N` on a "
        "real `python -m vault_cli add` for every N of fsync, write, rename, link, unlink, "
        "mkdir. **Pass** (each a test per kind of write-back): one `error:` line, no traceback, "
        "naming the file; exit ≠ 0 (an absorbed error only where allowed, never a failed "
        "fsync); before the acknowledgement the vault unchanged (new unreferenced objects and "
        "cache entries aside); after it, the message says the write took effect; no "
        "temporaries; the retry succeeds and takes effect exactly once, the index equals a full "
        "build, verify passes and no temporary remains."
    )
    add("")
    rows = []
    checks = [
        "no_traceback",
        "one_line",
        "names_file",
        "fails",
        "unchanged",
        "says_committed",
        "no_temporaries",
        "retry",
        "retry_sound",
        "retry_sweeps",
    ]
    for r in figs.get("faults", []):
        f = r["failed"]
        rows.append(
            [
                r["op"],
                r["points"],
                r["injected"],
                r["after_ack"],
                r["absorbed"],
                *[f.get(c, 0) for c in checks],
            ]
        )
    if rows:
        add(
            table(
                [
                    "write-back",
                    "points",
                    "faults injected",
                    "after ack",
                    "absorbed (exit 0)",
                    *checks,
                ],
                rows,
            )
        )
        add("")
        add(
            f"Total: **{_sum(figs['faults'], 'injected')} injected faults**, "
            f"{_sum(figs['faults'], 'after_ack')} of them after the acknowledgement."
        )
    for r in figs.get("faults_audit_fsync", []):
        add(
            f"Audit-line fsync failing: line kept = {r['line_kept']}, the retry answered "
            f"unchanged = {bool(r['retry_said'])}, and fsynced the log = {r['retry_fsynced_log']}."
        )
    for r in figs.get("faults_full_disk", []):
        bad = ", ".join(f"{k} {v}" for k, v in r["failed"].items() if v) or "none"
        add(
            f"Real full disk: {r['runs']} runs, {r['failed_runs']} failed with ENOSPC "
            f"({r['after_ack']} after the acknowledgement); failing checks: {bad}."
        )
    for r in figs.get("faults_strace", []):
        add(
            f"strace injection: {r['runs']} runs of `add`, {r['problems']} with a problem "
            f"({', '.join(r['kinds']) or 'none'})."
        )
    add(f"Status: {_status(outcomes, 'test_faults.py')}.")
    add("")

    # 4 -------------------------------------------------------------------------------
    add("## 4. Concurrency — `test_concurrency.py`")
    add("")
    add(
        "**What**: writer processes × write-backs of mixed kinds (add, evidence, status, index "
        "build, rollback) released together on one vault on the real disk, 2 reader processes "
        "retrieving (hybrid) throughout. **Pass**: every acknowledged write present (unless an "
        "acknowledged rollback reverted it), audit lines = acknowledgements per kind, seqs "
        "1..N, index = full build, verify ok, readers saw no fallback and no error. The lock: "
        "a SIGSTOPped holder makes others fail after the wait naming its pid; a SIGKILLed "
        "holder blocks nobody."
    )
    add("")
    for r in figs.get("concurrency", []):
        add(
            table(
                [
                    "writers × steps",
                    "seconds",
                    "acknowledged",
                    "refused",
                    "audit lines",
                    "lost",
                    "index = full build",
                    "verify",
                    "reads",
                    "reader fallbacks/errors",
                ],
                [
                    [
                        f"{r['writers']} × {r['steps']}",
                        r["seconds"],
                        r["acknowledged"],
                        r["refused"],
                        r["audit_lines"],
                        r["lost"],
                        r["full_build_equal"],
                        r["verify_ok"],
                        r["reads"],
                        r["reader_problems"],
                    ]
                ],
            )
        )
        add("")
        add(f"Audit lines by op: {r['ops']}.")
    for r in figs.get("lock", []):
        if "message" in r:
            add(f"- {r['case']}: waited {r['waited']} s, message: `{clean(r['message'])}`")
        else:
            add(f"- {r['case']}: {r['runs']} runs, longest wait {r['max_wait']} s")
    add(f"Status: {_status(outcomes, 'test_concurrency.py')}.")
    add("")

    # 5 -------------------------------------------------------------------------------
    add("## 5. Torn audit tail — `test_torn_tail.py`")
    add("")
    add(
        "**What**: the prefix of the next line (every length under stress) appended to the "
        "audit log — and to `generations.jsonl` — as a crash inside the append leaves it. "
        "**Pass**: the next read serves the last complete state (same entries, state and "
        "retrieval; verify ok), the next append repairs the log (byte-identical to a log that "
        "was never torn), nothing acknowledged lost, index = full build. Also: an "
        "acknowledged last line cut by the file system is reported by verify, and the next "
        "write-back refuses or repairs."
    )
    add("")
    rows = [[r["log"], r["line_bytes"], r["cuts"], r["failed"]] for r in figs.get("torn_tail", [])]
    if rows:
        add(table(["log", "bytes of the torn line", "cuts tried", "cuts failing"], rows))
    add(f"Status: {_status(outcomes, 'test_torn_tail.py')}.")
    add("")

    # 6 -------------------------------------------------------------------------------
    add("## 6. Bit flips — `test_bitflips.py`")
    add("")
    add(
        "**What**: single-byte changes (random byte, random position; plus targeted changes "
        "that keep the file well formed) in every kind of file; per change, on a fresh copy: "
        "`vault verify --json`, library retrieval in the three modes, then every command (reads, "
        "`index build` followed by retrieval again, a write-back). **Pass** per kind: 100% "
        "detected (exit 1) and the file named; verify changes nothing; 0 tracebacks; retrieval "
        "never differs from the unchanged vault's without a clean error or a stated fallback, "
        "before or after `index build`. `config.toml` changes that leave a valid config are "
        "counted apart."
    )
    add("")
    rows = []
    for r in figs.get("bitflips", []):
        real = r["flips"] - r["valid_config"]
        rows.append(
            [
                r["kind"],
                r["flips"],
                r["valid_config"] or "",
                f"{r['detected']}/{real}",
                f"{r['named']}/{real}",
                r["verify_changed"],
                r["tracebacks"],
                r["silent"],
                r["silent_after_build"],
            ]
        )
    if rows:
        add(
            table(
                [
                    "kind of file",
                    "changes",
                    "valid config",
                    "detected",
                    "named",
                    "verify changed the vault",
                    "with a traceback",
                    "silently wrong retrieval",
                    "silently wrong after index build",
                ],
                rows,
            )
        )
        tot = figs["bitflips"]
        real = _sum(tot, "flips") - _sum(tot, "valid_config")
        add("")
        add(
            f"Total: **{_sum(tot, 'flips')} changes** ({_sum(tot, 'valid_config')} leaving a valid "
            f"config); detected {_sum(tot, 'detected')}/{real} "
            f"({100 * _sum(tot, 'detected') / max(1, real):.1f}%), named {_sum(tot, 'named')}; "
            f"{_sum(tot, 'tracebacks')} with a traceback; {_sum(tot, 'silent')} silently wrong "
            f"retrievals, {_sum(tot, 'silent_after_build')} after `index build`."
        )
    add(f"Status: {_status(outcomes, 'test_bitflips.py')}.")
    add("")

    # 7 -------------------------------------------------------------------------------
    add("## 7. Hostile input — `test_hostile.py`")
    add("")
    add(
        "**What**: each input through the CLI in a forked child (3 s timeout, address space "
        'capped 512 MiB above the child\'s size; "under a second" is measured in CPU time, so '
        "the machine's other load does not count); symlinks planted inside the vault before a "
        "write; a generation whose table is a pickled / object-dtype `.npy`; generations whose "
        "objects match their addresses but disagree (crafted). **Pass**: refused in under a "
        "second with one `error:` line (exit 1 or 2), no traceback, the vault byte-identical "
        "(tree), not a byte written outside it (a sentinel directory beside it and their "
        "parent directory compared). Also: verify reports each planted symlink; `format.json` "
        "versions other than 2 are refused; a crafted generation crashes no command."
    )
    add("")
    rows = []
    for r in figs.get("hostile", []):
        rows.append(
            [
                r["case"],
                r["seconds"],
                r.get("cpu", "—"),
                "yes" if r["refused"] else "**no**",
                "; ".join(r["problems"]) or clean(r["message"] or "")[:100],
            ]
        )
    if rows:
        add(table(["input", "wall s", "CPU s", "refused cleanly", "problems / the message"], rows))
        add("")
        ok = sum(1 for r in figs["hostile"] if r["refused"])
        add(f"{ok} of {len(figs['hostile'])} refused cleanly.")
    add(f"Status: {_status(outcomes, 'test_hostile.py')}.")
    add("")

    # 8 -------------------------------------------------------------------------------
    add("## 8. Stateful model — `test_stateful.py`")
    add("")
    add(
        "**What**: a hypothesis `RuleBasedStateMachine` runs add / fork / evidence / status / "
        "index build / rollback / rollback --to / gc / verify against an in-memory model (concept "
        "versions with keys, status, status history and evidence; generation records with "
        "parents, the record-reuse rule, gc's kept set). **Pass**, after every step: the served "
        "state and the kept generation numbers equal the model's, the index equals a full "
        "build, symbolic retrieval for three queries equals the model's ranking; verify at the "
        "end of every example (and as a rule)."
    )
    add("")
    for r in figs.get("stateful", []):
        add(
            f"{r['examples']} examples, {r['steps']} steps (at most {r['max_steps']} per "
            f"example; settings {r['settings']})."
        )
    add(f"Status: {_status(outcomes, 'test_stateful.py')}.")
    add("")

    # 9 -------------------------------------------------------------------------------
    add("## 9. Rankings against the reference — `tests/test_reference.py`")
    add("")
    for r in figs.get("reference", []):
        cases, differ = r["cases"], r["mismatches"]
        add(
            f"**{sum(cases.values())} cases** compared with `tests/reference` (FORMAT.md's rules "
            f"in plain Python), every field of every hit: **{sum(differ.values())} mismatches**. "
            + ", ".join(f"{k}: {v}" for k, v in sorted(cases.items()))
            + "."
        )
    add("")

    # 10 ------------------------------------------------------------------------------
    add("## 10. Readers during gc — `test_gc_readers.py`")
    add("")
    add(
        "**What**: a writer process publishes a generation and runs `gc --keep 1` every few "
        "tenths of a second (write-backs, `embedder use` fitted/built-in in turn) while 2 "
        "`Retriever` processes each open a generation, wait until gc has collected it, then ask "
        "every mode, and `retrieve --batch --workers 2` processes are fed on a slow pipe; plus "
        "the issue's three cases. **Pass**: no crash, no fallback, every answer equal to what "
        "the writer computed for that generation."
    )
    add("")
    for r in figs.get("gc_readers", []):
        add(
            f"{r['reader_collected'] + r['batch_collected']} gc-during-read runs "
            f"({r['reader_collected']} of {r['reader_runs']} Retriever runs, "
            f"{r['batch_collected']} of {r['batch_runs']} batches of {r['batch_answers']} "
            f"answers in all); {r['queries']} Retriever queries; {r['gc']} gc, {r['writes']} "
            f"write-backs, {r['embedder_switches']} embedder switches in {r['seconds']} s: "
            f"**{r['crashes']} crashes, {r['fallbacks']} fallbacks, {r['wrong']} wrong answers**, "
            f"{r['batch_problems']} batch problems."
        )
    add(f"Status: {_status(outcomes, 'test_gc_readers.py')}.")
    add("")

    # 11 ------------------------------------------------------------------------------
    add("## 11. Power loss — `test_powerloss.py`")
    add("")
    add(
        "**What** (issue 18): each mutating command recorded once in a forked child (every "
        "create, write, truncate, fsync, link, rename, unlink, mkdir under the vault, with its "
        "data; the replay of the whole recording must give the real tree byte for byte), then "
        "for each cut (a prefix of the operations) the states a power cut can leave: every "
        "operation not yet persisted by a later fsync of its file or directory dropped or kept "
        "— all kept, all dropped, each dropped alone, each kept alone, the first j kept, random "
        "subsets — and each un-fsynced write torn (half, zeros); distinct states only. "
        "*Acknowledged* = the cut is after the command's last operation (it had reported "
        "success). **Pass** per state: it opens; `verify` exits 0 or names only derived files "
        "(the index, the cache, objects no audit line names); the seed's audit lines are "
        "intact; the next writer (`vault add`) exits 0; then the served state is the clean "
        "run's without the command or with it — with it whenever its audit line survived, and "
        "always once acknowledged — and `verify` exits 0 (a damaged cache repaired first). "
        "*Double fault*: a process crash at a cut, the next writer run to completion, then a "
        "power cut: the next writer's card must survive."
    )
    add("")
    rows = []
    for r in figs.get("powerloss", []):
        rows.append(
            [
                r["command"],
                r["ops"],
                r["fsyncs"],
                r["cuts"],
                r["states"],
                r["after_ack"],
                r.get("derived", "—"),
                r["cache_repaired"],
                r["failed"],
                f"{r['doubles']} / {r['double_failed']}",
            ]
        )
    if rows:
        add(
            table(
                [
                    "command",
                    "operations",
                    "fsyncs",
                    "cuts",
                    "states checked",
                    "states after the acknowledgement",
                    "verify 1 naming derived files only",
                    "cache repaired after the next writer",
                    "states failing",
                    "double faults / failing",
                ],
                rows,
            )
        )
        add("")
        pl = figs["powerloss"]
        add(
            f"Total: **{_sum(pl, 'states')} power-loss states** replayed "
            f"({_sum(pl, 'after_ack')} after the acknowledgement) and {_sum(pl, 'doubles')} "
            f"double faults; {_sum(pl, 'failed') + _sum(pl, 'double_failed')} failing."
        )
        for r in pl:
            for example in r.get("examples", []):
                add(f"- {r['command']}: {clean(example)[:300]}")
    add(f"Status: {_status(outcomes, 'test_powerloss.py')}.")
    add("")

    # failures ------------------------------------------------------------------------
    add("## Failures found (strict xfail: open until the library is fixed)")
    add("")
    found = [o for o in outcomes if o["outcome"] in ("xfailed", "xpassed")]
    if found:
        by_reason: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for o in found:
            by_reason[o["xfail"] or ""].append(o)
        add(
            f"{len(found)} tests, {len(by_reason)} distinct failures (one row per reason; the "
            "tests are the xfail-marked ones that show it)."
        )
        add("")
        rows = []
        for i, (reason, tests) in enumerate(by_reason.items(), 1):
            fixed = [o for o in tests if o["outcome"] == "xpassed"]
            status = "open" if not fixed else f"**{len(fixed)} fixed: remove the mark**"
            names = ", ".join(
                "`" + o["nodeid"].replace("tests/reliability/", "").split("::", 1)[1] + "`"
                for o in tests[:4]
            ) + (f" and {len(tests) - 4} more" if len(tests) > 4 else "")
            rows.append([i, reason, status, names])
        add(table(["#", "what fails, and why", "status", "tests"], rows))
    else:
        add("None.")
    unexpected = [o for o in outcomes if o["outcome"] == "failed"]
    if unexpected:
        add("")
        add("Unexpected failures in this run:")
        for o in unexpected:
            add(f"- `{o['nodeid']}`")
    add("")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI variants, not VAULT_STRESS=1")
    ap.add_argument("--figures", type=Path, help="figures file (default: a temporary one)")
    ap.add_argument("--no-run", action="store_true", help="only render --figures")
    ap.add_argument("--out", type=Path, default=ROOT / "RELIABILITY.md")
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    stress = not args.short
    figures = args.figures or Path(tempfile.mkstemp(prefix="vault-figures-", suffix=".jsonl")[1])
    code: int | None = None
    seconds = None
    if not args.no_run:
        figures.write_text("")
        code, seconds = run(figures, stress, args.pytest_args)
    figs, outcomes = load(figures)
    args.out.write_text(render(figs, outcomes, code, seconds, stress))
    print(f"wrote {args.out} ({len(outcomes)} test outcomes, figures in {figures})")
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
