"""Read CT volumes: DICOM series folders, enhanced multi-frame CT files and NIfTI, as medzs volume samples.

The volume sample (``docs/architecture.md``)::

    {
        "volume": np.ndarray,      # (1, D, H, W) float32, Hounsfield units
        "spacing_mm": (z, y, x),   # mm between slices (from the positions), rows and columns
        "affine": np.ndarray,      # (4, 4) float64: voxel index (d, h, w, 1) -> RAS+ world mm (x, y, z, 1)
        "id": str, "path": str, "modality": "ct",
        "meta": {...},             # n_slices, slice positions, quality_flags, identifiers (only here), ...
    }

DICOM series rules (the usual silent errors, made explicit):

- files are grouped by ``SeriesInstanceUID``; a folder with several series needs an explicit ``series_uid``
  (the error lists them); localizer images (``ImageType`` contains ``LOCALIZER``) are left out;
- slices are ordered by ``ImagePositionPatient`` projected on the slice normal (the cross product of the two
  ``ImageOrientationPatient`` direction cosines), never by file name, ``InstanceNumber`` or ``SliceLocation``
  (DICOM PS3.3 C.7.6.2.1.1);
- the slice spacing comes from those projected positions (median step), never from ``SliceThickness``, which
  is the reconstructed slab thickness and may differ (3 mm thick slices every 2 mm in the shared series);
- HU = stored value x ``RescaleSlope`` + ``RescaleIntercept`` per slice (PS3.3 C.11.1.1.2); when a CT slice
  has neither, the stored values are used as is, a warning is logged and ``rescale_missing`` is flagged;
- values below ``min_hu`` (default -1024 HU: air) are outside the reconstruction field of view or padding
  (``PixelPaddingValue``, -2000/-2048/-3024 HU in common scanners) and are set to ``min_hu``; their share is
  recorded (``meta["padding_fraction"]``);
- gaps (missing slices) and uneven steps are reported in ``meta["quality_flags"]`` (``missing_slices``,
  ``uneven_spacing``) with the steps in ``meta["slice_steps_mm"]``; slices shifting in-plane along the stack
  (gantry tilt) are flagged ``gantry_tilt``; duplicate positions are an error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.io._imaging_common import _decode_error, _identifiers, _is_dicom_file, detect_image_format

logger = logging.getLogger(__name__)

#: LPS (DICOM patient coordinates) -> RAS+ (NIfTI / nibabel / MONAI world coordinates).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Relative tolerance on slice steps before ``uneven_spacing`` is flagged.
SPACING_RTOL = 0.01


def _read_header(f: Path) -> Any | None:
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(f, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not a DICOM file, or unreadable: skipped and counted
        return None


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and _is_dicom_file(f))


def list_series(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The DICOM image series in a folder (searched recursively), grouped by ``SeriesInstanceUID``.

    Args:
        folder: A folder of DICOM files (any file names, with or without extension).

    Returns:
        One dict per series, sorted by series number then UID: ``series_uid``, ``series_number``,
        ``description``, ``modality``, ``n_files``, ``files`` (sorted paths; files without pixel data such as
        DICOMDIR, reports or waveforms are not listed).

    Raises:
        RecordError: not a folder, or no DICOM image file in it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise RecordError(f"{root}: not a folder (expected a folder of DICOM files)")
    groups: dict[str, dict[str, Any]] = {}
    for f in _dicom_files(root):
        ds = _read_header(f)
        if ds is None or "Rows" not in ds:
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "") or "(no SeriesInstanceUID)"
        g = groups.setdefault(
            uid,
            {
                "series_uid": uid,
                "series_number": ds.get("SeriesNumber"),
                "description": str(ds.get("SeriesDescription", "") or "") or None,
                "modality": str(ds.get("Modality", "") or "") or None,
                "n_files": 0,
                "files": [],
            },
        )
        g["n_files"] += 1
        g["files"].append(str(f))
    if not groups:
        raise RecordError(f"{root}: no DICOM image files found (expected files with 'DICM' at byte 128 and pixel data)")
    return sorted(groups.values(), key=lambda g: (int(g["series_number"] or 0), g["series_uid"]))


def _describe(series: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{s['series_uid']} (#{s['series_number']}, {s['modality']}, {s['description'] or 'no description'}, "
        f"{s['n_files']} files)"
        for s in series
    )


def _floats(v: Any, n: int, what: str, f: Path) -> np.ndarray:
    try:
        a = np.array([float(x) for x in v], dtype=np.float64)
    except (TypeError, ValueError):
        raise RecordError(f"{f}: {what}: unreadable value {v!r} (expected {n} numbers)") from None
    if a.shape != (n,) or not np.isfinite(a).all():
        raise RecordError(f"{f}: {what}: expected {n} finite numbers, got {list(v)}")
    return a


def _to_hu(ds: Any, arr: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)


def _affine(
    origin_lps: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, normal: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Affine from voxel (d, h, w) to RAS mm. ``row_dir``: direction of increasing column index (IOP[:3])."""
    dz, dy, dx = spacing
    lps = np.eye(4)
    lps[:3, 0] = normal * dz
    lps[:3, 1] = col_dir * dy
    lps[:3, 2] = row_dir * dx
    lps[:3, 3] = origin_lps
    return LPS_TO_RAS @ lps


