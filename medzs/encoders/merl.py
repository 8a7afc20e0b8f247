"""MERL's released ECG-text models (ResNet1D-18 and ViT-tiny towers) with the module names of its checkpoints.

MERL (Liu et al., ICML 2024, arXiv:2403.06659; code github.com/cheliu-computation/MERL, commit 38799b7d,
``utils/utils_builder.py`` class ``ECGCLIP``, ``utils/vit1d.py``, ``utils/resnet1d.py``) builds:

- ResNet1D-18 tower: ``ecg_encoder`` (ResNet, incl. an unused ``linear`` 512->10 head) -> ``downconv`` (1x1,
  512->256) -> ``att_pool_head`` (CLIP attention pooling over 313 positions, 4 heads) = the joint embedding;
- ViT-tiny tower: ``ecg_encoder`` (1-D ViT: ``to_patch_embedding`` Conv1d 12->192, kernel = stride = 50, no bias;
  ``pos_embedding`` (1, 100, 192); ``block0..block11`` pre-norm blocks with ``attn.norm``, ``attn.fn.to_qkv``
  (192->576, bias), ``attn.fn.to_out.0``, ``ff.norm``, ``ff.fn.net.0`` (192->768), ``ff.fn.net.3``; mean over
  patches then ``norm``) -> ``proj_e`` (Linear 192->256, BatchNorm1d, ReLU, Linear 256->256, BatchNorm1d);
- both: ``linear1``/``linear2`` (uni-modal alignment heads, unused at inference, kept for strict key matching);
- text side: ``lm_model`` (a BERT, MedCPT-Query-Encoder, ``pooler_output``) -> ``proj_t`` (Linear 768->256, GELU,
  Linear 256->256). Zero-shot: each class prompt is lower-cased, tokenised to at most 256 tokens, embedded and
  L2-normalised; scores are cosine similarities (``utils/zeroshot_val.py``).

Checkpoints (``utils/utils_trainer.py``): ``*_bestZeroShotAll_ckpt.pth`` = ``model.module.state_dict()`` (the
whole ``ECGCLIP``); ``*_bestZeroShotAll_encoder.pth`` / ``*_final_encoder.pth`` =
``model.module.ecg_encoder.state_dict()`` (the backbone only, keys without a prefix); ``*_{epoch}_ckpt.pth`` =
``{"epoch", "model_state_dict", "optimizer_state_dict"}`` with the DDP ``module.`` prefix. See
:func:`load_merl_checkpoint`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medzs.encoders.resnet1d import AttentionPool1d, ResNet1D, spatial_dim
from medzs.errors import SpecError

logger = logging.getLogger(__name__)

#: Backbones and their width: ``resnet18`` (512 after average pooling), ``vit_tiny`` (192).
MERL_BACKBONES: dict[str, int] = {"resnet18": 512, "vit_tiny": 192}


# -- 1-D ViT (MERL utils/vit1d.py layout) -------------------------------------------------------------------
class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_qkv = nn.Linear(dim, inner * 3, bias=True)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int) -> None:
        super().__init__()
        self.attn = _PreNorm(dim, _Attention(dim, heads, dim_head))
        self.ff = _PreNorm(dim, _FeedForward(dim, mlp_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x) + x
        return self.ff(x) + x


class ViT1D(nn.Module):
    """MERL's 1-D ViT: ``(B, leads, samples)`` -> ``(B, width)`` (mean over patches, then LayerNorm).

    Args:
        n_leads: Input leads (12).
        seq_len: Input samples (5000); must be a multiple of ``patch_size``.
        patch_size: Patch length in samples (50).
        width, depth, heads, mlp_dim, dim_head: ViT-tiny is 192, 12, 3, 768, 64.
    """

    def __init__(self, n_leads: int = 12, seq_len: int = 5000, patch_size: int = 50, width: int = 192,
                 depth: int = 12, heads: int = 3, mlp_dim: int = 768, dim_head: int = 64) -> None:
        super().__init__()
        if seq_len % patch_size:
            raise SpecError(f"ViT1D: seq_len {seq_len} is not a multiple of patch_size {patch_size}")
        self.width, self.depth = width, depth
        self.to_patch_embedding = nn.Conv1d(n_leads, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.pos_embedding = nn.Parameter(torch.randn(1, seq_len // patch_size, width))
        for i in range(depth):
            self.add_module(f"block{i}", _Block(width, heads, dim_head, mlp_dim))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_patch_embedding(x).transpose(1, 2) + self.pos_embedding
        for i in range(self.depth):
            x = getattr(self, f"block{i}")(x)
        return self.norm(x.mean(dim=1))


# -- the model ------------------------------------------------------------------------------------------------
class MERLModel(nn.Module):
    """MERL ``ECGCLIP`` at inference: ECG tower, joint-space heads and (optionally) the BERT text tower.

    Args:
        backbone: ``"resnet18"`` or ``"vit_tiny"``.
        n_samples: Input length (5000 = 10 s at 500 Hz).
        n_leads: Input leads (12, MERL order I, II, III, aVR, aVF, aVL, V1-V6).
        proj_hidden: ``projection_head.mlp_hidden_size`` (256).
        proj_out: ``projection_head.projection_size`` (256), the joint embedding size.
        text_model: Local folder of the BERT text encoder (MedCPT-Query-Encoder: ``config.json`` + tokenizer
            files), or ``""`` for an ECG-only model (``encode_text`` then raises).
        max_length: Token limit of a prompt (256 in MERL).
        vit_kwargs: Overrides of :class:`ViT1D` sizes (tests use tiny ones).

    After a checkpoint holding only the backbone is loaded, :attr:`joint` is False: ``encode_signal`` returns
    the backbone's pooled features (the linear-probe input) and ``encode_text`` raises.
    """

    def __init__(self, backbone: str = "resnet18", n_samples: int = 5000, n_leads: int = 12, proj_hidden: int = 256,
                 proj_out: int = 256, text_model: str = "", max_length: int = 256,
                 vit_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if backbone not in MERL_BACKBONES:
            raise SpecError(f"MERLModel.backbone: expected one of {sorted(MERL_BACKBONES)}, got {backbone!r}")
        self.backbone = backbone
        if backbone == "resnet18":
            self.ecg_encoder = ResNet1D((2, 2, 2, 2), in_leads=n_leads)
            self.downconv = nn.Conv1d(512, proj_out, kernel_size=1)
            self.att_pool_head = AttentionPool1d(spatial_dim(n_samples), proj_out, 4, proj_out)
            width = 512
        else:
            self.ecg_encoder = ViT1D(n_leads=n_leads, seq_len=n_samples, **(vit_kwargs or {}))
            width = self.ecg_encoder.width
            self.proj_e = nn.Sequential(nn.Linear(width, proj_hidden), nn.BatchNorm1d(proj_hidden), nn.ReLU(),
                                        nn.Linear(proj_hidden, proj_out), nn.BatchNorm1d(proj_out))
        in_align = proj_out if backbone == "resnet18" else width
        self.linear1 = nn.Linear(in_align, proj_out, bias=False)
        self.linear2 = nn.Linear(in_align, proj_out, bias=False)
        self.width = width
        self.max_length = int(max_length)
        self.joint = True
        self.text_model = text_model
        self.lm_model = None
        self.tokenizer = None
        if text_model:
            from transformers import AutoModel, AutoTokenizer

            from medzs.encoders.text import resolve_text_model_path

            local = resolve_text_model_path(text_model)
            self.tokenizer = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
            if any(local.glob("*.safetensors")) or any(local.glob("pytorch_model*.bin")):
                self.lm_model = AutoModel.from_pretrained(str(local), local_files_only=True, add_pooling_layer=True)
            else:  # config + tokenizer only: the weights come from the MERL checkpoint (lm_model.*)
                from transformers import AutoConfig

                self.lm_model = AutoModel.from_config(AutoConfig.from_pretrained(str(local), local_files_only=True),
                                                      add_pooling_layer=True)
            hidden = int(self.lm_model.config.hidden_size)
            self.proj_t = nn.Sequential(nn.Linear(hidden, proj_hidden), nn.GELU(), nn.Linear(proj_hidden, proj_out))

    def backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, leads, samples)`` -> ``(B, width)``: average-pooled ResNet features / ViT output."""
        out = self.ecg_encoder(x)
        return out.mean(dim=-1) if self.backbone == "resnet18" else out

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 12, 5000)`` min-max normalised -> L2-normalised ``(B, 256)`` joint embedding (``ext_ecg_emb``), or
        the backbone features (``(B, width)``, normalised) for an encoder-only checkpoint."""
        if not self.joint:
            return F.normalize(self.backbone_features(x), dim=-1)
        if self.backbone == "resnet18":
            emb = self.att_pool_head(self.downconv(self.ecg_encoder(x)))
        else:
            emb = self.proj_e(self.ecg_encoder(x))
        return F.normalize(emb, dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Prompts -> L2-normalised ``(T, 256)``: lower-cased, BERT ``pooler_output``, ``proj_t``.

        Raises:
            SpecError: no text tower (ECG-only model or encoder-only checkpoint).
        """
        if self.lm_model is None or not self.joint:
            why = ("its checkpoint holds the ECG encoder only" if not self.joint
                   else "no text_model folder was given")
            raise SpecError(f"MERL {self.backbone} model has no text tower ({why}): use it with --linear-probe, "
                            f"or give a full *_bestZeroShotAll_ckpt.pth and text_model= (a local "
                            f"MedCPT-Query-Encoder folder)")
        device = next(self.proj_t.parameters()).device
        tok = self.tokenizer([t.lower() for t in texts], padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(device)
        pooled = self.lm_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).pooler_output
        return F.normalize(self.proj_t(pooled), dim=-1)


