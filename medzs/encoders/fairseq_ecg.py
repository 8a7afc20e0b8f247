"""The fairseq-signals ECG transformer and three released models built on it: D-BETA, ECG-FM and the MELP ECG encoder.

The ECG transformer of fairseq-signals (Oh et al.; code github.com/Jwoo5/fairseq-signals, commit 6b9e137,
``fairseq_signals/models/ecg_transformer.py``, ``transformer.py``, ``modules/``) is a wav2vec 2.0-style encoder:
``feature_extractor.conv_layers.{i}`` (Conv1d without bias; the first block has a GroupNorm at index 2, then GELU;
``[(256, 2, 2)] * 4`` for 12 leads) -> ``layer_norm`` (256) -> ``post_extract_proj`` (256->768) -> plus
``conv_pos.pos_conv.0`` (a weight-normalised grouped Conv1d, ``weight_g`` / ``weight_v`` / ``bias``, kernel 128,
16 groups, then "same" trimming and GELU) -> ``encoder.layer_norm`` -> ``encoder.layers.{i}`` (post-norm blocks:
``self_attn.{q,k,v,out}_proj``, ``self_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``). The module names
below are those of the checkpoints.

Models:

- **D-BETA** (Pham, Saeed, Ma, ICML 2025, arXiv:2410.02131; code github.com/manhph2211/D-BETA, commit 92e07e7,
  ``models/dbeta.py``, ``example.ipynb``): ``ckpt["model"]`` holds ``ecg_encoder.*`` (8 layers), ``class_embedding``,
  ``multi_modal_ecg_proj``, ``unimodal_ecg_pooler.dense``, ``language_encoder.*`` (a Flan-T5-base encoder),
  ``multi_modal_language_proj``, ``unimodal_language_pooler.dense`` and modules used only in pre-training
  (:data:`DBETA_UNUSED`). Zero-shot: the ECG's class token after ``multi_modal_ecg_proj`` and the pooler
  (dense + tanh) against each lower-cased prompt's first T5 token after ``multi_modal_language_proj`` and its pooler.
  The release scores raw dot products; medzs L2-normalises both sides (cosine), which can change rankings across
  records.
- **ECG-FM** (McKeen et al., arXiv:2408.05178): a fairseq-signals ``wav2vec2_cmsc`` checkpoint (``ckpt["model"]`` with
  the encoder's keys at top level plus pre-training heads, :data:`ECGFM_UNUSED`) or a fine-tuned classifier
  (``encoder.``-prefixed, head ``proj``). No text tower: the embedding is the time-average of the encoder output.
- **MELP ECG encoder** (Wang, Xu, Yu, ICML 2025, arXiv:2506.21803; ``ECGFMModel`` of its code): safetensors with
  ``ecg_encoder.*`` (the ECG-FM-style transformer, 8 layers), ``attn_pool_contrast.*`` (attentional pooler,
  13 queries of 256 over the 768-wide sequence), ``ln_contrast`` and unused heads (:data:`MELP_UNUSED`). The
  embedding is MELP's ``ext_ecg_emb``: pooled queries after ``ln_contrast``, averaged. No text tower.

Random-weight checkpoints in each layout are written by the tests (tests/test_checkpoints_ecg.py).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medzs.encoders.merl import strict_load, torch_load
from medzs.errors import SpecError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ECGTransformerConfig:
    """Sizes of the fairseq-signals ECG transformer (defaults: the 12-layer ECG-FM / fairseq-signals base)."""

    in_d: int = 12
    conv_layers: tuple[tuple[int, int, int], ...] = ((256, 2, 2),) * 4
    embed_dim: int = 768
    layers: int = 12
    heads: int = 12
    ffn_dim: int = 3072
    conv_pos: int = 128
    conv_pos_groups: int = 16
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, **defaults: Any) -> ECGTransformerConfig:
        d = {**defaults, **(d or {})}
        if "conv_layers" in d:
            d["conv_layers"] = tuple(tuple(int(v) for v in c) for c in d["conv_layers"])
        return cls(**d)


class _ConvFeatureExtraction(nn.Module):
    def __init__(self, conv_layers: tuple[tuple[int, int, int], ...], in_d: int) -> None:
        super().__init__()
        self.conv_layers = nn.ModuleList()
        for i, (dim, k, stride) in enumerate(conv_layers):
            mods: list[nn.Module] = [nn.Conv1d(in_d, dim, k, stride=stride, bias=False), nn.Dropout(0.0)]
            if i == 0:
                mods.append(nn.GroupNorm(dim, dim, affine=True))
            mods.append(nn.GELU())
            self.conv_layers.append(nn.Sequential(*mods))
            in_d = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.conv_layers:
            x = block(x)
        return x


class _WeightNormConv1d(nn.Module):
    """Conv1d with ``weight = weight_g * weight_v / ||weight_v||`` (norm over all axes but 2), as
    ``torch.nn.utils.weight_norm(conv, dim=2)`` stores it."""

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding, self.groups = kernel // 2, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel) / math.sqrt(kernel))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, w, self.bias, padding=self.padding, groups=self.groups)


class _ConvPositionalEncoding(nn.Module):
    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.pos_conv = nn.Sequential(_WeightNormConv1d(dim, kernel, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        y = self.pos_conv(x.transpose(1, 2))
        if self.kernel % 2 == 0:
            y = y[..., :-1]
        return F.gelu(y).transpose(1, 2)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, c))


class _EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = _SelfAttention(dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # post-norm (layer_norm_first=False)
        x = self.self_attn_layer_norm(x + self.self_attn(x))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class _Encoder(nn.Module):
    def __init__(self, cfg: ECGTransformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_EncoderLayer(cfg.embed_dim, cfg.heads, cfg.ffn_dim) for _ in range(cfg.layers))
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x)
        for layer in self.layers:
            x = layer(x)
        return x


class ECGTransformer(nn.Module):
    """fairseq-signals ``ECGTransformerModel`` at inference: ``(B, leads, samples)`` -> ``(B, T, embed_dim)``."""

    def __init__(self, cfg: ECGTransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        feat = cfg.conv_layers[-1][0]
        self.feature_extractor = _ConvFeatureExtraction(cfg.conv_layers, cfg.in_d)
        self.post_extract_proj = nn.Linear(feat, cfg.embed_dim) if feat != cfg.embed_dim else None
        self.conv_pos = _ConvPositionalEncoding(cfg.embed_dim, cfg.conv_pos, cfg.conv_pos_groups)
        self.layer_norm = nn.LayerNorm(feat)
        self.encoder = _Encoder(cfg)

    def embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Features before the transformer (``get_embeddings``): ``(B, T, embed_dim)``."""
        f = self.layer_norm(self.feature_extractor(x).transpose(1, 2))
        if self.post_extract_proj is not None:
            f = self.post_extract_proj(f)
        return f + self.conv_pos(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embeddings(x))


