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
        ok = np.isfinite(s).all(axis=1)  # records that failed to read or the quality rule: left out, counted
        row["n_errors"] = int((~ok).sum())
        if not ok.any():
            row["status"] = "every test record failed to read or the quality rule"
            rows.append(row)
            continue
        refs = [r for r, k in zip(refs, ok) if k]
        yc, s = yc[ok], s[ok]
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
    keep_tr, keep_va = np.isfinite(xtr).all(axis=1), np.isfinite(xva).all(axis=1)  # failed records left out
    xtr, ytr, xva, yva = xtr[keep_tr], ytr[keep_tr], xva[keep_va], yva[keep_va]
    out = {}
    for res in linear_probe(xtr, ytr, xva, yva, xte, classes, fractions=fractions, seed=seed):
        _, macro = evaluate(y_test, res.scores, classes, n_boot=n_boot, seed=seed)
        out[res.fraction] = {"auroc": macro["auroc"], "ci_low": macro["ci_low"], "ci_high": macro["ci_high"],
                             "n_train": res.n_train, "n_train_found": len(tr), "n_val_found": len(va),
                             "skipped": res.skipped, "chosen_c": res.chosen_c, "not_scored": macro["not_scored"]}
    return out


def model_callables(model: Any, batch_size: int = 64, precision: str = "fp32",
                    quality: bool = True) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]:
    """The ``(embed, score)`` pair :func:`run_merl_benchmark` needs, on the engine (:class:`medzs.engine.Engine`).

    Records are read, passed through ``pre_transform``, checked (:mod:`medzs.quality`), preprocessed from the
    model's InputSpec and embedded by the engine, in batches; embeddings are cached per (record, pre-step) within the
    pair. A class's text embedding is the mean of its L2-normalised prompt embeddings, re-normalised (MERL's
    ``get_class_emd``); scores are cosine similarities (:class:`medzs.scoring.ClassScorer`). A record that fails to
    read or the quality rule gets a NaN row (the runner leaves it out and counts it).

    ``input_spec`` in the calls must be None or the model's own spec (build the model with
    ``input_spec=MERL_FAITHFUL_SPEC`` for the faithful protocol).

    Raises:
        SpecError: a different ``input_spec`` than the model's; ``encode_text`` of a model without a text tower.
    """
    import torch

    from medzs.engine import Engine, Record
    from medzs.scoring import ClassScorer

    cache: dict[tuple[str, str, Any], np.ndarray] = {}

    def embed(records: Sequence[RecordRef], *, pre_transform: Any = None, input_spec: Any = None) -> np.ndarray:
        if input_spec is not None and input_spec != model.config.input_spec:
            raise SpecError(f"benchmark merl: the model was built for {model.config.input_spec.describe()}, not "
                            f"{input_spec.describe()}; build it with that input_spec")
        key = lambda r: (r.id, r.path, pre_transform)  # noqa: E731
        todo = [r for r in records if key(r) not in cache]
        if todo:
            engine = Engine(model, None, embeddings=True, precision=precision, quality=quality,
                            pre_transform=pre_transform)
            recs = [Record(i, r.path, r.id, r.format, tuple(sorted(dict(r.read_kwargs).items())))
                    for i, r in enumerate(todo)]
            for rows in engine.stream(recs, batch_size):
                for row in rows:
                    r = todo[int(row["record_index"])]
                    emb = row.get("embedding")
                    cache[key(r)] = (np.asarray(emb, dtype=np.float64) if row["status"] == "ok" and emb is not None
                                     else None)
        dim = next((len(v) for v in cache.values() if v is not None), 0)
        return (np.stack([cache[key(r)] if cache[key(r)] is not None else np.full(dim, np.nan) for r in records])
                if records else np.zeros((0, dim)))

    def score(records: Sequence[RecordRef], classes: Sequence[str], prompts: Mapping[str, Sequence[str]], *,
              pre_transform: Any = None, input_spec: Any = None) -> np.ndarray:
        e = embed(records, pre_transform=pre_transform, input_spec=input_spec)
        with torch.inference_mode():
            cs = ClassScorer(lambda t: model.encode_text(list(t)), [list(prompts[c]) for c in classes])
        out = np.full((len(records), len(classes)), np.nan)
        ok = np.isfinite(e).all(axis=1)
        if ok.any():
            out[ok] = cs(e[ok])
        return out

    return embed, score


#: CPSC2018 (ICBEB) column of MERL's split files -> SCP-ECG statement (the knowledge base's ``scp_ecg`` codes).
ICBEB_SCP: dict[str, str] = {"AFIB": "AFIB", "VPC": "PVC", "NORM": "NORM", "1AVB": "1AVB", "CRBBB": "CRBBB",
                             "STE": "STE_", "PAC": "PAC", "CLBBB": "CLBBB", "STD": "STD_"}


