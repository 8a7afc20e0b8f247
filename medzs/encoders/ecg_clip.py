"""ECG-text contrastive model (CLIP / MERL style): an ECG tower and a text tower in one embedding space.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021
(arXiv:2103.00020); Liu et al., MERL, ICML 2024 (arXiv:2403.06659).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medzs.encoders.resnet1d import MERLECGEncoder
from medzs.encoders.text import TextTower


class ECGTextModel(nn.Module):
    """ECG tower + text tower + learnable temperature.

    Args:
        n_samples: ECG input length in samples (from the InputSpec).
        n_leads: Number of leads (from the InputSpec).
        embed_dim: Joint embedding size.
        text_model: Local path of the text encoder (or the bundled MiniLM marker).
        text_pooling: ``"mean"`` or ``"pooler"``.
        text_hidden: Hidden size of the text projection.
        trainable_text_layers: Last text-encoder layers that train.
    """

    def __init__(self, n_samples: int, n_leads: int = 12, embed_dim: int = 256, *, text_model: str,
                 text_pooling: str = "mean", text_hidden: int = 256, trainable_text_layers: int = 0) -> None:
        super().__init__()
        self.ecg = MERLECGEncoder(n_samples=n_samples, in_leads=n_leads, embed_dim=embed_dim)
        self.text = TextTower(text_model, embed_dim=embed_dim, hidden_dim=text_hidden, pooling=text_pooling,
                              trainable_layers=trainable_text_layers)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, leads, samples)`` -> L2-normalised ``(B, embed_dim)``."""
        return F.normalize(self.ecg(x), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``list[str]`` (length T) -> L2-normalised ``(T, embed_dim)``."""
        return F.normalize(self.text(texts), dim=-1)

    def shipped_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint must carry: everything but the frozen base text encoder."""
        keep = ("ecg.", "text.proj_t.", "logit_scale") + tuple("text." + p for p in self.text.trainable_lm_prefixes())
        return {k: v for k, v in self.state_dict().items() if k.startswith(keep)}