class _Pooler(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))


def _no_text(name: str) -> SpecError:
    return SpecError(f"model {name} has no text tower: use it with --linear-probe (embeddings only)")


# -- D-BETA -------------------------------------------------------------------------------------------------------
#: D-BETA keys used only in pre-training (cross-modal layers, poolers of the fused stream, MLM/MEM/ETM heads) and
#: the unused mask embedding; a checkpoint may carry them and they are ignored.
DBETA_UNUSED: tuple[str, ...] = (
    "ecg_encoder.mask_emb", "multi_modal_ecg_layers.", "multi_modal_language_layers.", "multi_modal_ecg_pooler.",
    "multi_modal_language_pooler.", "modality_type_embeddings.", "mlm_head.", "mim_head.", "itm_head.",
)


class DBETAModel(nn.Module):
    """D-BETA's uni-modal towers (ECG transformer + Flan-T5 encoder) for zero-shot scoring.

    Args:
        ecg_cfg: ECG transformer sizes (release: 8 layers, 768 wide, 12 heads, 3072 FFN).
        text_model: Local folder with the Flan-T5 config and tokenizer (weights come from the checkpoint), or ``""``.
        hidden_dim: Joint width (768).
    """

    def __init__(self, ecg_cfg: ECGTransformerConfig, text_model: str = "", hidden_dim: int = 768,
                 name: str = "dbeta") -> None:
        super().__init__()
        self.name = name
        self.ecg_encoder = ECGTransformer(ecg_cfg)
        self.class_embedding = nn.Parameter(torch.rand(ecg_cfg.embed_dim))
        self.multi_modal_ecg_proj = nn.Linear(ecg_cfg.embed_dim, hidden_dim)
        self.unimodal_ecg_pooler = _Pooler(hidden_dim)
        self.language_encoder = None
        self.tokenizer = None
        if text_model:
            from transformers import AutoConfig, AutoTokenizer, T5EncoderModel

            from medzs.encoders.text import resolve_text_model_path

            local = resolve_text_model_path(text_model)
            self.tokenizer = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
            self.language_encoder = T5EncoderModel(AutoConfig.from_pretrained(str(local), local_files_only=True))
            width = int(self.language_encoder.config.d_model)
            self.multi_modal_language_proj = nn.Linear(width, hidden_dim)
            self.unimodal_language_pooler = _Pooler(hidden_dim)

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 12, 5000)`` -> L2-normalised ``(B, hidden_dim)``: class token after projection and pooler."""
        e = self.ecg_encoder.embeddings(x)
        e = torch.cat([self.class_embedding.expand(e.shape[0], 1, -1), e], dim=1)
        return F.normalize(self.unimodal_ecg_pooler(self.multi_modal_ecg_proj(self.ecg_encoder.encoder(e))), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Prompts -> L2-normalised ``(T, hidden_dim)``; each lower-cased text is encoded alone (no padding).

        Raises:
            SpecError: built without a ``text_model`` folder.
        """
        if self.language_encoder is None:
            raise SpecError(f"model {self.name}: no text tower (give text_model=, a local flan-t5-base folder)")
        device = self.class_embedding.device
        outs = []
        for t in texts:
            ids = self.tokenizer(t.lower(), truncation=True, return_tensors="pt")["input_ids"].to(device)
            h = self.language_encoder(input_ids=ids)[0]
            outs.append(self.unimodal_language_pooler(self.multi_modal_language_proj(h)))
        return F.normalize(torch.cat(outs, dim=0), dim=-1)


