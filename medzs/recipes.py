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
TEXT_MODES = ("statements", "statements+classes", "names", "kb")
#: Text modes that sample a new text each time a record is drawn (the others are one fixed text per record).
SAMPLED_TEXT_MODES = ("kb",)


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
    if mode not in ("statements", "statements+classes"):
        raise ValueError(f"ptbxl_text: mode must be 'statements' or 'statements+classes', got {mode!r}")
    codes = sorted((c for c in scp_codes if c in statements.index), key=lambda c: (-scp_codes[c], c))
    parts = [str(statements.loc[c, "description"]) for c in codes]
    if mode == "statements+classes":
        for c in codes:
            dc = statements.loc[c, "diagnostic_class"]
            name = SUPERCLASS_NAMES.get(dc) if isinstance(dc, str) else None
            if name and name not in parts:
                parts.append(name)
    return ". ".join(parts)


def entry_phrases(entry) -> list[str]:
    """Descriptive phrases of one knowledge-base entry, in the style of the test-time grounded prompts.

    The same forms :class:`medzs.prompts.grounded.GroundedWriter` writes from retrieved passages, here written
    straight from the entry: the name; ``"<name>: <definition sentence>"``; ``"<name>, with <criterion>"``;
    each synonym. Long pieces are cut to 30 words.

    Args:
        entry: A :class:`medzs.knowledge.schema.Entry`.

    Returns:
        Distinct phrases, name first.
    """
    from medzs.prompts.grounded import (
        clean_text,
        lower_first,
        split_sentences,
        truncate_words,
    )

    name = lower_first(clean_text(entry.name))
    out = [name]
    for sent in split_sentences(entry.definition or ""):
        out.append(f"{name}: {truncate_words(lower_first(clean_text(sent)), 30)}")
    for crit in entry.criteria:
        text = lower_first(clean_text(crit.text))
        if text:
            out.append(f"{name}, with {truncate_words(text, 30)}")
    out.extend(clean_text(s) for s in entry.synonyms if clean_text(s))
    return list(dict.fromkeys(p for p in out if p))