def ckepe_prompts(benchmark: str) -> Callable[[Sequence[str]], dict[str, list[str]]]:
    """medzs's own class prompts for a benchmark's classes: each class's knowledge-base entry, grounded writer,
    cached in ``knowledge/prompts/merl-<benchmark>.grounded.json``.

    PTB-XL columns map to PTB-XL's statement/subclass entries (MERL spells ``NST_`` as ``NST``...), CPSC2018 columns
    to SCP-ECG statements (:data:`ICBEB_SCP`), Chapman acronyms to SNOMED CT concepts
    (:data:`medzs.data.merl.CHAPMAN_SNOMED`). A class without a knowledge-base entry gets its name as its only
    prompt, and is listed in the returned mapping's ``names_only`` attribute.
    """
    from medzs.data.merl import CHAPMAN_SNOMED
    from medzs.data.ptbxl import MERL_COLUMN_NAMES
    from medzs.data.tasks import Task, get_task, task_from_codes
    from medzs.prompts.tasks import REPO_ROOT, task_prompts

    cache = REPO_ROOT / "knowledge" / "prompts" / f"merl-{benchmark}.grounded.json"

    def build(classes: Sequence[str]) -> dict[str, list[str]]:
        classes = list(classes)
        names_only: list[str] = []
        if benchmark.startswith("ptbxl-"):
            base = get_task(benchmark)
            inv = {v: k for k, v in MERL_COLUMN_NAMES.items()}
            codes = {c: inv.get(c, c) for c in classes}
            task = Task(f"merl-{benchmark}", "ptbxl", base.label_set, tuple(classes),
                        {c: base.kb_ids[codes[c]] for c in classes},
                        {c: base.display_names[codes[c]] for c in classes})
        else:
            system, mapping = (("scp_ecg", ICBEB_SCP) if benchmark == "cpsc2018" else ("snomed_ct", CHAPMAN_SNOMED))
            kb, names = {}, {}
            for c in classes:
                try:
                    t1 = task_from_codes(c, [mapping.get(c, c)], system)
                except SpecError:
                    names_only.append(c)
                    continue
                code = t1.classes[0]
                kb[c], names[c] = t1.kb_ids[code], t1.display_names[code]
            kept = [c for c in classes if c in kb]
            task = Task(f"merl-{benchmark}", benchmark, "codes", tuple(kept), kb, names)
        prompts = task_prompts(task, "grounded", cache) if task.classes else {}
        out = {c: [p.text for p in prompts[c].prompts] for c in task.classes}
        for c in names_only:
            out[c] = [c]
        return _Prompts(out, names_only)

    return build


class _Prompts(dict):
    """``{class: [texts]}`` that remembers which classes had no knowledge-base entry (name-only prompt)."""

    def __init__(self, data: Mapping[str, list[str]], names_only: Sequence[str]) -> None:
        super().__init__(data)
        self.names_only = list(names_only)


def benchmark_cli(*, protocol: str, model: str | None, weights: Any, text_model: Any, prompts_file: Any,
                  linear_probe: Sequence[float] | None, benchmarks: Sequence[str] | None, splits_root: Any,
                  records_roots: Mapping[str, Any], min_test_positives: int, n_boot: int, out: Any) -> dict[str, Any]:
    """``medzs benchmark merl``: build the model and prompts, run :func:`run_merl_benchmark` on the engine, write
    ``results.json`` and ``report.html`` into ``out`` and return the printed table.

    Raises:
        SpecError: unknown model, a faithful run on a model whose input is not MERL's 12 x 5000, bad files.
    """
    import json
    import time
    from pathlib import Path

    from medzs import __version__, registry

    t0 = time.time()
    name = model or ("merl-resnet18.release" if protocol == "faithful" else "ecg-resnet18.medzs-ptbxl")
    if name not in registry.list_models():
        raise SpecError(f"--model: unknown model {name!r} (see `medzs models`)")
    cfg = registry.get_config(name)
    if protocol == "faithful" and tuple(cfg.input_spec.shape) != tuple(MERL_FAITHFUL_SPEC.shape):
        raise SpecError(f"benchmark merl: the faithful protocol feeds {MERL_FAITHFUL_SPEC.describe()} (MERL's "
                        f"preprocessing); model {name} expects {cfg.input_spec.describe()}: use --protocol corrected")
    overrides: dict[str, Any] = {}
    if text_model is not None:
        overrides["text_model"] = str(text_model)
    if protocol == "faithful":
        overrides["input_spec"] = MERL_FAITHFUL_SPEC
    m = registry.create_model(name, weights=weights, **overrides)
    embed, score = model_callables(m)
    if prompts_file is not None:
        from medzs.prompts.prompt_file import read_prompt_file

        def prompts(classes: Sequence[str]) -> dict[str, list[str]]:
            return read_prompt_file(prompts_file, classes=classes)
        prompt_source = str(prompts_file)
    else:
        builders: dict[str, Callable] = {}

        def prompts(classes: Sequence[str]) -> dict[str, list[str]]:  # one builder per benchmark (set below)
            return builders["current"](classes)
        prompt_source = "medzs CKEPE (grounded writer, knowledge/prompts/merl-*.grounded.json)"
    names = list(benchmarks) if benchmarks else list(BENCHMARKS)
    rows, results = [], []
    for b in names:
        if prompts_file is None:
            builders["current"] = ckepe_prompts(b)
        res = run_merl_benchmark(protocol, score, prompts, embed=embed if linear_probe else None,
                                 linear_probe=linear_probe, benchmarks=[b], splits_root=splits_root,
                                 records_roots=records_roots, min_test_positives=min_test_positives, n_boot=n_boot,
                                 model=name, weights=str(weights) if weights else m.config.weights,
                                 prompts_file=prompt_source, model_input_spec=m.config.input_spec)
        results.append(res)
        rows.extend(res["rows"])
    mean = _nan_mean([r["auroc"] for r in rows])
    doc = {"protocol": protocol, "model": name, "weights": str(weights) if weights else m.config.weights,
           "prompts": prompt_source, "min_test_positives": min_test_positives if protocol == "corrected" else None,
           "rows": rows, "mean_auroc": mean, "n_benchmarks_in_mean": sum(not math.isnan(r["auroc"]) for r in rows),
           "medzs_version": __version__, "seconds": round(time.time() - t0, 1),
           "note": "AUROC over the test records of the published split that exist locally (found / expected); a "
                   "partial local mirror gives numbers that are not comparable with the papers'."}
    if linear_probe:
        doc["linear_probe_means"] = {str(f): _nan_mean([r["linear_probe"].get(float(f), {}).get("auroc", float("nan"))
                                                        for r in rows]) for f in linear_probe}
    text = _format(doc, linear_probe)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    (outp / "results.json").write_text(json.dumps(doc, indent=1, default=_json_default))
    (outp / "report.html").write_text(_html(doc, text))
    return {"text": text, "files": {"results": outp / "results.json", "html": outp / "report.html"}, "doc": doc}


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def _fmt(x: Any) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(f) else f"{f:.3f}"


