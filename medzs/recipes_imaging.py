"""Training recipes of the embedded imaging defaults (`medzs train cxr`, `medzs train ct`) and their cross-validation.

Both follow the ECG default's contrastive recipe (:mod:`medzs.train`: CLIP loss with shared positives, AdamW with a
one-cycle schedule, MiniLM-L6 text tower with its last layer(s) trainable) on image-text pairs whose texts come from
the knowledge-base entries of each image's findings (name, synonyms, definition, criteria; ``knowledge/cxr``,
``knowledge/ct``): every step draws one sentence of the image's findings, and images with the same findings are
positives for each other.

- ``cxr-resnet10s.medzs-pneumonia``: paediatric chest radiographs of Kermany et al. (Cell 172:1122, 2018,
  doi:10.1016/j.cell.2018.02.010; CC BY 4.0), split by person id (:class:`medzs.data.imaging.KermanyDataset`).
- ``ctslice-resnet10s.medzs-covid``: UCSD COVID-CT slices (Yang et al., arXiv:2003.13865), split by
  ``source_group``.

The held-out part (``"test"`` of the adapters' group-hash split, :func:`medzs.data.imaging.group_split`) is never read for a choice: epochs
and text-layer training are chosen by group-disjoint cross-validation inside the training part
(:func:`cross_validate`), the held-out AUROC is measured once, after training, for the model card.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


# -- datasets as the recipes read them ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ImagingRecipeData:
    """What a recipe needs from one dataset adapter (:mod:`medzs.data.imaging`).

    Attributes:
        name: Dataset name (``kermany``, ``covid-ct``).
        root: Dataset folder.
        ids: Record ids (relative paths), in the adapter's order.
        paths: Absolute image paths.
        groups: Group (patient / source) of each image.
        split: ``"train"`` / ``"test"`` of each image (the adapter's group-hash split).
        findings: Findings-class index of each image (into ``finding_entries``).
        finding_entries: Per findings class, the knowledge-base ids whose sentences describe it.
        y: Task label (0/1) of each image (``pneumonia``, ``covid``).
        pos_entry: Knowledge-base id of the task's positive class (for zero-shot evaluation).
        neg_entry: Knowledge-base id of its negative prompt (normal / no pneumonia).
        modality: ``read_image`` modality (``cxr`` or ``ct``).
        citation: Data citation.
    """

    name: str
    root: Path
    ids: tuple[str, ...]
    paths: tuple[str, ...]
    groups: tuple[str, ...]
    split: tuple[str, ...]
    findings: np.ndarray
    finding_entries: tuple[tuple[str, ...], ...]
    y: np.ndarray
    pos_entry: str
    neg_entry: str
    modality: str
    citation: str


#: Kermany subtype -> knowledge-base entries of its findings.
KERMANY_FINDINGS = {
    "normal": ("cxr.chexpert.NoFinding",),
    "bacterial": ("cxr.pneumonia.Bacterial", "cxr.chexpert.Pneumonia"),
    "viral": ("cxr.pneumonia.Viral", "cxr.chexpert.Pneumonia"),
}
#: COVID-CT label -> knowledge-base entries of its findings (non-COVID slices: no COVID-19 pneumonia features).
COVID_CT_FINDINGS = {
    0: ("ct.covid.NegativeForPneumonia",),
    1: ("ct.covid.COVID19Pneumonia",),
}


def _from_adapter(ds, y: np.ndarray, findings: np.ndarray, entries, pos: str, neg: str) -> ImagingRecipeData:
    refs = ds.records("all")
    split = dict(zip(ds._ids, ds.split_of()))
    return ImagingRecipeData(
        name=ds.name, root=Path(ds.root), ids=tuple(r.id for r in refs), paths=tuple(r.path for r in refs),
        groups=tuple(str(r.group) for r in refs), split=tuple(split[r.id] for r in refs), findings=findings,
        finding_entries=tuple(entries), y=y, pos_entry=pos, neg_entry=neg, modality=ds.modality,
        citation=ds.citation)


def kermany_recipe_data(root: str | Path | None = None) -> ImagingRecipeData:
    """The Kermany adapter (:class:`medzs.data.imaging.KermanyDataset`: person groups, duplicates merged).

    Raises:
        SpecError: no Kermany layout under ``root``.
    """
    from medzs.data.imaging import KermanyDataset

    ds = KermanyDataset(Path(root) if root else None)
    lab = ds.labels(["pneumonia", "bacterial", "viral"]).loc[[r.id for r in ds.records("all")]]
    if lab.isna().any().any():
        raise ValueError(f"kermany {ds.root}: every image needs pneumonia/bacterial/viral labels for training")
    sub = np.where(lab["bacterial"].to_numpy() == 1, 1, np.where(lab["viral"].to_numpy() == 1, 2, 0))
    sub[(lab["pneumonia"].to_numpy() == 1) & (sub == 0)] = 1  # pneumonia of unknown type: bacterial texts
    return _from_adapter(ds, lab["pneumonia"].to_numpy().astype(int), sub,
                         [KERMANY_FINDINGS[k] for k in ("normal", "bacterial", "viral")],
                         "cxr.chexpert.Pneumonia", "cxr.chexpert.NoFinding")


def covid_ct_recipe_data(root: str | Path | None = None) -> ImagingRecipeData:
    """The COVID-CT slice adapter (:class:`medzs.data.imaging.CovidCTDataset`: groups = ``source_group``).

    Raises:
        SpecError: no COVID-CT layout under ``root``.
    """
    from medzs.data.imaging import CovidCTDataset

    ds = CovidCTDataset(Path(root) if root else None)
    lab = ds.labels(["covid"]).loc[[r.id for r in ds.records("all")]]
    if lab.isna().any().any():
        raise ValueError(f"covid-ct {ds.root}: every slice needs a covid label for training")
    y = lab["covid"].to_numpy().astype(int)
    return _from_adapter(ds, y, y.copy(), [COVID_CT_FINDINGS[0], COVID_CT_FINDINGS[1]],
                         "ct.covid.COVID19Pneumonia", "ct.covid.NegativeForPneumonia")


def split_indices(data: ImagingRecipeData) -> dict[str, list[int]]:
    """``{"train": [...], "test": [...]}`` indices from the adapter's group-hash split."""
    return {part: [i for i, s in enumerate(data.split) if s == part] for part in ("train", "test")}


# -- texts from the knowledge base ----------------------------------------------------------------------------------
def kb_sentences(entry_id: str) -> list[str]:
    """Training / prompt sentences of one knowledge-base entry: its name, synonyms, definition and criteria."""
    from medzs.knowledge.loader import knowledge_dir, load_entry

    modality = entry_id.split(".", 1)[0]
    e = load_entry(knowledge_dir() / modality / f"{entry_id}.yaml")
    out = [e.name, *e.synonyms, e.definition, *(c.text for c in e.criteria)]
    return [" ".join(s.split()) for s in out if s and s.strip()]


def finding_text_pools(data: ImagingRecipeData) -> list[list[str]]:
    """Per findings class, the pool of sentences drawn as its training texts."""
    pools = []
    for entries in data.finding_entries:
        pool: list[str] = []
        for eid in entries:
            pool.extend(s for s in kb_sentences(eid) if s not in pool)
        pools.append(pool)
    return pools


# -- images -------------------------------------------------------------------------------------------------------
def load_images(paths: Sequence[str], spec, modality: str = "cxr", progress: bool = False) -> np.ndarray:
    """Read and preprocess images as the engine does: ``(N, C, H, W)`` float16.

    Each file goes through :func:`medzs.io.image.read_image` and :func:`medzs.transforms.image.preprocess_image`.
    """
    from medzs.io.image import read_image
    from medzs.transforms.image import preprocess_image

    out = np.zeros((len(paths), spec.channels, *spec.size), np.float16)
    it = enumerate(paths)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(paths), desc="images", unit="img")
    for i, p in it:
        out[i] = preprocess_image(read_image(p, modality=modality), spec)
    return out


