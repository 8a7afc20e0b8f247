"""CT-CLIP's module tree (CTViT image encoder + CXR-BERT text encoder) with its published state-dict layout.

Hamamci IE, Er S, Almas F, et al. Developing Generalist Foundation Models from a Multimodal Dataset for 3D Computed
Tomography (CT-RATE / CT-CLIP). arXiv:2403.17834 (2024); code github.com/ibrahimethemhamamci/CT-CLIP. The released
checkpoint is ``CTCLIP.state_dict()``:

- ``visual_transformer.*``: CTViT (3-D ViT with factorised spatial / temporal attention, after Phenaki's C-ViViT)
  with ``spatial_rel_pos_bias``, ``to_patch_emb(_first_frame)``, ``enc_spatial_transformer``,
  ``enc_temporal_transformer`` (PEG + attention with null key/values and q/k scales + GEGLU feed-forward, custom
  LayerNorm with a ``beta`` buffer), a cosine-similarity vector quantiser ``vq._codebook.{initted,cluster_size,
  embed}`` (vector-quantize-pytorch 1.1.2) and ``to_pixels(_first_frame)``;
- ``text_transformer.*``: a Hugging Face ``BertModel`` (CXR-BERT-specialized, with pooler);
- ``to_text_latent`` (768 -> 512, no bias), ``to_visual_latent`` (h*w*dim -> 512, no bias), their ``*_extra`` copies,
  and ``temperature``.

Embeddings follow ``CTCLIP.forward``: the image tokens (quantised by the codebook) are averaged over the depth
tokens, flattened and projected; the text is the CLS token of the BERT output, projected. Release sizes: dim 512,
codebook 8192, 480 x 480 in-plane / 240 slices, patch 20, depth patch 10, 4 + 4 layers, 8 heads of 32; the module
takes the sizes from ``config.extra`` so that tests can build the same tree small.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medzs.errors import SpecError

logger = logging.getLogger(__name__)

#: CTViT / CTCLIP sizes of the released CT-CLIP checkpoint (scripts/run_zero_shot.py of the release).
CTCLIP_RELEASE = {"dim": 512, "codebook_size": 8192, "image_size": 480, "patch_size": 20, "temporal_patch_size": 10,
                  "spatial_depth": 4, "temporal_depth": 4, "dim_head": 32, "heads": 8, "dim_latent": 512,
                  "max_length": 512}


class CTLayerNorm(nn.Module):
    """LayerNorm with a learnable ``gamma`` and a fixed ``beta`` buffer (CT-CLIP ``attention.LayerNorm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta)


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    inner = int(mult * (2 / 3) * dim)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner * 2, bias=False), GEGLU(), nn.Dropout(0.0),
                         nn.Linear(inner, dim, bias=False))


