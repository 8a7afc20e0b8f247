"""Per-record CPU cost of each reading and preprocessing stage, before and after the engine's speed changes.

One process, the same 500 shared PTB-XL records (ecg_id 1-500), median of ``--repeats`` passes, single-threaded
numpy/scipy (the stages run in the engine's read-ahead thread):

- ``read: wfdb``: :func:`medzs.io.wfdb.read_wfdb` with ``fast=False`` (``wfdb.rdrecord``);
- ``read: fast path``: the default (header split + ``numpy.fromfile``, :mod:`medzs.io._wfdb_fast`);
- ``quality``: :func:`medzs.quality.check_and_enforce`;
- ``preprocess: per record``: :func:`medzs.transforms.ecg.preprocess` (Butterworth design cached);
- ``preprocess: per record, design each call``: the same with the filter designed on every call (as before);
- ``preprocess: batched``: :func:`medzs.transforms.ecg.preprocess_many` over batches of 64.

Usage::

    python benchmarks/ecg_read_costs.py                # records100 and records500 input, embedded model's spec
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _median_ms(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) / n * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits

    from medzs import registry
    from medzs.io.wfdb import read_wfdb
    from medzs.quality import check_and_enforce
    from medzs.transforms import ecg as T

    root = next(p for p in (REPO.parent / "shared/data/ecg/ptbxl2k", REPO.parent / "shared/data/ecg/ptbxl500")
                if p.is_dir())
    spec = registry.get_config("ecg-resnet18.medzs-ptbxl").input_spec
    print("| input | stage | ms per record | vs first row |")  # noqa: T201
    print("|---|---|---|---|")  # noqa: T201
    with threadpool_limits(1):
        for rate, sub, sfx in ((100, "records100", "lr"), (500, "records500", "hr")):
            hs = [root / sub / "00000" / f"{i:05d}_{sfx}.hea" for i in range(1, 501)]
            hs = [h for h in hs if h.is_file()]
            n = len(hs)
            samples = [read_wfdb(h) for h in hs]
            rows = {}
            rows["read: wfdb"] = _median_ms(lambda: [read_wfdb(h, fast=False) for h in hs], n, a.repeats)
            rows["read: fast path"] = _median_ms(lambda: [read_wfdb(h) for h in hs], n, a.repeats)
            rows["quality"] = _median_ms(lambda: [check_and_enforce(s) for s in samples], n, a.repeats)

            def design_each_call() -> None:
                for s in samples:
                    T._butter_sos.cache_clear()
                    T.preprocess(s, spec)

            rows["preprocess: per record, design each call"] = _median_ms(design_each_call, n, a.repeats)
            rows["preprocess: per record"] = _median_ms(lambda: [T.preprocess(s, spec) for s in samples], n,
                                                        a.repeats)
            rows["preprocess: batched (64)"] = _median_ms(
                lambda: [T.preprocess_many(samples[b:b + 64], spec) for b in range(0, n, 64)], n, a.repeats)
            first = next(iter(rows.values()))
            for k, v in rows.items():
                print(f"| records{rate} | {k} | {v:.3f} | {v / first:.2f} |")  # noqa: T201


if __name__ == "__main__":
    main()