class PTBXLTexts:
    """Training texts of PTB-XL records, fixed or knowledge-grounded (sampled anew each time a record is drawn).

    Modes:
        ``"statements"``: the English descriptions of the record's SCP-ECG statements, most likely first
            (control: the text PTB-XL itself gives).
        ``"statements+classes"``: the same plus the names of their diagnostic superclasses.
        ``"names"``: names only: the knowledge-base names of the statements and of their diagnostic subclass and
            superclass entries (control: no definitions, criteria or synonyms).
        ``"kb"``: knowledge-grounded: with probability ``p_plain`` the statement text; otherwise one statement
            (the *focus*) is written as a random phrase of its own entry or, for diagnostic statements, of its
            subclass or superclass entry (:func:`entry_phrases`: name, definition sentence, criterion, synonym),
            and every other statement as its description, its entry name or a synonym.

    Args:
        ds: A :class:`medzs.data.ptbxl.PTBXL`.
        ecg_ids: Records, in training order.
        mode: One of :data:`TEXT_MODES`.
        p_plain: ``"kb"``: probability of the plain statement text.
        entries: KB entries (default: ``load_entries(modality="ecg")``).
    """

    def __init__(self, ds, ecg_ids, mode: str = "kb", p_plain: float = 0.25, entries=None) -> None:
        if mode not in TEXT_MODES:
            raise ValueError(f"PTBXLTexts: mode must be one of {TEXT_MODES}, got {mode!r}")
        self.mode, self.p_plain = mode, float(p_plain)
        st = ds.statements
        self.codes = []
        for i in ecg_ids:
            sc = ds.database.loc[int(i), "scp_codes"]
            self.codes.append(sorted((c for c in sc if c in st.index), key=lambda c: (-sc[c], c)))
        self.plain = [ptbxl_text(ds.database.loc[int(i), "scp_codes"], st,
                                 mode if mode == "statements+classes" else "statements") for i in ecg_ids]
        if mode in ("statements", "statements+classes"):
            return
        from medzs.data.tasks import SUBCLASS_ONLY, SUBCLASSES, kb_code, subclass_kb_id
        from medzs.knowledge.loader import load_entries

        SUBCLASS_KB_CODES = set(SUBCLASSES) | set(SUBCLASS_ONLY)

        by_id = {e.id: e for e in (entries if entries is not None else load_entries(modality="ecg"))}
        self.description = {c: str(st.loc[c, "description"]) for c in st.index}
        self.entry_ids: dict[str, list[str]] = {}
        for c in st.index:
            ids = [f"ecg.scp.{kb_code(c)}"]
            if bool(st.loc[c, "diagnostic"]):
                sub, sup = st.loc[c, "diagnostic_subclass"], st.loc[c, "diagnostic_class"]
                if isinstance(sub, str) and sub in SUBCLASS_KB_CODES:
                    ids.append(subclass_kb_id(sub))
                if isinstance(sup, str):
                    ids.append(f"ecg.superclass.{kb_code(sup)}")
            self.entry_ids[c] = list(dict.fromkeys(e for e in ids if e in by_id))
        self.phrases = {e: entry_phrases(by_id[e]) for ids in self.entry_ids.values() for e in ids}
        self.short = {e: [self.phrases[e][0], *by_id[e].synonyms] for e in self.phrases}
        self.names = [". ".join(dict.fromkeys(self.phrases[e][0] for c in codes for e in self.entry_ids[c]))
                      or self.plain[k] for k, codes in enumerate(self.codes)]

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def sampled(self) -> bool:
        """Whether texts are drawn anew each time (``"kb"``)."""
        return self.mode in SAMPLED_TEXT_MODES

    def fixed(self, k: int) -> str:
        """The fixed text of record ``k`` (statement text; names for ``"names"``)."""
        return self.names[k] if self.mode == "names" else self.plain[k]

    def __call__(self, k: int, rng: np.random.Generator) -> str:
        """Text of record ``k`` (the fixed one, or a fresh sample for ``"kb"``)."""
        if not self.sampled or not self.codes[k] or rng.random() < self.p_plain:
            return self.fixed(k)
        codes = self.codes[k]
        focus = int(rng.integers(len(codes)))
        parts = []
        for j, c in enumerate(codes):
            ids = self.entry_ids.get(c) or []
            if not ids:
                parts.append(self.description[c])
            elif j == focus:
                e = ids[0] if len(ids) == 1 or rng.random() < 0.5 else ids[1 + int(rng.integers(len(ids) - 1))]
                ph = self.phrases[e]
                parts.append(ph[int(rng.integers(len(ph)))])
            else:
                opts = [self.description[c], *self.short[ids[0]]]
                parts.append(opts[int(rng.integers(len(opts)))])
        return ". ".join(dict.fromkeys(parts))


def load_ptbxl_training(ds, ecg_ids, spec, text_mode: str, progress: bool = True):
    """Preprocessed signals ``(N, leads, samples)`` and (fixed) training texts for the given records."""
    from medzs.pipeline import load_ptbxl_signals

    x = load_ptbxl_signals(ds, ecg_ids, spec, progress=progress)
    texts = PTBXLTexts(ds, ecg_ids, text_mode)
    return x, [texts.fixed(k) for k in range(len(ecg_ids))]


def load_ptbxl_arrays(ds, ecg_ids, spec, layout: str | None = None, progress: bool = False) -> np.ndarray:
    """Read and preprocess PTB-XL records -> ``(N, leads, samples)`` float32; ``layout="3x4"`` masks them to the
    3x4 printout layout first (needs ``spec.accepts_masked``). Reads the 100 Hz files for specs at <= 100 Hz."""
    from medzs.io.wfdb import read_wfdb
    from medzs.transforms.ecg import preprocess

    fs_file = 100 if spec.fs <= 100 else 500
    out = np.empty((len(ecg_ids), *spec.shape), dtype=np.float32)
    it = ecg_ids
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(ecg_ids, desc="load ECGs", unit="ECG")
    for k, eid in enumerate(it):
        out[k] = preprocess(read_wfdb(ds.record_path(int(eid), fs=fs_file)), spec, layout=layout)
    return out


