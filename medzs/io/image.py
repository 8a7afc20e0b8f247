"""Read 2-D medical images (chest radiographs, single CT slices) into medzs image samples.

Supported inputs:

- DICOM Part 10 files with one grey frame (CR, DX, single CT slices, ...), through pydicom and its pixel-data
  plugins (pylibjpeg + pylibjpeg-libjpeg for JPEG baseline/extended/lossless and JPEG-LS, pylibjpeg-openjpeg for
  JPEG 2000 and HTJ2K, pydicom itself for RLE and uncompressed data);
- PNG and JPEG files through Pillow, in modes ``1``, ``L``, ``LA``, ``P``, ``RGB``, ``RGBA``, ``I;16`` or ``I``.

DICOM grey levels follow the display pipeline of DICOM PS3.4 (Grayscale Standard Display, section N.2) and
PS3.3 C.11: stored values -> **Modality LUT** (``RescaleSlope``/``RescaleIntercept`` or ``ModalityLUTSequence``)
-> **VOI LUT** (``VOILUTSequence``, else the first ``WindowCenter``/``WindowWidth`` with its ``VOILUTFunction``)
-> scaled to [0, 1] over the output range of that LUT -> **MONOCHROME1 inversion last** (``1 - x``), so air and
background always end dark and bone bright. Without any VOI information the modality-LUT output is scaled over
the range the ``BitsStored`` value allows (not over ``BitsAllocated``, and not per image min-max).

The sample (``docs/architecture.md``)::

    {
        "image": np.ndarray,            # (1, H, W) float32 in [0, 1], 0 = dark (air), 1 = bright (bone, metal)
        "spacing_mm": (row, col) | None,  # mm between adjacent rows / columns; None when unknown
        "id": str, "path": str,
        "modality": "cxr" | "ct" | ...,  # what the caller asked for (or derived from the DICOM Modality)
        "meta": {...},                  # format, transfer syntax, window, view, quality_flags, ...
    }

Identifiers (patient name/id/birth date, UIDs, dates, institution...) are kept only under
``meta["identifiers"]``. Implausible data are listed in ``meta["quality_flags"]`` rather than refused, so that a
scorer can skip or report them: ``constant_image``, ``nearly_constant``, ``mostly_saturated``, ``non_finite``,
``values_outside_bits_stored``, ``narrow_dynamic_range``, ``invalid_window``, ``pixel_spacing_unknown``,
``modality_tag_absent``, ``rescale_missing`` (CT), ``body_part_not_chest`` / ``lateral_view`` (``cxr``),
``alpha_not_opaque`` / ``colour_image`` / ``multi_frame_first_used`` (PNG/JPEG).

References:
    DICOM PS3.3 (2024) C.7.6.3.1 (Image Pixel), C.11.1 (Modality LUT), C.11.2 (VOI LUT), C.8.11.7 (DX
    ImagerPixelSpacing), 10.7.1.3 (Pixel Spacing calibration); PS3.5 Annex A (transfer syntaxes).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.io._imaging_common import (
    _JPEG_MAGIC,
    _PNG_MAGIC,
    DECODER_PACKAGES,
    DICOM_IDENTIFIERS,
    IMAGE_FORMATS,
    _decode_error,
    _identifiers,
    _is_nifti,
    detect_image_format,
)

logger = logging.getLogger(__name__)

#: DICOM ``Modality`` values accepted for each medzs image modality (an absent tag is accepted and flagged).
ACCEPTED_DICOM_MODALITIES: dict[str, tuple[str, ...]] = {
    "cxr": ("CR", "DX", "DR", "RG", "PX", "OT"),
    "ct": ("CT",),
}

#: HU window used for CT slices whose file carries no VOI LUT / window (and no ``window`` argument).
DEFAULT_CT_WINDOW: tuple[float, float] = (-1000.0, 1000.0)

_SUPPORTED_PI = ("MONOCHROME1", "MONOCHROME2")
#: BodyPartExamined values (PS3.16 CID 4031 code meanings, upper case) accepted as a chest without a flag.
_CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "CHEST_ABDOMEN", "CHESTABDOMEN", "CHEST_TO_PELVIS",
                               "TORSO", "HEART", "RIB", "RIBS"})
#: ViewPosition values of lateral projections (PS3.3 C.8.11.5.1.1 / CID 4010 abbreviations).
_LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LLO", "RLO"})


# --------------------------------------------------------------------------------------------------- helpers
def _record_id(p: Path) -> str:
    name = p.name
    for ext in (".nii.gz", ".dcm", ".dicom", ".png", ".jpeg", ".jpg", ".nii"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def quality_flags(image: np.ndarray) -> list[str]:
    """Flags for implausible [0, 1] images (empty list when none).

    Flags: ``constant_image`` (one value everywhere), ``nearly_constant`` (intensity range < 1 % of [0, 1]),
    ``mostly_saturated`` (> 50 % of the pixels at 0 or at 1), ``non_finite`` (NaN or inf, replaced by 0).
    """
    flags: list[str] = []
    if not np.isfinite(image).all():
        flags.append("non_finite")
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return flags + ["constant_image"]
    lo, hi = float(finite.min()), float(finite.max())
    if hi == lo:
        flags.append("constant_image")
    elif hi - lo < 0.01:
        flags.append("nearly_constant")
    if finite.size and (max(np.mean(finite <= 0.0), np.mean(finite >= 1.0)) > 0.5) and hi != lo:
        flags.append("mostly_saturated")
    return flags


def _float_or_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _pixel_spacing(ds: Any) -> tuple[tuple[float, float] | None, str | None, list[str]]:
    """``(row, col)`` mm from PixelSpacing, else ImagerPixelSpacing; ``0\\0`` or absent -> None (with a note)."""
    notes: list[str] = []
    for kw in ("PixelSpacing", "ImagerPixelSpacing"):
        v = ds.get(kw)
        if v is None:
            continue
        try:
            vals = [float(x) for x in (v if isinstance(v, (list, tuple)) or hasattr(v, "__len__") else [v])]
        except (TypeError, ValueError):
            notes.append(f"{kw} unreadable ({v!r})")
            continue
        if len(vals) != 2:
            notes.append(f"{kw} has {len(vals)} values (expected 2)")
            continue
        if min(vals) <= 0 or not all(np.isfinite(vals)):
            notes.append(f"{kw} is {vals[0]:g}\\{vals[1]:g} (unknown spacing)")
            continue
        return (vals[0], vals[1]), kw, notes
    return None, None, notes


def _stored_range(ds: Any) -> tuple[float, float]:
    """Range of stored values that ``BitsStored`` and ``PixelRepresentation`` allow."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def _modality_output_range(ds: Any) -> tuple[float, float]:
    """Output range of the Modality LUT stage (as pydicom's ``apply_windowing`` defines it)."""
    if ds.get("ModalityLUTSequence"):
        item = ds.ModalityLUTSequence[0]
        desc = item.LUTDescriptor
        bits = int(desc[2]) if len(desc) > 2 else 16
        return 0.0, float(2**bits - 1)
    lo, hi = _stored_range(ds)
    slope, inter = _float_or_none(ds.get("RescaleSlope")), _float_or_none(ds.get("RescaleIntercept"))
    if slope is not None and inter is not None:
        a, b = lo * slope + inter, hi * slope + inter
        lo, hi = min(a, b), max(a, b)
    return lo, hi


