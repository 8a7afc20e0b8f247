"""Contrastive (CLIP-loss) training of an ECG tower against a (mostly frozen) text tower.

The recipe follows CLIP (Radford et al., ICML 2021, arXiv:2103.00020) and MERL (Liu et al., ICML 2024,
arXiv:2403.06659) with two changes that suit small, label-like report texts: *shared positives* (records
whose texts are identical are positives for each other, SupCLIP-style soft targets) and training only the
last layer(s) of the text encoder. Every design choice is made by cross-validation inside the training folds
(:func:`cross_validate`); the reported folds are never used for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_contrastive`.

    Attributes:
        base_model: Registry name whose architecture and InputSpec are trained.
        epochs: Passes over the training pairs.
        batch_size: Pairs per step.
        lr: AdamW learning rate of the ECG tower and projections.
        text_lr: Learning rate of the trainable text-encoder layers.
        weight_decay: AdamW weight decay.
        trainable_text_layers: Last text-encoder layers that train (0 = frozen).
        shared_positives: Treat identical texts in a batch as positives for each other.
        augment: Random amplitude scaling, Gaussian noise and time shift of the (normalised) ECG.
        lead_dropout: Probability that a training ECG loses a random subset of its leads (zero-filled, as
            :func:`medzs.transforms.ecg.preprocess` fills missing leads for a spec with ``accepts_masked``); the
            kept set is one of lead I, the six limb leads, the six precordial leads, or a random 1-11 leads.
        layout_3x4: Probability that a training ECG is shown in the 3x4 printout layout (each lead only in its
            2.5 s column, lead II whole; :func:`medzs.transforms.ecg.layout_mask`).
        seed: Seed of initialisation, batching, text sampling and augmentation.
        threads: torch CPU threads (results are bit-identical only for the same torch build and thread count).
        deterministic: ``torch.use_deterministic_algorithms(True)`` during training.
    """

    base_model: str = "ecg-resnet18.random"
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    text_lr: float = 2e-5
    weight_decay: float = 1e-4
    trainable_text_layers: int = 1
    shared_positives: bool = True
    augment: bool = True
    lead_dropout: float = 0.0
    layout_3x4: float = 0.0
    seed: int = 0
    threads: int = 2
    deterministic: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def soft_clip_loss(ecg_emb, text_emb, logit_scale, text_ids=None):
    """Symmetric InfoNCE; with ``text_ids``, identical texts are positives for each other.

    Args:
        ecg_emb: ``(B, D)`` L2-normalised ECG embeddings.
        text_emb: ``(B, D)`` L2-normalised text embeddings (row i pairs with ECG i).
        logit_scale: log of the inverse temperature (a scalar tensor).
        text_ids: ``(B,)`` integer id of each row's text, or None for the plain CLIP diagonal target.

    Returns:
        Scalar loss tensor.
    """
    import torch
    import torch.nn.functional as F

    logits = logit_scale.exp().clamp(max=100) * ecg_emb @ text_emb.t()
    if text_ids is None:
        target = torch.eye(len(ecg_emb), device=ecg_emb.device)
    else:
        target = (text_ids[:, None] == text_ids[None, :]).float()
    target = target / target.sum(1, keepdim=True)
    loss_e = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(target * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (loss_e + loss_t) / 2


#: Lead subsets (indices in the standard 12-lead order) that lead dropout keeps besides random ones:
#: lead I, the six limb leads, the six precordial leads.
LEAD_SUBSETS: tuple[tuple[int, ...], ...] = ((0,), (0, 1, 2, 3, 4, 5), (6, 7, 8, 9, 10, 11))


def _renorm_kept(x, keep):
    """Re-z-score each lead over its kept samples (as preprocessing does for a partial lead); 0 elsewhere."""
    import torch

    keep = keep.to(x.dtype)
    n = keep.sum(-1, keepdim=True).clamp(min=1)
    mean = (x * keep).sum(-1, keepdim=True) / n
    var = (((x - mean) * keep) ** 2).sum(-1, keepdim=True) / n
    std = torch.where(var.sqrt() < 1e-8, torch.ones_like(var), var.sqrt())
    return (x - mean) / std * keep


def mask_batch(x, rng, lead_dropout: float = 0.0, layout_3x4: float = 0.0, x_3x4=None):
    """Training-time masking of preprocessed ECGs ``(B, 12, S)`` (standard lead order, per-lead z-scored).

    Each ECG is, with probability ``layout_3x4``, replaced by its 3x4-layout version (``x_3x4`` rows when given,
    preprocessed with ``layout="3x4"``; else approximated by masking and re-z-scoring each column), otherwise,
    with probability ``lead_dropout``, reduced to a subset of its leads (zero-filled; see :data:`LEAD_SUBSETS`).

    Returns:
        ``(x, present)``: the masked batch and a bool ``(B, 12, S)`` tensor of present samples.
    """
    import torch

    from medzs.spec import STANDARD_12_LEADS
    from medzs.transforms.ecg import layout_mask

    b, n_leads, n = x.shape
    x = x.clone()
    present = torch.ones_like(x, dtype=torch.bool)
    u = rng.random((b, 2))
    m34 = None
    for i in range(b):
        if u[i, 0] < layout_3x4 and n_leads == 12:
            if m34 is None:
                m34 = torch.from_numpy(layout_mask(STANDARD_12_LEADS, n, "3x4"))
            if x_3x4 is not None:
                x[i] = x_3x4[i]
            else:
                x[i] = _renorm_kept(x[i], m34)
            present[i] = m34
        elif u[i, 1] < lead_dropout:
            choice = rng.integers(len(LEAD_SUBSETS) + 1)
            if choice < len(LEAD_SUBSETS) and n_leads == 12:
                kept = list(LEAD_SUBSETS[choice])
            else:
                kept = sorted(rng.choice(n_leads, size=int(rng.integers(1, n_leads)), replace=False).tolist())
            drop = torch.ones(n_leads, dtype=torch.bool)
            drop[kept] = False
            x[i, drop] = 0.0
            present[i, drop] = False
    return x, present


def _augment(x, rng, present=None):
    """Amplitude x U(0.8, 1.2), Gaussian noise (sigma 0.05, only on present samples), circular shift <= 10 %."""
    import torch

    b, _, n = x.shape
    scale = torch.from_numpy(rng.uniform(0.8, 1.2, size=(b, 1, 1)).astype(np.float32))
    noise = torch.from_numpy(rng.normal(0, 0.05, size=x.shape).astype(np.float32))
    if present is not None:
        noise = noise * present
    shifts = rng.integers(-n // 10, n // 10 + 1, size=b)
    out = torch.stack([torch.roll(xi, int(s), dims=-1) for xi, s in zip(x, shifts)])
    noise = torch.stack([torch.roll(ni, int(s), dims=-1) for ni, s in zip(noise, shifts)]) if present is not None \
        else noise
    return out * scale + noise


def train_contrastive(
    signals: np.ndarray,
    texts: Sequence[str] | Callable[[int, np.random.Generator], str],
    config: TrainConfig,
    eval_fn: Callable[[object, int], dict] | None = None,
    eval_every: int = 0,
    progress: bool = False,
    signals_3x4: np.ndarray | None = None,
):
    """Train an ECG-text model on paired data.

    Args:
        signals: ``(N, leads, samples)`` float32, already preprocessed to the base model's InputSpec.
        texts: N training texts (one per ECG), or ``fn(i, rng) -> str`` that samples a text for ECG ``i`` each
            time it is drawn (knowledge-grounded text, :func:`medzs.recipes.text_sampler`).
        config: Hyper-parameters.
        eval_fn: Optional ``fn(model, epoch) -> dict`` called every ``eval_every`` epochs (on held-out
            *training-fold* data only).
        eval_every: Period of ``eval_fn`` in epochs (0 = only at the end).
        progress: Show a tqdm bar.
        signals_3x4: Optional ``(N, leads, samples)`` 3x4-layout versions of ``signals`` for ``layout_3x4``.

    Returns:
        ``(model, history)``: the trained model (eval mode, ``.config`` set) and a list of per-epoch dicts.
    """
    import torch

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    prev_det = torch.are_deterministic_algorithms_enabled()
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(signals, texts, config, eval_fn, eval_every, progress, signals_3x4)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def _train(signals, texts, config, eval_fn, eval_every, progress, signals_3x4):
    import torch

    from medzs import registry

    base = registry.get_config(config.base_model)
    spec = base.input_spec
    if signals.ndim != 3 or signals.shape[1:] != spec.shape:
        raise ValueError(f"train_contrastive: signals must be (N, {spec.shape[0]}, {spec.shape[1]}) for "
                         f"{config.base_model}, got {signals.shape}")
    if not callable(texts) and len(texts) != len(signals):
        raise ValueError(f"train_contrastive: {len(signals)} signals but {len(texts)} texts")
    if signals_3x4 is not None and signals_3x4.shape != signals.shape:
        raise ValueError(f"train_contrastive: signals_3x4 {signals_3x4.shape} differs from signals {signals.shape}")
    from dataclasses import replace

    cfg = replace(base, trainable_text_layers=config.trainable_text_layers, weights=None)
    model = registry.build_model(cfg, seed=config.seed)
    model.config = cfg
    if callable(texts):
        text_fn = texts
    else:
        fixed = list(texts)

        def text_fn(i, rng, fixed=fixed):
            return fixed[i]
    text_rng = np.random.default_rng([config.seed, 1])
    lm_params = [p for p in model.text.lm_model.parameters() if p.requires_grad]
    other = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("text.lm_model.")]
    opt = torch.optim.AdamW([{"params": other, "lr": config.lr},
                             {"params": lm_params, "lr": config.text_lr}], weight_decay=config.weight_decay)
    steps_per_epoch = int(np.ceil(len(signals) / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[config.lr, config.text_lr],
                                                total_steps=config.epochs * steps_per_epoch, pct_start=0.1)
    rng = np.random.default_rng(config.seed)
    x_all = torch.from_numpy(np.ascontiguousarray(signals, dtype=np.float32))
    x34_all = None if signals_3x4 is None else torch.from_numpy(np.ascontiguousarray(signals_3x4, dtype=np.float32))
    history = []
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="train", unit="epoch")
    for epoch in epochs:
        model.train()
        model.text.lm_model.eval()  # no dropout in the (mostly frozen) text encoder
        order = rng.permutation(len(signals))
        t0, total = time.time(), 0.0
        for s in range(steps_per_epoch):
            idx = order[s * config.batch_size:(s + 1) * config.batch_size]
            if len(idx) < 2:
                continue
            x = x_all[idx]
            present = None
            if config.lead_dropout > 0 or config.layout_3x4 > 0:
                x, present = mask_batch(x, rng, config.lead_dropout, config.layout_3x4,
                                        None if x34_all is None else x34_all[idx])
            if config.augment:
                x = _augment(x, rng, present)
            batch_texts = [text_fn(int(i), text_rng) for i in idx]
            # embed each unique text of the batch once
            uniq = sorted(set(batch_texts))
            pos = {t: k for k, t in enumerate(uniq)}
            batch_ids = torch.tensor([pos[t] for t in batch_texts])
            t_emb = model.encode_text(uniq)[batch_ids]
            e_emb = model.encode_signal(x)
            loss = soft_clip_loss(e_emb, t_emb, model.logit_scale,
                                  batch_ids if config.shared_positives else None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        rec = {"epoch": epoch + 1, "loss": total / len(signals), "seconds": time.time() - t0}
        if eval_fn is not None and ((eval_every and (epoch + 1) % eval_every == 0) or epoch + 1 == config.epochs):
            model.eval()
            with torch.no_grad():
                rec.update(eval_fn(model, epoch + 1))
        history.append(rec)
        logger.info("epoch %d: %s", epoch + 1, {k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()})
    model.eval()
    return model, history


def embed_signals(model, signals: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Embed preprocessed signals ``(N, leads, samples)`` -> ``(N, D)`` normalised, in batches (no grad)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(signals), batch_size):
            out.append(model.encode_signal(torch.from_numpy(np.ascontiguousarray(signals[i:i + batch_size],
                                                                                 dtype=np.float32))).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.embed_dim), np.float32)