#: Where :func:`train_ecg` writes when no ``out`` is given and the shipped weights are not replaced.
def default_train_out() -> Path:
    """``$MEDZS_HOME/models/ecg-resnet18.medzs-ptbxl/<timestamp>.pt`` (``MEDZS_HOME`` default ``~/.cache/medzs``)."""
    import os

    home = Path(os.environ.get("MEDZS_HOME") or Path.home() / ".cache" / "medzs").expanduser()
    return home / "models" / "ecg-resnet18.medzs-ptbxl" / (time.strftime("%Y%m%dT%H%M%S") + ".pt")


def shipped_weights_path() -> Path:
    """The committed default checkpoint ``medzs/weights/ecg-resnet18.medzs-ptbxl.pt``."""
    from medzs.registry import WEIGHTS_DIR

    return Path(WEIGHTS_DIR) / "ecg-resnet18.medzs-ptbxl.pt"


def _ptbxl(data):
    from medzs.data.ptbxl import PTBXL, default_root

    if isinstance(data, PTBXL):
        return data
    if data is None:
        data = default_root()
        if data is None:
            raise FileNotFoundError("PTB-XL not found: give data= (a PTB-XL root) or set MEDZS_PTBXL_ROOT")
    if not isinstance(data, (str, Path)) and hasattr(data, "root"):  # a medzs.data.base ptbxl adapter
        data = data.root
    return PTBXL(data)