def _format(doc: Mapping[str, Any], fractions: Sequence[float] | None) -> str:
    head = ["benchmark", "found/expected", "n_test", "classes", "macro AUROC [95% CI]"]
    if fractions:
        head += [f"probe {f:g}" for f in fractions]
    lines = [head]
    for r in doc["rows"]:
        auc = _fmt(r["auroc"])
        cell = f"{auc} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if auc != "-" else f"- ({r['status']})"
        row = [r["benchmark"], f"{r['found']}/{r['expected']}", str(r["n_test"]), str(r["n_classes"]), cell]
        if fractions:
            row += [_fmt(r["linear_probe"].get(float(f), {}).get("auroc")) for f in fractions]
        lines.append(row)
    widths = [max(len(str(x[i])) for x in lines) for i in range(len(head))]
    out = [f"MERL benchmarks, protocol {doc['protocol']}, model {doc['model']}, prompts: {doc['prompts']}"]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(x, widths)).rstrip() for x in lines]
    out.append(f"mean of {doc['n_benchmarks_in_mean']} benchmark(s) with an AUROC: {_fmt(doc['mean_auroc'])}")
    for r in doc["rows"]:
        if r.get("dropped"):
            out.append(f"{r['benchmark']}: dropped (< {doc['min_test_positives']} test positives): "
                       + ", ".join(f"{c} ({n})" for c, n in r["dropped"].items()))
        if r.get("n_errors"):
            out.append(f"{r['benchmark']}: {r['n_errors']} record(s) failed to read or the quality rule (left out)")
    out.append(doc["note"])
    return "\n".join(out)


def _html(doc: Mapping[str, Any], text: str) -> str:
    import html

    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            r["benchmark"], f"{r['found']}/{r['expected']}", r["n_test"], r["n_classes"],
            f"{_fmt(r['auroc'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
            ", ".join(f"{c}: {n}" for c, n in r["n_pos"].items()), r["status"])) + "</tr>"
        for r in doc["rows"])
    return ("<!doctype html><meta charset='utf-8'><title>medzs MERL benchmarks</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:4px 8px}"
            "table{border-collapse:collapse}</style>"
            f"<h1>MERL zero-shot benchmarks ({html.escape(doc['protocol'])})</h1>"
            f"<p>Model {html.escape(str(doc['model']))}; prompts {html.escape(str(doc['prompts']))}; "
            f"medzs {html.escape(str(doc['medzs_version']))}.</p><p>{html.escape(doc['note'])}</p>"
            "<table><tr><th>benchmark</th><th>found/expected</th><th>n test</th><th>classes</th>"
            "<th>macro AUROC [95% CI]</th><th>test positives per class</th><th>status</th></tr>"
            f"{rows}</table><p>Mean over benchmarks with an AUROC: {_fmt(doc['mean_auroc'])}</p>"
            f"<pre>{html.escape(text)}</pre>")