# -- checkpoint layouts ---------------------------------------------------------------------------------------
#: Keys a checkpoint may carry that inference does not use and that some transformers versions do not register.
MERL_IGNORED_KEYS: tuple[str, ...] = ("lm_model.embeddings.position_ids",)


def torch_load(path: Path, name: str) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (no code runs from the file).

    Raises:
        SpecError: the file pickles objects other than tensors and containers (names the file).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        raise SpecError(f"model {name}: checkpoint {path}: not loadable with torch.load(weights_only=True) "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); re-save its state dict with "
                        f"torch.save(ckpt['model'], ...) in a trusted environment") from None


def strict_load(module: nn.Module, state: dict[str, torch.Tensor], name: str, path: Path,
                ignored: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module`` after checking keys and shapes exactly.

    Args:
        ignored: Keys (or key prefixes ending in ``.``) that may be present in ``state`` and are dropped.

    Raises:
        SpecError: names the file and the first missing / unexpected / mis-shaped key.
    """
    state = {k: v for k, v in state.items()
             if not any(k == i or (i.endswith(".") and k.startswith(i)) for i in ignored)}
    own = module.state_dict()
    own = {k: v for k, v in own.items()
           if not any(k == i or (i.endswith(".") and k.startswith(i)) for i in ignored)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing:
        raise SpecError(f"model {name}: checkpoint {path}: key {missing[0]!r} missing "
                        f"({len(missing)} missing; expected the layout of {type(module).__name__})")
    if unexpected:
        raise SpecError(f"model {name}: checkpoint {path}: unexpected key {unexpected[0]!r} "
                        f"({len(unexpected)} unexpected)")
    if bad:
        k = bad[0]
        raise SpecError(f"model {name}: checkpoint {path}: key {k!r} has shape {tuple(state[k].shape)}, "
                        f"expected {tuple(own[k].shape)}")
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)


def _unwrap(blob: Any, name: str, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(blob, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if key in blob and isinstance(blob[key], dict):
                blob = blob[key]
                break
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise SpecError(f"model {name}: checkpoint {path}: expected a state dict of tensors (or a dict with "
                        f"'model_state_dict' / 'state_dict' / 'model')")
    if blob and all(k.startswith("module.") for k in blob):
        blob = {k[len("module."):]: v for k, v in blob.items()}
    return blob


def merl_checkpoint_kind(state: dict[str, torch.Tensor]) -> str:
    """``"full"`` (``ECGCLIP`` state dict) or ``"encoder"`` (``ecg_encoder.state_dict()``, no prefix)."""
    return "full" if any(k.startswith("ecg_encoder.") for k in state) else "encoder"


def load_merl_checkpoint(model: MERLModel, config: Any, path: Path) -> None:
    """Load any of MERL's three checkpoint layouts into a :class:`MERLModel`, strictly.

    - full (``*_bestZeroShotAll_ckpt.pth``, ``*_final_total.pth``): every ``ECGCLIP`` key. With a text tower
      (``text_model`` given) the ``lm_model.*`` and ``proj_t.*`` keys must match it exactly (the
      ``lm_model.embeddings.position_ids`` buffer some transformers versions save is ignored); without one they
      are set aside (logged) and only the ECG side is checked and loaded.
    - encoder (``*_encoder.pth``): the backbone's keys without prefix; the model becomes an embedding model
      (:attr:`MERLModel.joint` False).
    - training (``*_{epoch}_ckpt.pth``): ``model_state_dict`` with ``module.`` prefixes (stripped), then as full.

    Raises:
        SpecError: a missing, unexpected or mis-shaped key (names the file and the key), or an unreadable file.
    """
    name = getattr(config, "name", "merl")
    state = _unwrap(torch_load(path, name), name, path)
    if merl_checkpoint_kind(state) == "encoder":
        strict_load(model.ecg_encoder, state, name, path)
        model.joint = False
        return
    text_keys = [k for k in state if k.startswith(("lm_model.", "proj_t."))]
    if model.lm_model is None:
        if text_keys:
            logger.info("model %s: %s: %d text-tower keys set aside (no text_model folder given)", name, path,
                        len(text_keys))
        state = {k: v for k, v in state.items() if k not in set(text_keys)}
    elif not text_keys:
        raise SpecError(f"model {name}: checkpoint {path}: key 'lm_model.embeddings.word_embeddings.weight' missing "
                        f"(a full MERL checkpoint stores the text tower; this looks like an ECG-only file)")
    strict_load(model, state, name, path, ignored=MERL_IGNORED_KEYS)
    model.joint = True


def build_merl(config: Any) -> MERLModel:
    """Registry builder: ``config.extra`` gives ``backbone`` (and optional ``vit_kwargs``)."""
    spec = config.input_spec
    return MERLModel(backbone=config.extra.get("backbone", "resnet18"), n_samples=spec.n_samples,
                     n_leads=len(spec.leads), proj_hidden=config.text_hidden, proj_out=config.embed_dim,
                     text_model=config.text_model, max_length=int(config.extra.get("max_length", 256)),
                     vit_kwargs=config.extra.get("vit_kwargs"))
