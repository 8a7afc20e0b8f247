"""ECG throughput of the engine vs its roofline, as ratios measured in one run (issue: one zero-shot engine).

The 500 shared PTB-XL records (ecg_id 1-500, both rates) are repeated to ``--n`` rows of a manifest CSV. For each
precision (fp32, bf16), in fresh processes with the same torch threads and batch size:

- ``roofline``: the forward pass alone of the embedded model on in-memory preprocessed tensors (batches of
  ``--batch-size``), i.e. what the network allows;
- ``score records100`` / ``score records500``: :func:`medzs.batch.score_files` (``medzs score``: content
  detection, reading, quality checks, InputSpec transforms -- 500 Hz input is resampled -- batched encoder, class
  scores, atomic Parquet shards, merge). Start-up (imports, model, prompts) is excluded by measuring the marginal
  rate between a 500-record and an ``--n``-record run: ``(n - 500) / (t_n - t_500)``;
- ``loop``: a plain one-record loop (read, preprocess, forward on one record, cosine) over the same files, for
  comparison.

Peak RSS (``ru_maxrss``) of the ``score records100`` runs at 500 and at ``--n`` records shows whether memory is flat
in the number of records. The machine is shared and noisy: compare the ratios, not the absolute numbers.

Usage::

    python benchmarks/ecg_throughput.py                  # n = 2000, batch 64, 2 threads
    python benchmarks/ecg_throughput.py --n 4000 --precisions fp32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


def _root() -> Path:
    for cand in (REPO.parent / "shared/data/ecg/ptbxl2k", REPO.parent / "shared/data/ecg/ptbxl500"):
        if (cand / "ptbxl_database.csv").is_file():
            return cand
    raise SystemExit("shared PTB-XL mirror not found next to the checkout")


def _manifest(folder: Path, n: int, rate: int) -> Path:
    root = _root()
    sub = "records100" if rate == 100 else "records500"
    suffix = "lr" if rate == 100 else "hr"
    paths = [root / sub / "00000" / f"{i:05d}_{suffix}.hea" for i in range(1, 501)]
    paths = [p for p in paths if p.is_file()]
    rows = [paths[i % len(paths)] for i in range(n)]
    out = folder / f"manifest-{rate}-{n}.csv"
    out.write_text("path,record_id\n" + "".join(f"{p},r{i}\n" for i, p in enumerate(rows)))
    return out


def _prompts(task: str) -> dict[str, list[str]]:
    from medzs.data.tasks import get_task

    t = get_task(task)
    return {c: [t.display_names[c]] for c in t.classes}


def _worker(a: argparse.Namespace) -> dict:
    import resource

    import torch

    torch.set_num_threads(a.threads)
    out: dict = {}
    if a.worker == "roofline":
        import numpy as np
        import pandas as pd

        from medzs import registry
        from medzs.io.wfdb import read_wfdb
        from medzs.transforms.ecg import preprocess

        model = registry.create_model("ecg-resnet18.medzs-ptbxl")
        spec = model.config.input_spec
        paths = pd.read_csv(a.manifest)["path"].tolist()[:500]
        x = torch.from_numpy(np.stack([preprocess(read_wfdb(p), spec) for p in paths]))
        reps = max(1, a.n // len(paths))

        def run() -> None:
            with torch.inference_mode():
                for _ in range(reps):
                    for b in range(0, len(x), a.batch_size):
                        xb = x[b:b + a.batch_size]
                        if a.precision == "bf16":
                            with torch.autocast("cpu", dtype=torch.bfloat16):
                                model.encode_signal(xb)
                        else:
                            model.encode_signal(xb)

        run()  # warm-up
        t = time.perf_counter()
        run()
        out["ecg_per_s"] = reps * len(x) / (time.perf_counter() - t)
    elif a.worker == "score":
        from medzs.batch import score_files

        t = time.perf_counter()
        res = score_files([a.manifest], Path(a.tmp) / f"out-{os.getpid()}.parquet", model="ecg-resnet18.medzs-ptbxl",
                          task="ptbxl-super", class_prompts=_prompts("ptbxl-super"), batch_size=a.batch_size,
                          progress=False, torch_threads=a.threads, precision=a.precision, overwrite=True)
        out["seconds"] = time.perf_counter() - t
        out["n_ok"] = res.n_ok
    elif a.worker == "loop":
        import numpy as np
        import pandas as pd

        from medzs import registry
        from medzs.io.wfdb import read_wfdb
        from medzs.scoring import ClassScorer
        from medzs.transforms.ecg import preprocess

        model = registry.create_model("ecg-resnet18.medzs-ptbxl")
        spec = model.config.input_spec
        with torch.inference_mode():
            cs = ClassScorer(lambda t: model.encode_text(list(t)), list(_prompts("ptbxl-super").values()))
        paths = pd.read_csv(a.manifest)["path"].tolist()
        t = time.perf_counter()
        scores = []
        with torch.inference_mode():
            for p in paths:
                x = torch.from_numpy(preprocess(read_wfdb(p), spec))[None]
                scores.append(cs(model.encode_signal(x).numpy()))
        out["ecg_per_s"] = len(paths) / (time.perf_counter() - t)
        del np
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _run(worker: str, manifest: Path, a: argparse.Namespace, n: int, precision: str, tmp: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", worker, "--manifest", str(manifest), "--n", str(n),
           "--batch-size", str(a.batch_size), "--threads", str(a.threads), "--precision", precision, "--tmp", tmp]
    env = {**os.environ, **OFFLINE}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{worker} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--worker")
    ap.add_argument("--manifest")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--tmp")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(_worker(a)))  # noqa: T201 - benchmark output
        return
    if a.n <= 500:
        raise SystemExit("--n must be > 500 (the marginal rate is measured between 500 and n records)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        m = {(r, k): _manifest(Path(tmp), k, r) for r in (100, 500) for k in (500, a.n)}
        for prec in a.precisions.split(","):
            roof = _run("roofline", m[(100, 500)], a, a.n, prec, tmp)["ecg_per_s"]
            res = {"precision": prec, "roofline_ecg_per_s": round(roof, 1)}
            for rate in (100, 500):
                small = _run("score", m[(rate, 500)], a, 500, prec, tmp)
                big = _run("score", m[(rate, a.n)], a, a.n, prec, tmp)
                marginal = (a.n - 500) / max(1e-9, big["seconds"] - small["seconds"])
                res[f"score{rate}_ecg_per_s"] = round(marginal, 1)
                res[f"score{rate}_ratio"] = round(marginal / roof, 3)
                if rate == 100:
                    res["rss_mb_500"] = round(small["max_rss_mb"], 1)
                    res[f"rss_mb_{a.n}"] = round(big["max_rss_mb"], 1)
            if prec == "fp32":
                loop = _run("loop", m[(100, 500)], a, 500, prec, tmp)["ecg_per_s"]
                res["loop_ecg_per_s"] = round(loop, 1)
                res["loop_ratio"] = round(loop / roof, 3)
            rows.append(res)
            print(json.dumps(res), flush=True)  # noqa: T201
    print(f"\n| precision | roofline ECG/s | score records100 ECG/s (ratio) | score records500 ECG/s (ratio) "  # noqa: T201
          f"| one-record loop (ratio) | peak RSS 500 / {a.n} records |")
    print("|---|---|---|---|---|---|")  # noqa: T201
    for r in rows:
        loop = f"{r['loop_ecg_per_s']} ({r['loop_ratio']})" if "loop_ecg_per_s" in r else "-"
        print(f"| {r['precision']} | {r['roofline_ecg_per_s']} | {r['score100_ecg_per_s']} ({r['score100_ratio']}) "  # noqa: T201
              f"| {r['score500_ecg_per_s']} ({r['score500_ratio']}) | {loop} "
              f"| {r['rss_mb_500']} / {r[f'rss_mb_{a.n}']} MB |")


if __name__ == "__main__":
    main()