def _dicom_to_unit(
    p: Path,
    ds: Any,
    arr: np.ndarray,
    window: tuple[float, float] | None,
    flags: list[str],
    default_window: tuple[float, float] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Modality LUT -> VOI LUT / window -> [0, 1] (before any MONOCHROME1 inversion)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    lo_s, hi_s = _stored_range(ds)
    if arr.size and (float(arr.min()) < lo_s or float(arr.max()) > hi_s):
        flags.append("values_outside_bits_stored")
    info: dict[str, Any] = {}
    has_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds or bool(ds.get("ModalityLUTSequence"))
    try:
        x = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise RecordError(f"{p}: Modality LUT: cannot apply it ({type(exc).__name__}: {exc})") from None
    info["modality_lut"] = (
        "ModalityLUTSequence" if ds.get("ModalityLUTSequence") else ("rescale" if has_rescale else "identity")
    )
    if window is not None:
        lo, hi = float(window[0]), float(window[1])
        if not hi > lo:
            raise RecordError(f"{p}: window: expected (low, high) with low < high, got {window}")
        info["voi"] = {"source": "argument", "low": lo, "high": hi}
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0), info
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2]) if len(item.LUTDescriptor) > 2 else 16
        try:
            y = np.asarray(apply_voi_lut(x, ds, index=0, prefer_lut=True), dtype=np.float64)
        except (TypeError, ValueError, AttributeError, IndexError) as exc:
            raise RecordError(f"{p}: VOILUTSequence: cannot apply it ({type(exc).__name__}: {exc})") from None
        info["voi"] = {"source": "VOILUTSequence", "output_bits": bits}
        return np.clip(y / float(2**bits - 1), 0.0, 1.0), info
    wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")
    if wc is not None and ww is not None:
        c = _float_or_none(wc[0] if hasattr(wc, "__len__") and not isinstance(wc, str) else wc)
        w = _float_or_none(ww[0] if hasattr(ww, "__len__") and not isinstance(ww, str) else ww)
        if c is not None and w is not None and w >= 1:
            from pydicom.pixels import apply_windowing

            y_lo, y_hi = _modality_output_range(ds)
            y = np.asarray(apply_windowing(x, ds, index=0), dtype=np.float64)
            fn = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
            info["voi"] = {"source": "WindowCenter/WindowWidth", "center": c, "width": w, "function": fn}
            return np.clip((y - y_lo) / (y_hi - y_lo), 0.0, 1.0), info
        flags.append("invalid_window")
    if default_window is not None:
        lo, hi = default_window
        info["voi"] = {"source": "default CT window", "low": float(lo), "high": float(hi)}
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0), info
    lo, hi = _modality_output_range(ds)
    info["voi"] = {"source": "BitsStored range", "low": lo, "high": hi}
    if x.size and hi > lo and (float(x.max()) - float(x.min())) < 0.05 * (hi - lo):
        flags.append("narrow_dynamic_range")
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0), info