def _slice_geometry(
    positions: np.ndarray, where: str
) -> tuple[np.ndarray, float, list[str], dict[str, Any]]:
    """Order, step and flags from positions projected on the normal (already sorted ascending)."""
    flags: list[str] = []
    info: dict[str, Any] = {}
    if len(positions) == 1:
        return positions, float("nan"), ["single_slice"], info
    steps = np.diff(positions)
    if np.min(steps) < 1e-3:
        raise RecordError(
            f"{where}: ImagePositionPatient: {int(np.sum(steps < 1e-3)) + 1} slices share a position (expected "
            f"one slice per position; several acquisitions or time points in one series?)"
        )
    step = float(np.median(steps))
    info["slice_steps_mm"] = [round(float(s), 4) for s in steps]
    gaps = steps > 1.5 * step
    if gaps.any():
        n_missing = int(np.sum(np.round(steps[gaps] / step) - 1))
        flags.append("missing_slices")
        info["n_missing_slices"] = max(n_missing, 1)
    if np.max(np.abs(steps[~gaps] - step)) > max(SPACING_RTOL * step, 1e-3) if (~gaps).any() else False:
        flags.append("uneven_spacing")
    return positions, step, flags, info


def read_ct_series(
    folder: str | os.PathLike[str],
    series_uid: str | None = None,
    *,
    min_hu: float | None = -1024.0,
) -> dict[str, Any]:
    """Read one DICOM CT series from a folder as a ``(1, D, H, W)`` HU volume.

    Args:
        folder: Folder with the series' files (searched recursively; file names are ignored).
        series_uid: Which ``SeriesInstanceUID`` to read; needed when the folder holds several series.
        min_hu: Values below it (padding, outside the field of view) are set to it; None keeps them.

    Returns:
        Volume sample (module docstring): ``volume`` (1, D, H, W) float32 HU with D increasing along the slice
        normal, ``spacing_mm`` (z, y, x), ``affine`` (voxel -> RAS mm), ``meta`` with ``n_slices``,
        ``slice_positions_mm``, ``slice_steps_mm``, ``slice_thickness_header``, ``quality_flags``,
        ``padding_fraction``, ``hu_range``, ``identifiers``.

    Raises:
        RecordError: no DICOM images; several series and no ``series_uid`` (the message lists them); unknown
            ``series_uid``; slices lacking ImagePositionPatient/ImageOrientationPatient/PixelSpacing; slices of
            different orientation, size or pixel spacing; slices sharing a position; undecodable pixel data.
    """
    import warnings

    import pydicom

    root = Path(folder)
    series = list_series(root)
    if series_uid is None:
        if len(series) > 1:
            raise RecordError(
                f"{root}: SeriesInstanceUID: {len(series)} series in the folder, choose one with series_uid= "
                f"({_describe(series)})"
            )
        chosen = series[0]
    else:
        match = [s for s in series if s["series_uid"] == series_uid]
        if not match:
            raise RecordError(f"{root}: series_uid {series_uid!r} not found (series here: {_describe(series)})")
        chosen = match[0]

    slices: list[tuple[Path, Any]] = []
    n_localizers = 0
    for f in map(Path, chosen["files"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(f)
        image_type = [str(t).upper() for t in (ds.get("ImageType") or [])]
        if "LOCALIZER" in image_type:
            n_localizers += 1
            continue
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise RecordError(f"{f}: NumberOfFrames: {ds.NumberOfFrames} in a series of single slices "
                              f"(read enhanced multi-frame files with read_ct_dicom)")
        slices.append((f, ds))
    if not slices:
        raise RecordError(f"{root}: series {chosen['series_uid']}: only localizer images (expected axial slices)")

    f0, ds0 = slices[0]
    for f, ds in slices:
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if ds.get(kw) is None:
                raise RecordError(f"{f}: {kw}: absent (needed to place the slice in space; file order is never used)")
    iop0 = _floats(ds0.ImageOrientationPatient, 6, "ImageOrientationPatient", f0)
    ps0 = _floats(ds0.PixelSpacing, 2, "PixelSpacing", f0)
    shape0 = (int(ds0.Rows), int(ds0.Columns))
    for f, ds in slices[1:]:
        if np.max(np.abs(_floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", f) - iop0)) > 1e-4:
            raise RecordError(f"{f}: ImageOrientationPatient: differs from {f0.name} (expected one orientation "
                              f"per series; a tilted or reformatted image?)")
        if (int(ds.Rows), int(ds.Columns)) != shape0:
            raise RecordError(f"{f}: Rows/Columns: {ds.Rows}x{ds.Columns}, expected {shape0[0]}x{shape0[1]} as "
                              f"{f0.name}")
        if np.max(np.abs(_floats(ds.PixelSpacing, 2, "PixelSpacing", f) - ps0)) > 1e-4:
            raise RecordError(f"{f}: PixelSpacing: differs from {f0.name} (expected one pixel spacing per series)")
    if min(ps0) <= 0:
        raise RecordError(f"{f0}: PixelSpacing: {ps0[0]:g}\\{ps0[1]:g} (expected > 0 mm)")
    row_dir, col_dir = iop0[:3], iop0[3:]
    normal = np.cross(row_dir, col_dir)
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise RecordError(f"{f0}: ImageOrientationPatient: row and column directions are parallel {list(iop0)}")
    normal = normal / norm
    ipp = np.array([_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", f) for f, ds in slices])
    pos = ipp @ normal
    order = np.argsort(pos, kind="stable")
    slices = [slices[i] for i in order]
    pos, ipp = pos[order], ipp[order]
    drift = (ipp[-1] - ipp[0]) - (pos[-1] - pos[0]) * normal  # in-plane shift from first to last slice
    tilted = float(np.linalg.norm(drift)) > 1e-3 + 0.01 * float(abs(pos[-1] - pos[0]))
    where = f"{root} (series {chosen['series_uid']})"
    _, step, flags, info = _slice_geometry(pos, where)
    thickness = ds0.get("SliceThickness")
    if not np.isfinite(step):
        step = float(thickness) if thickness not in (None, "") and float(thickness) > 0 else 1.0
        info["slice_spacing_source"] = "SliceThickness (single slice)" if thickness else "default 1 mm (single slice)"
    else:
        info["slice_spacing_source"] = "ImagePositionPatient"
    if n_localizers:
        flags.append("localizers_skipped")
    if tilted:
        # gantry tilt (or a sheared stack): slices shift in-plane; the affine below ignores that shear
        flags.append("gantry_tilt")
        info["in_plane_drift_mm"] = [round(float(v), 3) for v in drift]

    vol = np.empty((len(slices), *shape0), dtype=np.float32)
    rescale_missing = 0
    padding_values: set[float] = set()
    for k, (f, ds) in enumerate(slices):
        try:
            arr = ds.pixel_array
        except Exception as exc:  # noqa: BLE001
            raise _decode_error(f, ds, exc) from None
        if "RescaleSlope" not in ds and "RescaleIntercept" not in ds and not ds.get("ModalityLUTSequence"):
            rescale_missing += 1
        pad = ds.get("PixelPaddingValue")
        hu = _to_hu(ds, arr)
        if pad is not None:
            mask = arr == int(pad)
            if mask.any():
                padding_values.add(float(hu[mask][0]))
                hu[mask] = np.float32(min_hu if min_hu is not None else hu[mask][0])
        vol[k] = hu
    if rescale_missing:
        logger.warning("CT series: %d of %d slices lack RescaleSlope/RescaleIntercept; stored values used as HU",
                       rescale_missing, len(slices))
        flags.append("rescale_missing")
    modality_tag = str(ds0.get("Modality", "") or "") or None
    if modality_tag is None:
        flags.append("modality_tag_absent")
    elif modality_tag != "CT":
        flags.append("not_ct_modality")
    raw_min, raw_max = float(vol.min()), float(vol.max())
    padding_fraction = 0.0
    if min_hu is not None:
        below = vol < min_hu
        padding_fraction = float(below.mean())
        if below.any():
            padding_values.update(float(v) for v in np.unique(vol[below & (vol <= min_hu - 500)])[:5])
            vol[below] = np.float32(min_hu)
    if vol.max() == vol.min():
        flags.append("constant_volume")
    spacing = (float(step), float(ps0[0]), float(ps0[1]))
    origin = _floats(slices[0][1].ImagePositionPatient, 3, "ImagePositionPatient", slices[0][0])
    affine = _affine(origin, row_dir, col_dir, normal, spacing)
    meta: dict[str, Any] = {
        "format": "dicom-series",
        "n_slices": len(slices),
        "slice_positions_mm": [round(float(p), 4) for p in pos],
        "slice_thickness_header": float(thickness) if thickness not in (None, "") else None,
        "orientation_patient": [float(v) for v in iop0],
        "axcodes": _axcodes(affine),
        "modality_tag": modality_tag,
        "series_description": chosen["description"],
        "series_number": chosen["series_number"],
        "manufacturer": str(ds0.get("Manufacturer", "") or "") or None,
        "convolution_kernel": str(ds0.get("ConvolutionKernel", "") or "") or None,
        "hu_range_raw": (raw_min, raw_max),
        "hu_range": (float(vol.min()), float(vol.max())),
        "padding_fraction": padding_fraction,
        "padding_values_hu": sorted(padding_values),
        "files": [str(f) for f, _ in slices],
        "quality_flags": flags,
        "identifiers": _identifiers(ds0),
        **info,
    }
    logger.debug("read_ct_series: %d slices, spacing %s mm, flags %s", len(slices), spacing, flags)
    return {
        "volume": vol[None],
        "spacing_mm": spacing,
        "affine": affine,
        "id": root.name,
        "path": str(root),
        "meta": meta,
        "modality": "ct",
    }


def _axcodes(affine: np.ndarray) -> str:
    import nibabel as nib

    return "".join(nib.orientations.aff2axcodes(affine))


def read_ct_dicom(path: str | os.PathLike[str], *, min_hu: float | None = -1024.0) -> dict[str, Any]:
    """Read an enhanced (multi-frame) CT DICOM file as a volume, frames placed by their own positions.

    Per-frame ``PlanePositionSequence`` / ``PlaneOrientationSequence`` / ``PixelMeasuresSequence`` /
    ``PixelValueTransformationSequence`` items (per-frame, else shared functional groups) give the geometry and
    the rescale, as in :func:`read_ct_series` (PS3.3 C.7.6.16).

    Raises:
        RecordError: not a multi-frame image; frames without plane position; frames sharing a position
            (a time series such as perfusion); undecodable pixel data.
    """
    import warnings

    import pydicom

    p = Path(path)
    if not p.is_file():
        raise RecordError(f"{p}: file not found (expected an enhanced multi-frame CT DICOM file)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(p)
        except Exception as exc:  # noqa: BLE001
            raise RecordError(f"{p}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    n = int(ds.get("NumberOfFrames", 1) or 1)
    per = ds.get("PerFrameFunctionalGroupsSequence")
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    if n < 2 or per is None:
        raise RecordError(f"{p}: NumberOfFrames: {n} without PerFrameFunctionalGroupsSequence (expected an "
                          f"enhanced multi-frame CT; read single slices with read_image(modality='ct'))")

    def _item(k: int, seq: str) -> Any:
        for grp in (per[k], shared):
            if grp is not None and seq in grp and len(grp[seq].value):
                return grp[seq].value[0]
        return None

    pos_l, iop = [], None
    ps = None
    rescale: list[tuple[float, float]] = []
    for k in range(n):
        pp, po, pm, pv = (_item(k, s) for s in ("PlanePositionSequence", "PlaneOrientationSequence",
                                                "PixelMeasuresSequence", "PixelValueTransformationSequence"))
        if pp is None or po is None or pm is None:
            raise RecordError(f"{p}: frame {k + 1}: plane position/orientation/pixel measures absent (expected "
                              f"functional groups placing each frame)")
        pos_l.append(_floats(pp.ImagePositionPatient, 3, f"frame {k + 1} ImagePositionPatient", p))
        iop = _floats(po.ImageOrientationPatient, 6, "ImageOrientationPatient", p) if iop is None else iop
        ps = _floats(pm.PixelSpacing, 2, "PixelSpacing", p) if ps is None else ps
        rescale.append((float(pv.RescaleSlope), float(pv.RescaleIntercept)) if pv is not None else (1.0, 0.0))
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    proj = np.array([float(np.dot(v, normal)) for v in pos_l])
    order = np.argsort(proj, kind="stable")
    _, step, flags, info = _slice_geometry(proj[order], str(p))
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001
        raise _decode_error(p, ds, exc) from None
    vol = np.stack([arr[i].astype(np.float32) * rescale[i][0] + rescale[i][1] for i in order])
    if min_hu is not None:
        padding_fraction = float((vol < min_hu).mean())
        vol = np.maximum(vol, np.float32(min_hu))
    else:
        padding_fraction = 0.0
    spacing = (float(step), float(ps[0]), float(ps[1]))
    affine = _affine(pos_l[int(order[0])], iop[:3], iop[3:], normal, spacing)
    meta = {
        "format": "dicom-enhanced",
        "n_slices": n,
        "slice_positions_mm": [round(float(v), 4) for v in proj[order]],
        "axcodes": _axcodes(affine),
        "hu_range": (float(vol.min()), float(vol.max())),
        "padding_fraction": padding_fraction,
        "quality_flags": flags,
        "identifiers": _identifiers(ds),
        **info,
    }
    return {"volume": vol[None], "spacing_mm": spacing, "affine": affine, "id": p.stem, "path": str(p),
            "meta": meta, "modality": "ct"}


def read_nifti(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a 3-D NIfTI-1/2 volume (``.nii`` / ``.nii.gz``) with nibabel as a volume sample.

    The NIfTI axes ``(i, j, k)`` become ``(W, H, D)``: ``volume[0, k, j, i] = data[i, j, k]``, and the affine's
    columns are permuted to match, so ``affine @ (d, h, w, 1)`` is the same RAS+ point as nibabel's
    ``img.affine @ (i, j, k, 1)``. ``scl_slope``/``scl_inter`` are applied (nibabel ``get_fdata``).

    Returns:
        Volume sample; ``spacing_mm`` = ``(dk, dj, di)`` from the affine's column norms; ``meta``: ``axcodes``
        (of the NIfTI axes), ``qform_code``, ``sform_code``, ``dtype``, ``value_range``, ``quality_flags``
        (``not_hu_like`` when the values do not look like CT HU, e.g. a label mask or an MR image).

    Raises:
        RecordError: unreadable file, or not a 3-D volume (a 4-D series with more than one volume).
    """
    import nibabel as nib

    p = Path(path)
    try:
        img = nib.load(str(p))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # noqa: BLE001
        raise RecordError(f"{p}: NIfTI unreadable ({type(exc).__name__}: {exc})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise RecordError(f"{p}: NIfTI shape {data.shape}: expected a 3-D volume")
    aff = np.asarray(img.affine, dtype=np.float64)
    affine = aff.copy()
    affine[:, :3] = aff[:, [2, 1, 0]]
    zooms = np.linalg.norm(aff[:3, :3], axis=0)
    vol = np.ascontiguousarray(data.transpose(2, 1, 0))
    flags: list[str] = []
    lo, hi = float(vol.min()), float(vol.max())
    if not (lo < -200 and hi > 0):
        flags.append("not_hu_like")
    hdr = img.header
    meta = {
        "format": "nifti",
        "axcodes": "".join(nib.orientations.aff2axcodes(aff)),
        "qform_code": int(hdr["qform_code"]) if "qform_code" in hdr else None,
        "sform_code": int(hdr["sform_code"]) if "sform_code" in hdr else None,
        "dtype": str(img.get_data_dtype()),
        "value_range": (lo, hi),
        "quality_flags": flags,
        "identifiers": {},
    }
    name = p.name
    rid = name[:-7] if name.endswith(".nii.gz") else p.stem
    return {"volume": vol[None], "spacing_mm": (float(zooms[2]), float(zooms[1]), float(zooms[0])), "affine": affine,
            "id": rid, "path": str(p), "meta": meta, "modality": "ct"}


def read_volume(path: str | os.PathLike[str], series_uid: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Read a CT volume from a DICOM series folder, an enhanced multi-frame DICOM file or a NIfTI file.

    Raises:
        RecordError: not one of these (by content, :func:`medzs.io.image.detect_image_format`).
    """
    fmt = detect_image_format(path)
    if fmt == "dicom-series":
        return read_ct_series(path, series_uid, **kwargs)
    if fmt == "nifti":
        return read_nifti(path)
    if fmt == "dicom-image":
        return read_ct_dicom(path, **kwargs)
    raise RecordError(f"{path}: not a CT volume (expected a DICOM series folder, a multi-frame DICOM or NIfTI; "
                      f"detected {fmt or 'unknown format'})")


__all__ = ["list_series", "read_ct_dicom", "read_ct_series", "read_nifti", "read_volume"]
