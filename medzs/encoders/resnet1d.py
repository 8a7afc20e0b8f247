"""1-D ResNet ECG encoder with the module names and tensor shapes of MERL's ResNet1D-18.

The ECG side of MERL (Liu et al., "Zero-Shot ECG Classification with Multimodal Learning and Test-time
Clinical Knowledge Enhancement", ICML 2024, arXiv:2403.06659) is a 1-D ResNet-18 (stem 12->64, kernel 7,
stride 2, no max-pool; BasicBlocks [2, 2, 2, 2] with 64/128/256/512 channels), a 1x1 ``downconv`` 512->256 and
an attention-pooling head with a learned positional embedding over ``ceil(samples / 16)`` positions (313 for
12 x 5000 samples at 500 Hz). Module names here match a MERL checkpoint's keys so that it loads with strict key
matching (:func:`merl_ecg_state_dict`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Total temporal down-sampling of :class:`ResNet1D` (stem stride 2 x layer2/3/4 stride 2).
DOWNSAMPLING = 16


class BasicBlock1D(nn.Module):
    """Residual block of two 3-tap convolutions with batch norm; 1x1 projection shortcut when shapes change."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm1d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet1D(nn.Module):
    """1-D ResNet feature extractor: ``(B, leads, samples)`` -> ``(B, 512, ceil(samples / 16))``.

    Args:
        num_blocks: Blocks per stage; ``(2, 2, 2, 2)`` is ResNet-18.
        in_leads: Number of input leads (12).
        num_classes: Size of the unused ``linear`` head that MERL checkpoints carry (kept so keys match).
    """

    def __init__(self, num_blocks: tuple[int, int, int, int] = (2, 2, 2, 2), in_leads: int = 12,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.in_channels = 64
        self.conv1 = nn.Conv1d(in_leads, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm1d(64)
        self.layer1 = self._make_layer(64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(512, num_blocks[3], stride=2)
        # Not used in forward: present in MERL checkpoints, kept for strict key matching.
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, out_channels: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock1D(self.in_channels, out_channels, s))
            self.in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(out))))


class AttentionPool1d(nn.Module):
    """CLIP-style attention pooling over time with a learned positional embedding and a class token.

    Input ``(B, C, L)`` with ``L == spatial_dim``; output ``(B, output_dim)``.
    """

    def __init__(self, spatial_dim: int, embed_dim: int, num_heads: int, output_dim: int | None = None) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(1, spatial_dim + 1, embed_dim) / embed_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim))
        self.mhsa = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 1)  # (B, L, C)
        if x.shape[1] + 1 != self.positional_embedding.shape[1]:
            raise ValueError(
                f"AttentionPool1d: input has {x.shape[1]} time steps, the positional embedding expects "
                f"{self.positional_embedding.shape[1] - 1} (input length must match the encoder's InputSpec)"
            )
        cls = (self.cls_token + self.positional_embedding[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.positional_embedding.to(x.dtype)
        out, _ = self.mhsa(x[:, :1, :], x, x, need_weights=False)
        return self.c_proj(out).squeeze(1)


def spatial_dim(n_samples: int) -> int:
    """Length of the ResNet1D feature map for ``n_samples`` input samples (313 for 5000)."""
    return math.ceil(n_samples / DOWNSAMPLING)


class MERLECGEncoder(nn.Module):
    """ECG tower of MERL: ResNet1D-18 -> 1x1 ``downconv`` -> attention pool -> ``embed_dim`` vector.

    Args:
        n_samples: Input length in samples (5000 for MERL's 500 Hz x 10 s; 1000 for 100 Hz x 10 s).
        in_leads: Number of leads.
        embed_dim: Output embedding size (256 in MERL).
        num_heads: Attention heads of the pooling head.

    Input ``(batch, leads, samples)`` float32 (normalised as the model's InputSpec says);
    output ``(batch, embed_dim)`` (not normalised).
    """

    def __init__(self, n_samples: int = 5000, in_leads: int = 12, embed_dim: int = 256, num_heads: int = 4) -> None:
        super().__init__()
        self.ecg_encoder = ResNet1D((2, 2, 2, 2), in_leads=in_leads)
        self.downconv = nn.Conv1d(512, embed_dim, kernel_size=1)
        self.att_pool_head = AttentionPool1d(spatial_dim(n_samples), embed_dim, num_heads, embed_dim)
        # Uni-modal alignment projections of MERL's training objective; kept for strict key matching.
        self.linear1 = nn.Linear(embed_dim, embed_dim, bias=False)
        self.linear2 = nn.Linear(embed_dim, embed_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.att_pool_head(self.downconv(self.ecg_encoder(x)))


#: Prefixes of the ECG-side keys in a MERL ``ECGCLIP`` state dict.
MERL_ECG_PREFIXES = ("ecg_encoder.", "downconv.", "att_pool_head.", "linear1.", "linear2.")


def merl_ecg_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Select the ECG-side weights of a MERL checkpoint (stripping a DDP ``module.`` prefix).

    Args:
        state: A MERL ``ECGCLIP`` state dict (or a dict with a ``state_dict``/``model`` entry).

    Returns:
        The keys starting with :data:`MERL_ECG_PREFIXES`, ready for
        ``MERLECGEncoder.load_state_dict(..., strict=True)``.
    """
    for key in ("state_dict", "model", "model_state_dict"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    out = {}
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k.startswith(MERL_ECG_PREFIXES):
            out[k] = v
    return out