def train_ecg(data=None, out: str | Path | None = None, *, replace_default: bool = False,
              epochs: int | None = None, seed: int = 0, max_records: int | None = None,
              text_mode: str | None = None, threads: int | None = None, progress: bool = True,
              **overrides) -> dict:
    """Train the embedded ECG-text model on PTB-XL folds 1-8 and write checkpoint + model card (``medzs train ecg``).

    Recipe: :data:`DEFAULT_RECIPE` with :data:`DEFAULT_TEXT_MODE` training text (chosen by cross-validation inside
    folds 1-8, ``benchmarks/recipe_cv.py``; see docs/model-card.md). Folds 9-10 are never read. With a fixed torch
    build and thread count the run is deterministic (seeded; ``torch.use_deterministic_algorithms``).

    Writes ``out`` (a ``.pt`` with the fp16 weights that are not the frozen base text encoder, ~13 MB) and
    ``out.with_suffix('.json')`` (the model card: sha256, n_train, recipe, text mode, data, history, command,
    torch version and thread count).

    Args:
        data: PTB-XL root folder, a :class:`medzs.data.ptbxl.PTBXL`, or a ``ptbxl`` dataset adapter (its
            ``root``); None: :func:`medzs.data.ptbxl.default_root` (``ptbxl2k`` when present).
        out: Checkpoint path. None: :func:`default_train_out` (a new file under ``$MEDZS_HOME/models``), or the
            shipped ``medzs/weights/ecg-resnet18.medzs-ptbxl.pt`` when ``replace_default``.
        replace_default: Allow writing over the shipped default weights (``out`` None or that path).
        epochs: Override the recipe's epochs (smoke runs).
        seed: Seed.
        max_records: Use only the first N training records (smoke runs).
        text_mode: Override the recipe's training text (:data:`TEXT_MODES`).
        threads: torch CPU threads (default: the recipe's, 2).
        progress: Progress bars.
        **overrides: Other :class:`medzs.train.TrainConfig` fields.

    Returns:
        The model card dict.

    Raises:
        FileExistsError: ``out`` is the shipped checkpoint and ``replace_default`` is False.
    """
    import torch

    from medzs import __version__, registry
    from medzs.train import train_contrastive

    t0 = time.time()
    shipped = shipped_weights_path()
    if out is None:
        out = shipped if replace_default else default_train_out()
    out = Path(out)
    if out.resolve() == shipped.resolve() and not replace_default:
        raise FileExistsError(f"{out}: this is the shipped default checkpoint; pass replace_default=True "
                              "(--replace-default) to overwrite it, or choose another --out")
    recipe = replace(DEFAULT_RECIPE, seed=seed, **overrides)
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    if threads is not None:
        recipe = replace(recipe, threads=threads)
    text_mode = text_mode or DEFAULT_TEXT_MODE
    ds = _ptbxl(data)
    ids = ds.split("train")
    if max_records:
        ids = ids[:max_records]
    spec = registry.get_config(recipe.base_model).input_spec
    torch.set_num_threads(recipe.threads)
    x = load_ptbxl_arrays(ds, ids, spec, progress=progress)
    x34 = load_ptbxl_arrays(ds, ids, spec, layout="3x4") if recipe.layout_3x4 > 0 and spec.accepts_masked \
        else None
    texts = PTBXLTexts(ds, ids, text_mode)
    model, history = train_contrastive(x, texts if texts.sampled else [texts.fixed(k) for k in range(len(ids))],
                                       recipe, progress=progress, signals_3x4=x34)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.shipped_state_dict().items()}
    import io

    buf = io.BytesIO()  # saved through a buffer: the archive's inner folder name, hence the sha256, does not
    torch.save({"state_dict": state, "format": "medzs-ecg-clip-v1",  # depend on the file name
                "base_text_model": model.config.text_model}, buf)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(out)
    card = {
        "weights": out.name,
        "sha256": registry.sha256_file(out),
        "model": "ecg-resnet18.medzs-ptbxl",
        "architecture": model.config.to_dict(),
        "recipe": recipe.to_dict(),
        "text_mode": text_mode,
        "data": {"dataset": "PTB-XL (Wagner et al., Sci Data 7:154, 2020, doi:10.1038/s41597-020-0495-6; "
                            "CC-BY-4.0)", "root": str(ds.root), "folds": "strat_fold 1-8", "fs_read": 100,
                 "ecg_ids": [int(i) for i in ids]},
        "n_train": len(ids),
        "history": history,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "medzs_version": __version__,
        "torch_version": torch.__version__,
        "torch_threads": recipe.threads,
        "deterministic": recipe.deterministic,
        "seconds": round(time.time() - t0, 1),
    }
    card_path = out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=1, default=str) + "\n")
    return card


def train_ptbxl_default(out: str | Path | None = None, root: str | Path | None = None, epochs: int | None = None,
                        seed: int = 0, max_records: int | None = None, text_mode: str | None = None,
                        progress: bool = True, replace_default: bool = False) -> dict:
    """Backward-compatible name of :func:`train_ecg` (``root`` is its ``data``)."""
    return train_ecg(root, out, replace_default=replace_default, epochs=epochs, seed=seed,
                     max_records=max_records, text_mode=text_mode, progress=progress)


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
    from medzs.train import embed_signals, train_contrastive

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


#: Cross-validation splits inside the training folds: ((train folds), (held-out folds)).
CV_SPLITS = (((1, 2, 3, 4, 5, 6), (7, 8)), ((3, 4, 5, 6, 7, 8), (1, 2)))
CV_TASKS = ("super", "sub", "form", "rhythm")


def task_prompt_sets(label_set: str) -> dict[str, list[list[str]]]:
    """Prompt texts per class of a PTB-XL task: ``{"names": ..., "grounded": ...}`` (grounded from the committed
    cache ``knowledge/prompts/ptbxl-<task>.grounded.json``, when it covers every class)."""
    from medzs.data.tasks import get_task
    from medzs.pipeline import REPO_ROOT
    from medzs.prompts.cache import PromptCache

    task = get_task(f"ptbxl-{label_set}")
    sets = {"names": [[task.display_names[c]] for c in task.classes]}
    cache_file = REPO_ROOT / "knowledge" / "prompts" / f"ptbxl-{label_set}.grounded.json"
    if cache_file.is_file():
        by_class = {r["class_code"]: r for r in _cache_classes(PromptCache(cache_file))}
        if all(c in by_class for c in task.classes):
            sets["grounded"] = [[p["text"] for p in by_class[c]["prompts"]] for c in task.classes]
    return sets


