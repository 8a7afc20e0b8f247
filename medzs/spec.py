"""Input specifications: what an encoder declares it needs, one variant per modality.

- :class:`ECGInputSpec`: 12-lead (or fewer) ECG, channel-first ``(leads, samples)`` in mV;
- :class:`ImageInputSpec`: 2-D images (chest radiographs, CT slices), ``(channels, H, W)``;
- :class:`VolumeInputSpec`: 3-D volumes (CT), ``(1, D, H, W)`` in Hounsfield units (HU) before windowing.

Preprocessing is derived from these specs (:func:`medzs.transforms.ecg.preprocess` for ECGs; the imaging
transforms for the others), never written twice. :func:`spec_from_dict` rebuilds any variant from its
``to_dict()`` form (the ``modality`` key picks the class).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from medzs.errors import SpecError

#: The standard 12 ECG leads, in the conventional order (limb leads, augmented limb leads, precordial leads).
STANDARD_12_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)

_NORMALIZATIONS = ("none", "zscore", "minmax", "scale")
_CROPS = ("center", "start")
#: Modalities a spec (and so a model) can declare.
MODALITIES: tuple[str, ...] = ("ecg", "cxr", "ct")


@dataclass(frozen=True)
class ECGInputSpec:
    """What an ECG encoder expects as input.

    Attributes:
        leads: Lead names in the order the encoder expects (matched by name, never by position).
        fs: Sampling frequency in Hz.
        duration_s: Duration in seconds; records are cropped (centre) or zero-padded to it.
        units: Physical units of the signal; medzs works in millivolts.
        bandpass_hz: ``(low, high)`` cut-offs in Hz for a zero-phase Butterworth band-pass, or None.
        normalization: ``"none"``, ``"zscore"`` (per lead), ``"minmax"`` (per record to [0, 1]) or
            ``"scale"`` (divide by ``scale``).
        scale: Divisor used by ``normalization="scale"``.
        crop: Which part of a longer record is kept: ``"center"`` (default) or ``"start"`` (the first
            ``duration_s`` seconds, as MERL's published preprocessing does).
        accepts_masked: The encoder was trained with missing leads zero-filled and masked (NaN or absent leads
            are then filled with 0 instead of refusing the record; see :mod:`medzs.transforms.ecg`).
        min_leads: With ``accepts_masked``, the fewest usable leads a record may have (fewer is an error).
    """

    leads: tuple[str, ...] = STANDARD_12_LEADS
    fs: float = 500.0
    duration_s: float = 10.0
    units: str = "mV"
    bandpass_hz: tuple[float, float] | None = None
    normalization: str = "none"
    scale: float = 1.0
    crop: str = "center"
    accepts_masked: bool = False
    min_leads: int = 1
    modality: str = field(default="ecg", init=False)

    def __post_init__(self) -> None:
        if not self.leads:
            raise SpecError("ECGInputSpec.leads: expected at least one lead name")
        if len(set(self.leads)) != len(self.leads):
            raise SpecError(f"ECGInputSpec.leads: duplicate lead names in {self.leads}")
        if self.fs <= 0:
            raise SpecError(f"ECGInputSpec.fs: expected a positive sampling rate in Hz, got {self.fs}")
        if self.duration_s <= 0:
            raise SpecError(f"ECGInputSpec.duration_s: expected a positive duration in s, got {self.duration_s}")
        if self.units != "mV":
            raise SpecError(f"ECGInputSpec.units: medzs works in 'mV', got {self.units!r}")
        if self.normalization not in _NORMALIZATIONS:
            raise SpecError(
                f"ECGInputSpec.normalization: expected one of {_NORMALIZATIONS}, got {self.normalization!r}"
            )
        if self.crop not in _CROPS:
            raise SpecError(f"ECGInputSpec.crop: expected one of {_CROPS}, got {self.crop!r}")
        if not 1 <= self.min_leads <= len(self.leads):
            raise SpecError(f"ECGInputSpec.min_leads: expected 1..{len(self.leads)}, got {self.min_leads}")
        if self.bandpass_hz is not None:
            lo, hi = self.bandpass_hz
            if not (0 <= lo < hi < self.fs / 2):
                raise SpecError(
                    f"ECGInputSpec.bandpass_hz: expected 0 <= low < high < fs/2 ({self.fs / 2} Hz), "
                    f"got {self.bandpass_hz}"
                )

    @property
    def n_samples(self) -> int:
        """Number of samples per lead: ``round(fs * duration_s)``."""
        return int(round(self.fs * self.duration_s))

    @property
    def shape(self) -> tuple[int, int]:
        """Channel-first shape of one preprocessed record: ``(leads, samples)``."""
        return (len(self.leads), self.n_samples)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for JSON provenance)."""
        d = asdict(self)
        d["leads"] = list(self.leads)
        if self.bandpass_hz is not None:
            d["bandpass_hz"] = list(self.bandpass_hz)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ECGInputSpec:
        """Inverse of :meth:`to_dict`."""
        d = {k: v for k, v in d.items() if k != "modality"}
        if "leads" in d:
            d["leads"] = tuple(d["leads"])
        if d.get("bandpass_hz") is not None:
            d["bandpass_hz"] = tuple(d["bandpass_hz"])
        return cls(**d)

    def describe(self) -> str:
        """One line for ``medzs models``, e.g. ``12 x 1000 @ 100 Hz, zscore``."""
        return f"{len(self.leads)} x {self.n_samples} @ {self.fs:g} Hz, {self.normalization}"


_IMAGE_NORMS = ("none", "minmax", "mean_std")
_RESIZE = ("resize", "center_crop", "pad_resize")


@dataclass(frozen=True)
class ImageInputSpec:
    """What a 2-D image encoder expects (chest radiographs, CT slices).

    The image is read as one grey channel, intensities scaled to [0, 1] (after the DICOM modality/VOI LUTs and
    MONOCHROME1 inversion, or from 8/16-bit PNG/JPEG), brought to ``size`` by ``resize``, repeated to
    ``channels`` and normalised.

    Attributes:
        size: ``(H, W)`` in pixels.
        channels: 1 (grey) or 3 (grey repeated, for RGB-trained towers such as CLIP).
        resize: ``"resize"`` (aspect not kept), ``"center_crop"`` (shorter side to size, then centre crop, as
            CLIP's preprocessing) or ``"pad_resize"`` (pad to square with 0, then resize; CheXzero).
        normalization: ``"none"`` (keep [0, 1]), ``"minmax"`` (per image to [0, 1]) or ``"mean_std"``
            (``(x - mean) / std`` per channel).
        mean: Per-channel means for ``mean_std`` (length ``channels``).
        std: Per-channel standard deviations for ``mean_std``.
        pixel_spacing_mm: Pixel spacing the encoder was trained at, if any (None: not resampled by spacing).
        modality: ``"cxr"`` (default) or ``"ct"`` (2-D CT slices).
    """

    size: tuple[int, int] = (224, 224)
    channels: int = 1
    resize: str = "resize"
    normalization: str = "none"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    pixel_spacing_mm: float | None = None
    modality: str = "cxr"

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise SpecError(f"ImageInputSpec.size: expected (H, W) with H, W >= 1, got {self.size}")
        if self.channels not in (1, 3):
            raise SpecError(f"ImageInputSpec.channels: expected 1 or 3, got {self.channels}")
        if self.resize not in _RESIZE:
            raise SpecError(f"ImageInputSpec.resize: expected one of {_RESIZE}, got {self.resize!r}")
        if self.normalization not in _IMAGE_NORMS:
            raise SpecError(f"ImageInputSpec.normalization: expected one of {_IMAGE_NORMS}, "
                            f"got {self.normalization!r}")
        if self.normalization == "mean_std":
            if len(self.mean) != self.channels or len(self.std) != self.channels or min(self.std) <= 0:
                raise SpecError(f"ImageInputSpec.mean/std: expected {self.channels} values each (std > 0), "
                                f"got mean {self.mean}, std {self.std}")
        if self.pixel_spacing_mm is not None and self.pixel_spacing_mm <= 0:
            raise SpecError(f"ImageInputSpec.pixel_spacing_mm: expected > 0 mm or None, got {self.pixel_spacing_mm}")
        if self.modality not in ("cxr", "ct"):
            raise SpecError(f"ImageInputSpec.modality: expected 'cxr' or 'ct', got {self.modality!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Channel-first shape of one preprocessed image: ``(channels, H, W)``."""
        return (self.channels, *self.size)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for JSON provenance)."""
        d = asdict(self)
        for k in ("size", "mean", "std"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageInputSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        for k in ("size", "mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def describe(self) -> str:
        """One line for ``medzs models``."""
        return f"{self.channels} x {self.size[0]} x {self.size[1]} image, {self.resize}, {self.normalization}"


@dataclass(frozen=True)
class VolumeInputSpec:
    """What a 3-D volume encoder expects (CT).

    The volume is read in HU, oriented to ``orientation``, resampled to ``spacing_mm``, clipped to
    ``hu_window`` and scaled to ``intensity_range``, then centre-cropped / padded to ``shape``.

    Attributes:
        shape: ``(D, H, W)`` in voxels after resampling, cropping and padding.
        spacing_mm: ``(z, y, x)`` voxel spacing in mm the encoder expects.
        hu_window: ``(low, high)`` HU clip window.
        intensity_range: ``(a, b)``: the window is mapped linearly to this range.
        orientation: Axis codes (nibabel / MONAI convention), default ``"RAS"``.
        channels: Channels the tower takes (1; 3 repeats the grey volume).
        modality: ``"ct"``.
    """

    shape: tuple[int, int, int] = (64, 128, 128)
    spacing_mm: tuple[float, float, float] = (3.0, 1.5, 1.5)
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    intensity_range: tuple[float, float] = (0.0, 1.0)
    orientation: str = "RAS"
    channels: int = 1
    modality: str = "ct"

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise SpecError(f"VolumeInputSpec.shape: expected (D, H, W) >= 1, got {self.shape}")
        if len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0:
            raise SpecError(f"VolumeInputSpec.spacing_mm: expected (z, y, x) > 0 mm, got {self.spacing_mm}")
        lo, hi = self.hu_window
        if not lo < hi:
            raise SpecError(f"VolumeInputSpec.hu_window: expected low < high (HU), got {self.hu_window}")
        if len(self.orientation) != 3:
            raise SpecError(f"VolumeInputSpec.orientation: expected 3 axis codes like 'RAS', got {self.orientation!r}")
        if self.channels not in (1, 3):
            raise SpecError(f"VolumeInputSpec.channels: expected 1 or 3, got {self.channels}")
        if self.modality != "ct":
            raise SpecError(f"VolumeInputSpec.modality: expected 'ct', got {self.modality!r}")

    @property
    def full_shape(self) -> tuple[int, int, int, int]:
        """Channel-first shape of one preprocessed volume: ``(channels, D, H, W)``."""
        return (self.channels, *self.shape)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for JSON provenance)."""
        d = asdict(self)
        for k in ("shape", "spacing_mm", "hu_window", "intensity_range"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VolumeInputSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        for k in ("shape", "spacing_mm", "hu_window", "intensity_range"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def describe(self) -> str:
        """One line for ``medzs models``."""
        d, h, w = self.shape
        z, y, x = self.spacing_mm
        return f"{d} x {h} x {w} volume @ {z:g}x{y:g}x{x:g} mm, HU {self.hu_window[0]:g}..{self.hu_window[1]:g}"


#: Any input specification.
InputSpec = ECGInputSpec | ImageInputSpec | VolumeInputSpec


def spec_from_dict(d: dict[str, Any]) -> InputSpec:
    """Rebuild an input spec from its ``to_dict()`` form; ``modality`` (default ``"ecg"``) picks the class.

    Raises:
        SpecError: unknown modality or fields.
    """
    modality = d.get("modality", "ecg")
    try:
        if modality == "ecg":
            return ECGInputSpec.from_dict(d)
        if modality == "ct" and "spacing_mm" in d:
            return VolumeInputSpec.from_dict(d)
        if modality in ("cxr", "ct"):
            return ImageInputSpec.from_dict(d)
    except TypeError as exc:
        raise SpecError(f"input spec: unexpected fields for modality {modality!r}: {exc}") from None
    raise SpecError(f"input spec: modality expected one of {MODALITIES}, got {modality!r}")
