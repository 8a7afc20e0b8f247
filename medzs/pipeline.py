"""Declarative zero-shot pipelines (``pipelines/*.yaml``): dataset -> engine (loader -> transforms -> encoder ->
prompts -> scorer) -> metrics -> report.

A pipeline file is validated completely (types, ranges, names; pydantic) before any work; the first bad field is
named in a one-line :class:`~medzs.errors.SpecError`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medzs.errors import SpecError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- schema
def _schema():
    """The pydantic models of a pipeline file (built lazily: pydantic is imported only when a pipeline is read)."""
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

    class _Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class TaskSpec(_Strict):
        name: StrictStr = "custom"
        classes: list[StrictStr] = Field(min_length=1)
        system: StrictStr = "snomed_ct"
        modality: Literal["ecg", "cxr", "ct"] = "ecg"

    class DatasetSpec(_Strict):
        name: StrictStr = "ptbxl"
        root: StrictStr | None = None
        split: StrictStr = "all"
        ecg_ids: list[StrictInt] | None = None
        labels: StrictStr | None = None
        system: StrictStr | None = None
        fs: Literal[100, 500] | None = None
        reference: StrictStr | None = None

    class ModelSpec(_Strict):
        name: StrictStr
        weights: StrictStr | None = None
        hybrid: StrictStr | None = None

    class PromptsSpec(_Strict):
        writer: StrictStr = "grounded"
        cache: StrictStr | None = None
        llm: StrictStr | None = None

    class ScoringSpec(_Strict):
        method: Literal["cosine", "softmax", "posneg"] | None = None
        softmax: StrictBool = False
        fusion: Literal["rank-average", "per-record"] = "rank-average"
        fusion_weight: float = Field(default=0.5, ge=0.0, le=1.0)

    class MetricsSpec(_Strict):
        n_boot: StrictInt = Field(default=1000, ge=0, le=100_000)
        seed: StrictInt = 0
        min_positives: StrictInt = Field(default=MIN_POSITIVES, ge=1)

    class EngineSpec(_Strict):
        batch_size: StrictInt = Field(default=64, ge=1, le=4096)
        precision: Literal["fp32", "bf16", "auto"] = "fp32"
        threads: StrictInt | None = Field(default=None, ge=1)
        quality: StrictBool = True

    class ReportSpec(_Strict):
        thumbnails: StrictInt = Field(default=0, ge=0, le=12)

    class Pipeline(_Strict):
        name: StrictStr
        task: StrictStr | TaskSpec
        dataset: DatasetSpec
        model: ModelSpec
        prompts: PromptsSpec = PromptsSpec()
        scoring: ScoringSpec = ScoringSpec()
        metrics: MetricsSpec = MetricsSpec()
        engine: EngineSpec = EngineSpec()
        report: ReportSpec = ReportSpec()
        output: StrictStr = "runs/out"

        @field_validator("model", mode="before")
        @classmethod
        def _model_name(cls, v: Any) -> Any:
            return {"name": v} if isinstance(v, str) else v

    class BenchmarkSpec(_Strict):
        suite: Literal["merl"] = "merl"
        name: Literal["ptbxl-super", "ptbxl-sub", "ptbxl-form", "ptbxl-rhythm", "cpsc2018", "chapman"]
        splits_root: StrictStr | None = None
        split: Literal["test"] = "test"
        protocol: Literal["faithful", "corrected"] = "corrected"
        min_test_positives: StrictInt = Field(default=10, ge=1)
        linear_probe: list[float] | None = None

    class BenchModel(_Strict):
        name: StrictStr
        weights: StrictStr | None = None
        text_model: StrictStr | None = None

    class BenchPrompts(_Strict):
        file: StrictStr | None = None

    class BenchDataset(_Strict):
        name: StrictStr
        root: StrictStr | None = None

    class BenchmarkPipeline(_Strict):
        name: StrictStr
        task: StrictStr
        benchmark: BenchmarkSpec
        dataset: BenchDataset
        model: BenchModel
        prompts: BenchPrompts = BenchPrompts()
        scoring: ScoringSpec = ScoringSpec()
        metrics: MetricsSpec = MetricsSpec()
        output: StrictStr = "runs/out"

    return Pipeline, BenchmarkPipeline


#: Conditions with fewer test positives than this are shown (flagged) but left out of the headline macro AUROC,
#: which is also reported over all conditions (``metrics.min_positives``). With fewer than 5 positives the 95 %
#: bootstrap interval of an AUROC spans most of [0, 1].
MIN_POSITIVES = 5


@dataclass
class PipelineConfig:
    """A zero-shot job, as read and validated from a pipeline YAML file (every field checked before any work).

    Attributes:
        name: Pipeline name.
        task: Task name (:mod:`medzs.data.tasks`) or ``{"name", "classes", "system", "modality"}`` for a task
            built from a dataset's own label codes (:func:`medzs.data.tasks.task_from_codes`).
        dataset: ``{"name": ptbxl|cinc2021|cpsc2018|folder|..., "root", "split", "ecg_ids", "labels", "system",
            "fs", "reference"}`` (:mod:`medzs.data.base`).
        model: ``{"name": registry name, "weights": path|None, "hybrid": scorer|None}``.
        prompts: ``{"writer": "grounded"|"names"|"llm"|control, "cache": path, "llm": backend setting}``.
        scoring: ``{"softmax": bool, "fusion": "rank-average"|"per-record", "fusion_weight": 0-1}``.
        metrics: ``{"n_boot": int, "seed": int, "min_positives": int}``.
        engine: ``{"batch_size": int, "precision": fp32|bf16|auto, "threads": int|None, "quality": bool}``.
        output: Output folder.
        path: The YAML file (for provenance).
    """

    name: str
    task: Any
    dataset: dict[str, Any]
    model: dict[str, Any]
    prompts: dict[str, Any] = field(default_factory=lambda: {"writer": "grounded", "cache": None, "llm": None})
    scoring: dict[str, Any] = field(default_factory=lambda: {"softmax": False, "fusion": "rank-average",
                                                             "fusion_weight": 0.5})
    metrics: dict[str, Any] = field(default_factory=lambda: {"n_boot": 1000, "seed": 0,
                                                             "min_positives": MIN_POSITIVES})
    engine: dict[str, Any] = field(default_factory=lambda: {"batch_size": 64, "precision": "fp32", "threads": None,
                                                            "quality": True})
    output: str = "runs/out"
    path: str = ""
    benchmark: dict[str, Any] | None = None
    report: dict[str, Any] = field(default_factory=lambda: {"thumbnails": 0})


def _first_error(path: Path, exc: Any) -> SpecError:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()) if not str(x).startswith(("str", "TaskSpec")))
    got = err.get("input")
    got_s = repr(got) if not isinstance(got, dict) else "a mapping"
    msg = err.get("msg", "invalid")
    if err.get("type") == "extra_forbidden":
        return SpecError(f"pipeline {path}: unknown field '{loc}' (check the spelling; see docs/pipeline.md)")
    if err.get("type") == "missing":
        return SpecError(f"pipeline {path}: field '{loc}' is missing")
    return SpecError(f"pipeline {path}: field '{loc}': {msg.lower()} (got {got_s})")


def parse_pipeline(raw: Any, path: str | Path = "<memory>") -> PipelineConfig:
    """Validate a pipeline mapping (as read from YAML) completely: types, ranges and names.

    Raises:
        SpecError: the first bad field, named with its dotted path and what was expected.
    """
    from pydantic import ValidationError

    path = Path(path)
    if not isinstance(raw, dict):
        raise SpecError(f"pipeline {path}: expected a mapping of fields (name, task, dataset, model, ...), "
                        f"got {type(raw).__name__}")
    pipeline_model, benchmark_model = _schema()
    try:
        cfg = (benchmark_model if "benchmark" in raw else pipeline_model).model_validate(raw)
    except ValidationError as exc:
        raise _first_error(path, exc) from None
    d = cfg.model_dump()
    if "benchmark" in d:  # a published benchmark (medzs benchmark merl), run through the same engine
        from medzs import registry

        if d["model"]["name"] not in registry.list_models():
            raise SpecError(f"pipeline {path}: field 'model.name': unknown model {d['model']['name']!r}")
        for key in ("weights", "text_model"):
            v = d["model"].get(key)
            if v is not None and not Path(v).exists():
                raise SpecError(f"pipeline {path}: field 'model.{key}': {v} does not exist")
        if d["prompts"].get("file") is not None and not Path(d["prompts"]["file"]).is_file():
            raise SpecError(f"pipeline {path}: field 'prompts.file': {d['prompts']['file']} is not a file")
        return PipelineConfig(name=d["name"], task=d["task"], dataset=d["dataset"], model=d["model"],  # noqa: E501
                              prompts=d["prompts"], scoring=d["scoring"], metrics=d["metrics"], output=d["output"],
                              path=str(path), benchmark=d["benchmark"])
    from medzs import registry
    from medzs.data.base import DATASETS
    from medzs.scoring import FUSIONS  # noqa: F401

    if d["dataset"]["name"] not in DATASETS:
        raise SpecError(f"pipeline {path}: field 'dataset.name': expected one of {sorted(DATASETS)}, "
                        f"got {d['dataset']['name']!r}")
    mname = d["model"]["name"]
    if mname not in registry.list_models() and mname not in registry.SCORERS:
        raise SpecError(f"pipeline {path}: field 'model.name': unknown model {mname!r} (see `medzs models`)")
    if d["model"]["hybrid"] is not None and d["model"]["hybrid"] not in registry.SCORERS:
        raise SpecError(f"pipeline {path}: field 'model.hybrid': expected one of {registry.list_scorers()}, "
                        f"got {d['model']['hybrid']!r}")
    if d["model"]["weights"] is not None:
        w = _resolve(d["model"]["weights"])
        if w is None or not w.is_file():
            raise SpecError(f"pipeline {path}: field 'model.weights': {d['model']['weights']} is not a file")
    if isinstance(d["task"], str):
        from medzs.data.tasks import get_task

        try:
            get_task(d["task"])
        except SpecError as exc:
            raise SpecError(f"pipeline {path}: field 'task': {exc} (or a mapping with classes and system)") from None
    parent = Path(d["output"]).parent
    if Path(d["output"]).is_file():
        raise SpecError(f"pipeline {path}: field 'output': {d['output']} is a file (expected a folder)")
    del parent
    return PipelineConfig(**d, path=str(path))


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline YAML file before any work.

    Raises:
        FileNotFoundError: missing file. SpecError: invalid YAML, or a missing or malformed field (named).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pipeline {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError(f"pipeline {path}: invalid YAML{where} ({getattr(exc, 'problem', None) or exc})") from None
    return parse_pipeline(raw or {}, path)


def _resolve(p: str | None) -> Path | None:
    if p is None:
        return None
    q = Path(p)
    return q if q.is_absolute() or q.exists() else REPO_ROOT / q


def scoring_method(cfg: PipelineConfig) -> str:
    """``scoring.method``, defaulting to ``softmax`` when ``scoring.softmax`` is true, else ``cosine``.

    Raises:
        SpecError: ``method`` and ``softmax: true`` disagree.
    """
    method = cfg.scoring.get("method")
    soft = bool(cfg.scoring.get("softmax"))
    if method is None:
        return "softmax" if soft else "cosine"
    if soft and method != "softmax":
        raise SpecError(f"pipeline {cfg.path}: scoring.softmax: true contradicts scoring.method: {method}")
    return method


def build_task(cfg: PipelineConfig, dataset: Any = None):
    """The pipeline's :class:`~medzs.data.tasks.Task`: a named task, or one built from label codes."""
    from medzs.data.tasks import get_task, task_from_codes

    if isinstance(cfg.task, str):
        return get_task(cfg.task)
    t = cfg.task
    return task_from_codes(t["name"], t["classes"], t["system"], dataset=cfg.dataset["name"],
                           modality=t.get("modality", "ecg"))


