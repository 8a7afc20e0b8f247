"""Image and volume preprocessing derived from :class:`~medzs.spec.ImageInputSpec` / :class:`~medzs.spec.VolumeInputSpec`.

One function per modality, used unchanged for training and for inference (no randomness here):

- :func:`preprocess_image` ``(1, H, W)`` [0, 1] sample (:func:`medzs.io.image.read_image`) -> ``(C, H, W)``:
  optional resampling to ``spec.pixel_spacing_mm`` -> ``spec.resize`` to ``spec.size`` -> grey repeated to
  ``spec.channels`` -> ``spec.normalization``;
- :func:`preprocess_volume` ``(1, D, H, W)`` HU sample with its affine (:mod:`medzs.io.ct`) -> ``(C, D, H, W)``
  with MONAI transforms: ``Orientation`` -> ``Spacing`` -> ``ScaleIntensityRange`` (HU window) ->
  ``ResizeWithPadOrCrop``.

Volume axes: ``spec.orientation`` names the world directions of the x, y, z axes (``"RAS"``: x to the patient's
right, y anterior, z superior; nibabel/MONAI codes). The output ``(D, H, W)`` axes are ``(z, y, x)``, so they
carry the reversed codes (``"SAR"`` for ``"RAS"``), and ``spec.spacing_mm`` / ``spec.shape`` are read in that
order. An encoder published on MONAI ``(C, x, y, z)`` arrays (e.g. Merlin) gets them with
``x.permute(0, 3, 2, 1)`` (batch: ``(0, 1, 4, 3, 2)``).

Dict-form wrappers (MONAI style: ``transform(sample) -> new sample``): :class:`PreprocessImaged`,
:class:`PreprocessVolumed`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.spec import ImageInputSpec, VolumeInputSpec

logger = logging.getLogger(__name__)


def _who(sample: Mapping[str, Any]) -> str:
    return str(sample.get("path") or sample.get("id") or "sample")


def check_image(sample: Mapping[str, Any]) -> tuple[np.ndarray, str]:
    """The ``(1, H, W)`` float image of a sample, validated.

    Raises:
        RecordError: not a dict, no ``image``, wrong shape, non-finite values.
    """
    if not isinstance(sample, Mapping):
        raise RecordError(f"sample: expected a dict with 'image', got {type(sample).__name__}")
    who = _who(sample)
    if sample.get("image") is None:
        raise RecordError(f"{who}: sample field 'image' missing (expected (1, H, W) in [0, 1])")
    x = np.asarray(sample["image"], dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] != 1 or min(x.shape[1:]) < 1:
        raise RecordError(f"{who}: image shape {x.shape} (expected (1, H, W))")
    if not np.isfinite(x).all():
        raise RecordError(f"{who}: image contains NaN or inf (expected finite values in [0, 1])")
    return x, who


def _interp(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bicubic resize of ``(C, H, W)`` to ``size``, clipped to the input range."""
    import torch
    import torch.nn.functional as F

    if tuple(x.shape[1:]) == tuple(size):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    y = F.interpolate(t, size=tuple(int(s) for s in size), mode="bicubic", align_corners=False, antialias=True)
    return np.clip(y[0].numpy(), float(x.min()), float(x.max()))


def pad_to_square(x: np.ndarray, value: float = 0.0) -> np.ndarray:
    """Pad ``(C, H, W)`` with ``value`` (centred) to a square of side ``max(H, W)``."""
    _, h, w = x.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    return np.pad(x, ((0, 0), (top, s - h - top), (left, s - w - left)), constant_values=value)


def center_crop_or_pad(x: np.ndarray, size: tuple[int, int], value: float = 0.0) -> np.ndarray:
    """Centre-crop and/or centre-pad ``(C, H, W)`` to ``size`` ``(H, W)``."""
    out = x
    for axis, target in ((1, size[0]), (2, size[1])):
        n = out.shape[axis]
        if n > target:
            start = (n - target) // 2
            out = np.take(out, np.arange(start, start + target), axis=axis)
        elif n < target:
            before = (target - n) // 2
            pad = [(0, 0)] * 3
            pad[axis] = (before, target - n - before)
            out = np.pad(out, pad, constant_values=value)
    return out


def resize_image(x: np.ndarray, size: tuple[int, int], mode: str = "resize") -> np.ndarray:
    """Bring ``(C, H, W)`` to ``size``.

    Args:
        x: Image, channel-first.
        size: ``(H, W)``.
        mode: ``"resize"`` (aspect not kept), ``"center_crop"`` (shorter side scaled to fit, then centre crop;
            CLIP's ``Resize`` + ``CenterCrop``) or ``"pad_resize"`` (pad to a square with 0 = black, then
            resize; aspect kept, as CheXzero's preprocessing).

    Raises:
        ValueError: unknown mode.
    """
    if mode == "resize":
        return _interp(x, size)
    if mode == "center_crop":
        _, h, w = x.shape
        s = max(size[0] / h, size[1] / w)
        scaled = _interp(x, (max(size[0], round(h * s)), max(size[1], round(w * s))))
        return center_crop_or_pad(scaled, size)
    if mode == "pad_resize":
        return _interp(pad_to_square(x, 0.0), size)
    raise ValueError(f"resize_image: mode expected 'resize', 'center_crop' or 'pad_resize', got {mode!r}")