def build_dbeta(config: Any) -> DBETAModel:
    """Registry builder (``extra["arch_kwargs"]`` overrides :class:`ECGTransformerConfig`; release: 8 layers)."""
    cfg = ECGTransformerConfig.from_dict(config.extra.get("arch_kwargs"), layers=8,
                                         in_d=len(config.input_spec.leads))
    return DBETAModel(cfg, text_model=config.text_model, hidden_dim=config.embed_dim, name=config.name)


def load_dbeta_checkpoint(model: DBETAModel, config: Any, path: Path) -> None:
    """Load ``ckpt["model"]`` of a D-BETA release strictly (:data:`DBETA_UNUSED` ignored; without a text tower the
    ``language_encoder.*`` / ``*_language_*`` keys are set aside).

    Raises:
        SpecError: not a dict with ``"model"``, or a missing / unexpected / mis-shaped key (names file and key).
    """
    name = getattr(config, "name", "dbeta")
    blob = torch_load(path, name)
    if not isinstance(blob, dict) or not isinstance(blob.get("model"), dict):
        raise SpecError(f"model {name}: checkpoint {path}: expected a dict with a 'model' state dict (D-BETA layout)")
    state = blob["model"]
    ignored = DBETA_UNUSED
    if model.language_encoder is None:
        ignored = ignored + ("language_encoder.", "multi_modal_language_proj.", "unimodal_language_pooler.")
    strict_load(model, state, name, path, ignored=ignored)


# -- ECG-FM -------------------------------------------------------------------------------------------------------
#: wav2vec 2.0 / CMSC pre-training heads and the mask embedding (unused for embeddings), and a fine-tuned
#: classifier's ``proj`` head.
ECGFM_UNUSED: tuple[str, ...] = ("mask_emb", "quantizer.", "input_quantizer.", "project_q.", "project_inp.",
                                 "target_glu.", "final_proj.", "proj.")


class ECGEmbeddingModel(nn.Module):
    """An ECG encoder without a text tower; ``encode_text`` raises :class:`SpecError`."""

    name = "ecg-encoder"

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        raise _no_text(self.name)


class ECGFMModel(ECGEmbeddingModel):
    """ECG-FM encoder: ``(B, 12, 2500)`` -> L2-normalised time-averaged encoder output ``(B, 768)``."""

    def __init__(self, cfg: ECGTransformerConfig, name: str = "ecgfm") -> None:
        super().__init__()
        self.name = name
        self.ecg = ECGTransformer(cfg)

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.ecg(x).mean(dim=1), dim=-1)


def build_ecgfm(config: Any) -> ECGFMModel:
    """Registry builder (12 layers by default; ``extra["arch_kwargs"]`` overrides)."""
    cfg = ECGTransformerConfig.from_dict(config.extra.get("arch_kwargs"), in_d=len(config.input_spec.leads))
    return ECGFMModel(cfg, name=config.name)


