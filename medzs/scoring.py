"""Zero-shot scoring: class embeddings from prompts, cosine similarity with signal embeddings.

A class embedding is the L2-normalised mean of its (L2-normalised) prompt embeddings — prompt ensembling as
in CLIP (Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021,
arXiv:2103.00020) and MERL (Liu et al., ICML 2024, arXiv:2403.06659). Scores are cosine similarities,
optionally turned into per-record probabilities by a temperature softmax over classes.

Pure numpy; torch tensors are accepted (converted with ``.detach().cpu().numpy()``) without importing torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from medzs.errors import PromptError

logger = logging.getLogger(__name__)

__all__ = ["class_embeddings", "l2_normalize", "similarity", "to_numpy"]

#: Default softmax temperature (CLIP's initial value, arXiv:2103.00020).
DEFAULT_TEMPERATURE = 0.07


def to_numpy(x: Any) -> np.ndarray:
    """Convert a numpy array, a torch tensor (any device, with grad) or a nested list to a float64 array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if hasattr(x, "float"):
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


def l2_normalize(x: Any, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """L2-normalise along ``axis``.

    Raises:
        ValueError: a vector has (near) zero norm or non-finite values.
    """
    a = to_numpy(x)
    if not np.all(np.isfinite(a)):
        raise ValueError("embeddings: expected finite values, got NaN or inf")
    norm = np.linalg.norm(a, axis=axis, keepdims=True)
    if np.any(norm < eps):
        raise ValueError(f"embeddings: expected non-zero vectors, got {int(np.sum(norm < eps))} with zero norm")
    return a / norm


def _encoder(encode_text: Any) -> Callable[[list[str]], Any]:
    fn = getattr(encode_text, "encode_text", encode_text)
    if not callable(fn):
        raise TypeError(f"encode_text: expected a callable or a model with .encode_text, got {type(encode_text)}")
    return fn


def class_embeddings(encode_text: Any, class_prompts: Sequence[Any] | Mapping[str, Any]) -> np.ndarray:
    """Embed the prompts of every class and average them per class.

    All distinct prompt texts are encoded in one call; each prompt embedding is L2-normalised, averaged
    over the class's prompts, and the mean is L2-normalised again.

    Args:
        encode_text: ``encode_text(texts: list[str]) -> (T, D)`` array or torch tensor, or a model with an
            ``encode_text`` method (:class:`medzs.registry` ``ZeroShotModel``).
        class_prompts: :class:`~medzs.prompts.types.ClassPrompts` objects (anything with ``.texts`` or
            ``.prompts``), as a sequence or a ``{class_code: ClassPrompts}`` mapping (values, in order); plain
            lists of strings are accepted too.

    Returns:
        ``(C, D)`` float64 array, rows unit-norm, in the order of ``class_prompts``.

    Raises:
        medzs.errors.PromptError: a class has no prompt.
        ValueError: the encoder returned a wrongly shaped or degenerate result.
    """
    fn = _encoder(encode_text)
    items = list(class_prompts.values()) if isinstance(class_prompts, Mapping) else list(class_prompts)
    if not items:
        raise ValueError("class_prompts: expected at least one class")
    per_class: list[list[str]] = []
    for i, cp in enumerate(items):
        if hasattr(cp, "texts"):
            texts = list(cp.texts)
        elif hasattr(cp, "prompts"):
            texts = [p.text for p in cp.prompts]
        else:
            texts = [str(t) for t in cp]
        texts = [t for t in texts if t and t.strip()]
        if not texts:
            code = getattr(cp, "class_code", f"#{i}")
            raise PromptError(f"class {code}: no prompt text to embed")
        per_class.append(texts)
    unique = list(dict.fromkeys(t for texts in per_class for t in texts))
    emb = to_numpy(fn(unique))
    if emb.ndim != 2 or emb.shape[0] != len(unique):
        raise ValueError(f"encode_text: expected shape ({len(unique)}, D), got {tuple(emb.shape)}")
    emb = l2_normalize(emb, axis=1)
    index = {t: i for i, t in enumerate(unique)}
    means = np.stack([emb[[index[t] for t in texts]].mean(axis=0) for texts in per_class])
    logger.debug("class embeddings: %d classes from %d distinct prompts, D=%d", len(items), len(unique),
                 emb.shape[1])
    return l2_normalize(means, axis=1)


def similarity(signal_emb: Any, class_emb: Any, softmax: bool = False,
               temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """Cosine similarity between record and class embeddings.

    Args:
        signal_emb: ``(N, D)`` record embeddings (normalised here).
        class_emb: ``(C, D)`` class embeddings (normalised here).
        softmax: Return ``softmax(cos / temperature)`` over classes (rows sum to 1) instead of cosines.
        temperature: Softmax temperature (> 0); unused without ``softmax``.

    Returns:
        ``(N, C)`` float64 scores: cosines in [-1, 1], or per-record class probabilities.

    Raises:
        ValueError: not 2-D, embedding sizes differ, zero vectors, or ``temperature <= 0``.
    """
    s = to_numpy(signal_emb)
    c = to_numpy(class_emb)
    if s.ndim != 2 or c.ndim != 2:
        raise ValueError(f"similarity: expected 2-D (N, D) and (C, D) arrays, got {s.shape} and {c.shape}")
    if s.shape[1] != c.shape[1]:
        raise ValueError(f"similarity: embedding sizes differ: signal D={s.shape[1]}, class D={c.shape[1]}")
    cos = l2_normalize(s, axis=1) @ l2_normalize(c, axis=1).T
    cos = np.clip(cos, -1.0, 1.0)
    if not softmax:
        return cos
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    z = cos / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
