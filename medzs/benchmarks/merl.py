"""MERL's six zero-shot ECG benchmarks, faithful and corrected, with optional linear probes.

Protocols (issue 8):

- ``faithful``: MERL's published preprocessing (:data:`MERL_FAITHFUL_SPEC`: 500 Hz, the first 5,000 samples, one
  global min-max to [0, 1] over the 12 x N array, lead order I, II, III, aVR, aVF, aVL, V1-V6; CPSC2018 records first
  cut to their first 2,500 samples and zero-padded to 5,000 by :func:`cpsc_first_2500`), raw cosine scores, the
  published label columns as they are, every class kept. Source: github.com/cheliu-computation/MERL, commit
  38799b7d, ``finetune/finetune_dataset.py`` (``ECGDataset.__getitem__``: PTB-XL ``ecg[:, :5000]``, ICBEB
  ``ecg[:, :2500]`` then ``np.pad(..., (0, 2500))``, Chapman ``loadmat(...)['val'][:, :5000]``, then
  ``(ecg - min) / (max - min + 1e-8)`` over the whole array and rows 4/5 swapped) used by ``utils/zeroshot_val.py``.
- ``corrected``: exact-match labels (:mod:`medzs.data.merl`), each encoder's own declared preprocessing, and classes
  with fewer than ``min_test_positives`` positives among the test records found are dropped and listed.

:func:`run_merl_benchmark` builds the table from two callables that the engine provides:

- ``score(records, classes, prompts, *, pre_transform, input_spec) -> (N, C)`` zero-shot scores;
- ``embed(records, *, pre_transform, input_spec) -> (N, D)`` frozen embeddings (linear probes only),

where ``pre_transform`` is None or a function ``sample dict -> sample dict`` to apply right after reading a record
(before the InputSpec preprocessing), and ``input_spec`` is the spec to preprocess with (:data:`MERL_FAITHFUL_SPEC`
under ``faithful``; None = the model's own).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from medzs.data.base import RecordRef
from medzs.data.merl import BENCHMARKS, PROTOCOLS, load_benchmark
from medzs.errors import RecordError, SpecError
from medzs.registry import MERL_FAITHFUL_SPEC, MERL_LEADS

logger = logging.getLogger(__name__)

__all__ = [
    "CPSC_KEEP_SAMPLES",
    "DEFAULT_MIN_TEST_POSITIVES",
    "MERL_FAITHFUL_SPEC",
    "MERL_LEADS",
    "cpsc_first_2500",
    "merl_faithful_array",
    "model_callables",
    "pre_transform_for",
    "run_merl_benchmark",
]

#: CPSC2018 samples MERL keeps before zero-padding to 5,000 ("the first 2500 points as METS did").
CPSC_KEEP_SAMPLES = 2500
#: Corrected protocol: classes with fewer test positives (among the records found) are dropped and listed.
DEFAULT_MIN_TEST_POSITIVES = 10


def cpsc_first_2500(sample: Mapping[str, Any]) -> dict[str, Any]:
    """MERL's CPSC2018 pre-step on a sample dict: keep the first 2,500 samples, zero-pad (0 mV) to 5,000 at the end.

    The record must be at 500 Hz (CPSC2018 is); the padded zeros then take part in the global min-max, as in MERL.

    Raises:
        RecordError: not 500 Hz, or a signal that is not 2-D.
    """
    who = str(sample.get("path") or sample.get("id") or "sample")
    if float(sample.get("fs", 0)) != 500.0:
        raise RecordError(f"{who}: fs {sample.get('fs')!r} (MERL's CPSC2018 pre-step expects 500 Hz records)")
    x = np.asarray(sample["signal"])
    if x.ndim != 2:
        raise RecordError(f"{who}: signal has shape {x.shape} (expected 2-D (leads, samples))")
    x = x[:, :CPSC_KEEP_SAMPLES]
    x = np.pad(x, ((0, 0), (0, 2 * CPSC_KEEP_SAMPLES - x.shape[1])), mode="constant", constant_values=0.0)
    out = dict(sample)
    out["signal"] = x
    return out


def pre_transform_for(benchmark: str, protocol: str) -> Callable[[Mapping[str, Any]], dict[str, Any]] | None:
    """The pre-step to apply after reading a record: :func:`cpsc_first_2500` for ``cpsc2018`` under ``faithful``."""
    return cpsc_first_2500 if (benchmark == "cpsc2018" and protocol == "faithful") else None


def merl_faithful_array(sample: Mapping[str, Any], benchmark: str) -> np.ndarray:
    """One record exactly as MERL feeds it: pre-step (CPSC) then :data:`MERL_FAITHFUL_SPEC` -> ``(12, 5000)`` float32."""
    from medzs.transforms.ecg import preprocess

    pre = pre_transform_for(benchmark, "faithful")
    return preprocess(pre(sample) if pre else sample, MERL_FAITHFUL_SPEC)


def _nan_mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def run_merl_benchmark(
    protocol: str,
    score: Callable[..., Any],
    prompts: Mapping[str, Sequence[str]] | Callable[[Sequence[str]], Mapping[str, Sequence[str]]],
    *,
    embed: Callable[..., Any] | None = None,
    linear_probe: Sequence[float] | None = None,
    benchmarks: Sequence[str] | None = None,
    splits_root: str | os.PathLike[str] | None = None,
    records_roots: Mapping[str, str | os.PathLike[str]] | None = None,
    min_test_positives: int = DEFAULT_MIN_TEST_POSITIVES,
    n_boot: int = 1000,
    seed: int = 0,
    model: str | None = None,
    weights: str | None = None,
    prompts_file: str | None = None,
    model_input_spec: Any = None,
    native_only: bool = False,
) -> dict[str, Any]:
    """Run the benchmarks and build the per-benchmark table.

    Args:
        protocol: ``faithful`` or ``corrected``.
        score: ``score(records, classes, prompts, *, pre_transform, input_spec) -> (N, C)`` array.
        prompts: ``{class: [texts]}`` covering every class, or a function ``classes -> {class: [texts]}``
            (e.g. medzs's CKEPE prompts, or :func:`medzs.prompts.prompt_file.read_prompt_file`).
        embed: ``embed(records, *, pre_transform, input_spec) -> (N, D)``; required with ``linear_probe``.
        linear_probe: Training fractions (e.g. ``(0.01, 0.1, 1.0)``), or None for zero-shot only.
        benchmarks: Subset of :data:`~medzs.data.merl.BENCHMARKS` (default: all six, in MERL's order).
        splits_root: Folder of the published split files.
        records_roots: Source (``ptbxl``, ``cpsc2018``, ``chapman``) -> records folder (defaults: the mirrors).
        min_test_positives: ``corrected`` only: classes with fewer positives among the test records found are dropped.
        n_boot, seed: Bootstrap resamples and seed for :func:`medzs.metrics.evaluate`.
        model, weights, prompts_file: Recorded in the result (provenance).
        native_only: Score only records stored at MERL's rate (PTB-XL 500 Hz; the mirror holds 100 Hz for most).
        model_input_spec: The model's own InputSpec; under ``faithful`` its shape must be MERL's ``(12, 5000)``
            (checked before anything runs).

    Returns:
        ``{"protocol", "model", "weights", "prompts_file", "rows": [one dict per benchmark], "mean_auroc",
        "n_benchmarks_in_mean", "linear_probe_means": {fraction: mean}}``. A row has ``benchmark``, ``expected``,
        ``found``, ``found_native``, ``n_test`` (scored), ``auroc``, ``ci_low``, ``ci_high``, ``n_classes``,
        ``n_pos`` (class -> positives), ``per_class`` (class -> AUROC), ``dropped`` (class -> positives, under
        ``min_test_positives``), ``excluded`` (classes without a defined AUROC), ``linear_probe``
        (fraction -> {auroc, ci_low, ci_high, n_train, skipped, chosen_c}), ``status``.

    Raises:
        SpecError: unknown protocol/benchmark, prompts missing a class, a callable returning a wrong shape,
            ``linear_probe`` without ``embed``, or (``faithful``) a model whose input is not 12 x 5000.
    """
    import pandas as pd

    from medzs.metrics import evaluate

    if protocol not in PROTOCOLS:
        raise SpecError(f"benchmark merl: protocol expected one of {PROTOCOLS}, got {protocol!r}")
    names = list(benchmarks) if benchmarks is not None else list(BENCHMARKS)
    unknown = [b for b in names if b not in BENCHMARKS]
    if unknown:
        raise SpecError(f"benchmark merl: unknown benchmark {unknown[0]!r} (expected {list(BENCHMARKS)})")
    if linear_probe and embed is None:
        raise SpecError("benchmark merl: linear_probe needs an embed(records) callable")
    if protocol == "faithful" and model_input_spec is not None and \
            tuple(model_input_spec.shape) != tuple(MERL_FAITHFUL_SPEC.shape):
        raise SpecError(f"benchmark merl: the faithful protocol feeds {MERL_FAITHFUL_SPEC.describe()} "
                        f"(MERL's preprocessing); model {model or ''} expects {model_input_spec.describe()}: "
                        f"use --protocol corrected (each encoder's own preprocessing)")
    roots = dict(records_roots or {})
    spec = MERL_FAITHFUL_SPEC if protocol == "faithful" else None
    rows: list[dict[str, Any]] = []
    for name in names:
        data = load_benchmark(name, splits_root=splits_root, records_root=roots.get(BENCHMARKS[name].source))
        pre = pre_transform_for(name, protocol)
        cov = data.coverage("test")
        row: dict[str, Any] = {"benchmark": name, **cov, "n_test": 0, "auroc": float("nan"),
                               "ci_low": float("nan"), "ci_high": float("nan"), "n_classes": 0, "n_pos": {},
                               "per_class": {}, "dropped": {}, "excluded": [], "linear_probe": {},
                               "status": "ok", "citation": data.citation}
        refs = data.records("test", native_only=native_only)
        if not refs:
            row["status"] = "no test records found locally"
            rows.append(row)
            continue
        y = data.labels("test", protocol).loc[[r.id for r in refs]]
        classes = list(data.classes)
        n_pos = {c: int(np.nansum(y[c].to_numpy())) for c in classes}
        if protocol == "corrected":
            row["dropped"] = {c: n for c, n in n_pos.items() if n < min_test_positives}
            classes = [c for c in classes if c not in row["dropped"]]
        row["n_pos"] = {c: n_pos[c] for c in classes}
        if not classes:
            row["status"] = f"every class has fewer than {min_test_positives} test positives among the records found"
            rows.append(row)
            continue
        class_prompts = prompts(classes) if callable(prompts) else prompts
        missing = [c for c in classes if c not in class_prompts or not class_prompts[c]]
        if missing:
            raise SpecError(f"benchmark merl {name}: no prompts for class {missing[0]!r} (all missing: {missing})")
        s = np.asarray(score(refs, classes, {c: list(class_prompts[c]) for c in classes}, pre_transform=pre,
                             input_spec=spec), dtype=np.float64)
        if s.shape != (len(refs), len(classes)):
            raise SpecError(f"benchmark merl {name}: score returned shape {s.shape}, expected "
                            f"{(len(refs), len(classes))}")
        yc = y[classes].to_numpy(dtype=np.float64)
        table, macro = evaluate(yc, s, classes, n_boot=n_boot, seed=seed)
        row.update(n_test=len(refs), auroc=macro["auroc"], ci_low=macro["ci_low"], ci_high=macro["ci_high"],
                   n_classes=macro["n_conditions"], excluded=list(macro["excluded"]),
                   per_class={c: float(v) for c, v in zip(classes, table["auroc"].to_numpy())})
        if linear_probe:
            row["linear_probe"] = _probe(data, classes, protocol, embed, refs, yc, linear_probe, pre, spec,
                                         n_boot, seed)
        rows.append(row)
    result: dict[str, Any] = {
        "protocol": protocol, "model": model, "weights": weights, "prompts_file": prompts_file,
        "min_test_positives": min_test_positives if protocol == "corrected" else None, "rows": rows,
        "mean_auroc": _nan_mean([r["auroc"] for r in rows]),
        "n_benchmarks_in_mean": sum(not math.isnan(r["auroc"]) for r in rows),
        "n_benchmarks": len(rows),
    }
    if linear_probe:
        result["linear_probe_means"] = {
            float(f): _nan_mean([r["linear_probe"].get(float(f), {}).get("auroc", float("nan")) for r in rows])
            for f in linear_probe}
    result["table"] = pd.DataFrame([{k: r[k] for k in ("benchmark", "found", "expected", "found_native", "n_test",
                                                       "n_classes", "auroc", "ci_low", "ci_high", "status")}
                                    for r in rows])
    return result


def _probe(data, classes, protocol, embed, test_refs: list[RecordRef], y_test, fractions, pre, spec, n_boot, seed):
    from medzs.linear_probe import linear_probe
    from medzs.metrics import evaluate

    tr, va = data.records("train"), data.records("val")  # the engine resamples 100 Hz-only PTB-XL records
    if not tr or not va:
        return {float(f): {"auroc": float("nan"), "status": "train or val records not found locally"}
                for f in fractions}
    ytr = data.labels("train", protocol).loc[[r.id for r in tr]][classes].to_numpy(dtype=np.float64)
    yva = data.labels("val", protocol).loc[[r.id for r in va]][classes].to_numpy(dtype=np.float64)
    xtr, xva, xte = (np.asarray(embed(refs, pre_transform=pre, input_spec=spec), dtype=np.float64)
                     for refs in (tr, va, test_refs))
    out = {}
    for res in linear_probe(xtr, ytr, xva, yva, xte, classes, fractions=fractions, seed=seed):
        _, macro = evaluate(y_test, res.scores, classes, n_boot=n_boot, seed=seed)
        out[res.fraction] = {"auroc": macro["auroc"], "ci_low": macro["ci_low"], "ci_high": macro["ci_high"],
                             "n_train": res.n_train, "n_train_found": len(tr), "n_val_found": len(va),
                             "skipped": res.skipped, "chosen_c": res.chosen_c, "not_scored": macro["not_scored"]}
    return out


def model_callables(model: Any, batch_size: int = 64) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]:
    """A plain ``(embed, score)`` pair for :func:`run_merl_benchmark` from a registry model (reference engine).

    Records are read with :func:`medzs.io.detect.read_ecg` (``RecordRef.format``), passed through ``pre_transform``,
    preprocessed with ``input_spec`` (None: ``model.config.input_spec``) and embedded with ``model.encode_signal``
    in batches; embeddings are cached per (record, pre-step, spec) within the pair. A class's text embedding is
    the mean of its L2-normalised prompt embeddings, re-normalised (MERL's ``get_class_emd``; one prompt per
    class in its published file); scores are cosine similarities.

    Raises:
        RecordError: an unreadable record (names it). SpecError: ``encode_text`` of a model without a text tower.
    """
    import torch
    import torch.nn.functional as F

    from medzs.io.detect import read_ecg
    from medzs.transforms.ecg import preprocess

    cache: dict[tuple[str, str, Any, Any], np.ndarray] = {}

    def embed(records: Sequence[RecordRef], *, pre_transform: Any = None, input_spec: Any = None) -> np.ndarray:
        spec = input_spec or model.config.input_spec
        key = lambda r: (r.id, r.path, pre_transform, spec)
        todo = [r for r in records if key(r) not in cache]
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            xs = []
            for r in chunk:
                sample = read_ecg(r.path, format=r.format, **dict(r.read_kwargs))
                xs.append(preprocess(pre_transform(sample) if pre_transform else sample, spec))
            with torch.no_grad():
                emb = model.encode_signal(torch.from_numpy(np.stack(xs))).float().cpu().numpy()
            for r, e in zip(chunk, emb):
                cache[key(r)] = e
        return np.stack([cache[key(r)] for r in records]) if records else np.zeros((0, 0))

    def score(records: Sequence[RecordRef], classes: Sequence[str], prompts: Mapping[str, Sequence[str]], *,
              pre_transform: Any = None, input_spec: Any = None) -> np.ndarray:
        e = embed(records, pre_transform=pre_transform, input_spec=input_spec)
        with torch.no_grad():
            t = torch.stack([F.normalize(F.normalize(model.encode_text(list(prompts[c])), dim=-1).mean(0), dim=0)
                             for c in classes]).float().cpu().numpy()
        return e @ t.T

    return embed, score
