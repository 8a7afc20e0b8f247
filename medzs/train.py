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
        seed: Seed of initialisation, batching and augmentation.
        threads: torch CPU threads.
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
    seed: int = 0
    threads: int = 2
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


def _augment(x, rng):
    import torch

    b, _, n = x.shape
    scale = torch.from_numpy(rng.uniform(0.8, 1.2, size=(b, 1, 1)).astype(np.float32))
    noise = torch.from_numpy(rng.normal(0, 0.05, size=x.shape).astype(np.float32))
    shifts = rng.integers(-n // 10, n // 10 + 1, size=b)
    out = torch.stack([torch.roll(xi, int(s), dims=-1) for xi, s in zip(x, shifts)])
    return out * scale + noise


def train_contrastive(
    signals: np.ndarray,
    texts: Sequence[str],
    config: TrainConfig,
    eval_fn: Callable[[object, int], dict] | None = None,
    eval_every: int = 0,
    progress: bool = False,
):
    """Train an ECG-text model on paired data.

    Args:
        signals: ``(N, leads, samples)`` float32, already preprocessed to the base model's InputSpec.
        texts: N training texts (one per ECG).
        config: Hyper-parameters.
        eval_fn: Optional ``fn(model, epoch) -> dict`` called every ``eval_every`` epochs (on held-out
            *training-fold* data only).
        eval_every: Period of ``eval_fn`` in epochs (0 = only at the end).
        progress: Show a tqdm bar.

    Returns:
        ``(model, history)``: the trained model (eval mode, ``.config`` set) and a list of per-epoch dicts.
    """
    import torch

    from medzs import registry

    torch.set_num_threads(config.threads)
    base = registry.get_config(config.base_model)
    spec = base.input_spec
    if signals.ndim != 3 or signals.shape[1:] != spec.shape:
        raise ValueError(f"train_contrastive: signals must be (N, {spec.shape[0]}, {spec.shape[1]}) for "
                         f"{config.base_model}, got {signals.shape}")
    if len(texts) != len(signals):
        raise ValueError(f"train_contrastive: {len(signals)} signals but {len(texts)} texts")
    from dataclasses import replace

    cfg = replace(base, trainable_text_layers=config.trainable_text_layers, weights=None)
    model = registry.build_model(cfg, seed=config.seed)
    model.config = cfg
    uniq = sorted(set(texts))
    text_index = {t: i for i, t in enumerate(uniq)}
    ids = np.array([text_index[t] for t in texts])
    lm_params = [p for p in model.text.lm_model.parameters() if p.requires_grad]
    other = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("text.lm_model.")]
    opt = torch.optim.AdamW([{"params": other, "lr": config.lr},
                             {"params": lm_params, "lr": config.text_lr}], weight_decay=config.weight_decay)
    steps_per_epoch = int(np.ceil(len(signals) / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[config.lr, config.text_lr],
                                                total_steps=config.epochs * steps_per_epoch, pct_start=0.1)
    rng = np.random.default_rng(config.seed)
    x_all = torch.from_numpy(np.ascontiguousarray(signals, dtype=np.float32))
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
            if config.augment:
                x = _augment(x, rng)
            batch_ids = torch.from_numpy(ids[idx])
            # embed each unique text of the batch once
            u, inv = torch.unique(batch_ids, return_inverse=True)
            t_emb = model.encode_text([uniq[i] for i in u.tolist()])[inv]
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
