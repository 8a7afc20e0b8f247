"""Published 2-D image-text checkpoints through open_clip: CheXzero (OpenAI-CLIP layout) and BiomedCLIP.

- CheXzero: Tiu E, Talius E, Patel P, Langlotz CP, Ng AY, Rajpurkar P. Expert-level detection of pathologies from
  unannotated chest X-ray images via self-supervised learning. Nat Biomed Eng 6:1399-1406, 2022,
  doi:10.1038/s41551-022-00936-9 (github.com/rajpurkarlab/CheXzero). Its released ``.pt`` files are the
  ``state_dict()`` of an OpenAI CLIP ViT-B/32 (Radford et al., ICML 2021, arXiv:2103.00020; QuickGELU, context
  length 77) fine-tuned on MIMIC-CXR; open_clip's ``ViT-B-32-quickgelu`` has exactly that key layout.
- BiomedCLIP: Zhang S, Xu Y, Usuyama N, et al. BiomedCLIP: a multimodal biomedical foundation model pretrained from
  fifteen million scientific image-text pairs. arXiv:2303.00915 (NEJM AI 2024). Released as an open_clip folder:
  ``open_clip_config.json`` (timm ViT-B/16 + PubMedBERT through Hugging Face, context length 256) and
  ``open_clip_pytorch_model.bin`` or ``open_clip_model.safetensors``.

Nothing is downloaded: the checkpoint is a local file and BiomedCLIP's text tower is configured (and tokenised)
from a local Hugging Face BERT folder (``config.json`` + ``vocab.txt``); its weights come from the checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medzs.errors import SpecError

logger = logging.getLogger(__name__)

#: open_clip model config whose keys and shapes are OpenAI CLIP ViT-B/32's (CheXzero's base).
CHEXZERO_OPEN_CLIP_MODEL = "ViT-B-32-quickgelu"
#: Keys an OpenAI CLIP state dict may carry that are not parameters (dropped before the strict load).
OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")
#: CheXzero's pixel statistics on the 0-255 scale (zero_shot.py: Normalize(101.48761, 83.43944)), as 0-1 fractions.
CHEXZERO_MEAN = 101.48761 / 255.0
CHEXZERO_STD = 83.43944 / 255.0


class OpenCLIPZeroShot(nn.Module):
    """An open_clip model behind medzs' encoder interface.

    Args:
        clip: The open_clip ``CLIP`` / ``CustomTextCLIP`` module (its state dict is the published layout).
        tokenizer: open_clip tokenizer (``list[str] -> (T, context_length)`` token ids).
    """

    def __init__(self, clip: nn.Module, tokenizer) -> None:
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` preprocessed (normalised) images -> L2-normalised ``(B, D)``."""
        return F.normalize(self.clip.encode_image(x), dim=-1)

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`encode_image`."""
        return self.encode_image(x)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``list[str]`` -> L2-normalised ``(T, D)``."""
        device = next(self.clip.parameters()).device
        return F.normalize(self.clip.encode_text(self.tokenizer(list(texts)).to(device)), dim=-1)


def build_chexzero(config) -> OpenCLIPZeroShot:
    """Untrained OpenAI-CLIP ViT-B/32 (QuickGELU, context length 77) with open_clip's bundled BPE tokenizer."""
    import open_clip

    ctx = int(config.extra.get("context_length", 77))
    clip = open_clip.create_model(CHEXZERO_OPEN_CLIP_MODEL, pretrained=None, force_context_length=ctx)
    tok = open_clip.get_tokenizer(CHEXZERO_OPEN_CLIP_MODEL, context_length=ctx)
    return OpenCLIPZeroShot(clip, tok)


