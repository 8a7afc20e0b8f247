"""ECG preprocessing derived from an encoder's :class:`~medzs.spec.ECGInputSpec`.

Array functions work on channel-first ``(leads, samples)`` float arrays in mV; the dict transforms
(MONAI style: ``ReorderLeadsd``, ``Resampled``, ``Bandpassd``, ``CropOrPadd``, ``Normalized``, ``ECGPreprocessd``)
wrap them and return a new sample dict with ``signal``, ``leads`` and ``fs`` updated.

:func:`preprocess` applies, in the order of the contract (docs/architecture.md): reorder leads by name ->
resample to ``spec.fs`` (polyphase, :func:`scipy.signal.resample_poly`) -> optional zero-phase Butterworth
band-pass (:func:`scipy.signal.sosfiltfilt`) -> centre crop / zero pad to ``spec.duration_s`` -> normalisation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.spec import ECGInputSpec

logger = logging.getLogger(__name__)

#: Shortest record :func:`check_signal` accepts by default, s.
MIN_DURATION_S = 1.0

_NORMALIZATIONS = ("none", "zscore", "minmax", "scale")


def _who(record: str | None) -> str:
    return record if record else "signal"


def lead_key(name: str) -> str:
    """Matching key of a lead name: case-insensitive, surrounding blanks ignored (``"AVR"`` == ``"aVR"``)."""
    return str(name).strip().casefold()


def check_signal(
    signal: Any,
    fs: float,
    leads: Sequence[str] | None = None,
    record: str | None = None,
    min_duration_s: float = MIN_DURATION_S,
) -> np.ndarray:
    """Validate one record's signal.

    Args:
        signal: ``(leads, samples)`` array, mV.
        fs: Sampling rate, Hz.
        leads: Lead names (one per row), used in messages and checked for length.
        record: Record id/path for messages.
        min_duration_s: Shortest accepted duration, s.

    Returns:
        The signal as a float32 array (no copy when it already is one).

    Raises:
        RecordError: not 2-D, empty, lead count differs from ``leads``, non-finite values (names the lead),
            non-positive ``fs``, or shorter than ``min_duration_s``
            (``"signal too short: 0.5 s (250 samples at 500 Hz), expected at least 1 s"``).
    """
    who = _who(record)
    arr = np.asarray(signal)
    if arr.ndim != 2:
        raise RecordError(f"{who}: signal has shape {arr.shape} (expected 2-D (leads, samples))")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise RecordError(f"{who}: signal dtype {arr.dtype} (expected real numbers)")
    arr = arr.astype(np.float32, copy=False)
    if arr.shape[0] == 0:
        raise RecordError(f"{who}: signal has no leads (expected at least one)")
    if leads is not None and len(leads) != arr.shape[0]:
        raise RecordError(f"{who}: leads: {len(leads)} names for {arr.shape[0]} signal rows (expected one per row)")
    if not (np.isfinite(fs) and fs > 0):
        raise RecordError(f"{who}: fs {fs!r} (expected a positive sampling rate in Hz)")
    duration = arr.shape[1] / fs
    if duration < min_duration_s:
        raise RecordError(
            f"{who}: signal too short: {duration:g} s ({arr.shape[1]} samples at {fs:g} Hz), "
            f"expected at least {min_duration_s:g} s"
        )
    finite = np.isfinite(arr)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        name = leads[row] if leads is not None else f"row {row}"
        kind = "NaN" if np.isnan(arr[row]).any() else "inf"
        raise RecordError(f"{who}: lead {name!r} contains {kind} (expected finite values)")
    return arr


def reorder_leads(
    signal: np.ndarray, leads: Sequence[str], target_leads: Sequence[str], record: str | None = None
) -> np.ndarray:
    """Select and order leads by name.

    Args:
        signal: ``(leads, samples)``.
        leads: Names of ``signal``'s rows.
        target_leads: Wanted names in the wanted order; matched case-insensitively (:func:`lead_key`).
            Leads not listed are dropped.
        record: Record id for messages.

    Returns:
        ``(len(target_leads), samples)`` array (a new array).

    Raises:
        RecordError: a wanted lead is missing (names it), or ``leads`` has duplicate names or the wrong length.
    """
    who = _who(record)
    if len(leads) != np.shape(signal)[0]:
        raise RecordError(f"{who}: leads: {len(leads)} names for {np.shape(signal)[0]} signal rows")
    index: dict[str, int] = {}
    for i, name in enumerate(leads):
        key = lead_key(name)
        if key in index:
            raise RecordError(f"{who}: leads: duplicate lead {name!r} (expected unique lead names)")
        index[key] = i
    missing = [t for t in target_leads if lead_key(t) not in index]
    if missing:
        raise RecordError(
            f"{who}: lead {missing[0]!r} missing (all missing: {missing}; record has {list(leads)}; "
            f"expected {list(target_leads)})"
        )
    return np.asarray(signal)[[index[lead_key(t)] for t in target_leads]]


def _ratio(fs_in: float, fs_out: float, max_denominator: int = 1000) -> Fraction:
    exact = Fraction(fs_out) / Fraction(fs_in)
    ratio = exact.limit_denominator(max_denominator)
    if ratio != exact:
        logger.warning(
            "resample: %g Hz -> %g Hz approximated by up=%d, down=%d (effective %g Hz)",
            fs_in, fs_out, ratio.numerator, ratio.denominator, fs_in * float(ratio),
        )
    return ratio


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample along the last axis with a polyphase FIR filter (:func:`scipy.signal.resample_poly`).

    The rational factor ``fs_out / fs_in`` is used exactly when its denominator is at most 1000 (e.g. 500 -> 100
    Hz is 1/5, 360 -> 500 Hz is 25/18), else approximated (logged). The signal is extended linearly at its ends
    (``padtype="line"``) so baseline offsets do not ring at the edges.

    Args:
        signal: ``(..., samples)``.
        fs_in: Input rate, Hz.
        fs_out: Output rate, Hz.

    Returns:
        float32 array with ``ceil(samples * up / down)`` samples on the last axis (the input when equal rates).

    Raises:
        ValueError: non-positive rates.
    """
    if not (fs_in > 0 and fs_out > 0):
        raise ValueError(f"resample: rates must be positive, got fs_in={fs_in!r}, fs_out={fs_out!r}")
    arr = np.asarray(signal, dtype=np.float32)
    if fs_in == fs_out:
        return arr
    from scipy.signal import resample_poly

    ratio = _ratio(fs_in, fs_out)
    out = resample_poly(arr, ratio.numerator, ratio.denominator, axis=-1, padtype="line")
    return out.astype(np.float32, copy=False)