def build_dataset(cfg: PipelineConfig, want_fs: int | None = None):
    """The pipeline's dataset adapter (:func:`medzs.data.base.create_dataset`)."""
    from medzs.data.base import create_dataset

    d = cfg.dataset
    opts: dict[str, Any] = {}
    if d["name"] == "ptbxl":
        opts["fs"] = d.get("fs") or want_fs or 100
    if d.get("labels") is not None:
        opts["labels"] = _resolve(d["labels"])
    if d.get("system") is not None:
        opts["system"] = d["system"]
    if d.get("reference") is not None:
        opts["reference"] = _resolve(d["reference"])
    root = _resolve(d["root"]) if d.get("root") else None
    return create_dataset(d["name"], root, **opts)


def run_zeroshot(cfg: PipelineConfig, out_dir: str | Path | None = None, progress: bool = True,
                 stage: Any = None) -> dict[str, Any]:
    """Run a zero-shot pipeline end to end with the engine and write ``scores.csv``, ``metrics.json``,
    ``report.html``.

    dataset -> records of the split -> :class:`medzs.engine.Engine` (reader, quality checks, InputSpec transforms,
    encoder, class scorer; streamed in batches) -> score matrix -> labels -> AUROC per condition with n positives
    and CIs -> report. Records that fail to read or pass the quality rule are listed with their reason and left out
    of the AUROC. Memory holds the score matrix, not the signals.

    Args:
        stage: Optional ``stage(text)`` callback told what the run is doing before each step without a progress
            bar (dataset scan, model load, prompts, metrics) -- the CLI shows it as a status line.

    Returns:
        ``{"table", "macro", "files", "n_records", "n_errors", "errors"}``.

    Raises:
        SpecError: the task's classes and the dataset's labels do not fit, or no record is left.
    """
    if cfg.benchmark is not None:
        return _run_benchmark(cfg, out_dir)
    import numpy as np

    from medzs import __version__, registry
    from medzs.engine import Engine, Record
    from medzs.metrics import evaluate
    from medzs.prompts.controls import variant_provenance
    from medzs.report import write_report
    from medzs.scoring import fuse_rank_average

    t0 = time.time()
    say = stage or (lambda text: None)
    mname = cfg.model["name"]
    is_scorer = mname in registry.SCORERS
    crit_name = mname if is_scorer else cfg.model.get("hybrid")
    config = None if is_scorer else registry.get_config(mname)
    # PTB-XL ships 100 and 500 Hz files: read 100 Hz for a 100 Hz model, 500 Hz when measuring criteria
    # (the hybrid measures the criteria on the files the model reads, as the model card's CV did)
    want_fs = 500 if (config is None or getattr(config.input_spec, "fs", 500) > 100) else 100
    say(f"reading dataset {cfg.dataset['name']} and its labels")
    ds = build_dataset(cfg, want_fs=want_fs)
    task = build_task(cfg, ds)
    if config is not None and getattr(task, "modality", "ecg") != config.modality:
        raise SpecError(f"pipeline {cfg.path}: task {task.name!r} is a {task.modality} task but model {mname!r} reads "
                        f"{config.modality} inputs")
    labels = ds.labels(task)
    refs = ds.records(cfg.dataset.get("split", "all"))
    if cfg.dataset.get("ecg_ids"):
        wanted = {str(i) for i in cfg.dataset["ecg_ids"]}
        refs = [r for r in refs if r.id in wanted]
    refs = [r for r in refs if r.id in labels.index]
    if not refs:
        raise SpecError(f"pipeline {cfg.path}: no labelled record in dataset {ds.name} split "
                        f"{cfg.dataset.get('split')!r}")
    records = [Record(i, r.path, r.id, r.format, tuple(sorted(dict(r.read_kwargs).items())))
               for i, r in enumerate(refs)]
    eng_cfg = cfg.engine
    fusion = cfg.scoring.get("fusion", "rank-average")
    model = class_side = None
    prompts = None
    if config is not None:
        import torch

        from medzs.batch import class_scorer
        from medzs.prompts.tasks import task_prompts

        if eng_cfg.get("threads"):
            torch.set_num_threads(int(eng_cfg["threads"]))
        say(f"loading model {mname}")
        model = registry.create_model(mname, weights=cfg.model.get("weights"))
        say("writing or reading the class prompts (knowledge base)")
        prompts = task_prompts(task, cfg.prompts.get("writer", "grounded"), cfg.prompts.get("cache"),
                               llm=cfg.prompts.get("llm"))
        method = scoring_method(cfg)
        if method == "posneg":
            from medzs.prompts.tasks import posneg_prompts

            prompts = posneg_prompts(task, prompts, cfg.prompts.get("cache"))
        class_side = class_scorer(model, prompts, list(task.classes), softmax=method == "softmax")
    criteria = registry.create_scorer(crit_name) if crit_name else None
    engine = Engine(model, class_side, criteria=criteria, task=task if criteria is not None else None,
                    fusion=fusion, fusion_weight=float(cfg.scoring.get("fusion_weight", 0.5)),
                    softmax=scoring_method(cfg) == "softmax", precision=eng_cfg.get("precision", "fp32"),
                    quality=bool(eng_cfg.get("quality", True)), modality=getattr(task, "modality", "ecg"),
                    explain=criteria is not None)
    n, c = len(records), len(task.classes)
    scores = np.full((n, c), np.nan, dtype=np.float32)
    parts = np.full((2, n, c), np.nan, dtype=np.float32) if (criteria is not None and model is not None) else None
    ok = np.zeros(n, dtype=bool)
    errors: list[dict[str, Any]] = []
    flags: dict[str, str] = {}
    explanations: list[dict[str, Any]] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=n, unit="record", desc=f"zeroshot {ds.name}", disable=not progress, dynamic_ncols=True)
    try:
        for rows in engine.stream(records, int(eng_cfg.get("batch_size", 64)), progress=bar.update):
            for row in rows:
                i = int(row["record_index"])
                if row.get("quality_flags"):
                    flags[records[i].source_id] = row["quality_flags"]
                if row["status"] != "ok":
                    errors.append({"record_id": records[i].source_id, "error_class": row["error_class"],
                                   "error_message": row["error_message"]})
                    continue
                ok[i] = True
                scores[i] = row["scores"]
                if "criteria_explanation" in row:
                    explanations.append({**row["criteria_explanation"], "record_id": records[i].source_id})
                if parts is not None:
                    parts[0, i], parts[1, i] = row["embedding_scores"], row["criteria_scores"]
    finally:
        bar.close()
    if not ok.any():
        raise SpecError(f"pipeline {cfg.path}: every record failed ({errors[0]['error_message'] if errors else ''})")
    if errors:
        logger.warning("zeroshot: %d of %d records could not be scored and are left out of the AUROC", len(errors), n)
    ids = [records[i].source_id for i in np.flatnonzero(ok)]
    scores = scores[ok].astype(np.float64)
    not_scorable: dict[str, str] = {}
    if criteria is not None:
        not_scorable = criteria.not_scorable(task)
    if parts is not None and fusion == "rank-average":
        scores = fuse_rank_average(parts[0][ok], parts[1][ok], weight=float(cfg.scoring.get("fusion_weight", 0.5)))
    if model is None and criteria is not None:  # not-scorable classes keep their labels but get no AUROC
        for j, code in enumerate(task.classes):
            if code in not_scorable:
                scores[:, j] = np.nan
    y = labels.loc[ids, list(task.classes)].to_numpy(dtype=float)
    n_boot, seed = int(cfg.metrics.get("n_boot", 1000)), int(cfg.metrics.get("seed", 0))
    say(f"AUROC with {n_boot} bootstrap resamples and the report")
    min_pos = int(cfg.metrics.get("min_positives", MIN_POSITIVES))
    table, macro = evaluate(y, scores, list(task.classes), n_boot=n_boot, seed=seed, min_positives=min_pos)
    weights = model.config.weights if model is not None else None
    provenance = {
        "pipeline": cfg.name,
        "pipeline_file": cfg.path,
        "task": task.name,
        "class_names": dict(task.display_names),
        "dataset": {"name": ds.name, "root": str(ds.root), "split": cfg.dataset.get("split"),
                    "n_records": n, "n_scored": int(ok.sum()), "n_errors": len(errors),
                    "partial_mirror": bool(getattr(ds, "partial", False)), "citation": ds.citation},
        "model": ({"name": model.config.name, "weights": weights,
                   "sha256": registry.sha256_file(weights) if weights else None,
                   "input_spec": model.config.input_spec.to_dict(), "paper": model.config.paper,
                   "licence": model.config.licence, "precision": engine.precision}
                  if model is not None else {**criteria.describe(), "weights": None}),
        "prompts": ({"writer": cfg.prompts.get("writer"), "cache": cfg.prompts.get("cache"),
                     "classes": {k: [p.text for p in prompts[k].prompts] for k in task.classes},
                     "passage_ids": {k: sorted({i for p in prompts[k].prompts for i in p.passage_ids})
                                     for k in task.classes},
                     "prompt_passage_ids": {k: [list(p.passage_ids) for p in prompts[k].prompts]
                                            for k in task.classes},
                     "variant": variant_provenance(prompts)}
                    if prompts is not None else None),
        "scoring": {**cfg.scoring, "method": class_side.kind if class_side is not None else "criteria"},
        "hybrid": ({"name": crit_name, "fusion": fusion, "weight": cfg.scoring.get("fusion_weight", 0.5),
                    "not_scorable": not_scorable} if parts is not None else None),
        "not_scorable": not_scorable or None,
        "explanations": "criteria_explanations.json" if explanations else None,
        "errors": errors,
        "quality_flags": {"n_flagged": len(flags)},
        "metrics": {"n_boot": n_boot, "seed": seed, "min_positives": min_pos},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "medzs_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - t0, 1),
    }
    out = Path(out_dir or cfg.output)
    thumbs = None
    k = int((cfg.report or {}).get("thumbnails") or 0)
    if k and getattr(task, "modality", "ecg") in ("cxr", "ct"):
        thumbs = _thumbnails(records, ok, scores, y, list(task.classes), k, task.modality)
    files = write_report(out, record_ids=ids, classes=list(task.classes), scores=scores, y_true=y, table=table,
                         macro=macro, provenance=provenance, thumbnails=thumbs)
    if explanations:
        import json

        from medzs.criteria import EXPLANATIONS_FILE, _jsonable

        doc = {"scorer": crit_name, "classes": list(task.classes), "not_scorable": not_scorable,
               "provenance": {"task": task.name, "pipeline": cfg.name}, "records": explanations}
        path = out / EXPLANATIONS_FILE
        path.write_text(json.dumps(_jsonable(doc), separators=(",", ":"), allow_nan=False, ensure_ascii=False) + "\n")
        files = {**files, "criteria_explanations": path}
    return {"table": table, "macro": macro, "files": files, "n_records": int(ok.sum()), "n_errors": len(errors),
            "errors": errors, "task": task, "dataset": ds}


