"""ECG preprocessing derived from an encoder's :class:`~medzs.spec.ECGInputSpec`.

Array functions work on channel-first ``(leads, samples)`` float arrays in mV; the dict transforms
(MONAI style: ``ReorderLeadsd``, ``Resampled``, ``Bandpassd``, ``CropOrPadd``, ``Normalized``, ``ECGPreprocessd``)
wrap them and return a new sample dict with ``signal``, ``leads`` and ``fs`` updated.

:func:`preprocess` applies, in the order of the contract (docs/architecture.md): reorder leads by name ->
resample to ``spec.fs`` (polyphase, :func:`scipy.signal.resample_poly`) -> optional zero-phase Butterworth
band-pass (:func:`scipy.signal.sosfiltfilt`) -> centre crop / zero pad to ``spec.duration_s`` -> normalisation.

Missing and partial leads: when the spec declares ``accepts_masked`` (the encoder was trained with masked input),
NaN samples and leads absent from the record are *masked* instead of refused. Each lead's finite runs are
resampled and band-passed on their own (so filtering never spreads NaN), normalised with the statistics of the
present samples only, and every masked sample is set to 0 after normalisation. A record with fewer than
``spec.min_leads`` usable leads is still an error. ``layout="3x4"`` (or its auto-detection from the NaN pattern)
handles ECGs digitised from the standard 3x4 printout, as in the PhysioNet/George B. Moody Challenge 2024
(Reyna et al., "Digitization and Classification of ECG Images", Computing in Cardiology 2024): each lead keeps only
its 2.5 s column (I/II/III 0-2.5 s, aVR/aVL/aVF 2.5-5 s, V1-V3 5-7.5 s, V4-V6 7.5-10 s) plus one full rhythm strip
(lead II).
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
    allow_nan: bool = False,
) -> np.ndarray:
    """Validate one record's signal.

    Args:
        signal: ``(leads, samples)`` array, mV.
        fs: Sampling rate, Hz.
        leads: Lead names (one per row), used in messages and checked for length.
        record: Record id/path for messages.
        min_duration_s: Shortest accepted duration, s.
        allow_nan: Accept NaN samples (missing data, masked downstream); infinities are still refused.

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
    finite = np.isfinite(arr) | (np.isnan(arr) if allow_nan else False)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        name = leads[row] if leads is not None else f"row {row}"
        kind = "NaN" if np.isnan(arr[row]).any() else "inf"
        raise RecordError(f"{who}: lead {name!r} contains {kind} (expected finite values)")
    return arr


