"""Declarative zero-shot pipelines (``pipelines/*.yaml``): loader -> transforms -> encoder -> prompts
-> scorer -> metrics -> report.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import SpecError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class PipelineConfig:
    """A zero-shot benchmark/batch job, as read from a pipeline YAML file.

    Attributes:
        name: Pipeline name.
        task: Task name (see :mod:`medzs.data.tasks`).
        dataset: ``{"name": "ptbxl", "root": path|None, "split": "test9-10"|..., "ecg_ids": [...]}``.
        model: ``{"name": registry name, "weights": path|None}``.
        prompts: ``{"writer": "grounded"|"names"|"llm", "cache": path, "llm": "gguf:PATH"|"openai:MODEL@URL"|...}``.
        scoring: ``{"softmax": bool}``.
        metrics: ``{"n_boot": int, "seed": int}``.
        output: Output folder.
        path: The YAML file (for provenance).
    """

    name: str
    task: str
    dataset: dict[str, Any]
    model: dict[str, Any]
    prompts: dict[str, Any] = field(default_factory=lambda: {"writer": "grounded", "cache": None})
    scoring: dict[str, Any] = field(default_factory=lambda: {"softmax": False})
    metrics: dict[str, Any] = field(default_factory=lambda: {"n_boot": 1000, "seed": 0})
    output: str = "runs/out"
    path: str = ""


#: Allowed keys of each nested section of a pipeline file (a typo must fail, not fall back to a default).
NESTED_FIELDS: dict[str, set[str]] = {
    "dataset": {"name", "root", "split", "ecg_ids"},
    "model": {"name", "weights", "hybrid"},
    "prompts": {"writer", "cache", "llm"},
    "scoring": {"softmax"},
    "metrics": {"n_boot", "seed"},
}


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and check a pipeline YAML file.

    Raises:
        FileNotFoundError: missing file. SpecError: a missing or malformed field (named in the message).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pipeline {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    for key in ("name", "task", "dataset", "model"):
        if key not in raw:
            raise SpecError(f"pipeline {path}: field '{key}' is missing")
    if isinstance(raw["model"], str):
        raw["model"] = {"name": raw["model"]}
    known = set(PipelineConfig.__dataclass_fields__) - {"path"}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"pipeline {path}: unknown fields {sorted(unknown)} (expected {sorted(known)})")
    for section, allowed in NESTED_FIELDS.items():
        value = raw.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise SpecError(f"pipeline {path}: field '{section}' must be a mapping, got {value!r}")
        bad = set(value) - allowed
        if bad:
            raise SpecError(f"pipeline {path}: unknown fields {sorted(f'{section}.{k}' for k in bad)} "
                            f"(expected {sorted(f'{section}.{k}' for k in allowed)})")
    return PipelineConfig(**raw, path=str(path))


def _resolve(p: str | None) -> Path | None:
    if p is None:
        return None
    q = Path(p)
    return q if q.is_absolute() or q.exists() else REPO_ROOT / q


def load_ptbxl_signals(ds, ecg_ids, spec, progress: bool = True) -> np.ndarray:
    """Read and preprocess PTB-XL records to a model's InputSpec -> ``(N, leads, samples)`` float32.

    Reads the 100 Hz files when the spec asks for 100 Hz (PTB-XL ships both rates), else the 500 Hz files.
    """
    from medzs.io.wfdb import read_wfdb
    from medzs.transforms.ecg import preprocess

    fs_file = 100 if spec.fs <= 100 else 500
    out = np.empty((len(ecg_ids), *spec.shape), dtype=np.float32)
    it = ecg_ids
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(ecg_ids, desc="load ECGs", unit="ECG")
    for i, eid in enumerate(it):
        out[i] = preprocess(read_wfdb(ds.record_path(int(eid), fs=fs_file)), spec)
    return out


def task_prompts(task, writer_name: str, cache_path: str | Path | None, kb_path: str | Path | None = None,
                 llm: str | None = None):
    """Class prompts of a task: from the prompt cache, written from the knowledge base when missing/stale.

    Args:
        task: A :class:`medzs.data.tasks.Task`.
        writer_name: ``"grounded"``, ``"names"`` or ``"llm"`` (needs ``llm``).
        cache_path: Prompt cache file/folder, or None (in memory).
        kb_path: Chroma folder (default ``$MEDZS_HOME/chroma``).
        llm: LLM backend setting for the ``"llm"`` writer (``gguf:PATH``, ``openai:MODEL@BASE_URL``,
            ``ollama:MODEL[@URL]``; see :mod:`medzs.prompts.backends`). Its descriptors pass the grounding
            validator; drops are recorded in the cache entries and in the validator log
            (:func:`medzs.prompts.validator.validator_log_path`).

    Returns:
        ``dict[class_code, ClassPrompts]`` in the task's class order.
    """
    from medzs.prompts.cache import PromptCache, build_task_prompts
    from medzs.prompts.controls import VARIANTS, variant_task_prompts
    from medzs.prompts.grounded import GroundedWriter, NamesOnlyWriter

    if writer_name in VARIANTS and writer_name != "names":  # controls: templates, random-words, chils, posneg
        return variant_task_prompts(task, writer_name, _resolve(str(cache_path)) if cache_path else None, kb_path)
    writers = {"grounded": GroundedWriter, "names": NamesOnlyWriter, "llm": None}
    if writer_name not in writers:
        raise SpecError(f"prompts.writer: expected one of {sorted(writers)}, got {writer_name!r}")
    if (writer_name == "llm") != bool(llm and str(llm).lower() != "none"):
        raise SpecError(f"prompts: writer 'llm' needs an llm setting and only it takes one (writer "
                        f"{writer_name!r}, llm {llm!r})")
    if writer_name == "llm":
        from medzs.prompts.backends import make_llm_writer

        writer = make_llm_writer(llm)
    else:
        writer = writers[writer_name]()
    classes = {c: (task.kb_ids[c], task.display_names[c]) for c in task.classes}
    cache = PromptCache(_resolve(str(cache_path)) if cache_path else None)
    from medzs.knowledge.kb import KnowledgeBase
    from medzs.knowledge.loader import load_entries

    kb = KnowledgeBase(kb_path)
    if kb.count() == 0:
        logger.info("knowledge base is empty: building it from knowledge/")
        kb.build(load_entries())

    def retrieve(entry_id: str, class_name: str):
        return kb.retrieve(entry_id, query=class_name, k=None)

    try:
        return build_task_prompts(classes, retrieve, writer, cache)
    finally:  # also when a class fails: the classes written so far are cached, keep their validator log
        if writer_name == "llm" and cache.path is not None:
            from medzs.prompts.validator import validator_log_path, write_validator_log

            write_validator_log(validator_log_path(cache.path), writer.validator, model=writer.model,
                                writer_template_hash=writer.template_hash,
                                class_codes={eid: code for code, (eid, _) in classes.items()})


def run_zeroshot(cfg: PipelineConfig, out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run a zero-shot pipeline end to end and write ``scores.csv``, ``metrics.json``, ``report.html``.

    Returns:
        ``{"table": per-condition DataFrame, "macro": dict, "files": dict, "n_records": int}``.
    """
    import torch

    from medzs import __version__, registry
    from medzs.data.ptbxl import PTBXL, default_root
    from medzs.data.tasks import get_task
    from medzs.metrics import evaluate
    from medzs.prompts.controls import score_prompts, variant_provenance
    from medzs.report import write_report
    from medzs.train import embed_signals

    t0 = time.time()
    task = get_task(cfg.task)
    if cfg.dataset.get("name", "ptbxl") != "ptbxl":
        raise SpecError(f"pipeline {cfg.path}: dataset.name {cfg.dataset.get('name')!r} not supported (ptbxl)")
    root = cfg.dataset.get("root") or default_root()
    if root is None:
        raise SpecError(f"pipeline {cfg.path}: dataset.root is not set and no PTB-XL mirror was found; set "
                        "MEDZS_PTBXL_ROOT or download with `medzs data ptbxl download DEST`")
    ds = PTBXL(root)
    # Records without a label of this set are not part of the benchmark (as in the published splits).
    labels = ds.labels(task.label_set, drop_empty=True, v1_0_3_only=True)
    ids = cfg.dataset.get("ecg_ids") or ds.split(cfg.dataset.get("split", "test9-10"))
    labels = labels.loc[[i for i in ids if i in labels.index], list(task.classes)]
    ids = list(labels.index)
    if cfg.model["name"] in registry.SCORERS:  # no embedding model: measurements + KB criteria (medzs.criteria)
        from medzs.criteria import run_criteria_pipeline

        return run_criteria_pipeline(cfg, task, ds, root, labels, ids, out_dir, progress, t0)
    model = registry.create_model(cfg.model["name"], weights=cfg.model.get("weights"))
    spec = model.config.input_spec
    x = load_ptbxl_signals(ds, ids, spec, progress=progress)
    emb = embed_signals(model, x)
    prompts = task_prompts(task, cfg.prompts.get("writer", "grounded"), cfg.prompts.get("cache"),
                           llm=cfg.prompts.get("llm"))
    with torch.no_grad():  # plain prompts: class_embeddings + similarity; chils/posneg: their own scoring
        scores = score_prompts(lambda t: model.encode_text(list(t)), emb, [prompts[c] for c in task.classes],
                               softmax=bool(cfg.scoring.get("softmax", False)))
    crit = None
    if cfg.model.get("hybrid"):  # label-free fusion with a registered scorer: per-class rank average
        from medzs.criteria import hybrid_scores

        scores, crit = hybrid_scores(scores, ds, ids, task, cfg.model["hybrid"], progress=progress)
    y = labels[list(task.classes)].to_numpy(dtype=float)
    n_boot, seed = int(cfg.metrics.get("n_boot", 1000)), int(cfg.metrics.get("seed", 0))
    table, macro = evaluate(y, scores, list(task.classes), n_boot=n_boot, seed=seed)
    weights = model.config.weights
    provenance = {
        "pipeline": cfg.name,
        "pipeline_file": cfg.path,
        "task": task.name,
        "dataset": {"name": "PTB-XL", "root": str(root), "split": cfg.dataset.get("split"),
                    "n_records": len(ids),
                    "citation": "Wagner P, Strodthoff N, Bousseljot R-D, et al. PTB-XL, a large publicly available "
                                "electrocardiography dataset. Sci Data 7, 154 (2020). doi:10.1038/s41597-020-0495-6; "
                                "PhysioNet doi:10.13026/kfzx-aw45"},
        "model": {"name": model.config.name, "weights": weights,
                  "sha256": registry.sha256_file(weights) if weights else None,
                  "input_spec": spec.to_dict(), "paper": model.config.paper, "licence": model.config.licence},
        "prompts": {"writer": cfg.prompts.get("writer"), "cache": cfg.prompts.get("cache"),
                    "classes": {c: [p.text for p in prompts[c].prompts] for c in task.classes},
                    "passage_ids": {c: sorted({i for p in prompts[c].prompts for i in p.passage_ids})
                                    for c in task.classes},
                    "variant": variant_provenance(prompts)},
        "scoring": cfg.scoring,
        "hybrid": None if crit is None else {**crit.provenance, "fusion": "per-class rank average, weight 0.5",
                                             "not_scorable": crit.not_scorable},
        "metrics": {"n_boot": n_boot, "seed": seed},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "medzs_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - t0, 1),
    }
    out = Path(out_dir or cfg.output)
    files = write_report(out, record_ids=[str(i) for i in ids], classes=list(task.classes), scores=scores,
                         y_true=y, table=table, macro=macro, provenance=provenance)
    if crit is not None:
        files["criteria_explanations"] = crit.write_explanations(out, {"task": task.name, "pipeline": cfg.name})
    return {"table": table, "macro": macro, "files": files, "n_records": len(ids)}


def default_env() -> None:
    """Offline defaults for the Hugging Face stack and Chroma (set only when the user has not set them)."""
    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False")):
        os.environ.setdefault(k, v)
