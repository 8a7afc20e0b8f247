"""Every zero-shot scoring rule of medzs, in one module, chosen by name (:data:`METHODS`, :data:`FUSIONS`).

Rules:

- **cosine** (``method: cosine``): a class embedding is the L2-normalised mean of its (L2-normalised) prompt
  embeddings — prompt ensembling as in CLIP (Radford et al., ICML 2021, arXiv:2103.00020) and MERL (Liu et al.,
  ICML 2024, arXiv:2403.06659); a record's score is its cosine with each class embedding (:func:`similarity`).
- **softmax** over classes (``method: softmax``): ``softmax(cos / T)`` per record (rows sum to 1).
- **pos/neg pairs** (prompts written by the ``posneg`` writer): ``sigmoid((cos_pos - cos_neg) / T)`` per class,
  CheXzero style (Tiu et al., Nat Biomed Eng 2022, doi:10.1038/s41551-022-00936-9) (:func:`posneg_scores`).
- **CHiLS** (prompts written by the ``chils`` writer): max over a class's subclass members (Novack et al., ICML 2023,
  arXiv:2302.02551) (:func:`map_max`).
- **criteria**: the knowledge-base criteria scorer's probability-like scores (:mod:`medzs.criteria` measures and
  checks; its per-class scores enter here only through fusion).
- **fusion** of an embedding model with the criteria scorer: ``per-record`` (:func:`fuse_per_record`, a weighted
  mean on [0, 1]; streaming-safe) or ``rank-average`` (:func:`fuse_rank_average`, within one run).

:class:`ClassScorer` prepares the class side once (text encoded once) so that a stream of record embeddings is
scored batch by batch with the same result as all at once.

Pure numpy; torch tensors are accepted (converted with ``.detach().cpu().numpy()``) without importing torch. This
module imports no other medzs module but :mod:`medzs.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from medzs.errors import PromptError, SpecError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TEMPERATURE", "FUSIONS", "METHODS", "POSNEG_TEMPERATURE", "ClassScorer", "class_embeddings",
    "fuse", "fuse_per_record", "fuse_rank_average", "fusion_inputs", "l2_normalize", "map_max", "posneg_scores",
    "prompts_kind", "score_prompts", "similarity", "softmax_rows", "to_numpy",
]

#: Default softmax temperature (CLIP's initial value, arXiv:2103.00020).
DEFAULT_TEMPERATURE = 0.07
#: Softmax temperature of a pos/neg pair (CLIP's initial value).
POSNEG_TEMPERATURE = 0.07
#: Scoring methods a pipeline (``scoring.method``) or ``--scoring`` names. ``cosine``/``softmax`` apply to plain
#: and CHiLS prompts; pos/neg prompts always give per-class pair probabilities.
METHODS: tuple[str, ...] = ("cosine", "softmax")
#: Fusions of an embedding model with a registered scorer (``scoring.fusion``).
FUSIONS: tuple[str, ...] = ("per-record", "rank-average")


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


def softmax_rows(scores: Any, temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """Row-wise ``softmax(scores / temperature)``.

    Raises:
        ValueError: ``temperature <= 0``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    z = to_numpy(scores) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def map_max(member_scores: Any, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Class scores as the maximum over member scores.

    Args:
        member_scores: ``(N, S)`` scores of the members.
        groups: For each class, the column indices of its members.

    Returns:
        ``(N, C)`` with ``out[:, c] = max(member_scores[:, groups[c]], axis=1)``.

    Raises:
        ValueError: not 2-D, an empty group, or an index out of range.
    """
    s = np.asarray(member_scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"member_scores: expected a 2-D (N, S) array, got shape {s.shape}")
    cols = []
    for c, g in enumerate(groups):
        g = [int(i) for i in g]
        if not g:
            raise ValueError(f"groups[{c}]: expected at least one member")
        if min(g) < 0 or max(g) >= s.shape[1]:
            raise ValueError(f"groups[{c}]: member index out of range 0..{s.shape[1] - 1}: {g}")
        cols.append(s[:, g].max(axis=1))
    return np.stack(cols, axis=1) if cols else np.zeros((s.shape[0], 0))


def posneg_scores(cos_pos: Any, cos_neg: Any, temperature: float = POSNEG_TEMPERATURE) -> np.ndarray:
    """Pairwise softmax of positive vs negative similarity: ``sigmoid((cos_pos - cos_neg) / temperature)``.

    Raises:
        ValueError: shapes differ or ``temperature <= 0``.
    """
    p, n = np.asarray(cos_pos, dtype=np.float64), np.asarray(cos_neg, dtype=np.float64)
    if p.shape != n.shape:
        raise ValueError(f"posneg: positive and negative scores differ in shape: {p.shape} vs {n.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    z = (p - n) / float(temperature)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def score_prompts(encode_text: Any, signal_emb: Any, class_prompts: Sequence[Any] | Mapping[str, Any],
                  softmax: bool = False, temperature: float | None = None) -> np.ndarray:
    """Zero-shot scores of records for the classes, for plain, CHiLS-expanded or pos/neg class prompts.

    - plain :class:`~medzs.prompts.types.ClassPrompts`: :func:`medzs.scoring.class_embeddings` then
      :func:`medzs.scoring.similarity` (cosine, or a softmax over classes);
    - :class:`ExpandedClassPrompts`: cosine with every member's class embedding, max over each class's members
      (:func:`map_max`); with ``softmax`` the maxima are then soft-maxed over classes;
    - :class:`PosNegClassPrompts`: :func:`posneg_scores` of the positive and negative class embeddings.

    Args:
        encode_text: ``encode_text(texts) -> (T, D)`` or a model with ``encode_text``.
        signal_emb: ``(N, D)`` record embeddings.
        class_prompts: The classes' prompts, in task order (a sequence or a ``{code: ClassPrompts}`` mapping).
        softmax: Softmax over classes (not for pos/neg, whose scores are per-class probabilities already).
        temperature: Softmax temperature (default :data:`medzs.scoring.DEFAULT_TEMPERATURE`, or
            :data:`POSNEG_TEMPERATURE` for pos/neg).

    Returns:
        ``(N, C)`` float64 scores.

    Raises:
        medzs.errors.SpecError: classes of different kinds mixed, or ``softmax`` with pos/neg prompts.
        medzs.errors.PromptError: a class or member has no prompt.
    """
    return ClassScorer(encode_text, class_prompts, softmax=softmax, temperature=temperature)(signal_emb)


def prompts_kind(class_prompts: Sequence[Any] | Mapping[str, Any]) -> str:
    """``"plain"``, ``"posneg"`` (classes with ``negatives``) or ``"chils"`` (classes with ``members``).

    Raises:
        medzs.errors.SpecError: classes of different kinds mixed.
    """
    items = list(class_prompts.values()) if isinstance(class_prompts, Mapping) else list(class_prompts)
    kinds = {_kind(cp) for cp in items}
    if len(kinds) > 1:
        raise SpecError("score_prompts: expected all classes of one kind (plain, chils or posneg), got a mix")
    return next(iter(kinds), "plain")


def _kind(cp: Any) -> str:
    fields = getattr(type(cp), "__dataclass_fields__", {})  # duck typing: no import of medzs.prompts here
    if "members" in fields:
        return "chils"
    if "negatives" in fields:
        return "posneg"
    return "plain"


class ClassScorer:
    """A task's class side, prepared once: record embeddings ``(N, D)`` -> scores ``(N, C)``.

    The prompt kind picks the rule (:func:`prompts_kind`): plain prompts -> cosine with the class embeddings
    (:func:`class_embeddings`, :func:`similarity`), or a softmax over classes; pos/neg prompts ->
    :func:`posneg_scores`; CHiLS-expanded prompts -> max over each class's members (:func:`map_max`), optionally
    soft-maxed over classes. Text is encoded once, in the constructor, so a stream of batches costs one matrix
    product each and a record's score does not depend on its batch.

    Args:
        encode_text: ``encode_text(texts) -> (T, D)`` or a model with ``encode_text``.
        class_prompts: The classes' prompts in task order (sequence or ``{code: ClassPrompts}`` mapping).
        softmax: Softmax over classes (not for pos/neg).
        temperature: Softmax temperature (default :data:`DEFAULT_TEMPERATURE`; pos/neg:
            :data:`POSNEG_TEMPERATURE`).

    Raises:
        medzs.errors.SpecError: mixed kinds, or ``softmax`` with pos/neg prompts.
        medzs.errors.PromptError: a class or member has no prompt.
    """

    def __init__(self, encode_text: Any, class_prompts: Sequence[Any] | Mapping[str, Any], softmax: bool = False,
                 temperature: float | None = None) -> None:
        items = list(class_prompts.values()) if isinstance(class_prompts, Mapping) else list(class_prompts)
        self.kind = prompts_kind(items)
        self.softmax = bool(softmax)
        self.temperature = temperature
        self.groups: list[list[int]] | None = None
        self.negative_emb: np.ndarray | None = None
        if self.kind == "posneg":
            if softmax:
                raise SpecError("scoring.softmax: pos/neg scores are per-class probabilities; set softmax: false")
            for cp in items:
                if not cp.negatives:
                    raise PromptError(f"class {cp.class_code}: no negative prompt")
            self.class_emb = class_embeddings(encode_text, [cp.texts for cp in items])
            self.negative_emb = class_embeddings(encode_text, [[p.text for p in cp.negatives] for cp in items])
        elif self.kind == "chils":
            index: dict[tuple, int] = {}
            members: list[Any] = []
            groups: list[list[int]] = []
            for cp in items:
                if not cp.members:
                    raise PromptError(f"class {cp.class_code}: no CHiLS member")
                g = []
                for m in cp.members:
                    key = (m.entry_id, tuple(m.texts))
                    if key not in index:
                        index[key] = len(members)
                        members.append(m)
                    g.append(index[key])
                groups.append(g)
            self.class_emb = class_embeddings(encode_text, members)
            self.groups = groups
        else:
            self.class_emb = class_embeddings(encode_text, items)
        self.n_classes = len(items)

    def __call__(self, signal_emb: Any) -> np.ndarray:
        """``(N, D)`` record embeddings -> ``(N, C)`` float64 scores."""
        if self.kind == "posneg":
            assert self.negative_emb is not None
            return posneg_scores(similarity(signal_emb, self.class_emb), similarity(signal_emb, self.negative_emb),
                                 temperature=self.temperature or POSNEG_TEMPERATURE)
        if self.kind == "chils":
            assert self.groups is not None
            best = map_max(similarity(signal_emb, self.class_emb), self.groups)
            if not self.softmax:
                return best
            return softmax_rows(best, self.temperature or DEFAULT_TEMPERATURE)
        return similarity(signal_emb, self.class_emb, softmax=self.softmax,
                          **({"temperature": self.temperature} if self.temperature else {}))


# ------------------------------------------------------------------------------------------- fusion
def _ranks01(col: np.ndarray) -> np.ndarray:
    """Average ranks scaled to (0, 1]; NaN entries get the middle rank 0.5."""
    from scipy.stats import rankdata

    out = np.full(col.shape, 0.5)
    ok = np.isfinite(col)
    if ok.sum() > 0:
        out[ok] = rankdata(col[ok], method="average") / ok.sum()
    return out


def fusion_inputs(embedding_scores: Any, criteria_scores: Any, weight: float, who: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert the inputs of a hybrid fusion: two ``(N, C)`` float arrays and a weight in [0, 1].

    Raises:
        ValueError: shapes differ or weight outside [0, 1] (the message names ``who``).
    """
    if hasattr(embedding_scores, "detach"):
        embedding_scores = embedding_scores.detach().cpu().numpy()
    e = np.asarray(embedding_scores, dtype=np.float64)
    c = np.asarray(criteria_scores, dtype=np.float64)
    if e.shape != c.shape or e.ndim != 2:
        raise ValueError(f"{who}: expected two (N, C) arrays of one shape, got {e.shape} and {c.shape}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"{who}: weight must be in [0, 1], got {weight!r}")
    return e, c


def fuse_rank_average(embedding_scores: Any, criteria_scores: Any, weight: float = 0.5) -> np.ndarray:
    """Label-free hybrid: per class, ``(1 - weight) * rank(embedding) + weight * rank(criteria)``.

    Ranks are average ranks within the batch scaled to (0, 1]. A class whose criteria column is all NaN (not
    scorable) keeps the embedding ranks alone. The fused score depends on the batch it was computed in (it is a
    rank), so compare it within one run.

    Args:
        embedding_scores: ``(N, C)`` similarities (array or torch tensor).
        criteria_scores: ``(N, C)`` criteria scores, NaN columns for not-scorable classes.
        weight: Weight of the criteria ranks, 0-1.

    Raises:
        ValueError: shapes differ or weight outside [0, 1].
    """
    e, c = fusion_inputs(embedding_scores, criteria_scores, weight, "fuse_rank_average")
    out = np.empty_like(e)
    for j in range(e.shape[1]):
        re = _ranks01(e[:, j])
        if np.all(np.isnan(c[:, j])):
            out[:, j] = re
        else:
            out[:, j] = (1.0 - weight) * re + weight * _ranks01(c[:, j])
    return out


def fuse_per_record(embedding_scores: Any, criteria_scores: Any, softmax: bool = False,
                    weight: float = 0.5) -> np.ndarray:
    """Label-free hybrid for streaming: per record and class, a weighted mean of the two scores on [0, 1].

    ``(1 - weight) * e + weight * c``, with ``e`` the embedding score mapped to [0, 1] (cosine ``s`` -> ``(s + 1) / 2``;
    a softmax probability as is) and ``c`` the criteria score (a probability-like value in [0, 1]). Where ``c`` is
    NaN (a class the criteria cannot score) the fused score is ``e`` alone. Unlike
    :func:`medzs.criteria.fuse_rank_average` (ranks within a batch, used by ``medzs zeroshot``) it needs no other
    record, so a record's score does not depend on the batch, shard or engine it was scored in.

    Args:
        embedding_scores: ``(N, C)`` cosine similarities (or softmax probabilities with ``softmax=True``).
        criteria_scores: ``(N, C)`` criteria scores, NaN where not scorable.
        softmax: The embedding scores are probabilities (not mapped).
        weight: Weight of the criteria score, 0-1.

    Raises:
        ValueError: shapes differ or weight outside [0, 1].
    """
    e, c = fusion_inputs(embedding_scores, criteria_scores, weight, "fuse_per_record")
    e01 = e if softmax else (np.clip(e, -1.0, 1.0) + 1.0) / 2.0
    return np.where(np.isfinite(c), (1.0 - weight) * e01 + weight * c, e01)


def fuse(embedding_scores: Any, criteria_scores: Any, method: str, softmax: bool = False,
         weight: float = 0.5) -> np.ndarray:
    """Fuse by name: ``"per-record"`` (:func:`fuse_per_record`) or ``"rank-average"`` (:func:`fuse_rank_average`).

    Raises:
        SpecError: unknown method.
    """
    if method == "per-record":
        return fuse_per_record(embedding_scores, criteria_scores, softmax=softmax, weight=weight)
    if method == "rank-average":
        return fuse_rank_average(embedding_scores, criteria_scores, weight=weight)
    raise SpecError(f"scoring.fusion: expected one of {FUSIONS}, got {method!r}")