def reorder_leads(
    signal: np.ndarray, leads: Sequence[str], target_leads: Sequence[str], record: str | None = None,
    missing: str = "raise",
) -> np.ndarray:
    """Select and order leads by name.

    Args:
        signal: ``(leads, samples)``.
        leads: Names of ``signal``'s rows.
        target_leads: Wanted names in the wanted order; matched case-insensitively (:func:`lead_key`).
            Leads not listed are dropped.
        record: Record id for messages.
        missing: ``"raise"`` (a wanted lead that is absent is an error) or ``"nan"`` (its row is all NaN, float).

    Returns:
        ``(len(target_leads), samples)`` array (a new array).

    Raises:
        RecordError: a wanted lead is missing (names it; ``missing="raise"``), or ``leads`` has duplicate names or
            the wrong length.
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
    absent = [t for t in target_leads if lead_key(t) not in index]
    if absent and missing == "nan":
        arr = np.asarray(signal, dtype=np.float32)
        out = np.full((len(target_leads), arr.shape[1]), np.nan, dtype=np.float32)
        for j, t in enumerate(target_leads):
            if lead_key(t) in index:
                out[j] = arr[index[lead_key(t)]]
        return out
    if absent:
        raise RecordError(
            f"{who}: lead {absent[0]!r} missing (all missing: {absent}; record has {list(leads)}; "
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


#: Column (0-3, 2.5 s each on a 10 s page) of every lead in the standard 3x4 printout.
LAYOUT_3X4_COLUMNS: dict[str, int] = {
    "i": 0, "ii": 0, "iii": 0, "avr": 1, "avl": 1, "avf": 1,
    "v1": 2, "v2": 2, "v3": 2, "v4": 3, "v5": 3, "v6": 3,
}
#: Lead(s) printed as a full-length rhythm strip under the 3x4 grid (PhysioNet/CinC 2024 images: lead II).
LAYOUT_3X4_RHYTHM: tuple[str, ...] = ("II",)
#: ``layout`` values of :func:`preprocess`: ``"auto"`` (detect a 3x4 NaN pattern), ``"full"`` (no layout mask),
#: ``"3x4"`` (keep each lead's column and the rhythm strip, mask the rest).
LAYOUTS: tuple[str, ...] = ("auto", "full", "3x4")
#: Finite runs shorter than this (s) are too short to resample and band-pass and are masked.
MIN_SEGMENT_S = 0.5


def layout_mask(leads: Sequence[str], n_samples: int, layout: str = "3x4",
                rhythm_leads: Sequence[str] = LAYOUT_3X4_RHYTHM) -> np.ndarray:
    """Which samples a printout layout keeps: ``(len(leads), n_samples)`` bool.

    ``"3x4"``: lead ``l`` keeps the column ``k = LAYOUT_3X4_COLUMNS[l]``, samples ``[round(k n / 4),
    round((k + 1) n / 4))`` (the 2.5 s column of a 10 s page); ``rhythm_leads`` and leads outside the standard 12
    are kept whole. ``"full"`` keeps everything.

    Raises:
        ValueError: unknown layout.
    """
    if layout not in ("full", "3x4"):
        raise ValueError(f"layout_mask: layout must be 'full' or '3x4', got {layout!r}")
    mask = np.ones((len(leads), int(n_samples)), dtype=bool)
    if layout == "full":
        return mask
    rhythm = {lead_key(r) for r in rhythm_leads}
    for j, name in enumerate(leads):
        col = LAYOUT_3X4_COLUMNS.get(lead_key(name))
        if col is None or lead_key(name) in rhythm:
            continue
        lo, hi = round(col * n_samples / 4), round((col + 1) * n_samples / 4)
        mask[j] = False
        mask[j, lo:hi] = True
    return mask


def detect_layout(signal: np.ndarray, leads: Sequence[str], tolerance: float = 0.02) -> str:
    """Classify a record's NaN pattern.

    Args:
        signal: ``(leads, samples)``, NaN where nothing was recorded/digitised.
        leads: Lead names.
        tolerance: Fraction of the record a column lead may be finite outside its 3x4 column.

    Returns:
        ``"full"`` (no NaN); ``"3x4"`` when at least 6 standard leads are finite only inside their 3x4 column (and
        cover at least 80 % of it) and every other lead is either (almost) complete, like a rhythm strip, or
        absent; else ``"partial"``.
    """
    fin = np.isfinite(np.asarray(signal, dtype=np.float32))
    if fin.all():
        return "full"
    n = fin.shape[1]
    cols = layout_mask(leads, n, "3x4", rhythm_leads=())
    column_leads = 0
    for j, name in enumerate(leads):
        f = fin[j]
        if lead_key(name) not in LAYOUT_3X4_COLUMNS or not f.any() or f.mean() >= 0.95:
            continue
        if (f & ~cols[j]).sum() > tolerance * n or f[cols[j]].mean() < 0.8:
            return "partial"
        column_leads += 1
    return "3x4" if column_leads >= 6 else "partial"


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of the True runs of a 1-D bool array."""
    d = np.diff(np.concatenate(([0], row.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def normalize_masked(signal: np.ndarray, mask: np.ndarray, method: str = "none", scale: float = 1.0,
                     eps: float = 1e-8) -> np.ndarray:
    """:func:`normalize` with statistics over the present samples only; masked samples become 0.

    Args:
        signal: ``(leads, samples)``, mV (masked samples may hold anything, NaN included).
        mask: ``(leads, samples)`` bool, True where present.
        method: As :func:`normalize`.
        scale: Divisor for ``"scale"``.
        eps: Flat threshold.

    Returns:
        float32 array, same shape; 0 wherever ``mask`` is False. Equals :func:`normalize` when ``mask`` is all True.
    """
    arr = np.where(mask, np.asarray(signal, dtype=np.float32), np.float32(0))
    if method == "zscore":
        n = mask.sum(axis=-1, keepdims=True)
        mean = arr.sum(axis=-1, keepdims=True, dtype=np.float64) / np.maximum(n, 1)
        var = (np.where(mask, arr - mean, 0.0) ** 2).sum(axis=-1, keepdims=True) / np.maximum(n, 1)
        std = np.sqrt(var)
        out = (arr - mean) / np.where(std < eps, 1.0, std)
    elif method == "minmax":
        if mask.any():
            lo, hi = float(arr[mask].min()), float(arr[mask].max())
        else:
            lo, hi = 0.0, 0.0
        span = hi - lo
        out = (arr - lo) / (span if span >= eps else 1.0)
    else:
        out = normalize(arr, method, scale)
    return np.where(mask, out, 0.0).astype(np.float32)


def _preprocess_masked(signal: np.ndarray, leads: list[str], fs: float, who: str, spec: ECGInputSpec,
                       min_duration_s: float, layout: str) -> np.ndarray:
    x = check_signal(signal, fs, leads=leads, record=who, min_duration_s=min_duration_s, allow_nan=True)
    x = reorder_leads(x, leads, spec.leads, record=who, missing="nan")
    if layout == "auto":
        layout = "3x4" if detect_layout(x, spec.leads) == "3x4" else "full"
    if layout == "3x4":
        x = np.where(layout_mask(spec.leads, x.shape[1], "3x4"), x, np.float32(np.nan))
    present = np.isfinite(x)
    if present.all():  # nothing masked: exactly the unmasked path
        x = resample(x, fs, spec.fs)
        if spec.bandpass_hz is not None:
            x = bandpass(x, spec.fs, spec.bandpass_hz[0], spec.bandpass_hz[1])
        x = crop_or_pad(x, spec.n_samples, mode="center")
        return np.ascontiguousarray(normalize(x, spec.normalization, spec.scale), dtype=np.float32)
    # each finite run on its own: resample and filter never see (or spread) NaN
    n_out = x.shape[1] if fs == spec.fs else int(np.ceil(x.shape[1] * float(_ratio(fs, spec.fs))))
    out = np.zeros((x.shape[0], n_out), dtype=np.float32)
    mask = np.zeros((x.shape[0], n_out), dtype=bool)
    min_run = max(2, int(np.ceil(MIN_SEGMENT_S * fs)))
    for j in range(x.shape[0]):
        for a, b in _runs(present[j]):
            if b - a < min_run:
                continue
            seg = resample(x[j, a:b], fs, spec.fs)
            if spec.bandpass_hz is not None:
                seg = bandpass(seg, spec.fs, spec.bandpass_hz[0], spec.bandpass_hz[1])
            a_out = a if fs == spec.fs else round(a * spec.fs / fs)
            seg = seg[: max(0, n_out - a_out)]
            out[j, a_out:a_out + len(seg)] = seg
            mask[j, a_out:a_out + len(seg)] = True
    usable = mask.any(axis=1)
    n_usable = int(usable.sum())
    if n_usable < max(1, spec.min_leads):
        lacking = [name for name, u in zip(spec.leads, usable, strict=True) if not u]
        raise RecordError(
            f"{who}: {n_usable} usable lead(s) (missing or NaN: {lacking}; runs shorter than {MIN_SEGMENT_S:g} s "
            f"count as missing), expected at least {max(1, spec.min_leads)}"
        )
    out = crop_or_pad(out, spec.n_samples, mode="center")
    # zero padding of a short record counts as present (as in the unmasked path); absent leads stay masked
    mask = crop_or_pad(mask, spec.n_samples, mode="center", pad_value=True) & usable[:, None]
    return np.ascontiguousarray(normalize_masked(out, mask, spec.normalization, spec.scale), dtype=np.float32)


def preprocess(sample: Mapping[str, Any], spec: ECGInputSpec, min_duration_s: float = MIN_DURATION_S,
               layout: str | None = None) -> np.ndarray:
    """Turn a sample into what an encoder with ``spec`` expects.

    Order (docs/architecture.md): validate (:func:`check_signal`) -> reorder leads by name -> resample to
    ``spec.fs`` -> band-pass ``spec.bandpass_hz`` (if any) -> crop (``spec.crop``: centre or start) / zero pad
    (at the end for ``"start"``) to ``spec.n_samples`` -> ``spec.normalization`` (``"minmax"``: one global
    min-max over the whole ``(leads, samples)`` array, as MERL does).

    With ``spec.accepts_masked``: leads of ``spec.leads`` absent from the record and NaN samples are masked
    rather than refused. Each finite run of a lead (at least :data:`MIN_SEGMENT_S` long) is resampled and
    band-passed on its own, the normalisation uses the present samples only, and masked samples are 0 in the
    output. ``layout`` ``"3x4"`` keeps only each lead's 3x4-printout column plus the rhythm strip
    (:func:`layout_mask`); ``"auto"`` applies it when :func:`detect_layout` finds that NaN pattern. A fully
    present record gives exactly the unmasked result.

    Args:
        sample: medzs sample dict (``signal`` ``(leads, samples)`` mV, ``leads``, ``fs``; ``id``/``path`` name it
            in errors; an optional ``layout`` key is used when the argument is None).
        spec: The encoder's input spec.
        min_duration_s: Shortest accepted input, s.
        layout: ``"auto"`` (default), ``"full"`` or ``"3x4"`` (:data:`LAYOUTS`); only for specs with
            ``accepts_masked``.

    Returns:
        ``(len(spec.leads), spec.n_samples)`` float32 array.

    Raises:
        RecordError: missing fields, invalid signal, too short; without ``accepts_masked``: a lead of
            ``spec.leads`` missing or a NaN sample, or ``layout="3x4"``; with it: fewer than ``spec.min_leads``
            usable leads (none is always an error).
        ValueError: unknown ``layout``.
    """
    signal, leads, fs, who = _unpack(sample)
    if layout is None:
        layout = str(sample.get("layout") or "auto")
    if layout not in LAYOUTS:
        raise ValueError(f"preprocess: layout must be one of {LAYOUTS}, got {layout!r}")
    if getattr(spec, "accepts_masked", False):
        return _preprocess_masked(signal, leads, fs, who, spec, min_duration_s, layout)
    if layout == "3x4":
        raise RecordError(f"{who}: layout '3x4' given, but this encoder's InputSpec does not accept masked input "
                          "(accepts_masked=False); expected a complete 12-lead record")
    x = check_signal(signal, fs, leads=leads, record=who, min_duration_s=min_duration_s)
    x = reorder_leads(x, leads, spec.leads, record=who)
    x = resample(x, fs, spec.fs)
    if spec.bandpass_hz is not None:
        x = bandpass(x, spec.fs, spec.bandpass_hz[0], spec.bandpass_hz[1])
    x = crop_or_pad(x, spec.n_samples, mode=spec.crop)
    x = normalize(x, spec.normalization, spec.scale)
    return np.ascontiguousarray(x, dtype=np.float32)


def batch(samples: Iterable[Mapping[str, Any]], spec: ECGInputSpec, layout: str | None = None) -> np.ndarray:
    """Preprocess and stack samples: ``(batch, len(spec.leads), spec.n_samples)`` float32.

    Raises:
        RecordError: as :func:`preprocess`, for the first bad sample.
    """
    arrays = [preprocess(s, spec, layout=layout) for s in samples]
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

    def __init__(self, spec: ECGInputSpec, min_duration_s: float = MIN_DURATION_S, layout: str | None = None) -> None:
        self.spec = spec
        self.min_duration_s = float(min_duration_s)
        self.layout = layout

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        out["signal"] = preprocess(sample, self.spec, self.min_duration_s, layout=self.layout)
        out["leads"] = list(self.spec.leads)
        out["fs"] = float(self.spec.fs)
        return out


__all__ = [
    "LAYOUTS",
    "LAYOUT_3X4_COLUMNS",
    "LAYOUT_3X4_RHYTHM",
    "MIN_DURATION_S",
    "MIN_SEGMENT_S",
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
    "detect_layout",
    "layout_mask",
    "lead_key",
    "normalize",
    "normalize_masked",
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