def _read_dicom(p: Path, modality: str | None, window: tuple[float, float] | None) -> dict[str, Any]:
    """Read a DICOM image; pydicom's warnings about non-conformant values are counted, not shown."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _read_dicom_inner(p, modality, window)
    if caught:
        logger.debug("%s: pydicom reported %d warning(s) about non-conformant values", p.name, len(caught))
    out["meta"]["dicom_warnings"] = len(caught)
    return out


def _read_dicom_inner(p: Path, modality: str | None, window: tuple[float, float] | None) -> dict[str, Any]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(p)
    except InvalidDicomError as exc:
        raise RecordError(f"{p}: not a DICOM Part 10 file ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - truncated / malformed files
        raise RecordError(f"{p}: DICOM header unreadable ({type(exc).__name__}: {exc})") from None
    sop = ds.get("SOPClassUID")
    sop_name = getattr(sop, "name", str(sop)) if sop else "absent"
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise RecordError(
            f"{p}: PixelData: absent (SOP class {sop_name}, Modality {ds.get('Modality', 'absent')}); "
            f"expected an image"
        )
    flags: list[str] = []
    dmod = str(ds.get("Modality", "") or "").upper() or None
    if modality is not None:
        accepted = ACCEPTED_DICOM_MODALITIES.get(modality)
        if accepted is None:
            raise RecordError(f"{p}: modality argument: expected one of {sorted(ACCEPTED_DICOM_MODALITIES)} or None, "
                              f"got {modality!r}")
        if dmod is None:
            flags.append("modality_tag_absent")
        elif dmod not in accepted:
            raise RecordError(
                f"{p}: Modality: {dmod} is not a {modality} image (expected one of {', '.join(accepted)})"
            )
    pi = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if pi not in _SUPPORTED_PI:
        raise RecordError(
            f"{p}: PhotometricInterpretation: {pi or 'absent'} is not supported (expected MONOCHROME1 or "
            f"MONOCHROME2 grey images)"
        )
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp != 1:
        raise RecordError(f"{p}: SamplesPerPixel: {spp} with {pi} (expected 1)")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames > 1:
        raise RecordError(
            f"{p}: NumberOfFrames: {n_frames} frames; read_image reads single-frame images (read multi-frame "
            f"volumes with medzs.io.ct.read_ct_dicom)"
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises several types from plugins
        raise _decode_error(p, ds, exc) from None
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise RecordError(f"{p}: PixelData: decoded to shape {arr.shape}, expected (rows, columns)")
    is_ct = modality == "ct" or (modality is None and dmod == "CT")
    unit, info = _dicom_to_unit(p, ds, arr, window, flags, DEFAULT_CT_WINDOW if is_ct else None)
    if pi == "MONOCHROME1":
        unit = 1.0 - unit
    image = unit.astype(np.float32)[None]
    flags.extend(quality_flags(image))
    image = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
    if modality == "cxr":
        body = str(ds.get("BodyPartExamined", "") or "").strip().upper()
        if body and body not in _CHEST_BODY_PARTS:
            flags.append("body_part_not_chest")
        if str(ds.get("ViewPosition", "") or "").strip().upper() in _LATERAL_VIEWS:
            flags.append("lateral_view")
    spacing, spacing_source, notes = _pixel_spacing(ds)
    if spacing is None:
        flags.append("pixel_spacing_unknown")
    if dmod == "CT" and "RescaleSlope" not in ds and "RescaleIntercept" not in ds and not ds.get("ModalityLUTSequence"):
        logger.warning("%s: CT image without RescaleSlope/RescaleIntercept; stored values used as is", p.name)
        flags.append("rescale_missing")
    ts = getattr(ds.file_meta, "TransferSyntaxUID", None)
    meta: dict[str, Any] = {
        "format": "dicom",
        "dicom_modality": dmod,
        "sop_class": sop_name,
        "transfer_syntax": {"uid": str(ts) if ts else None, "name": ts.name if ts else None},
        "photometric_interpretation": pi,
        "inverted": pi == "MONOCHROME1",
        "bits_allocated": int(ds.get("BitsAllocated", 0) or 0),
        "bits_stored": int(ds.get("BitsStored", 0) or 0),
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
        "rescale": (_float_or_none(ds.get("RescaleSlope")), _float_or_none(ds.get("RescaleIntercept"))),
        "spacing_source": spacing_source,
        "spacing_notes": notes,
        "shape": tuple(int(s) for s in arr.shape),
        "stored_range": (int(arr.min()), int(arr.max())) if arr.size else None,
        "view_position": str(ds.get("ViewPosition", "") or "") or None,
        "body_part": str(ds.get("BodyPartExamined", "") or "") or None,
        "manufacturer": str(ds.get("Manufacturer", "") or "") or None,
        "quality_flags": flags,
        "identifiers": _identifiers(ds),
        **info,
    }
    return {"image": image, "spacing_mm": spacing, "meta": meta, "dicom_modality": dmod}


def _read_pil(p: Path, fmt: str) -> dict[str, Any]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    flags: list[str] = []
    try:
        with Image.open(p) as im0:
            im0.load()
            im = ImageOps.exif_transpose(im0) or im0
            mode = im.mode
            n_frames = int(getattr(im0, "n_frames", 1) or 1)
            dpi = im0.info.get("dpi")
            if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                x = np.asarray(im, dtype=np.uint16).astype(np.float64) / 65535.0
                bits = 16
            elif mode == "I":
                a = np.asarray(im).astype(np.float64)
                # PNG 16-bit greyscale opens as "I" in Pillow; values beyond 16 bits would be another source.
                bits = 16 if a.size == 0 or (a.min() >= 0 and a.max() <= 65535) else 32
                if bits == 32:
                    raise RecordError(f"{p}: image mode I with values outside 0..65535; expected 8- or 16-bit grey")
                x = a / 65535.0
            elif mode == "F":
                raise RecordError(f"{p}: image mode F (floating point) is not supported; expected 8- or 16-bit")
            else:
                bits = 8
                if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                    alpha = np.asarray(im.getchannel("A") if mode != "P" else im.convert("RGBA").getchannel("A"))
                    if alpha.size and alpha.min() < 255:
                        flags.append("alpha_not_opaque")
                if mode not in ("L", "1"):
                    rgb = np.asarray(im.convert("RGB")).astype(np.int16)
                    if np.abs(rgb[..., 0] - rgb[..., 1]).max(initial=0) > 8 or np.abs(
                        rgb[..., 1] - rgb[..., 2]
                    ).max(initial=0) > 8:
                        flags.append("colour_image")
                x = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise RecordError(f"{p}: {fmt.upper()} image unreadable ({type(exc).__name__}: {exc})") from None
    if n_frames > 1:
        flags.append("multi_frame_first_used")
    image = x.astype(np.float32)[None]
    flags.extend(quality_flags(image))
    spacing = None
    meta = {
        "format": fmt,
        "mode": mode,
        "bits": bits,
        "shape": tuple(int(s) for s in x.shape),
        "dpi": tuple(float(d) for d in dpi) if dpi else None,
        "spacing_source": None,
        "quality_flags": flags,
        "identifiers": {},
    }
    return {"image": image, "spacing_mm": spacing, "meta": meta, "dicom_modality": None}


def read_image(
    path: str | os.PathLike[str],
    *,
    modality: str | None = "cxr",
    window: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Read one 2-D image (DICOM, PNG or JPEG; detected from the content) as a medzs image sample.

    Args:
        path: The image file.
        modality: ``"cxr"`` (chest radiograph; DICOM Modality must be CR, DX, DR, RG, PX or OT), ``"ct"`` (a
            single CT slice; DICOM Modality CT) or None (any single-frame grey image; the sample's modality is
            then the DICOM Modality in lower case, ``"cxr"`` for CR/DX, or None for PNG/JPEG). An absent Modality
            tag is accepted and flagged (``modality_tag_absent``).
        window: ``(low, high)`` in modality-LUT units (HU for CT) replacing the file's VOI LUT/window, e.g.
            ``(-1000, 400)`` for a CT lung window. PNG/JPEG ignore it. CT slices without any window use
            :data:`DEFAULT_CT_WINDOW`.

    Returns:
        Sample dict: ``image`` (1, H, W) float32 in [0, 1], ``spacing_mm`` ``(row, col)`` in mm or None,
        ``id`` (file name without extension), ``path``, ``modality``, ``meta`` (``format``, transfer syntax,
        photometric interpretation, applied ``voi``, ``spacing_source``, ``quality_flags``; identifiers only
        under ``meta["identifiers"]``).

    Raises:
        RecordError: file missing or not an image medzs reads; DICOM without pixel data; a transfer syntax that
            cannot be decoded here (names the syntax UID, its name and the package that decodes it); an
            unsupported PhotometricInterpretation (only MONOCHROME1/2); several frames; a DICOM Modality that
            is not the requested ``modality``.
    """
    p = Path(path)
    if not p.is_file():
        raise RecordError(f"{p}: file not found (expected a DICOM, PNG or JPEG image)")
    with open(p, "rb") as fh:
        head = fh.read(544)
    if len(head) >= 132 and head[128:132] == b"DICM":
        out = _read_dicom(p, modality, window)
    elif head.startswith(_PNG_MAGIC):
        out = _read_pil(p, "png")
    elif head.startswith(_JPEG_MAGIC):
        out = _read_pil(p, "jpeg")
    elif _is_nifti(p, head):
        raise RecordError(f"{p}: NIfTI volume; read it with medzs.io.ct.read_nifti (expected a 2-D image here)")
    else:
        raise RecordError(
            f"{p}: unknown image format (expected DICOM with 'DICM' at byte 128, PNG or JPEG by content)"
        )
    dmod = out.pop("dicom_modality")
    if modality is None:
        modality_out = {"CR": "cxr", "DX": "cxr", "DR": "cxr", "CT": "ct"}.get(dmod or "", (dmod or "").lower() or None)
    else:
        modality_out = modality
    logger.debug("read_image: %s -> %s, flags %s", p.name, out["image"].shape, out["meta"]["quality_flags"])
    return {
        "image": out["image"],
        "spacing_mm": out["spacing_mm"],
        "id": _record_id(p),
        "path": str(p),
        "meta": out["meta"],
        "modality": modality_out,
    }