def _weight_norm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``parametrizations.weight.original0/1`` (torch's newer weight_norm) to ``weight_g``/``weight_v``."""
    out = {}
    for k, v in state.items():
        k = k.replace(".parametrizations.weight.original0", ".weight_g")
        k = k.replace(".parametrizations.weight.original1", ".weight_v")
        out[k] = v
    return out


def load_ecgfm_checkpoint(model: ECGFMModel, config: Any, path: Path) -> None:
    """Load a fairseq-signals checkpoint (``ckpt["model"]``): a pre-trained ``wav2vec2_cmsc`` model (encoder keys at
    top level) or a fine-tuned classifier (``encoder.`` prefix); :data:`ECGFM_UNUSED` keys are ignored.

    fairseq pickles its ``cfg`` as an omegaconf object, which ``weights_only`` loading refuses: re-save
    ``ckpt["model"]`` (or ``{"model": ckpt["model"]}``) once in a trusted environment.

    Raises:
        SpecError: no ``"model"`` entry, or a missing / unexpected / mis-shaped key (names file and key).
    """
    name = getattr(config, "name", "ecgfm")
    blob = torch_load(path, name)
    state = blob.get("model") if isinstance(blob, dict) and isinstance(blob.get("model"), dict) else blob
    if not isinstance(state, dict):
        raise SpecError(f"model {name}: checkpoint {path}: expected a fairseq checkpoint with a 'model' state dict")
    if "encoder.feature_extractor.conv_layers.0.0.weight" in state:
        state = {(k.removeprefix("encoder.")): v for k, v in state.items()}
    strict_load(model.ecg, _weight_norm_keys(state), name, path, ignored=ECGFM_UNUSED)


# -- MELP ---------------------------------------------------------------------------------------------------------
#: MELP ``ECGFMModel`` entries not used by ``ext_ecg_emb`` (pre-training heads, caption pooler, projections).
MELP_UNUSED: tuple[str, ...] = tuple("ecg_encoder." + k for k in ECGFM_UNUSED if k != "proj.") + (
    "attn_pool_caption.", "ln_caption.", "proj_contrast", "logit_scale", "bn.", "head.")


class _AttentionalPooler(nn.Module):
    """open_clip-style attentional pooler: learned queries attend over the sequence (``kdim = vdim = context``)."""

    def __init__(self, d_model: int, context_dim: int, n_head: int, n_queries: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        self.attn = nn.MultiheadAttention(d_model, n_head, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(context_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_k(x)
        q = self.ln_q(self.query).unsqueeze(0).expand(x.shape[0], -1, -1)
        return self.attn(q, x, x, need_weights=False)[0]


class MELPECGModel(ECGEmbeddingModel):
    """MELP ECG encoder: transformer -> attentional pooling (13 queries x 256) -> ``ln_contrast`` -> mean ->
    L2-normalised ``(B, 256)``."""

    def __init__(self, cfg: ECGTransformerConfig, shared_dim: int = 256, n_queries: int = 13, heads: int = 8,
                 name: str = "melp-ecg") -> None:
        super().__init__()
        self.name = name
        self.ecg_encoder = ECGTransformer(cfg)
        self.attn_pool_contrast = _AttentionalPooler(shared_dim, cfg.embed_dim, heads, n_queries)
        self.ln_contrast = nn.LayerNorm(shared_dim)

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.ln_contrast(self.attn_pool_contrast(self.ecg_encoder(x)))
        return F.normalize(pooled.mean(dim=1), dim=-1)


def build_melp(config: Any) -> MELPECGModel:
    """Registry builder (release "small": 8 layers; ``extra["arch_kwargs"]``, ``extra["n_queries"]`` override)."""
    cfg = ECGTransformerConfig.from_dict(config.extra.get("arch_kwargs"), layers=8,
                                         in_d=len(config.input_spec.leads))
    return MELPECGModel(cfg, shared_dim=config.embed_dim, n_queries=int(config.extra.get("n_queries", 13)),
                        heads=int(config.extra.get("pool_heads", 8)), name=config.name)


def load_melp_checkpoint(model: MELPECGModel, config: Any, path: Path) -> None:
    """Load MELP's ECG encoder from safetensors strictly (:data:`MELP_UNUSED` ignored). Keys exported from the whole
    MELP model (``ecg_encoder.ecg_encoder.*``, ``ecg_encoder.attn_pool_contrast.*``) lose their outer prefix.

    Raises:
        SpecError: unreadable file, or a missing / unexpected / mis-shaped key (names file and key).
    """
    name = getattr(config, "name", "melp-ecg")
    try:
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError
        raise SpecError(f"model {name}: checkpoint {path}: not a safetensors file ({type(exc).__name__})") from None
    if any(k.startswith("ecg_encoder.ecg_encoder.") for k in state):
        state = {k[len("ecg_encoder."):]: v for k, v in state.items() if k.startswith("ecg_encoder.")}
    strict_load(model, _weight_norm_keys(state), name, path, ignored=MELP_UNUSED)