def normalize_image(x: np.ndarray, method: str = "none", mean: Iterable[float] = (), std: Iterable[float] = ()) -> np.ndarray:
    """``"none"``, ``"minmax"`` (per image to [0, 1]; a constant image becomes 0) or ``"mean_std"`` per channel."""
    if method == "none":
        return x
    if method == "minmax":
        lo, hi = float(x.min()), float(x.max())
        return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if method == "mean_std":
        m = np.asarray(list(mean), dtype=np.float32).reshape(-1, 1, 1)
        s = np.asarray(list(std), dtype=np.float32).reshape(-1, 1, 1)
        return (x - m) / s
    raise ValueError(f"normalize_image: method expected 'none', 'minmax' or 'mean_std', got {method!r}")


def preprocess_image(sample: Mapping[str, Any], spec: ImageInputSpec) -> np.ndarray:
    """Turn a 2-D image sample into what an encoder with ``spec`` expects.

    Order: validate -> if ``spec.pixel_spacing_mm`` and the sample's ``spacing_mm`` are known: resample to
    that spacing and centre-crop/pad to ``spec.size`` (physical field of view kept); otherwise ``spec.resize``
    to ``spec.size`` -> repeat the grey channel to ``spec.channels`` -> ``spec.normalization``.

    Args:
        sample: Image sample (``image`` ``(1, H, W)`` in [0, 1], optional ``spacing_mm`` ``(row, col)`` mm).
        spec: The encoder's input spec.

    Returns:
        ``(spec.channels, H, W)`` float32.

    Raises:
        RecordError: missing/invalid image.
    """
    x, who = check_image(sample)
    spacing = sample.get("spacing_mm")
    if spec.pixel_spacing_mm is not None and spacing is not None:
        r, c = (float(v) for v in spacing)
        target = float(spec.pixel_spacing_mm)
        new = (max(1, round(x.shape[1] * r / target)), max(1, round(x.shape[2] * c / target)))
        x = center_crop_or_pad(_interp(x, new), spec.size)
    else:
        if spec.pixel_spacing_mm is not None:
            logger.debug("%s: pixel spacing unknown; resized to the spec size instead", who)
        x = resize_image(x, spec.size, spec.resize)
    if spec.channels == 3:
        x = np.repeat(x, 3, axis=0)
    x = normalize_image(x, spec.normalization, spec.mean, spec.std)
    return np.ascontiguousarray(x, dtype=np.float32)


def batch_images(samples: Iterable[Mapping[str, Any]], spec: ImageInputSpec) -> np.ndarray:
    """Preprocess and stack: ``(B, C, H, W)`` float32 (``(0, C, H, W)`` for no samples)."""
    arrays = [preprocess_image(s, spec) for s in samples]
    if not arrays:
        return np.zeros((0, *spec.shape), dtype=np.float32)
    return np.stack(arrays)


