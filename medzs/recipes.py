"""Training recipes: the embedded default model (`medzs train ecg`) and its cross-validation.

Design choices (training text, epochs, text-layer fine-tuning, augmentation) are made by
:func:`cross_validate_ptbxl` inside PTB-XL folds 1-8 only; folds 9-10 are reported, never tuned on
(``benchmarks/recipe_cv.py`` runs it; ``docs/model-card.md`` records the outcome).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: English names of the PTB-XL diagnostic superclasses (used in the "statements+classes" training text).
SUPERCLASS_NAMES = {"NORM": "normal ECG", "MI": "myocardial infarction", "STTC": "ST/T change",
                    "CD": "conduction disturbance", "HYP": "hypertrophy"}
TEXT_MODES = ("statements", "statements+classes")


def ptbxl_text(scp_codes: dict[str, float], statements, mode: str = "statements") -> str:
    """Training text of one PTB-XL record, in English, from its SCP-ECG statements.

    PTB-XL's free-text reports are mostly German, so the text is built from the English descriptions of the
    record's statements (``scp_statements.csv``), most likely first.

    Args:
        scp_codes: ``{code: likelihood %}`` of the record.
        statements: ``PTBXL.statements`` (indexed by code, with ``description`` and ``diagnostic_class``).
        mode: ``"statements"`` or ``"statements+classes"`` (also names the diagnostic superclasses).

    Returns:
        e.g. ``"inferior myocardial infarction. sinus rhythm"``.
    """
    if mode not in TEXT_MODES:
        raise ValueError(f"ptbxl_text: mode must be one of {TEXT_MODES}, got {mode!r}")
    codes = sorted((c for c in scp_codes if c in statements.index), key=lambda c: (-scp_codes[c], c))
    parts = [str(statements.loc[c, "description"]) for c in codes]
    if mode == "statements+classes":
        for c in codes:
            dc = statements.loc[c, "diagnostic_class"]
            name = SUPERCLASS_NAMES.get(dc) if isinstance(dc, str) else None
            if name and name not in parts:
                parts.append(name)
    return ". ".join(parts)


def load_ptbxl_training(ds, ecg_ids, spec, text_mode: str, progress: bool = True):
    """Preprocessed signals ``(N, leads, samples)`` and training texts for the given records."""
    from medzs.pipeline import load_ptbxl_signals

    x = load_ptbxl_signals(ds, ecg_ids, spec, progress=progress)
    texts = [ptbxl_text(ds.database.loc[i, "scp_codes"], ds.statements, text_mode) for i in ecg_ids]
    return x, texts


def train_ptbxl_default(out: str | Path, root: str | Path | None = None, epochs: int | None = None,
                        seed: int = 0, max_records: int | None = None, text_mode: str | None = None,
                        progress: bool = True) -> dict:
    """Train the embedded default model on PTB-XL folds 1-8 and write checkpoint + model card.

    Writes ``out`` (a ``.pt`` with the fp16 weights that are not the frozen base text encoder, ~10 MB) and
    ``out.with_suffix('.json')`` (the model card: sha256, config, data, history, command).

    Args:
        out: Checkpoint path.
        root: PTB-XL root (default :func:`medzs.data.ptbxl.default_root`).
        epochs: Override the recipe's epochs (smoke runs).
        seed: Seed.
        max_records: Use only the first N training records (smoke runs).
        text_mode: Override the recipe's training text.
        progress: Progress bars.

    Returns:
        The model card dict.
    """
    import torch

    from medzs import __version__, registry
    from medzs.data.ptbxl import PTBXL, default_root
    from medzs.train import train_contrastive

    t0 = time.time()
    recipe = DEFAULT_RECIPE if epochs is None else replace(DEFAULT_RECIPE, epochs=epochs)
    recipe = replace(recipe, seed=seed)
    text_mode = text_mode or DEFAULT_TEXT_MODE
    root = root or default_root()
    if root is None:
        raise FileNotFoundError("PTB-XL not found: give --root or set MEDZS_PTBXL_ROOT")
    ds = PTBXL(root)
    ids = ds.split("train")
    if max_records:
        ids = ids[:max_records]
    spec = registry.get_config(recipe.base_model).input_spec
    x, texts = load_ptbxl_training(ds, ids, spec, text_mode, progress=progress)
    model, history = train_contrastive(x, texts, recipe, progress=progress)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.shipped_state_dict().items()}
    tmp = out.with_suffix(".tmp")
    torch.save({"state_dict": state, "format": "medzs-ecg-clip-v1",
                "base_text_model": model.config.text_model}, tmp)
    tmp.replace(out)
    card = {
        "weights": str(out),
        "sha256": registry.sha256_file(out),
        "model": "ecg-resnet18.medzs-ptbxl",
        "architecture": model.config.to_dict(),
        "recipe": recipe.to_dict(),
        "text_mode": text_mode,
        "data": {"dataset": "PTB-XL (Wagner et al., Sci Data 7:154, 2020; CC-BY-4.0)", "root": str(root),
                 "folds": "strat_fold 1-8", "ecg_ids": [int(i) for i in ids]},
        "n_train": len(ids),
        "history": history,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "medzs_version": __version__,
        "torch_version": torch.__version__,
        "seconds": round(time.time() - t0, 1),
    }
    card_path = out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=1, default=str) + "\n")
    return card


def cross_validate_ptbxl(configs: dict[str, dict], root=None, label_set: str = "super",
                         splits=(((1, 2, 3, 4, 5, 6), (7, 8)), ((3, 4, 5, 6, 7, 8), (1, 2))),
                         eval_every: int = 5, progress: bool = False) -> list[dict]:
    """Compare recipe variants by zero-shot macro AUROC on held-out *training* folds (1-8 only).

    Args:
        configs: ``{variant name: {"text_mode": ..., **TrainConfig fields}}``.
        root: PTB-XL root.
        label_set: Label set scored on the held-out folds (class names as prompts).
        splits: ``((train folds), (held-out folds))`` pairs; must lie inside folds 1-8.
        eval_every: Evaluate every N epochs.

    Returns:
        One dict per (variant, split, evaluation epoch) with ``macro_auroc``.
    """
    from sklearn.metrics import roc_auc_score

    from medzs import registry
    from medzs.data.ptbxl import PTBXL, default_root
    from medzs.data.tasks import get_task
    from medzs.train import TrainConfig, embed_signals, train_contrastive

    for tr, va in splits:
        if not (set(tr) | set(va)) <= set(range(1, 9)):
            raise ValueError(f"cross_validate_ptbxl: folds {tr}/{va} leave folds 1-8 (9-10 are reported only)")
    ds = PTBXL(root or default_root())
    task = get_task(f"ptbxl-{label_set}")
    labels = ds.labels(label_set)
    prompt_sets = {"names": [[task.display_names[c]] for c in task.classes]}
    from medzs.pipeline import REPO_ROOT
    from medzs.prompts.cache import PromptCache

    cache_file = REPO_ROOT / "knowledge" / "prompts" / f"ptbxl-{label_set}.grounded.json"
    if cache_file.is_file():
        by_class = {r["class_code"]: r for r in _cache_classes(PromptCache(cache_file))}
        if all(c in by_class for c in task.classes):
            prompt_sets["grounded"] = [[p["text"] for p in by_class[c]["prompts"]] for c in task.classes]
    rows = []
    cache: dict = {}
    for name, kw in configs.items():
        kw = dict(kw)
        text_mode = kw.pop("text_mode", DEFAULT_TEXT_MODE)
        cfg = replace(DEFAULT_RECIPE, **kw)
        spec = registry.get_config(cfg.base_model).input_spec
        for tr, va in splits:
            tr_ids = [i for i in ds.split("train") if ds.folds[i] in tr]
            va_ids = [i for i in labels.dropna(how="all").index if ds.folds[i] in va]
            key = (spec, tuple(tr_ids), tuple(va_ids))
            if key not in cache:
                cache[key] = (load_ptbxl_training(ds, tr_ids, spec, text_mode, progress)[0],
                              load_ptbxl_training(ds, va_ids, spec, text_mode, progress)[0])
            x_tr, x_va = cache[key]
            texts = [ptbxl_text(ds.database.loc[i, "scp_codes"], ds.statements, text_mode) for i in tr_ids]
            y = labels.loc[va_ids, list(task.classes)].to_numpy()

            def ev(model, epoch, x_va=x_va, y=y):
                import torch

                from medzs.scoring import class_embeddings

                e = embed_signals(model, x_va)
                res = {}
                for style, texts in prompt_sets.items():
                    with torch.no_grad():
                        c = class_embeddings(lambda t: model.encode_text(list(t)), {str(j): t for j, t in enumerate(texts)})
                    s = e @ c.T
                    aucs = [roc_auc_score(y[:, j], s[:, j]) for j in range(y.shape[1]) if len(set(y[:, j])) == 2]
                    res[f"macro_auroc_{style}"] = float(np.mean(aucs))
                return res

            _, hist = train_contrastive(x_tr, texts, cfg, eval_fn=ev, eval_every=eval_every)
            for h in hist:
                for style in prompt_sets:
                    key = f"macro_auroc_{style}"
                    if key in h:
                        rows.append({"variant": name, "train_folds": tr, "heldout_folds": va, "text_mode": text_mode,
                                     "prompts": style, "epoch": h["epoch"], "macro_auroc": h[key]})
                        logger.info("%s %s %s epoch %d: %.3f", name, style, va, h["epoch"], h[key])
    return rows


def _cache_classes(cache) -> list[dict]:
    out = []
    for rec in cache.records():
        cp = rec.get("class_prompts", rec)
        out.append(cp)
    return out


def _default_recipe():
    from medzs.train import TrainConfig

    # Chosen by cross_validate_ptbxl on folds 1-8 (benchmarks/recipe_cv.py; docs/model-card.md).
    return TrainConfig(base_model="ecg-resnet18.random", epochs=20, batch_size=32, lr=1e-3, text_lr=2e-5,
                       trainable_text_layers=1, shared_positives=True, augment=True, seed=0)


DEFAULT_RECIPE = _default_recipe()
DEFAULT_TEXT_MODE = "statements"