class PEG(nn.Module):
    """Position-encoding generator: depthwise 3x3x3 convolution over ``(t, h, w)`` (causal along ``t``)."""

    def __init__(self, dim: int, causal: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.dsconv = nn.Conv3d(dim, dim, 3, groups=dim)

    def forward(self, x: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        orig = x.shape
        x = x.reshape(*shape, -1).permute(0, 4, 1, 2, 3)
        pad_t = (2, 0) if self.causal else (1, 1)
        x = self.dsconv(F.pad(x, (1, 1, 1, 1, *pad_t), value=0.0))
        return x.permute(0, 2, 3, 4, 1).reshape(orig)


class Attention(nn.Module):
    """Cosine-sim attention with null key/values and learned q/k scales (CT-CLIP ``attention.Attention``)."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8, num_null_kv: int = 0, scale: float = 8) -> None:
        super().__init__()
        self.heads, self.scale, self.num_null_kv = heads, scale, num_null_kv
        inner = dim_head * heads
        self.norm = CTLayerNorm(dim)
        self.context_norm = CTLayerNorm(dim)
        self.null_kv = nn.Parameter(torch.randn(heads, 2 * num_null_kv, dim_head))
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        kv_input = x  # the release projects keys/values from the un-normalised input
        x = self.norm(x)
        q = self.to_q(x)
        k, v = self.to_kv(kv_input).chunk(2, dim=-1)
        q, k, v = (t.reshape(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2) for t in (q, k, v))
        nk, nv = self.null_kv.reshape(self.heads, self.num_null_kv, 2, self.null_kv.shape[-1]).unbind(dim=-2)
        k = torch.cat((nk.unsqueeze(0).expand(b, -1, -1, -1), k), dim=-2)
        v = torch.cat((nv.unsqueeze(0).expand(b, -1, -1, -1), v), dim=-2)
        q, k = F.normalize(q, dim=-1) * self.q_scale, F.normalize(k, dim=-1) * self.k_scale
        sim = q @ k.transpose(-1, -2) * self.scale
        if attn_bias is not None:
            sim = sim + F.pad(attn_bias, (self.num_null_kv, 0), value=0.0)
        out = sim.softmax(dim=-1) @ v
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class Transformer(nn.Module):
    """``layers[i] = [PEG, self-attention, None (no cross-attention), feed-forward]`` + ``norm_out``."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, ff_mult: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([PEG(dim, causal=True), Attention(dim, dim_head, heads), None, feed_forward(dim, ff_mult)])
            for _ in range(depth)
        ])
        self.norm_out = CTLayerNorm(dim)

    def forward(self, x: torch.Tensor, video_shape: tuple[int, int, int, int],
                attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        for peg, attn, _, ff in self.layers:
            x = peg(x, video_shape) + x
            x = attn(x, attn_bias) + x
            x = ff(x) + x
        return self.norm_out(x)


class ContinuousPositionBias(nn.Module):
    """Log-distance continuous relative position bias over the ``(h, w)`` patch grid (arXiv:2111.09883)."""

    def __init__(self, dim: int, heads: int, layers: int = 2) -> None:
        super().__init__()
        self.net = nn.ModuleList([nn.Sequential(nn.Linear(2, dim), nn.LeakyReLU(0.1))])
        for _ in range(layers - 1):
            self.net.append(nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(0.1)))
        self.net.append(nn.Linear(dim, heads))

    def forward(self, h: int, w: int) -> torch.Tensor:
        device = self.net[-1].weight.device
        grid = torch.stack(torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                                          indexing="ij")).reshape(2, -1).t()
        rel = (grid[:, None, :] - grid[None, :, :]).float()
        rel = torch.sign(rel) * torch.log(rel.abs() + 1)
        for layer in self.net:
            rel = layer(rel)
        return rel.permute(2, 0, 1)


class _Reshape(nn.Module):
    """Parameter-free slot standing for einops' ``Rearrange`` (index 0 / 1 of the release's Sequentials)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called
        return x


class CosineSimCodebook(nn.Module):
    """vector-quantize-pytorch 1.1.2 ``CosineSimCodebook`` buffers (one codebook)."""

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        self.register_buffer("initted", torch.Tensor([True]))
        self.register_buffer("cluster_size", torch.zeros(1, codebook_size))
        self.register_buffer("embed", F.normalize(torch.rand(1, codebook_size, dim), dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim)`` -> the nearest codebook vector (cosine) of every token, ``(B, N, dim)``."""
        flat = F.normalize(x.reshape(1, -1, x.shape[-1]), dim=-1)
        ind = (flat @ F.normalize(self.embed, dim=-1).transpose(1, 2)).argmax(dim=-1)
        return self.embed[0][ind[0]].reshape(x.shape)


