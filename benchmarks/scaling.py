"""Issue 21's figures (SCALING.md): remotes on a local S3 server, contending writers, batch
retrieval on a Dask cluster. Every server is started here, on 127.0.0.1.

    python benchmarks/scaling.py clone --concepts 100000
    python benchmarks/scaling.py pull --concepts 10000 --writebacks 100 --cards-each 100 --compare
    python benchmarks/scaling.py writers --writers 1 4 16 --commits 100
    python benchmarks/scaling.py dask --concepts 10000 --requests 20000

Prints one JSON document per part (and appends it to --out, JSON lines)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen  # noqa: E402

from vault.vault import Vault, fixed_clock  # noqa: E402

CLOCK = fixed_clock(0)


# --------------------------------------------------------------------------- servers
def s3_server() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ALLOW_HTTP="true",
    )
    return server, endpoint


def s3_server_process() -> tuple[subprocess.Popen[bytes], str]:
    """moto in a process of its own (the writers must not share its interpreter)."""
    code = (
        "import logging, sys, time\n"
        "from moto.server import ThreadedMotoServer\n"
        "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
        "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); s.start()\n"
        "h, p = s.get_host_and_port(); print(f'http://{h}:{p}', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().decode().strip()
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ALLOW_HTTP="true",
    )
    return proc, endpoint


def bucket(endpoint: str) -> str:
    import boto3

    name = f"vault-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return f"s3://{name}/bench"


def cards_vault(root: Path, n: int, chunk: int = 10_000) -> Vault:
    v = Vault.init(root, clock=CLOCK)
    for lo in range(0, n, chunk):
        cards = [c for part in gen.generate(min(chunk, n - lo), start=lo) for c in part[0]]
        v.add(cards)
    return v


def dir_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def full_build_generation(v: Vault) -> str:
    from vault.index.build import plan_full
    from vault.index.state import State

    return plan_full(v.audit.entries(), State(v.objects), v.records, v.cache).generation


# --------------------------------------------------------------------------- parts
def part_clone(n: int, work: Path) -> dict[str, Any]:
    from vault.remote import clone, push
    from vault.remote.config import add_remote

    server, endpoint = s3_server_process()
    try:
        t = time.perf_counter()
        a = cards_vault(work / "origin", n)
        made = time.perf_counter() - t
        url = bucket(endpoint)
        add_remote(a.config_path, "origin", url)
        t = time.perf_counter()
        first = push(a)
        push_s = time.perf_counter() - t
        load = os.getloadavg()[0]
        t = time.perf_counter()
        got = clone(url, work / "clone", clock=CLOCK)
        clone_s = time.perf_counter() - t
        load_after = os.getloadavg()[0]
        b = Vault.open(work / "clone")
        same = b.current_ref().generation == a.current_ref().generation  # type: ignore[union-attr]
        a.add([({"schema_version": 1, "id": "one-more", "version": "1.0.0", "domain": "grid_2d",
                 "signature": {"keys": ["transform:rotate_90"]},
                 "template": {"template_dsl": "(rotate_90 grid)"}}, "bench")])
        t = time.perf_counter()
        second = push(a)
        push1_s = time.perf_counter() - t
        records_bytes = first.bytes_sent
        vault_bytes = dir_bytes(a.root)
        return {
            "part": "clone",
            "concepts": n,
            "make_vault_s": round(made, 1),
            "objects": first.objects_sent,
            "push_s": round(push_s, 1),
            "push_bytes": first.bytes_sent,
            "clone_s": round(clone_s, 1),
            "clone_parts_s": got.seconds,
            "load_before_clone": load,
            "load_after_clone": load_after,
            "clone_objects": got.objects_received,
            "clone_bytes": got.bytes_received,
            "clone_index_identical": same,
            "push_after_one_write_back_bytes": second.bytes_sent,
            "push_after_one_write_back_s": round(push1_s, 2),
            "pct_of_pushed_records": round(100 * second.bytes_sent / records_bytes, 4),
            "vault_dir_bytes": vault_bytes,
            "pct_of_vault_dir": round(100 * second.bytes_sent / vault_bytes, 4),
        }
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=30)


def _one_by_one(vault: Any, remote: Any, digests: list[str], optional: set[str], result: Any,
                **_: Any) -> None:
    """How a pull stored its objects before it staged them (the line it replaced): each
    made durable by ``put_digested`` (temporary, fsync, link, directory fsyncs)."""
    got, size = remote.fetch(digests, optional, vault.objects.put_digested)
    result.objects_received += got
    result.bytes_received += size


def part_pull(
    n: int, writebacks: int, cards_each: int, repeat: int, work: Path, remote: str = "s3",
    compare: bool = False,
) -> dict[str, Any]:
    """``vault pull`` of a remote (the local S3 server, or a ``file://`` directory: no
    server's cost) holding ``writebacks`` new write-backs (``cards_each`` new cards each)
    into a clone of an ``n``-concept vault, ``repeat`` times (each into a fresh copy of the
    clone, the file system synced first so that no earlier write is flushed by the timed
    one); the median and each run. ``compare``: each time also a pull that stores its
    objects one by one as before (``_one_by_one``), the two in turns (alternating which
    goes first), so that the machine's other load falls on both alike."""
    import statistics

    from vault.remote import clone, pull, push, sync
    from vault.remote.config import add_remote

    staged = getattr(sync, "_fetch_staged", None)  # (None: code from before pulls staged)
    if compare and staged is None:
        raise SystemExit("--compare needs the code that stages (vault.remote.sync._fetch_staged)")
    ways = {"staged": staged, "one_by_one": _one_by_one} if compare else {"as_is": staged}

    server, endpoint = s3_server_process()
    try:
        a = cards_vault(work / "origin", n)
        url = bucket(endpoint) if remote == "s3" else (work / "remote").as_uri()
        add_remote(a.config_path, "origin", url)
        push(a)
        clone(url, work / "clone", clock=CLOCK)
        t = time.perf_counter()
        for i in range(writebacks):
            a.add([({"schema_version": 1, "id": f"new-{i:05d}-{j:03d}", "version": "1.0.0",
                     "domain": "grid_2d",
                     "signature": {"keys": ["transform:rotate_90", f"feature:n{i % 97}"]},
                     "template": {"template_dsl": f"(rotate_90 grid {i} {j})"}}, "bench")
                   for j in range(cards_each)])
        made = time.perf_counter() - t
        pushed = push(a)
        runs: dict[str, list[dict[str, Any]]] = {w: [] for w in ways}
        for r in range(repeat):
            for way in list(ways) if r % 2 == 0 else list(ways)[::-1]:
                d = work / f"pull{r}-{way}"
                shutil.copytree(work / "clone", d, symlinks=True)
                os.sync()  # (untimed: the copy's dirty pages are not the pull's to flush)
                if ways[way] is not None:
                    sync._fetch_staged = ways[way]  # type: ignore[attr-defined]
                b = Vault.open(d, clock=CLOCK)
                load = os.getloadavg()[0]
                t = time.perf_counter()
                got = pull(b)
                s = time.perf_counter() - t
                same = b.current_ref().generation == a.current_ref().generation  # type: ignore[union-attr]
                runs[way].append({"s": round(s, 3), "parts_s": dict(got.seconds), "load": load,
                                  "objects": got.objects_received, "entries": got.pulled,
                                  "index_identical": same})
                shutil.rmtree(d)
        if staged is not None:
            sync._fetch_staged = staged  # type: ignore[attr-defined]
        import vault

        return {
            "part": "pull",
            "code": str(Path(vault.__file__).parent),
            "remote": remote,
            "concepts": n,
            "writebacks": writebacks,
            "cards_each": cards_each,
            "make_writebacks_s": round(made, 1),
            "pushed_objects": pushed.objects_sent,
            **{f"pull_median_s_{w}": round(statistics.median(x["s"] for x in v), 3)
               for w, v in runs.items()},
            "runs": runs,
        }
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=30)


