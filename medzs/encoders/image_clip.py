"""Image-text contrastive model for medzs' embedded imaging defaults: a small 2-D ResNet + the MiniLM text tower.

The image tower is a width- and depth-reduced ResNet (He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016, arXiv:1512.03385; basic blocks, batch norm, global average pooling) taking one grey channel; the
text tower is :class:`medzs.encoders.text.TextTower` (all-MiniLM-L6-v2 from its PyPI wheel). Both project to one
joint space trained with the CLIP loss (Radford et al., ICML 2021, arXiv:2103.00020), as the ECG default is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medzs.encoders.text import TextTower


class BasicBlock2d(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class SmallResNet2d(nn.Module):
    """A reduced ResNet for grey images: ``(B, C, H, W)`` -> ``(B, embed_dim)`` (not normalised).

    Args:
        in_channels: Input channels (1 for grey radiographs / CT slices).
        widths: Channels of the four stages (ResNet-18: 64, 128, 256, 512).
        blocks: Basic blocks per stage (ResNet-18: 2, 2, 2, 2).
        embed_dim: Output size of the projection head (Linear -> GELU -> Linear).
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 128),
                 blocks: Sequence[int] = (1, 1, 1, 1), embed_dim: int = 256) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 5, 2, 2, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        layers, c = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stage = [BasicBlock2d(c, w, 1 if i == 0 else 2)] + [BasicBlock2d(w, w) for _ in range(n - 1)]
            layers.append(nn.Sequential(*stage))
            c = w
        self.layers = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.Linear(c, embed_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, widths[-1])`` before the projection."""
        return self.layers(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x))


class ImageTextModel(nn.Module):
    """Image tower + text tower + learnable temperature (the imaging counterpart of ``ECGTextModel``).

    Args:
        in_channels: Image channels (from the :class:`~medzs.spec.ImageInputSpec`).
        widths: Stage widths of the image ResNet.
        blocks: Blocks per stage.
        embed_dim: Joint embedding size.
        text_model: Local path of the text encoder (or the bundled MiniLM marker).
        text_pooling: ``"mean"`` or ``"pooler"``.
        text_hidden: Hidden size of the text projection.
        trainable_text_layers: Last text-encoder layers that train.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 128),
                 blocks: Sequence[int] = (1, 1, 1, 1), embed_dim: int = 256, *, text_model: str,
                 text_pooling: str = "mean", text_hidden: int = 256, trainable_text_layers: int = 0) -> None:
        super().__init__()
        self.image = SmallResNet2d(in_channels, widths, blocks, embed_dim)
        self.text = TextTower(text_model, embed_dim=embed_dim, hidden_dim=text_hidden, pooling=text_pooling,
                              trainable_layers=trainable_text_layers)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` preprocessed images -> L2-normalised ``(B, embed_dim)``."""
        return F.normalize(self.image(x), dim=-1)

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`encode_image` (the engine's modality-generic name)."""
        return self.encode_image(x)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``list[str]`` (length T) -> L2-normalised ``(T, embed_dim)``."""
        return F.normalize(self.text(texts), dim=-1)

    def shipped_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint must carry: everything but the frozen base text encoder."""
        keep = ("image.", "text.proj_t.", "logit_scale") + tuple("text." + p for p in self.text.trainable_lm_prefixes())
        return {k: v for k, v in self.state_dict().items() if k.startswith(keep)}