def _thumbnails(records: Any, ok: Any, scores: Any, y: Any, classes: list[str], k: int, modality: str) -> dict:
    """The ``k`` highest-scored images of each class as small base64 PNGs (for the report, when asked)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from medzs.engine import read_record

    kept = [r for r, keep in zip(records, ok) if keep]
    out: dict[str, list[dict[str, Any]]] = {}
    for j, code in enumerate(classes):
        order = np.argsort(-np.nan_to_num(scores[:, j], nan=-np.inf))[:k]
        items = []
        for i in order:
            try:
                _, sample = read_record(kept[int(i)], modality)
            except Exception:  # noqa: BLE001 - a thumbnail is optional
                continue
            img = np.asarray(sample.get("image") if "image" in sample else sample.get("volume"), dtype=np.float32)
            if img.ndim == 4:  # volume: middle axial slice
                img = img[:, img.shape[1] // 2]
            g = np.clip(img[0], 0.0, 1.0) if img.max() <= 1.0 else (img[0] - img.min()) / max(np.ptp(img), 1e-6)
            pil = Image.fromarray((g * 255).astype(np.uint8))
            pil.thumbnail((128, 128))
            buf = io.BytesIO()
            pil.save(buf, format="PNG")
            lab = y[int(i), j]
            items.append({"id": kept[int(i)].source_id, "png": base64.b64encode(buf.getvalue()).decode("ascii"),
                          "score": float(scores[int(i), j]), "label": "?" if lab != lab else int(lab)})
        out[code] = items
    return out


def embed_ptbxl(model: Any, db: Any, ecg_ids: Any, batch_size: int = 64, progress: bool = False) -> Any:
    """``(N, D)`` embeddings of PTB-XL records through the engine (same reader, quality checks and InputSpec
    transforms as ``medzs zeroshot``), for benchmarks that score many prompt sets on one set of embeddings.

    Reads the 100 Hz files for a model of 100 Hz or less, else the 500 Hz files (falling back to the other rate where
    the local copy lacks a file).

    Raises:
        RecordError: a record fails to read or the quality rule (the message names it).
    """
    import numpy as np

    from medzs.engine import Engine, Record
    from medzs.errors import RecordError

    fs = 100 if getattr(model.config.input_spec, "fs", 500) <= 100 else 500
    records = []
    for i, eid in enumerate(ecg_ids):
        path = db.record_path(int(eid), fs=fs)
        if not path.with_suffix(".hea").is_file():
            path = db.record_path(int(eid), fs=600 - fs)
        records.append(Record(i, str(path.with_suffix(".hea")), str(int(eid)), "wfdb"))
    out = []
    for rows in Engine(model, None, embeddings=True).stream(records, batch_size):
        for row in rows:
            if row["status"] != "ok":
                raise RecordError(row["error_message"] or f"record {records[int(row['record_index'])].source_id}")
            out.append(row["embedding"])
    return np.stack(out) if out else np.zeros((0, 0), np.float32)


def _run_benchmark(cfg: PipelineConfig, out_dir: str | Path | None) -> dict[str, Any]:
    """A ``benchmark:`` pipeline: :func:`medzs.benchmarks.merl.benchmark_cli` for that one benchmark."""
    from medzs.benchmarks.merl import benchmark_cli
    from medzs.data.merl import BENCHMARKS

    b = cfg.benchmark or {}
    source = BENCHMARKS[b["name"]].source
    roots = {source: _resolve(cfg.dataset["root"])} if cfg.dataset.get("root") else {}
    res = benchmark_cli(protocol=b["protocol"], model=cfg.model["name"], weights=_resolve(cfg.model.get("weights")),
                        text_model=_resolve(cfg.model.get("text_model")), prompts_file=_resolve(cfg.prompts.get("file")),
                        linear_probe=b.get("linear_probe"), benchmarks=[b["name"]],
                        splits_root=_resolve(b.get("splits_root")), records_roots=roots,
                        min_test_positives=int(b["min_test_positives"]), n_boot=int(cfg.metrics["n_boot"]),
                        out=Path(out_dir or cfg.output))
    return {"benchmark": True, **res}


def default_env() -> None:
    """Offline defaults for the Hugging Face stack and Chroma (set only when the user has not set them)."""
    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False")):
        os.environ.setdefault(k, v)

# kept for existing imports: the prompts stage lives in medzs.prompts.tasks
from medzs.prompts.tasks import task_prompts  # noqa: E402, F401