def writer(root: str, index: int, commits: int, out: str) -> None:
    """One writer process: ``commits`` write-backs, each pushed (re-applied when it loses)."""
    from vault.remote import push

    v = Vault.open(root, clock=CLOCK)
    retries = replayed = 0
    names = []
    t = time.perf_counter()
    for j in range(commits):
        name = f"w{index:02d}-{j:04d}"
        v.add([({"schema_version": 1, "id": name, "version": "1.0.0", "domain": "grid_2d",
                 "signature": {"keys": ["transform:rotate_90", f"feature:w{index}"]},
                 "template": {"template_dsl": "(rotate_90 grid)"}}, name)])
        r = push(v)
        retries += r.retries
        replayed += r.replayed
        names.append(name)  # acknowledged: push returned
    Path(out).write_text(json.dumps({"acknowledged": names, "retries": retries,
                                     "replayed": replayed, "seconds": time.perf_counter() - t}))


def part_writers(counts: list[int], commits: int, base: int, work: Path) -> list[dict[str, Any]]:
    from vault.remote import clone, pull, push
    from vault.remote.config import add_remote

    server, endpoint = s3_server_process()
    results = []
    try:
        for w in counts:
            d = work / f"w{w}"
            shutil.rmtree(d, ignore_errors=True)
            a = cards_vault(d / "origin", base)
            url = bucket(endpoint)
            add_remote(a.config_path, "origin", url)
            push(a)
            for i in range(w):
                clone(url, d / f"clone{i}", clock=CLOCK)
            t = time.perf_counter()
            procs = [
                subprocess.Popen([sys.executable, __file__, "_writer", str(d / f"clone{i}"), str(i),
                                  str(commits), str(d / f"out{i}.json")])
                for i in range(w)
            ]
            codes = [p.wait() for p in procs]
            wall = time.perf_counter() - t
            outs = [json.loads((d / f"out{i}.json").read_text()) for i in range(w)]
            acked = [n for o in outs for n in o["acknowledged"]]
            vaults = [a] + [Vault.open(d / f"clone{i}", clock=CLOCK) for i in range(w)]
            for v in vaults:
                pull(v)
            logs = {v.audit.path.read_bytes() for v in vaults}
            final = full_build_generation(a)
            gens = {v.current_ref().generation for v in vaults}  # type: ignore[union-attr]
            snap = a.snapshot()
            lost = [n for n in acked if snap.concept(f"{n}@1.0.0") is None]
            results.append({
                "part": "writers",
                "writers": w,
                "commits_each": commits,
                "exit_codes": sorted(set(codes)),
                "acknowledged": len(acked),
                "lost": len(lost),
                "wall_s": round(wall, 1),
                "commits_per_s": round(len(acked) / wall, 2),
                "lost_races": sum(o["retries"] for o in outs),
                "logs_identical": len(logs) == 1,
                "every_index_is_the_full_build": gens == {final},
                "base_concepts": base,
            })
            print(json.dumps(results[-1]), flush=True)
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=30)
    return results