def load_openai_clip(model: OpenCLIPZeroShot, config, path: Path) -> None:
    """Load an OpenAI-CLIP-layout state dict (CheXzero's ``.pt``) strictly into ``model.clip``.

    A ``{"state_dict": ...}`` wrapper and a ``module.`` prefix (DataParallel) are accepted; OpenAI's meta entries
    (``input_resolution``, ``context_length``, ``vocab_size``) are dropped; fp16 tensors are cast to fp32.

    Raises:
        SpecError: missing/unexpected keys or shape mismatches (first five of each named).
    """
    from medzs.encoders._loading import strict_load as _strict_load

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except RuntimeError as exc:  # a TorchScript archive (OpenAI's jit=True files)
        try:
            blob = torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError:
            raise SpecError(f"model {config.name}: checkpoint {path}: not a torch state dict ({exc})") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    if not isinstance(state, dict):
        raise SpecError(f"model {config.name}: checkpoint {path}: expected a state dict, got {type(state).__name__}")
    state = {(k.removeprefix("module.")): v for k, v in state.items()
             if k not in OPENAI_META_KEYS}
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    _strict_load(model.clip, state, config.name, path)


# -- BiomedCLIP ---------------------------------------------------------------------------------------------------
def _open_clip_folder_config(config) -> tuple[dict, Path]:
    if not config.weights:
        raise SpecError(f"model {config.name}: give the checkpoint with weights= (open_clip_pytorch_model.bin or "
                        f"open_clip_model.safetensors next to its open_clip_config.json)")
    folder = Path(config.weights).expanduser().parent
    cfg_file = folder / "open_clip_config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"model {config.name}: {cfg_file} not found (an open_clip checkpoint folder holds "
                                f"open_clip_config.json next to the weights)")
    cfg = json.loads(cfg_file.read_text())
    if "model_cfg" not in cfg:
        raise SpecError(f"model {config.name}: {cfg_file}: field 'model_cfg' missing")
    return cfg, folder


def _local_text_folder(config, folder: Path) -> Path:
    text = config.text_model or ""
    if text and not text.startswith("package:"):
        p = Path(text).expanduser()
    else:
        p = folder
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"model {config.name}: text_model folder {p}: config.json not found (BiomedCLIP's "
                                f"text tower is configured from a local PubMedBERT folder: config.json + vocab.txt; "
                                f"pass text_model=...)")
    return p


def build_biomedclip(config) -> OpenCLIPZeroShot:
    """Untrained BiomedCLIP-layout model from the checkpoint folder's ``open_clip_config.json``.

    The Hugging Face text model and tokenizer names in the config are replaced by the local folder
    ``config.text_model`` (or the checkpoint folder when it holds ``config.json``); the encoder is built from its
    config only (``hf_model_pretrained=False``): all weights come from the checkpoint.

    Raises:
        FileNotFoundError: no ``open_clip_config.json`` or no local text folder. SpecError: no weights path.
    """
    from open_clip.model import CustomTextCLIP
    from open_clip.tokenizer import HFTokenizer

    cfg, folder = _open_clip_folder_config(config)
    model_cfg = json.loads(json.dumps(cfg["model_cfg"]))
    text_dir = str(_local_text_folder(config, folder))
    text_cfg = model_cfg["text_cfg"]
    if "hf_model_name" not in text_cfg:
        raise SpecError(f"model {config.name}: open_clip_config.json: text_cfg.hf_model_name missing (expected a "
                        f"Hugging Face text tower as in BiomedCLIP)")
    text_cfg.update(hf_model_name=text_dir, hf_tokenizer_name=text_dir, hf_model_pretrained=False)
    model_cfg["vision_cfg"]["timm_model_pretrained"] = False
    clip = CustomTextCLIP(**model_cfg)
    tok = HFTokenizer(text_dir, context_length=int(text_cfg.get("context_length", 256)),
                      **(text_cfg.get("tokenizer_kwargs") or {}))
    return OpenCLIPZeroShot(clip, tok)


def load_open_clip(model: OpenCLIPZeroShot, config, path: Path) -> None:
    """Load an open_clip checkpoint (``.bin``/``.pt`` state dict or ``.safetensors``) strictly into ``model.clip``.

    ``text.transformer.embeddings.position_ids`` (saved by transformers < 4.31, no longer a persistent buffer) is
    dropped when the module has no such buffer, as open_clip's own loader does; nothing else is renamed.

    Raises:
        SpecError: missing/unexpected keys or shape mismatches.
    """
    from medzs.encoders._loading import load_state_file, strict_load_release

    path = Path(path)
    strict_load_release(model.clip, load_state_file(path), config.name, path,
                        optional=("text.transformer.embeddings.position_ids",))
