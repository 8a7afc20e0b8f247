"""Throughput and peak memory of batch scoring: plain loop vs `medzs score` local engine vs Ray engine.

The shared PTB-XL records (``records500``, 12 leads, 500 Hz, 10 s) are repeated to ``--n`` rows of a manifest CSV.
Each engine runs in a fresh Python process:

- ``loop``: the plain baseline — for each record, ``wfdb.rdrecord`` -> :func:`medzs.transforms.ecg.preprocess`
  -> ``model.encode_signal`` on one record -> cosine similarity, scores kept in a list and written once at the end;
- ``local``: :func:`medzs.batch.score_files` (``engine="local"``: content detection, batches, atomic shards, merge);
- ``ray``: :func:`medzs.batch.score_files` (``engine="ray"``: a local Ray instance, ``--ray-actors`` actors).

Each run includes model loading, class embeddings (class-name prompts, no knowledge base) and, for Ray, starting
the instance. Peak RSS: ``driver`` is the run's own process (``ru_maxrss``); ``tree`` is the largest sum of RSS
over the process and all its descendants (Ray's raylet, GCS and actors), sampled every 0.2 s from ``/proc``
(Linux; shared pages are counted once per process, so it overstates).

Usage::

    python benchmarks/batch_throughput.py                 # n = 10,000
    python benchmarks/batch_throughput.py --n 1000 --engines loop,local
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


# ------------------------------------------------------------------------------------------------ workers
def _prompts(task: str) -> dict[str, list[str]]:
    from medzs.data.tasks import get_task

    t = get_task(task)
    return {c: [t.display_names[c]] for c in t.classes}


def _worker(args: argparse.Namespace) -> dict:
    import resource

    import pandas as pd

    t0 = time.perf_counter()
    paths = pd.read_csv(args.manifest)["path"].tolist()
    if args.worker == "loop":
        import numpy as np
        import torch
        import wfdb

        from medzs import registry
        from medzs.scoring import class_embeddings, similarity
        from medzs.transforms.ecg import preprocess

        torch.set_num_threads(args.threads)
        model = registry.create_model(args.model)
        prompts = _prompts(args.task)
        classes = list(prompts)
        with torch.inference_mode():
            cls = class_embeddings(lambda t: model.encode_text(list(t)), [prompts[c] for c in classes])
            rows = []
            for p in paths:
                rec = wfdb.rdrecord(str(Path(p).with_suffix("")))
                sample = {"signal": rec.p_signal.T.astype(np.float32), "leads": rec.sig_name, "fs": rec.fs}
                x = preprocess(sample, model.config.input_spec)
                emb = model.encode_signal(torch.from_numpy(x[None]))
                rows.append(similarity(emb, cls)[0].astype(np.float32))
        pd.DataFrame(np.stack(rows), columns=[f"score_{c}" for c in classes]).to_parquet(args.out)
        n_ok = len(rows)
    else:
        from medzs.batch import score_files

        res = score_files([args.manifest], args.out, model=args.model, task=args.task,
                          class_prompts=_prompts(args.task), engine=args.worker, batch_size=args.batch_size,
                          shard_size=args.shard_size, progress=False, torch_threads=args.threads,
                          ray_actors=args.ray_actors, overwrite=True)
        n_ok = res.n_ok
    seconds = time.perf_counter() - t0
    return {"engine": args.worker, "n": len(paths), "n_ok": n_ok, "seconds": seconds,
            "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ------------------------------------------------------------------------------------------------ parent
def _tree_rss_mb(root: int) -> float:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                stat = fh.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/statm") as fh:
                pages = int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
        rss[int(d)] = pages
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run(engine: str, args: argparse.Namespace, manifest: Path, workdir: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, "--manifest", str(manifest),
           "--out", str(workdir / f"{engine}.parquet"), "--model", args.model, "--task", args.task,
           "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size), "--threads", str(args.threads),
           "--ray-actors", str(args.ray_actors)]
    proc = subprocess.Popen(cmd, env={**os.environ, **OFFLINE}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_mb(proc.pid))
            stop.wait(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed ({proc.returncode}):\n{err[-3000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["tree_rss_mb"] = peak
    return res


def _table(results: list[dict]) -> str:
    base = next((r for r in results if r["engine"] == "loop"), None)
    header = ("| engine | ECGs | seconds | ECGs/s | speed vs loop | peak RSS driver (MB) | peak RSS tree (MB) | "
              "tree RSS vs loop |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rate = r["n"] / r["seconds"]
        speed = f"{rate / (base['n'] / base['seconds']):.2f}x" if base else "-"
        mem = f"{r['tree_rss_mb'] / base['tree_rss_mb']:.2f}x" if base else "-"
        lines.append(f"| {r['engine']} | {r['n']:,} | {r['seconds']:.1f} | {rate:.1f} | {speed} | "
                     f"{r['driver_rss_mb']:.0f} | {r['tree_rss_mb']:.0f} | {mem} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="Records to score (PTB-XL records repeated).")
    ap.add_argument("--engines", default="loop,local,ray", help="Comma-separated: loop, local, ray.")
    ap.add_argument("--model", default="ecg-resnet18.random")
    ap.add_argument("--task", default="ptbxl-super")
    ap.add_argument("--root", default=None, help="PTB-XL root (default: $MEDZS_PTBXL_ROOT or the shared mirror).")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1, help="Torch threads of the loop and the local engine.")
    ap.add_argument("--ray-actors", type=int, default=2)
    ap.add_argument("--json", default=None, help="Also write the results as JSON here.")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--manifest", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args)))  # benchmark script: read by the parent
        return

    from medzs.data.ptbxl import default_root

    root = Path(args.root or default_root() or REPO.parent / "shared" / "data" / "ecg" / "ptbxl500")
    heads = sorted((root / "records500").glob("*/*_hr.hea"))
    if not heads:
        raise SystemExit(f"no PTB-XL records500 headers under {root}")
    t0 = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="medzs-bench-") as tmp:
        work = Path(tmp)
        manifest = work / "manifest.csv"
        rows = [str(heads[i % len(heads)]) for i in range(args.n)]
        manifest.write_text("path\n" + "\n".join(rows) + "\n")
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            r = _run(engine, args, manifest, work)
            results.append(r)
            print(f"{engine}: {r['n']} ECGs in {r['seconds']:.1f} s", file=sys.stderr)
    total = time.perf_counter() - t0
    print(_table(results))
    print(f"\n{args.n:,} records ({len(heads)} distinct PTB-XL records500 files repeated), model {args.model}, "
          f"batch {args.batch_size}, shard {args.shard_size}, torch threads {args.threads}, "
          f"Ray actors {args.ray_actors}, {os.cpu_count()} CPUs; benchmark wall time {total / 60:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "seconds": total, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