def _cpu_seconds() -> float:
    """This process's CPU seconds (user + system), run in each Dask worker."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _slices(path: Path, rounds: int, work: Path) -> list[Path]:
    """The request file cut into ``rounds`` files of whole lines (for turns)."""
    lines = path.read_text().splitlines(keepends=True)
    step = -(-len(lines) // rounds)
    out = []
    for i in range(0, len(lines), step):
        part = work / f"slice-{i // step:03d}.jsonl"
        part.write_text("".join(lines[i : i + step]))
        out.append(part)
    return out


def part_dask(
    n: int, requests: int, work: Path, partition: int | None = None, rounds: int = 10
) -> dict[str, Any]:
    """``retrieve --batch FILE`` as the command runs it: one process (``Retriever.batch``,
    each answer encoded as the command writes it) against ``vault.distributed.batch_lines``
    on a ``LocalCluster`` of 1 and 2 worker processes (warmed: each worker has imported vault
    and opened the snapshot), in turns on ``rounds`` slices of the requests. The CPU seconds
    of the client and of the workers are measured too."""
    import io

    import jsonlines
    from dask.distributed import LocalCluster

    from vault import distributed
    from vault.input import iter_requests

    v = cards_vault(work / "dask", n)
    rng = random.Random(21)
    families = sorted(gen.FAMILIES)

    def task() -> dict[str, Any]:  # new grids each time: every request is computed afresh
        f = gen.FAMILIES[families[rng.randrange(len(families))]][0]
        train = [gen.pool_grid(rng) for _ in range(2)]
        return {"train": [{"input": g, "output": f(g)} for g in train],
                "test": [{"input": gen.pool_grid(rng)}]}

    path = work / "requests.jsonl"
    with open(path, "w") as f:
        for i in range(requests):
            f.write(json.dumps({"task": task(), "k": 5, "id": i}) + "\n")
    cfg = v.config()
    size = partition or distributed.PARTITION
    out: dict[str, Any] = {"part": "dask", "concepts": n, "requests": requests,
                           "partition": size, "load_before": os.getloadavg()[0]}
    # One process and both clusters take turns on slices of the file (one process, then 1
    # worker, then 2, slice after slice), so that the other load of a shared machine, which
    # comes and goes, falls on all three alike; each slice's answers must be the same bytes.
    slices = _slices(path, rounds, work)
    clusters = {w: LocalCluster(n_workers=w, threads_per_worker=1, processes=True,  # type: ignore[no-untyped-call]
                                dashboard_address=None) for w in (1, 2)}
    from dask.distributed import Client

    clients = {w: Client(c.scheduler_address) for w, c in clusters.items()}  # type: ignore[no-untyped-call]
    try:
        with v.retriever(config=cfg) as r:
            gen_id = r.generation
            for c in clusters.values():  # warm: each worker imports vault, opens the snapshot
                list(distributed.batch_lines(str(v.root), gen_id, cfg, str(slices[0]),
                                             scheduler=c.scheduler_address, partition=1))
            secs = {0: 0.0, 1: 0.0, 2: 0.0}
            cpu = {0: 0.0, 1: 0.0, 2: 0.0}
            same = {1: True, 2: True}
            errors = 0
            before = {w: sum(c.run(_cpu_seconds).values()) for w, c in clients.items()}
            for part in slices:
                t, c0 = time.perf_counter(), time.process_time()
                buf = io.StringIO()
                writer = jsonlines.Writer(buf, compact=True, sort_keys=True)
                for answer in r.batch(iter_requests(str(part))):
                    writer.write(answer)
                alone = buf.getvalue()
                secs[0] += time.perf_counter() - t
                cpu[0] += time.process_time() - c0
                errors += alone.count('"error"')
                for w, cl in clusters.items():
                    t, c0 = time.perf_counter(), time.process_time()
                    text = "".join(x for x, _, _ in distributed.batch_lines(
                        str(v.root), gen_id, cfg, str(part), scheduler=cl.scheduler_address,
                        partition=size))
                    secs[w] += time.perf_counter() - t
                    cpu[w] += time.process_time() - c0
                    same[w] = same[w] and text == alone
        out["one_process_s"] = round(secs[0], 1)
        out["one_process_cpu_s"] = round(cpu[0], 1)
        out["one_process_per_s"] = round(requests / secs[0])
        out["errors"] = errors
        for w, client in clients.items():
            out[f"dask_{w}_s"] = round(secs[w], 1)
            out[f"dask_{w}_per_s"] = round(requests / secs[w])
            out[f"dask_{w}_client_cpu_s"] = round(cpu[w], 1)
            used = sum(client.run(_cpu_seconds).values()) - before[w]
            out[f"dask_{w}_workers_cpu_s"] = round(used, 1)
            out[f"dask_{w}_identical"] = same[w]
        out["slices"] = len(slices)
    finally:
        for client in clients.values():
            client.close()
        for cl in clusters.values():
            cl.close()
    out["speedup_2_over_1"] = round(out["dask_1_s"] / out["dask_2_s"], 2)
    out["load_after"] = os.getloadavg()[0]
    return out


def main() -> None:
    if sys.argv[1:2] == ["_writer"]:
        root, index, commits, out = sys.argv[2:6]
        writer(root, int(index), int(commits), out)
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("part", choices=["clone", "pull", "writers", "dask"])
    ap.add_argument("--concepts", type=int, default=100_000)
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--commits", type=int, default=100)
    ap.add_argument("--writebacks", type=int, default=1000, help="pull: new write-backs")
    ap.add_argument("--cards-each", type=int, default=1, help="pull: new cards per write-back")
    ap.add_argument("--repeat", type=int, default=5, help="pull: timed pulls (the median)")
    ap.add_argument("--remote", choices=["s3", "file"], default="s3",
                    help="pull: the local S3 server or a file:// directory")
    ap.add_argument("--compare", action="store_true",
                    help="pull: in turns with a pull storing its objects one by one (as before)")
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--partition", type=int, default=None, help="dask: requests per task")
    ap.add_argument("--rounds", type=int, default=10,
                    help="dask: slices of the requests, run by 1 and 2 workers in turn")
    ap.add_argument("--out", type=Path, default=HERE / "scaling.jsonl")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vault-scaling-"))
    try:
        if args.part == "clone":
            found: Any = part_clone(args.concepts, work)
        elif args.part == "pull":
            found = part_pull(args.concepts, args.writebacks, args.cards_each, args.repeat, work,
                              args.remote, args.compare)
        elif args.part == "writers":
            found = part_writers(args.writers, args.commits, min(args.concepts, 1000), work)
        else:
            found = part_dask(args.concepts, args.requests, work, args.partition, args.rounds)
        for item in found if isinstance(found, list) else [found]:
            print(json.dumps(item), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(item) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