def check_volume(sample: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """The ``(1, D, H, W)`` HU volume and its 4x4 affine, validated.

    Raises:
        RecordError: missing volume/affine, wrong shapes, non-finite values.
    """
    if not isinstance(sample, Mapping):
        raise RecordError(f"sample: expected a dict with 'volume' and 'affine', got {type(sample).__name__}")
    who = _who(sample)
    if sample.get("volume") is None:
        raise RecordError(f"{who}: sample field 'volume' missing (expected (1, D, H, W) in HU)")
    v = np.asarray(sample["volume"], dtype=np.float32)
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4 or v.shape[0] != 1:
        raise RecordError(f"{who}: volume shape {v.shape} (expected (1, D, H, W))")
    aff = sample.get("affine")
    if aff is None:
        sp = sample.get("spacing_mm")
        if sp is None:
            raise RecordError(f"{who}: sample has neither 'affine' nor 'spacing_mm' (needed to resample)")
        aff = np.diag([float(sp[0]), float(sp[1]), float(sp[2]), 1.0])
    aff = np.asarray(aff, dtype=np.float64)
    if aff.shape != (4, 4) or not np.isfinite(aff).all():
        raise RecordError(f"{who}: affine shape {aff.shape} (expected a finite 4x4 matrix)")
    if not np.isfinite(v).all():
        raise RecordError(f"{who}: volume contains NaN or inf (expected finite HU)")
    return v, aff, who


def volume_transforms(spec: VolumeInputSpec) -> list[Any]:
    """The MONAI array transforms :func:`preprocess_volume` applies, in order (for inspection or reuse)."""
    from monai.transforms import Orientation, ResizeWithPadOrCrop, ScaleIntensityRange, Spacing

    lo, hi = spec.hu_window
    a, b = spec.intensity_range
    return [
        Orientation(axcodes=spec.orientation[::-1], labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacing(pixdim=tuple(float(s) for s in spec.spacing_mm), mode="bilinear", padding_mode="border"),
        ScaleIntensityRange(a_min=float(lo), a_max=float(hi), b_min=float(a), b_max=float(b), clip=True),
        ResizeWithPadOrCrop(spatial_size=tuple(int(s) for s in spec.shape), mode="constant", value=float(a)),
    ]


def _preprocess_volume_meta(sample: Mapping[str, Any], spec: VolumeInputSpec) -> tuple[np.ndarray, np.ndarray]:
    import torch
    from monai.data import MetaTensor

    v, aff, _ = check_volume(sample)
    x = MetaTensor(torch.from_numpy(np.ascontiguousarray(v)), affine=torch.from_numpy(aff))
    for t in volume_transforms(spec):
        x = t(x)
    arr = x.detach().cpu().numpy().astype(np.float32, copy=False)
    out_aff = np.asarray(x.affine.detach().cpu().numpy(), dtype=np.float64)
    if spec.channels == 3:
        arr = np.repeat(arr, 3, axis=0)
    return np.ascontiguousarray(arr), out_aff


def preprocess_volume(sample: Mapping[str, Any], spec: VolumeInputSpec) -> np.ndarray:
    """Turn a CT volume sample into what a 3-D encoder with ``spec`` expects (MONAI transforms).

    Order: ``Orientation`` (output axes ``(D, H, W)`` = the reversed ``spec.orientation``, e.g. ``SAR``) ->
    ``Spacing`` to ``spec.spacing_mm`` (z, y, x; bilinear, in HU) -> ``ScaleIntensityRange`` clipping
    ``spec.hu_window`` and mapping it to ``spec.intensity_range`` -> ``ResizeWithPadOrCrop`` to ``spec.shape``
    (centre; padding with the low end of ``intensity_range``, i.e. air) -> channels repeated to ``spec.channels``.

    Args:
        sample: Volume sample (``volume`` ``(1, D, H, W)`` HU, ``affine`` voxel -> RAS mm; without an affine,
            axis-aligned ``spacing_mm`` is assumed).
        spec: The encoder's input spec.

    Returns:
        ``(spec.channels, *spec.shape)`` float32.

    Raises:
        RecordError: missing/invalid volume or affine.
    """
    return _preprocess_volume_meta(sample, spec)[0]


def batch_volumes(samples: Iterable[Mapping[str, Any]], spec: VolumeInputSpec) -> np.ndarray:
    """Preprocess and stack: ``(B, C, D, H, W)`` float32."""
    arrays = [preprocess_volume(s, spec) for s in samples]
    if not arrays:
        return np.zeros((0, *spec.full_shape), dtype=np.float32)
    return np.stack(arrays)


class PreprocessImaged:
    """:func:`preprocess_image` as a dict transform: ``sample[key]`` becomes ``(C, H, W)``; the input is not modified.

    ``spacing_mm`` is set to the spec's pixel spacing when the image was resampled to it, else to None.
    """

    def __init__(self, spec: ImageInputSpec, key: str = "image") -> None:
        self.spec = spec
        self.key = key

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        src = dict(sample)
        if self.key != "image":
            src["image"] = sample.get(self.key)
        out = dict(sample)
        out[self.key] = preprocess_image(src, self.spec)
        resampled = self.spec.pixel_spacing_mm is not None and sample.get("spacing_mm") is not None
        out["spacing_mm"] = (self.spec.pixel_spacing_mm,) * 2 if resampled else None
        return out

    def __repr__(self) -> str:
        return f"PreprocessImaged(spec={self.spec!r}, key={self.key!r})"


class PreprocessVolumed:
    """:func:`preprocess_volume` as a dict transform: ``sample[key]`` becomes ``(C, D, H, W)``; ``spacing_mm``
    and ``affine`` become the output grid's (MONAI's updated affine); the input is not modified."""

    def __init__(self, spec: VolumeInputSpec, key: str = "volume") -> None:
        self.spec = spec
        self.key = key

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        src = dict(sample)
        if self.key != "volume":
            src["volume"] = sample.get(self.key)
        arr, aff = _preprocess_volume_meta(src, self.spec)
        out = dict(sample)
        out[self.key] = arr
        out["affine"] = aff
        out["spacing_mm"] = tuple(float(s) for s in self.spec.spacing_mm)
        return out

    def __repr__(self) -> str:
        return f"PreprocessVolumed(spec={self.spec!r}, key={self.key!r})"


__all__ = [
    "PreprocessImaged",
    "PreprocessVolumed",
    "batch_images",
    "batch_volumes",
    "center_crop_or_pad",
    "check_image",
    "check_volume",
    "normalize_image",
    "pad_to_square",
    "preprocess_image",
    "preprocess_volume",
    "resize_image",
    "volume_transforms",
]