def read_any_image(
    path: str | os.PathLike[str],
    format: str | None = None,
    modality: str | None = "cxr",
    *,
    series_uid: str | None = None,
    window: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Read any imaging input: the engine's reader for modalities ``cxr`` and ``ct``.

    PNG/JPEG/single-frame DICOM -> :func:`read_image` (2-D sample, key ``image``); a DICOM series folder, a NIfTI
    file or a multi-frame DICOM -> :mod:`medzs.io.ct` (volume sample, key ``volume``).

    Args:
        path: File or folder.
        format: A name from :data:`IMAGE_FORMATS` when known (skips content detection), else None.
        modality: As :func:`read_image` (``"cxr"``, ``"ct"`` or None).
        series_uid: Series to read from a folder holding several.
        window: HU / modality-LUT window for 2-D DICOM (:func:`read_image`).

    Raises:
        RecordError: unknown format name or content, or whatever the chosen reader raises.
    """
    p = Path(path)
    if format is not None and format not in IMAGE_FORMATS:
        raise RecordError(f"{p}: format {format!r}: expected one of {IMAGE_FORMATS} or None")
    fmt = format or detect_image_format(p)
    if fmt in ("dicom-series", "nifti"):
        from medzs.io.ct import read_ct_series, read_nifti

        return read_ct_series(p, series_uid) if fmt == "dicom-series" else read_nifti(p)
    if fmt == "dicom-image":
        import pydicom

        try:
            n_frames = int(pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["NumberOfFrames"])
                           .get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError, OSError):
            n_frames = 1
        if n_frames > 1:
            from medzs.io.ct import read_ct_dicom

            return read_ct_dicom(p)
    if fmt in ("dicom-image", "png", "jpeg"):
        return read_image(p, modality=modality, window=window)
    if not p.exists():
        raise RecordError(f"{p}: file not found (expected an image, a DICOM series folder or a NIfTI volume)")
    raise RecordError(f"{p}: not an imaging input (expected DICOM image, PNG, JPEG, NIfTI or a DICOM series folder)")


__all__ = [
    "ACCEPTED_DICOM_MODALITIES",
    "DECODER_PACKAGES",
    "DEFAULT_CT_WINDOW",
    "DICOM_IDENTIFIERS",
    "IMAGE_FORMATS",
    "detect_image_format",
    "quality_flags",
    "read_any_image",
    "read_image",
]