class VectorQuantize(nn.Module):
    """``VectorQuantize(dim, codebook_size, use_cosine_sim=True)`` at inference: ``_codebook`` lookup only."""

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        self._codebook = CosineSimCodebook(dim, codebook_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._codebook(x)


class CTViT(nn.Module):
    """CT-CLIP's CTViT encoder path (``return_encoded_tokens=True``), with every module of the released tree.

    Args:
        dim: Token width.
        codebook_size: Vector-quantiser codebook size.
        image_size: In-plane size (square) in voxels.
        patch_size: In-plane patch size.
        temporal_patch_size: Patch size along depth (slices).
        spatial_depth: Spatial transformer layers.
        temporal_depth: Temporal transformer layers.
        dim_head: Attention head width.
        heads: Attention heads.
        channels: Input channels (1).
    """

    def __init__(self, *, dim: int, codebook_size: int, image_size: int, patch_size: int, temporal_patch_size: int,
                 spatial_depth: int, temporal_depth: int, dim_head: int = 64, heads: int = 8, channels: int = 1) -> None:
        super().__init__()
        if image_size % patch_size:
            raise SpecError(f"CTViT: image_size {image_size} must be a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size, self.temporal_patch_size = image_size, patch_size, temporal_patch_size
        p, pt, c = patch_size, temporal_patch_size, channels
        self.spatial_rel_pos_bias = ContinuousPositionBias(dim, heads)
        self.to_patch_emb_first_frame = nn.Sequential(_Reshape(), nn.LayerNorm(c * p * p), nn.Linear(c * p * p, dim),
                                                      nn.LayerNorm(dim))
        self.to_patch_emb = nn.Sequential(_Reshape(), nn.LayerNorm(c * p * p * pt), nn.Linear(c * p * p * pt, dim),
                                          nn.LayerNorm(dim))
        self.enc_spatial_transformer = Transformer(dim, spatial_depth, dim_head, heads)
        self.enc_temporal_transformer = Transformer(dim, temporal_depth, dim_head, heads)
        self.vq = VectorQuantize(dim, codebook_size)
        self.to_pixels_first_frame = nn.Sequential(nn.Linear(dim, c * p * p), _Reshape())
        self.to_pixels = nn.Sequential(nn.Linear(dim, c * p * p * pt), _Reshape())

    def patchify(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, C, T*pt, H*p, W*p)`` -> ``(B, T, H, W, C*pt*p*p)`` (einops ``b c (t pt) (h p1) (w p2) -> b t h w (c pt p1 p2)``)."""
        b, c, d, hh, ww = video.shape
        p, pt = self.patch_size, self.temporal_patch_size
        if d % pt or hh != self.image_size or ww != self.image_size:
            raise SpecError(f"CTViT: input (B, C, D, H, W) = {tuple(video.shape)}: expected H = W = "
                            f"{self.image_size} and D a multiple of {pt}")
        x = video.reshape(b, c, d // pt, pt, hh // p, p, ww // p, p)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, d // pt, hh // p, ww // p, c * pt * p * p)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D, H, W)`` -> quantised encoded tokens ``(B, T, h, w, dim)``."""
        if video.ndim != 5:
            raise SpecError(f"CTViT: expected (B, 1, D, H, W), got shape {tuple(video.shape)}")
        tokens = self.to_patch_emb[1:](self.patchify(video))
        b, t, h, w, d = tokens.shape
        shape = (b, t, h, w)
        bias = self.spatial_rel_pos_bias(h, w)
        tokens = self.enc_spatial_transformer(tokens.reshape(b * t, h * w, d), shape, bias)
        tokens = tokens.reshape(b, t, h, w, d).permute(0, 2, 3, 1, 4).reshape(b * h * w, t, d)
        tokens = self.enc_temporal_transformer(tokens, shape)
        tokens = tokens.reshape(b, h, w, t, d).permute(0, 3, 1, 2, 4)
        return self.vq(tokens.reshape(b, t * h * w, d)).reshape(b, t, h, w, d)


class CTCLIP(nn.Module):
    """CT-CLIP (release configuration: no MLM, no visual SSL, no extra latent projection used at inference).

    Args:
        text_folder: Local CXR-BERT folder (``config.json`` + ``vocab.txt``); the BERT is built from its config and
            takes its weights from the checkpoint.
        sizes: CTViT / latent sizes (:data:`CTCLIP_RELEASE` keys).
    """

    def __init__(self, text_folder: str, sizes: dict) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoTokenizer, BertModel

        s = {**CTCLIP_RELEASE, **sizes}
        self.tokenizer = AutoTokenizer.from_pretrained(text_folder, local_files_only=True, do_lower_case=True)
        cfg = AutoConfig.from_pretrained(text_folder, local_files_only=True)
        self.text_transformer = BertModel(cfg)
        if self.text_transformer.get_input_embeddings().num_embeddings != len(self.tokenizer):
            self.text_transformer.resize_token_embeddings(len(self.tokenizer))
        self.visual_transformer = CTViT(dim=s["dim"], codebook_size=s["codebook_size"], image_size=s["image_size"],
                                        patch_size=s["patch_size"], temporal_patch_size=s["temporal_patch_size"],
                                        spatial_depth=s["spatial_depth"], temporal_depth=s["temporal_depth"],
                                        dim_head=s["dim_head"], heads=s["heads"])
        grid = s["image_size"] // s["patch_size"]
        dim_image = grid * grid * s["dim"]
        dim_text = int(cfg.hidden_size)
        self.to_text_latent = nn.Linear(dim_text, s["dim_latent"], bias=False)
        self.to_visual_latent = nn.Linear(dim_image, s["dim_latent"], bias=False)
        self.temperature = nn.Parameter(torch.tensor(1.0))
        self.to_text_latent_extra = nn.Linear(dim_text, s["dim_latent"], bias=False)
        self.to_visual_latent_extra = nn.Linear(dim_image, s["dim_latent"], bias=False)
        self.max_length = int(s["max_length"])

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D, H, W)`` (HU window -1000..1000 mapped to -1..1) -> L2-normalised ``(B, dim_latent)``."""
        enc = self.visual_transformer(x).mean(dim=1)
        return F.normalize(self.to_visual_latent(enc.reshape(enc.shape[0], -1)), dim=-1)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_signal(x)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``list[str]`` -> L2-normalised ``(T, dim_latent)`` (CLS token of the BERT output, projected)."""
        device = self.to_text_latent.weight.device
        tok = self.tokenizer(list(texts), return_tensors="pt", padding="max_length", truncation=True,
                             max_length=self.max_length).to(device)
        out = self.text_transformer(tok["input_ids"], attention_mask=tok["attention_mask"])
        return F.normalize(self.to_text_latent(out[0][:, 0, :]), dim=-1)


def build_ctclip(config) -> CTCLIP:
    """Untrained CT-CLIP from ``config.extra`` sizes and the local CXR-BERT folder ``config.text_model``."""
    text = config.text_model
    if not text or text.startswith("package:") or not (Path(text).expanduser() / "config.json").is_file():
        raise FileNotFoundError(f"model {config.name}: text_model must be a local CXR-BERT folder (config.json + "
                                f"vocab.txt), got {text!r}")
    sizes = {k: config.extra[k] for k in CTCLIP_RELEASE if k in config.extra}
    return CTCLIP(str(Path(text).expanduser()), sizes)


def load_ctclip(model: CTCLIP, config, path: Path) -> None:
    """Load the released ``CTCLIP.state_dict()`` strictly.

    ``text_transformer.embeddings.position_ids`` (saved by transformers 4.30, the release's pin, and no longer a
    persistent buffer) is dropped when the module lacks it; nothing else is renamed.

    Raises:
        SpecError: missing/unexpected keys or shape mismatches.
    """
    from medzs.encoders._loading import strict_load as _strict_load

    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    state = {(k.removeprefix("module.")): v for k, v in state.items()}
    pos = "text_transformer.embeddings.position_ids"
    if pos in state and pos not in model.state_dict():
        del state[pos]
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    _strict_load(model, state, config.name, path)