def _augment_images(x, rng):
    """Random affine (rotation +-7 deg, scale 0.9-1.1, shift +-6 %) and contrast/brightness jitter of a batch."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    ang = np.deg2rad(rng.uniform(-7, 7, b))
    sc = rng.uniform(0.9, 1.1, b)
    tx, ty = rng.uniform(-0.06, 0.06, b), rng.uniform(-0.06, 0.06, b)
    theta = np.zeros((b, 2, 3), np.float32)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = np.cos(ang) / sc, -np.sin(ang) / sc, tx
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = np.sin(ang) / sc, np.cos(ang) / sc, ty
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, (b, 1, 1, 1)).astype(np.float32))
    bias = torch.from_numpy(rng.uniform(-0.08, 0.08, (b, 1, 1, 1)).astype(np.float32))
    return x * gain + bias


# -- training -------------------------------------------------------------------------------------------------------
@dataclass
class ImageTrainConfig:
    """Hyper-parameters of :func:`train_image_text` (the ECG recipe's fields, for images).

    Attributes:
        base_model: Registry name whose architecture and InputSpec are trained (a ``.random`` config).
        epochs: Passes over the training images.
        batch_size: Images per step.
        lr: AdamW learning rate of the image tower and projections.
        text_lr: Learning rate of the trainable text-encoder layers.
        weight_decay: AdamW weight decay.
        trainable_text_layers: Last MiniLM layers that train (0 = frozen: the pooled MiniLM output of every
            sentence is computed once and only the text projection trains, which keeps a run within minutes on
            two CPU cores).
        augment: Random affine and intensity jitter.
        seed: Seed of initialisation, batching, text draws and augmentation.
        threads: torch CPU threads.
    """

    base_model: str = "cxr-resnet10s.random"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    text_lr: float = 2e-5
    weight_decay: float = 1e-4
    trainable_text_layers: int = 0
    augment: bool = True
    seed: int = 0
    threads: int = 2
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def train_image_text(images: np.ndarray, findings: np.ndarray, text_pools: Sequence[Sequence[str]],
                     config: ImageTrainConfig, eval_fn: Callable | None = None, progress: bool = False):
    """Contrastive training of an image tower against the MiniLM text tower on KB-sentence texts.

    Args:
        images: ``(N, C, H, W)`` preprocessed to the base model's InputSpec (float16 or float32).
        findings: ``(N,)`` findings-class index of each image.
        text_pools: Per findings class, the sentences one is drawn from at each step.
        config: Hyper-parameters.
        eval_fn: Optional ``fn(model, epoch) -> dict`` called after every epoch (held-out *training-part* data).
        progress: tqdm bar over epochs.

    Returns:
        ``(model, history)``.

    Raises:
        ValueError: images not of the base model's shape, or a findings index without sentences.
    """
    import torch

    from medzs import registry
    from medzs.train import soft_clip_loss

    torch.set_num_threads(config.threads)
    base = registry.get_config(config.base_model)
    shape = tuple(base.input_spec.shape)
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise ValueError(f"train_image_text: images must be (N, {', '.join(map(str, shape))}) for "
                         f"{config.base_model}, got {images.shape}")
    if len(findings) != len(images) or any(not text_pools[int(f)] for f in set(findings.tolist())):
        raise ValueError("train_image_text: one findings index per image, each with at least one sentence")
    cfg = replace(base, trainable_text_layers=config.trainable_text_layers, weights=None)
    model = registry.build_model(cfg, seed=config.seed)
    model.config = cfg
    lm_params = [p for p in model.text.lm_model.parameters() if p.requires_grad]
    other = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("text.lm_model.")]
    groups = [{"params": other, "lr": config.lr}]
    if lm_params:
        groups.append({"params": lm_params, "lr": config.text_lr})
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    steps = int(np.ceil(len(images) / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups],
                                                total_steps=max(1, config.epochs * steps), pct_start=0.15)
    rng = np.random.default_rng(config.seed)
    flat = [(f, s) for f, pool in enumerate(text_pools) for s in pool]
    sent_index = {fs: i for i, fs in enumerate(flat)}
    base_emb = None
    if not lm_params:  # frozen text encoder: its pooled output of every sentence is computed once
        with torch.no_grad():
            base_emb = model.text.encode_base([t for _, t in flat])
    history = []
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="train", unit="epoch")
    for epoch in epochs:
        model.train()
        model.text.lm_model.eval()
        order = rng.permutation(len(images))
        t0, total = time.time(), 0.0
        for s in range(steps):
            idx = np.sort(order[s * config.batch_size:(s + 1) * config.batch_size])
            if len(idx) < 2:
                continue
            x = torch.from_numpy(images[idx].astype(np.float32))
            if config.augment:
                x = _augment_images(x, rng)
            f = findings[idx]
            sent = [sent_index[(int(k), text_pools[int(k)][rng.integers(len(text_pools[int(k)]))])] for k in f]
            u, inv = np.unique(sent, return_inverse=True)
            if base_emb is None:
                t_emb = model.encode_text([flat[i][1] for i in u])
            else:
                t_emb = torch.nn.functional.normalize(model.text.proj_t(base_emb[torch.from_numpy(u)]), dim=-1)
            t_emb = t_emb[torch.from_numpy(inv.reshape(-1))]
            i_emb = model.encode_image(x)
            loss = soft_clip_loss(i_emb, t_emb, model.logit_scale, torch.from_numpy(f.astype(np.int64)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        rec = {"epoch": epoch + 1, "loss": total / len(images), "seconds": round(time.time() - t0, 1)}
        if eval_fn is not None:
            model.eval()
            with torch.no_grad():
                rec.update(eval_fn(model, epoch + 1))
        history.append(rec)
        logger.info("epoch %d: %s", epoch + 1, rec)
    model.eval()
    return model, history


def embed_images(model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, D)`` normalised embeddings (no grad, eval mode; :func:`medzs.train.embed_signals`)."""
    from medzs.train import embed_signals

    return embed_signals(model, images, batch_size=batch_size)


#: Prompt styles of the zero-shot evaluation: the entry's name only, or all its KB sentences (averaged).
PROMPT_STYLES = ("names", "kb")


def zero_shot_scores(model, emb: np.ndarray, pos_entry: str, neg_entry: str) -> dict[str, np.ndarray]:
    """Pos/neg zero-shot score per image and prompt style: ``cos(img, pos) - cos(img, neg)``.

    The pair's softmax (CheXzero-style) is a monotone function of this difference, so its AUROC is the same.
    """
    import torch

    from medzs.scoring import class_embeddings

    out = {}
    for style in PROMPT_STYLES:
        prompts = {}
        for key, eid in (("pos", pos_entry), ("neg", neg_entry)):
            sents = kb_sentences(eid)
            prompts[key] = sents[:1] if style == "names" else sents
        with torch.no_grad():
            c = class_embeddings(lambda t: model.encode_text(list(t)), prompts)
        c = np.asarray(c)
        s = emb @ c.T
        out[style] = s[:, 0] - s[:, 1]
    return out


def cross_validate(data: ImagingRecipeData, base_recipe: ImageTrainConfig, variants: dict[str, dict],
                   k: int = 3, folds: Sequence[int] = (0, 1), images: np.ndarray | None = None,
                   progress: bool = False) -> list[dict]:
    """Zero-shot AUROC of recipe variants on group-disjoint folds of the *training part* (held-out part never read).

    Args:
        data: Recipe data.
        base_recipe: Recipe the variants modify.
        variants: ``{name: {TrainConfig field: value}}``.
        k: Number of group folds of the training part.
        folds: Which folds to validate on (each trains on the others).
        images: Preprocessed images of all of ``data`` (loaded when None).

    Returns:
        One row per (variant, fold, epoch, prompt style) with ``auroc`` and ``n_pos``.
    """
    from sklearn.metrics import roc_auc_score

    from medzs import registry
    from medzs.data.imaging import group_kfold

    train_idx = np.array(split_indices(data)["train"])
    spec = registry.get_config(base_recipe.base_model).input_spec
    if images is None:
        images = load_images([data.paths[i] for i in train_idx], spec, data.modality, progress)
        pos_of = {int(i): j for j, i in enumerate(train_idx)}
    else:
        pos_of = {int(i): int(i) for i in train_idx}
    pools = finding_text_pools(data)
    rows = []
    groups = [data.groups[i] for i in train_idx]
    fold_of = np.array(group_kfold(groups, k))
    cv = [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]
    for name, kw in variants.items():
        cfg = replace(base_recipe, **kw)
        for f in folds:
            tr, va = cv[f]
            tr_rows = [pos_of[int(train_idx[i])] for i in tr]
            va_rows = [pos_of[int(train_idx[i])] for i in va]
            y_va = data.y[train_idx[va]]

            def ev(model, epoch, va_rows=va_rows, y_va=y_va):
                s = zero_shot_scores(model, embed_images(model, images[va_rows]), data.pos_entry, data.neg_entry)
                return {f"auroc_{st}": float(roc_auc_score(y_va, v)) for st, v in s.items()}

            _, hist = train_image_text(images[tr_rows], data.findings[train_idx[tr]], pools, cfg, eval_fn=ev)
            for h in hist:
                for st in PROMPT_STYLES:
                    rows.append({"variant": name, "fold": f, "epoch": h["epoch"], "prompts": st,
                                 "auroc": h[f"auroc_{st}"], "n_val": len(va), "n_pos": int(y_va.sum()),
                                 "seconds": h["seconds"]})
                logger.info("cv %s fold %d epoch %d: %s", name, f, h["epoch"],
                            {st: round(h[f"auroc_{st}"], 4) for st in PROMPT_STYLES})
    return rows


def choose_from_cv(rows: list[dict], prompts: str = "kb") -> dict:
    """The variant and epoch count with the best mean fold AUROC for one prompt style (ties: fewer epochs)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    df = df[df["prompts"] == prompts]
    mean = df.groupby(["variant", "epoch"])["auroc"].mean().reset_index()
    mean = mean.sort_values(["auroc", "epoch"], ascending=[False, True])
    best = mean.iloc[0]
    return {"variant": str(best["variant"]), "epochs": int(best["epoch"]), "cv_mean_auroc": float(best["auroc"]),
            "prompts": prompts}


# -- the embedded defaults -------------------------------------------------------------------------------------
def _default_out(name: str) -> Path:
    return Path.cwd() / "runs" / "train" / f"{name}.pt"


def train_default(kind: str, out: str | Path | None = None, root: str | Path | None = None,
                  epochs: int | None = None, seed: int = 0, max_images: int | None = None,
                  cv_rows: list[dict] | None = None, progress: bool = True) -> dict:
    """Train an embedded imaging default on the training part and write the checkpoint and its model card.

    Args:
        kind: ``"cxr"`` (Kermany pneumonia) or ``"ct"`` (COVID-CT slices).
        out: Checkpoint path (default ``./runs/train/<model>.pt``; the shipped ``medzs/weights`` file is only
            replaced when given explicitly).
        root: Dataset folder (default: the shared mirror next to the checkout).
        epochs: Override the recipe's epochs (smoke runs).
        seed: Seed.
        max_images: Use only the first N training images (smoke runs).
        cv_rows: Cross-validation rows to record in the card (from :func:`cross_validate`).
        progress: Progress bars.

    Returns:
        The model card dict (also written next to the checkpoint as ``.json``).
    """
    import torch

    from medzs import __version__, registry
    from medzs.metrics import evaluate

    name, recipe, data = _recipe(kind, root)
    t0 = time.time()
    recipe = replace(recipe, seed=seed, **({"epochs": epochs} if epochs is not None else {}))
    out = Path(out) if out else _default_out(name)
    spec = registry.get_config(recipe.base_model).input_spec
    parts = split_indices(data)
    tr = parts["train"][:max_images] if max_images else parts["train"]
    te = parts["test"][:max_images] if max_images else parts["test"]
    x_tr = load_images([data.paths[i] for i in tr], spec, data.modality, progress)
    model, history = train_image_text(x_tr, data.findings[tr], finding_text_pools(data), recipe, progress=progress)
    t_train = time.time() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.shipped_state_dict().items()}
    tmp = out.with_suffix(".tmp")
    torch.save({"state_dict": state, "format": "medzs-image-clip-v1", "base_text_model": model.config.text_model}, tmp)
    tmp.replace(out)
    # held-out evaluation, once, with the fp16 weights as shipped
    shipped = registry.create_model(name, weights=out, sha256=registry.sha256_file(out))
    x_te = load_images([data.paths[i] for i in te], spec, data.modality, progress)
    scores = zero_shot_scores(shipped, embed_images(shipped, x_te), data.pos_entry, data.neg_entry)
    held = {}
    for style, s in scores.items():
        table, _ = evaluate(data.y[te][:, None].astype(float), s[:, None], [data.pos_entry], n_boot=1000, seed=0)
        row = table.iloc[0]
        held[style] = {k: (float(row[k]) if k in ("auroc", "ci_low", "ci_high") else int(row[k]))
                       for k in ("auroc", "ci_low", "ci_high", "n_pos", "n_neg", "n")}
    split_info = {
        part: {"images": len(idx), "positives": int(data.y[idx].sum()),
               "groups": len({data.groups[i] for i in idx})}
        for part, idx in (("train", tr), ("test", te))
    }
    card = {
        "weights": out.name,
        "sha256": registry.sha256_file(out),
        "bytes": out.stat().st_size,
        "model": name,
        "architecture": model.config.to_dict(),
        "recipe": recipe.to_dict(),
        "texts": {"findings": {str(i): list(e) for i, e in enumerate(data.finding_entries)},
                  "source": "knowledge-base sentences: name, synonyms, definition, criteria"},
        "data": {"dataset": data.name, "citation": data.citation, "root": str(data.root),
                 "split": "group-disjoint 'train'/'test' of the dataset adapter (medzs.data.imaging.group_split: "
                          "a group is test when hash_unit(group, seed=0) < 0.2)", "parts": split_info},
        "cross_validation": cv_rows or [],
        "heldout": {"task_positive": data.pos_entry, "negative_prompt": data.neg_entry,
                    "scoring": "cos(img, pos) - cos(img, neg) (same AUROC as the softmax over the pair)",
                    "auroc": held},
        "history": history,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "medzs_version": __version__,
        "torch_version": torch.__version__,
        "train_seconds": round(t_train, 1),
        "seconds": round(time.time() - t0, 1),
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=1, default=str) + "\n")
    return card


def train_cxr_default(out: str | Path | None = None, root: str | Path | None = None, **kw) -> dict:
    """`medzs train cxr`: the chest-radiograph default on the Kermany training part (see :func:`train_default`)."""
    return train_default("cxr", out=out, root=root, **kw)


def train_ct_default(out: str | Path | None = None, root: str | Path | None = None, **kw) -> dict:
    """`medzs train ct`: the CT-slice default on the COVID-CT training part (see :func:`train_default`)."""
    return train_default("ct", out=out, root=root, **kw)


def _recipe(kind: str, root) -> tuple[str, ImageTrainConfig, ImagingRecipeData]:
    if kind == "cxr":
        return "cxr-resnet10s.medzs-pneumonia", CXR_RECIPE, kermany_recipe_data(root)
    if kind == "ct":
        return "ctslice-resnet10s.medzs-covid", CT_RECIPE, covid_ct_recipe_data(root)
    raise ValueError(f"train_default: kind must be 'cxr' or 'ct', got {kind!r}")


# Chosen by cross_validate inside the training parts (benchmarks/imaging_recipe_cv.py; docs/model-card-imaging.md).
CXR_RECIPE = ImageTrainConfig(base_model="cxr-resnet10s.random", epochs=4, batch_size=64, lr=2e-3,
                              trainable_text_layers=0, augment=True)
CT_RECIPE = ImageTrainConfig(base_model="ctslice-resnet10s.random", epochs=8, batch_size=32, lr=2e-3,
                             trainable_text_layers=0, augment=True)