def bandpass(signal: np.ndarray, fs: float, low: float, high: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass along the last axis (:func:`scipy.signal.sosfiltfilt`).

    ``low == 0`` gives a low-pass at ``high``. Forward-backward filtering doubles the effective order
    (``2 * order``) and has no phase shift.

    Args:
        signal: ``(..., samples)``, mV.
        fs: Sampling rate, Hz.
        low: Lower cut-off, Hz (0 for none).
        high: Upper cut-off, Hz, below ``fs / 2``.
        order: Butterworth order of the designed filter.

    Returns:
        float32 array, same shape.

    Raises:
        ValueError: cut-offs not ``0 <= low < high < fs / 2`` or ``order < 1``.
    """
    if not (0 <= low < high < fs / 2):
        raise ValueError(f"bandpass: expected 0 <= low < high < fs/2 ({fs / 2:g} Hz), got low={low}, high={high}")
    if int(order) != order or order < 1:
        raise ValueError(f"bandpass: order must be a positive int, got {order!r}")
    from scipy.signal import sosfiltfilt

    sos = _butter_sos(int(order), float(low), float(high), float(fs)).copy()  # scipy needs a writable array
    return sosfiltfilt(sos, np.asarray(signal, dtype=np.float64), axis=-1).astype(np.float32)


@lru_cache(maxsize=64)
def _butter_sos(order: int, low: float, high: float, fs: float) -> np.ndarray:
    """Butterworth second-order sections, designed once per (order, cut-offs, rate): the design costs as much as
    filtering a 12 x 1000 record."""
    from scipy.signal import butter

    if low == 0:
        sos = butter(order, high, btype="lowpass", fs=fs, output="sos")
    else:
        sos = butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    return sos


def crop_or_pad(signal: np.ndarray, n_samples: int, mode: str = "center", pad_value: float = 0.0) -> np.ndarray:
    """Crop or pad the last axis to ``n_samples``.

    Args:
        signal: ``(..., samples)``.
        n_samples: Target length (positive).
        mode: ``"center"``: keep the middle / pad both sides equally (the extra sample goes to the end);
            ``"start"``: keep the first ``n_samples`` / pad at the end.
        pad_value: Value of padded samples (0 mV).

    Returns:
        Array with last axis ``n_samples`` (the input itself when already that long).

    Raises:
        ValueError: bad ``n_samples`` or ``mode``.
    """
    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"crop_or_pad: n_samples must be a positive int, got {n_samples!r}")
    if mode not in ("center", "start"):
        raise ValueError(f"crop_or_pad: mode must be 'center' or 'start', got {mode!r}")
    n_samples = int(n_samples)
    arr = np.asarray(signal)
    n = arr.shape[-1]
    if n == n_samples:
        return arr
    if n > n_samples:
        start = (n - n_samples) // 2 if mode == "center" else 0
        return arr[..., start : start + n_samples]
    missing = n_samples - n
    before = missing // 2 if mode == "center" else 0
    widths = [(0, 0)] * (arr.ndim - 1) + [(before, missing - before)]
    return np.pad(arr, widths, mode="constant", constant_values=pad_value)


def normalize(signal: np.ndarray, method: str = "none", scale: float = 1.0, eps: float = 1e-8) -> np.ndarray:
    """Normalise one record.

    Args:
        signal: ``(leads, samples)``, mV.
        method: ``"none"``; ``"zscore"``: per lead, ``(x - mean) / std`` (a flat lead becomes 0);
            ``"minmax"``: one global min and max over the whole ``(leads, samples)`` array, ``(x - min) / (max - min)``
            to [0, 1] (a flat record becomes 0; MERL adds 1e-8 to the denominator, a relative difference below
            float32 precision for any real ECG); ``"scale"``: ``x / scale``.
        scale: Divisor for ``"scale"``.
        eps: Standard deviations / ranges below this count as flat.

    Returns:
        float32 array, same shape.

    Raises:
        ValueError: unknown method or zero/non-finite ``scale``.
    """
    arr = np.asarray(signal, dtype=np.float32)
    if method == "none":
        return arr
    if method == "zscore":
        mean = arr.mean(axis=-1, keepdims=True)
        std = arr.std(axis=-1, keepdims=True)
        return ((arr - mean) / np.where(std < eps, 1.0, std)).astype(np.float32)
    if method == "minmax":
        lo, hi = float(arr.min()), float(arr.max())
        span = hi - lo
        return ((arr - lo) / (span if span >= eps else 1.0)).astype(np.float32)
    if method == "scale":
        if not np.isfinite(scale) or scale == 0:
            raise ValueError(f"normalize: scale must be finite and non-zero, got {scale!r}")
        return (arr / np.float32(scale)).astype(np.float32)
    raise ValueError(f"normalize: method must be one of {_NORMALIZATIONS}, got {method!r}")


# -- samples ----------------------------------------------------------------------------------------------
def _sample_name(sample: Mapping[str, Any]) -> str:
    return str(sample.get("path") or sample.get("id") or "sample")


def _unpack(sample: Mapping[str, Any]) -> tuple[np.ndarray, list[str], float, str]:
    if not isinstance(sample, Mapping):
        raise RecordError(f"sample: expected a dict with signal/leads/fs, got {type(sample).__name__}")
    who = _sample_name(sample)
    for key in ("signal", "leads", "fs"):
        if key not in sample or sample[key] is None:
            raise RecordError(f"{who}: sample field {key!r} missing (expected signal, leads and fs)")
    try:
        fs = float(sample["fs"])
    except (TypeError, ValueError):
        raise RecordError(f"{who}: fs {sample['fs']!r} (expected a number in Hz)") from None
    return sample["signal"], list(sample["leads"]), fs, who


def preprocess(sample: Mapping[str, Any], spec: ECGInputSpec, min_duration_s: float = MIN_DURATION_S) -> np.ndarray:
    """Turn a sample into what an encoder with ``spec`` expects.

    Order (docs/architecture.md): validate (:func:`check_signal`) -> reorder leads by name -> resample to
    ``spec.fs`` -> band-pass ``spec.bandpass_hz`` (if any) -> crop (``spec.crop``: centre or start) / zero pad
    (at the end for ``"start"``) to ``spec.n_samples`` -> ``spec.normalization`` (``"minmax"``: one global
    min-max over the whole ``(leads, samples)`` array, as MERL does).

    Args:
        sample: medzs sample dict (``signal`` ``(leads, samples)`` mV, ``leads``, ``fs``; ``id``/``path`` name it
            in errors).
        spec: The encoder's input spec.
        min_duration_s: Shortest accepted input, s.

    Returns:
        ``(len(spec.leads), spec.n_samples)`` float32 array.

    Raises:
        RecordError: missing fields, invalid signal, too short, or a lead of ``spec.leads`` missing.
    """
    signal, leads, fs, who = _unpack(sample)
    x = check_signal(signal, fs, leads=leads, record=who, min_duration_s=min_duration_s)
    x = reorder_leads(x, leads, spec.leads, record=who)
    x = resample(x, fs, spec.fs)
    if spec.bandpass_hz is not None:
        x = bandpass(x, spec.fs, spec.bandpass_hz[0], spec.bandpass_hz[1])
    x = crop_or_pad(x, spec.n_samples, mode=spec.crop)
    x = normalize(x, spec.normalization, spec.scale)
    return np.ascontiguousarray(x, dtype=np.float32)


def batch(samples: Iterable[Mapping[str, Any]], spec: ECGInputSpec) -> np.ndarray:
    """Preprocess and stack samples: ``(batch, len(spec.leads), spec.n_samples)`` float32.

    Raises:
        RecordError: as :func:`preprocess`, for the first bad sample.
    """
    arrays = [preprocess(s, spec) for s in samples]
    if not arrays:
        return np.zeros((0, *spec.shape), dtype=np.float32)
    return np.stack(arrays).astype(np.float32, copy=False)


class _DictTransform:
    """Base of the dict transforms: ``__call__(sample) -> new sample`` (the input is not modified)."""

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        signal, leads, fs, who = _unpack(sample)
        out = dict(sample)
        out.update(self._apply(np.asarray(signal), leads, fs, who))
        return out

    def _apply(self, signal: np.ndarray, leads: list[str], fs: float, who: str) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class ReorderLeadsd(_DictTransform):
    """Select/order leads by name (:func:`reorder_leads`); ``leads`` becomes ``target_leads``."""

    def __init__(self, target_leads: Sequence[str]) -> None:
        self.target_leads = tuple(target_leads)

    def _apply(self, signal: np.ndarray, leads: list[str], fs: float, who: str) -> dict[str, Any]:
        return {"signal": reorder_leads(signal, leads, self.target_leads, record=who), "leads": list(self.target_leads)}


class Resampled(_DictTransform):
    """Resample to ``fs`` Hz (:func:`resample`); ``fs`` is updated."""

    def __init__(self, fs: float) -> None:
        if not fs > 0:
            raise ValueError(f"Resampled: fs must be positive, got {fs!r}")
        self.fs = float(fs)

    def _apply(self, signal: np.ndarray, leads: list[str], fs: float, who: str) -> dict[str, Any]:
        return {"signal": resample(signal, fs, self.fs), "fs": self.fs}


class Bandpassd(_DictTransform):
    """Zero-phase Butterworth band-pass (:func:`bandpass`)."""

    def __init__(self, low: float, high: float, order: int = 4) -> None:
        self.low, self.high, self.order = float(low), float(high), int(order)

    def _apply(self, signal: np.ndarray, leads: list[str], fs: float, who: str) -> dict[str, Any]:
        return {"signal": bandpass(signal, fs, self.low, self.high, self.order)}


class CropOrPadd(_DictTransform):
    """Crop/pad to ``n_samples`` (:func:`crop_or_pad`)."""

    def __init__(self, n_samples: int, mode: str = "center") -> None:
        crop_or_pad(np.zeros((1, 1)), n_samples, mode)  # validate arguments now
        self.n_samples, self.mode = int(n_samples), mode

    def _apply(self, signal: np.ndarray, leads: list[str], fs: float, who: str) -> dict[str, Any]:
        return {"signal": crop_or_pad(signal, self.n_samples, self.mode)}


class Normalized(_DictTransform):
    """Normalise (:func:`normalize`)."""

    def __init__(self, method: str = "none", scale: float = 1.0) -> None:
        normalize(np.zeros((1, 2)), method, scale)  # validate arguments now
        self.method, self.scale = method, float(scale)

    def _apply(self, signal: np.ndarray, leads: list[str], fs: float, who: str) -> dict[str, Any]:
        return {"signal": normalize(signal, self.method, self.scale)}


class ECGPreprocessd(_DictTransform):
    """The whole :func:`preprocess` as a dict transform; ``leads``/``fs`` become the spec's."""

    def __init__(self, spec: ECGInputSpec, min_duration_s: float = MIN_DURATION_S) -> None:
        self.spec = spec
        self.min_duration_s = float(min_duration_s)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        out["signal"] = preprocess(sample, self.spec, self.min_duration_s)
        out["leads"] = list(self.spec.leads)
        out["fs"] = float(self.spec.fs)
        return out


__all__ = [
    "MIN_DURATION_S",
    "Bandpassd",
    "CropOrPadd",
    "ECGPreprocessd",
    "Normalized",
    "ReorderLeadsd",
    "Resampled",
    "bandpass",
    "batch",
    "check_signal",
    "crop_or_pad",
    "lead_key",
    "normalize",
    "preprocess",
    "preprocess_many",
    "reorder_leads",
    "resample",
]


def preprocess_many(samples: Sequence[Mapping[str, Any]], spec: ECGInputSpec,
                    min_duration_s: float = MIN_DURATION_S) -> list[np.ndarray | BaseException]:
    """:func:`preprocess` for a batch, with the band-pass run once over every record of equal length.

    The result for each record equals :func:`preprocess` on it (the zero-phase filter works on each row alone; the
    stacking only saves the per-call overhead, which is most of the filter's cost on 12 x 1000 records). Specs that
    accept masked input go record by record.

    Returns:
        One entry per sample, in order: the ``(leads, samples)`` float32 array, or the exception that
        :func:`preprocess` would have raised for it (never raises for a bad record).
    """
    out: list[np.ndarray | BaseException | None] = [None] * len(samples)
    if getattr(spec, "accepts_masked", False):
        for i, s in enumerate(samples):
            try:
                out[i] = preprocess(s, spec, min_duration_s)
            except Exception as exc:  # noqa: BLE001 - returned per record
                out[i] = exc
        return out  # type: ignore[return-value]
    staged: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    for i, s in enumerate(samples):
        try:
            signal, leads, fs, who = _unpack(s)
            x = check_signal(signal, fs, leads=leads, record=who, min_duration_s=min_duration_s)
            x = reorder_leads(x, leads, spec.leads, record=who)
            x = resample(x, fs, spec.fs)
            staged.setdefault(x.shape, []).append((i, x))
        except Exception as exc:  # noqa: BLE001
            out[i] = exc
    mode = getattr(spec, "crop", "center")
    for items in staged.values():
        xs = np.stack([x for _, x in items])
        if spec.bandpass_hz is not None:
            xs = bandpass(xs, spec.fs, spec.bandpass_hz[0], spec.bandpass_hz[1])
        for (i, _), x in zip(items, xs, strict=True):
            try:
                y = crop_or_pad(x, spec.n_samples, mode=mode)
                out[i] = np.ascontiguousarray(normalize(y, spec.normalization, spec.scale), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001
                out[i] = exc
    return out  # type: ignore[return-value]