def zero_shot_scores(model, x: np.ndarray, prompt_sets: dict[str, dict[str, list[list[str]]]]) -> dict:
    """Cosine similarities ``(N, C)`` of ECGs ``x`` to each task's class embeddings (mean of prompt embeddings).

    Returns:
        ``{(task, prompt style): scores}``.
    """
    import torch

    from medzs.scoring import class_embeddings
    from medzs.train import embed_signals

    e = embed_signals(model, x)
    out = {}
    with torch.no_grad():
        for task, sets in prompt_sets.items():
            for style, texts in sets.items():
                c = class_embeddings(lambda t: model.encode_text(list(t)), {str(j): t for j, t in enumerate(texts)})
                out[(task, style)] = e @ c.T
    return out


def cross_validate_ecg(variants: dict[str, dict], root=None, splits=CV_SPLITS, eval_epochs=(10, 15, 20),
                       out_dir: str | Path = "runs/cv", split_index: int | None = None, threads: int = 2,
                       progress: bool = False) -> list[Path]:
    """Train each recipe variant on the training folds of each split and save held-out zero-shot scores.

    Everything stays inside PTB-XL folds 1-8. For every variant, split and evaluation epoch it writes
    ``out_dir/<variant>_s<split>_e<epoch>.npz`` with the held-out ecg_ids and, for each task of
    :data:`CV_TASKS` and prompt style (names, grounded), the similarity scores of the full 12-lead input
    (``<task>_<style>_full``) and of its 3x4-layout version (``<task>_<style>_3x4``). Labels, criteria scores,
    hybrids and macro AUROCs are computed from these files (``benchmarks/ecg_cv.py summary``).

    Args:
        variants: ``{name: {"text_mode": ..., **TrainConfig fields}}`` (unset fields: :data:`DEFAULT_RECIPE`).
        root: PTB-XL root (default :func:`medzs.data.ptbxl.default_root`).
        splits: ``((train folds), (held-out folds))`` pairs inside folds 1-8.
        eval_epochs: Epochs at which the held-out folds are scored (within the variant's schedule).
        out_dir: Output folder.
        split_index: Run only this split (to run splits in parallel processes).
        threads: torch threads.

    Returns:
        The written files.

    Raises:
        ValueError: a split leaves folds 1-8.
    """
    from medzs import registry
    from medzs.train import train_contrastive

    for tr, va in splits:
        if not (set(tr) | set(va)) <= set(range(1, 9)):
            raise ValueError(f"cross_validate_ecg: folds {tr}/{va} leave folds 1-8 (9-10 are reported only)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = _ptbxl(root)
    spec = registry.get_config(DEFAULT_RECIPE.base_model).input_spec
    prompt_sets = {t: task_prompt_sets(t) for t in CV_TASKS}
    all_ids = ds.split("train")
    cache = out_dir / "arrays_f1-8.npz"
    if cache.is_file():
        z = np.load(cache)
        assert z["ecg_ids"].tolist() == all_ids
        x_all, x34_all = z["full"], z["x3x4"]
    else:
        x_all = load_ptbxl_arrays(ds, all_ids, spec, progress=progress)
        x34_all = load_ptbxl_arrays(ds, all_ids, spec, layout="3x4", progress=progress)
        np.savez(cache, ecg_ids=np.array(all_ids), full=x_all, x3x4=x34_all)
    pos = {i: k for k, i in enumerate(all_ids)}
    written = []
    for si, (tr, va) in enumerate(splits):
        if split_index is not None and si != split_index:
            continue
        tr_ids = [i for i in all_ids if ds.folds[i] in tr]
        va_ids = [i for i in all_ids if ds.folds[i] in va]
        tr_k, va_k = [pos[i] for i in tr_ids], [pos[i] for i in va_ids]
        for name, kw in variants.items():
            kw = dict(kw)
            text_mode = kw.pop("text_mode", DEFAULT_TEXT_MODE)
            cfg = replace(DEFAULT_RECIPE, threads=threads, **kw)
            texts = PTBXLTexts(ds, tr_ids, text_mode)

            def ev(model, epoch, name=name, si=si, va_ids=va_ids, va_k=va_k):
                if epoch not in eval_epochs:
                    return {}
                res = {}
                arrays = {"ecg_ids": np.array(va_ids)}
                for inp, xs in (("full", x_all), ("3x4", x34_all)):
                    for (task, style), sc in zero_shot_scores(model, xs[va_k], prompt_sets).items():
                        arrays[f"{task}_{style}_{inp}"] = sc
                f = out_dir / f"{name}_s{si}_e{epoch}.npz"
                np.savez(f, **arrays)
                written.append(f)
                res["scores_file"] = str(f)
                return res

            t0 = time.time()
            _, hist = train_contrastive(x_all[tr_k], texts if texts.sampled else
                                        [texts.fixed(k) for k in range(len(tr_ids))], cfg, eval_fn=ev,
                                        eval_every=int(np.gcd.reduce(list(eval_epochs))),
                                        signals_3x4=x34_all[tr_k])
            (out_dir / f"{name}_s{si}_history.json").write_text(json.dumps(
                {"variant": name, "split": si, "train_folds": tr, "heldout_folds": va, "text_mode": text_mode,
                 "config": cfg.to_dict(), "history": hist, "seconds": round(time.time() - t0, 1)}, default=str))
            logger.info("cv %s split %d done in %.0f s", name, si, time.time() - t0)
    return written


def _cache_classes(cache) -> list[dict]:
    out = []
    for rec in cache.records():
        cp = rec.get("class_prompts", rec)
        out.append(cp)
    return out


def _default_recipe():
    from medzs.train import TrainConfig

    # Text mode chosen by cross-validation inside folds 1-8 (benchmarks/ecg_cv.py; docs/model-card.md); 4 epochs is
    # the compute budget of the shared 2-core machine (not a CV choice: see docs/model-card.md).
    return TrainConfig(base_model="ecg-resnet18.random", epochs=4, batch_size=32, lr=1e-3, text_lr=2e-5,
                       trainable_text_layers=1, shared_positives=True, augment=True, lead_dropout=0.25,
                       layout_3x4=0.25, seed=0, threads=2, deterministic=True)


DEFAULT_RECIPE = _default_recipe()
DEFAULT_TEXT_MODE = "kb"


def main(argv: list[str] | None = None) -> dict:
    """``python -m medzs.recipes [--data ROOT] [--out PATH] [--replace-default] ...``: :func:`train_ecg` from a shell
    (the same arguments ``medzs train ecg`` takes)."""
    import argparse
    import os

    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        os.environ.setdefault(k, v)
    ap = argparse.ArgumentParser(prog="python -m medzs.recipes", description="Train the embedded ECG model.")
    ap.add_argument("--data", default=None, help="PTB-XL root (default: ptbxl2k/ptbxl500 next to the checkout)")
    ap.add_argument("--out", default=None, help="checkpoint path (default: a new file under $MEDZS_HOME/models)")
    ap.add_argument("--replace-default", action="store_true", help="write the shipped medzs/weights checkpoint")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--text-mode", default=None, choices=TEXT_MODES)
    ap.add_argument("--max-records", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    card = train_ecg(args.data, args.out, replace_default=args.replace_default, epochs=args.epochs, seed=args.seed,
                     threads=args.threads, text_mode=args.text_mode, max_records=args.max_records, progress=False)
    print(json.dumps({k: card[k] for k in ("weights", "sha256", "n_train", "seconds", "text_mode")}))  # noqa: T201 - CLI output
    return card


if __name__ == "__main__":
    main()
