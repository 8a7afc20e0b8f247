"""12-lead ECG measurements with units, from which the knowledge base's structured criteria are checked.

:func:`measure_ecg` turns one record (a medzs sample dict, or a ``(leads, samples)`` array in mV plus ``fs``) into a
:class:`Measurements`: record-level values (heart rate, RR statistics, P-wave presence and axis, PR, QRS duration,
QT/QTc, QRS axis, premature-beat count, Sokolow-Lyon and Cornell voltages) and per-lead values (P, Q, R, S, T
amplitudes, Q duration, R-peak time, QRS peak-to-peak amplitude, ST deviation), named and with the units of
:data:`medzs.knowledge.schema.MEASUREMENTS`. A value that cannot be measured is NaN and its reason is recorded in
``Measurements.reasons``; a hard record (flat or missing leads, too short, no detectable QRS, noise) never raises.

Processing (all zero-phase; docs/criteria.md has the details and the validation):

1. Leads are matched by name to the standard 12; the signal is resampled to :data:`PROCESSING_FS` (500 Hz, the
   PTB-XL ``records500`` rate; 100 Hz input is upsampled, which interpolates but cannot add detail, so interval
   measurements from 100 Hz input are coarser). Leads that are missing, non-finite or flat are excluded with a reason.
2. Measurement signal: zero-phase Butterworth band-pass 0.5-100 Hz (``sosfiltfilt``; a zero-phase 0.5 Hz high-pass
   keeps the ST segment undistorted: Kligfield et al., AHA recommendations for the standardization of the ECG, part I,
   Circulation 115:1306-1324, 2007, doi:10.1161/CIRCULATIONAHA.106.180200).
3. R peaks: :func:`neurokit2.ecg_peaks` on every usable lead (after :func:`neurokit2.ecg_clean`), merged into one
   beat list by a per-beat vote across leads (a beat is kept when at least 40 % of the usable leads detect it
   within 60 ms), then aligned by cross-correlation with the multi-lead QRS template.
4. RR statistics from the beat times; premature beats by timing (RR < 85 % of the median RR followed by a longer
   interval) or by shape (QRS correlation with the template < 0.8 and RR < 92 % of the median).
5. A median beat per lead over the dominant beats (not premature, QRS correlation >= 0.8).
6. QRS onset and offset on the 12-lead median beat from the spatial velocity (root sum of squares of the lead
   derivatives) with a threshold at :data:`QRS_THRESHOLD` of its range, i.e. the earliest onset and the latest
   offset over all leads (the multi-lead principle of Laguna et al., Comput Biomed Res 27:45-60, 1994,
   doi:10.1006/cbmr.1994.1006; the CSE working party's "global" boundaries, Willems et al., J Am Coll Cardiol
   10:1313-1321, 1987). neurokit2's QRS boundaries were not used: on PTB-XL folds 1-8 its ``dwt`` method gave a
   median QRS of 168 ms on NORM records, and ``cwt``/``prominence`` did not separate NORM from complete bundle
   branch block (110 vs 106 ms, 74 vs 50 ms; ``benchmarks/criteria_vs_embedding.py --checks``, docs/criteria.md).
7. P wave: :func:`neurokit2.ecg_delineate` (``dwt``) on lead II only (V1/aVF only when lead II gives none), per
   beat, summarised by the median position relative to the beat. T-wave end: tangent method on the median beat of
   II or V5 (neurokit2's T offset only as a fallback; it ended broad T waves early). The P wave's presence
   per beat by correlation (>= 0.6) with the median P wave in II or V1, whichever has the larger median P wave.
8. Amplitudes on the baseline-corrected median beats (baseline: mean of the 20 ms before QRS onset, the PR
   segment); ST deviation at J + 60 ms (J = QRS offset); T amplitude = the signed extreme between J + 80 ms and
   the T-wave end.

Example:
    >>> from medzs.data.ptbxl import PTBXL
    >>> from medzs.measure.ecg import measure_ecg
    >>> m = measure_ecg(PTBXL().load(1))      # doctest: +SKIP
    >>> m.get("heart_rate"), m.units["heart_rate"], m.get("r_amplitude", "V5")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.knowledge.schema import MEASUREMENTS
from medzs.spec import STANDARD_12_LEADS

logger = logging.getLogger(__name__)

#: Rate at which every record is processed, Hz.
PROCESSING_FS = 500.0
#: Shortest signal measured at all, s (two beats at 60 bpm).
MIN_DURATION_S = 2.0
#: A lead whose robust peak-to-peak amplitude (0.5th-99.5th percentile, after the band-pass) is below this is
#: flat, mV.
FLAT_PTP_MV = 0.05
#: Band-pass of the measurement signal, Hz.
BANDPASS_HZ = (0.5, 100.0)
#: A beat found by at least this fraction of the usable leads is kept.
VOTE_FRACTION = 0.4
#: Beats whose multi-lead QRS correlates less than this with the QRS template are not dominant.
MORPH_CORR = 0.8
#: Timing rule for premature beats: RR shorter than this fraction of the median RR ...
PREMATURE_RR = 0.85
#: ... and followed by an RR at least this many times longer (a compensatory or resetting pause).
PREMATURE_NEXT = 1.1
#: Spatial-velocity threshold for QRS onset/offset, as a fraction of (peak - isoelectric level).
QRS_THRESHOLD = 0.03
#: Below-threshold stretch that ends the QRS, ms.
QRS_HOLD_MS = 14.0
#: The QRS offset threshold is at least this multiple of the ST segment's spatial velocity.
ST_FACTOR = 1.5
#: A P wave is present in a beat when its P segment correlates at least this much with the median P wave ...
P_CORR = 0.6
#: ... in the lead of :data:`P_PRESENCE_LEADS` with the largest median P wave, if that is at least this large
#: (peak-to-peak over the P wave +-20 ms), mV; smaller: no reproducible P wave (fraction 0).
P_MIN_PTP_MV = 0.03
#: Smallest deflection counted as a Q, R or S wave, mV.
WAVE_MIN_MV = 0.03
#: Candidate leads for P-wave presence (P waves are largest in II, or in V1).
P_PRESENCE_LEADS = ("II", "V1")

#: Measurements reported per lead (``values[name]`` is ``{lead: value}``); the others are record-level floats.
PER_LEAD: tuple[str, ...] = (
    "p_amplitude", "q_amplitude", "q_duration", "r_amplitude", "s_amplitude", "r_peak_time", "qrs_amplitude",
    "st_deviation", "t_amplitude",
)
RECORD_LEVEL: tuple[str, ...] = tuple(m for m in MEASUREMENTS if m not in PER_LEAD)

_LEADS = STANDARD_12_LEADS
_IDX = {name: i for i, name in enumerate(_LEADS)}
_SQ3 = math.sqrt(3.0)


def _key(name: str) -> str:
    return str(name).strip().casefold()


_LEAD_BY_KEY = {_key(n): n for n in _LEADS}


def canonical_lead(name: str) -> str | None:
    """Standard spelling of a lead name (``"AVR"`` -> ``"aVR"``), or None when it is not one of the 12."""
    return _LEAD_BY_KEY.get(_key(name))


@dataclass
class Measurements:
    """Measurements of one ECG record.

    Attributes:
        record_id: The record's id (never a patient identifier).
        values: Measurement name -> float (record-level) or ``{lead: float}`` (names in :data:`PER_LEAD`); NaN when
            not measurable.
        units: Measurement name -> unit (as in :data:`medzs.knowledge.schema.MEASUREMENTS`).
        reasons: Why a value is NaN: key ``name`` (record-level, or every lead) or ``name[lead]``.
        info: Processing facts: ``fs_in`` and ``fs`` (Hz), ``duration_s``, ``n_beats``, ``n_dominant``,
            ``usable_leads``, ``excluded_leads`` (lead -> reason), ``fiducials_ms`` (QRS onset/offset, P onset/offset,
            T end relative to the beat's alignment point), ``seconds`` (runtime).
    """

    record_id: str
    values: dict[str, Any]
    units: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, lead: str | None = None) -> float:
        """A value (NaN when not measured); ``lead`` is required for the per-lead measurements.

        Raises:
            KeyError: unknown measurement, or a lead given for a record-level one / missing for a per-lead one.
        """
        if name not in self.values:
            raise KeyError(f"measurement {name!r}: expected one of {sorted(self.values)}")
        v = self.values[name]
        if isinstance(v, dict):
            if lead is None:
                raise KeyError(f"measurement {name!r} is per lead: give lead= one of {list(v)}")
            canon = canonical_lead(lead)
            if canon is None:
                raise KeyError(f"lead {lead!r}: expected one of {list(_LEADS)}")
            return float(v.get(canon, float("nan")))
        if lead is not None:
            raise KeyError(f"measurement {name!r} is record-level: lead= must not be given")
        return float(v)

    def reason(self, name: str, lead: str | None = None) -> str | None:
        """Why ``name`` (in ``lead``) is NaN, or None when it was measured."""
        value = self.get(name, lead)
        if not math.isnan(value):
            return None
        if lead is not None:
            canon = canonical_lead(lead) or lead
            if f"{name}[{canon}]" in self.reasons:
                return self.reasons[f"{name}[{canon}]"]
        return self.reasons.get(name, "not measured")

    def nan_names(self) -> list[str]:
        """Record-level measurements that are NaN, and per-lead ones that are NaN in every lead."""
        out = []
        for name, v in self.values.items():
            vals = list(v.values()) if isinstance(v, dict) else [v]
            if all(math.isnan(x) for x in vals):
                out.append(name)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN -> None)."""

        def clean(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            if isinstance(x, (float, np.floating)):
                return None if math.isnan(float(x)) else round(float(x), 4)
            if isinstance(x, np.integer):
                return int(x)
            return x

        return {"record_id": self.record_id, "values": clean(self.values), "units": dict(self.units),
                "reasons": dict(self.reasons), "info": clean(self.info)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurements:
        """Inverse of :meth:`to_dict` (None -> NaN)."""

        def back(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: back(v) for k, v in x.items()}
            return float("nan") if x is None else x

        values = {k: (back(v) if isinstance(v, dict) else (float("nan") if v is None else float(v)))
                  for k, v in d["values"].items()}
        return cls(str(d["record_id"]), values, dict(d["units"]), dict(d.get("reasons", {})), dict(d.get("info", {})))


class _Result:
    """Accumulates values and the reasons for NaNs while a record is measured."""

    def __init__(self, record_id: str) -> None:
        self.record_id = record_id
        self.values: dict[str, Any] = {m: ({lead: float("nan") for lead in _LEADS} if m in PER_LEAD else float("nan"))
                                       for m in MEASUREMENTS}
        self.reasons: dict[str, str] = {}
        self.info: dict[str, Any] = {}

    def set(self, name: str, value: float, reason: str = "") -> None:
        value = float(value)
        self.values[name] = value
        if math.isnan(value):
            self.reasons.setdefault(name, reason or "not measurable")
        else:
            self.reasons.pop(name, None)

    def set_lead(self, name: str, lead: str, value: float, reason: str = "") -> None:
        value = float(value)
        self.values[name][lead] = value
        key = f"{name}[{lead}]"
        if math.isnan(value):
            self.reasons.setdefault(key, reason or "not measurable")
        else:
            self.reasons.pop(key, None)

    def fail_remaining(self, reason: str) -> None:
        """Give every still-unmeasured value ``reason`` (keeps earlier, more specific reasons)."""
        for name, v in self.values.items():
            if isinstance(v, dict):
                if all(math.isnan(x) for x in v.values()) and not any(k.startswith(name + "[") for k in self.reasons):
                    self.reasons.setdefault(name, reason)
                else:
                    for lead, x in v.items():
                        if math.isnan(x) and name not in self.reasons:
                            self.reasons.setdefault(f"{name}[{lead}]", reason)
            elif math.isnan(v):
                self.reasons.setdefault(name, reason)

    def build(self) -> Measurements:
        self.fail_remaining("not measurable")
        units = {m: MEASUREMENTS[m] for m in MEASUREMENTS}
        return Measurements(self.record_id, self.values, units, self.reasons, self.info)


# -- input ------------------------------------------------------------------------------------------------------
def _as_12_leads(ecg: Any, fs: float | None, leads: Sequence[str] | None, record_id: str | None
                 ) -> tuple[np.ndarray, float, str, dict[str, str]]:
    """``(12, n)`` float64 array in standard lead order (NaN rows for absent leads), fs, id, excluded leads."""
    if isinstance(ecg, Mapping):
        for key in ("signal", "fs"):
            if ecg.get(key) is None:
                raise RecordError(f"{ecg.get('path') or ecg.get('id') or 'sample'}: sample field {key!r} missing "
                                  "(expected signal, leads and fs)")
        signal = ecg["signal"]
        fs = float(ecg["fs"]) if fs is None else fs
        leads = list(ecg.get("leads") or []) if leads is None else leads
        record_id = record_id or str(ecg.get("id") or "record")
    record_id = record_id or "record"
    arr = np.asarray(signal if isinstance(ecg, Mapping) else ecg)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise RecordError(f"{record_id}: signal has shape {arr.shape}, dtype {arr.dtype} "
                          "(expected a real 2-D (leads, samples) array in mV)")
    if fs is None or not (np.isfinite(fs) and fs > 0):
        raise RecordError(f"{record_id}: fs {fs!r} (expected a positive sampling rate in Hz)")
    if not leads:
        if arr.shape[0] != len(_LEADS):
            raise RecordError(f"{record_id}: {arr.shape[0]} signal rows and no lead names "
                              f"(expected leads= or the standard 12 rows {list(_LEADS)})")
        leads = list(_LEADS)
    if len(leads) != arr.shape[0]:
        raise RecordError(f"{record_id}: leads: {len(leads)} names for {arr.shape[0]} signal rows")
    out = np.full((len(_LEADS), arr.shape[1]), np.nan)
    excluded: dict[str, str] = {}
    seen = set()
    for row, name in enumerate(leads):
        canon = canonical_lead(name)
        if canon is None or canon in seen:
            continue
        seen.add(canon)
        out[_IDX[canon]] = arr[row].astype(np.float64)
    for lead in _LEADS:
        if lead not in seen:
            excluded[lead] = "lead missing from the record"
    return out, float(fs), record_id, excluded


# -- helpers ----------------------------------------------------------------------------------------------------
def _ms(samples: float, fs: float) -> float:
    return float(samples) * 1000.0 / fs


def _smp(ms: float, fs: float) -> int:
    return round(ms * fs / 1000.0)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / den) if den > 0 else float("nan")


def _axis_deg(area_i: float, area_avf: float) -> float:
    """Frontal-plane axis from the net deflections in I (0 deg) and aVF (+90 deg), deg in (-180, 180].

    With the Einthoven/Goldberger lead definitions, ``I = Ex`` and ``aVF = (II + III) / 2 = (sqrt(3)/2) Ey``,
    so the axis is ``atan2(2 aVF / sqrt(3), I)``.
    """
    if not (np.isfinite(area_i) and np.isfinite(area_avf)) or (area_i == 0 and area_avf == 0):
        return float("nan")
    return float(math.degrees(math.atan2(2.0 * area_avf / _SQ3, area_i)))


def _segments(x: np.ndarray, centers: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``(beats, leads, hi - lo)`` windows ``[c + lo, c + hi)`` of ``x`` (leads, n), NaN outside the signal."""
    n = x.shape[1]
    width = hi - lo
    out = np.full((len(centers), x.shape[0], width), np.nan)
    for k, c in enumerate(centers):
        a, b = c + lo, c + hi
        a0, b0 = max(a, 0), min(b, n)
        if b0 > a0:
            out[k, :, a0 - a:b0 - a] = x[:, a0:b0]
    return out


def _nanmedian(a: np.ndarray, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


# -- R peaks ----------------------------------------------------------------------------------------------------
def _rpeaks(clean: np.ndarray, usable: list[int], fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Beat times (samples) voted across leads from neurokit2's R peaks, and each beat's vote share."""
    import neurokit2 as nk

    times, owners = [], []
    n_ok = 0
    for i in usable:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, info = nk.ecg_peaks(clean[i], sampling_rate=int(fs), method="neurokit")
            peaks = np.asarray(info["ECG_R_Peaks"], dtype=int)
        except Exception as exc:  # noqa: BLE001 - neurokit raises on degenerate leads; that lead just does not vote
            logger.debug("ecg_peaks failed on lead %s: %s", _LEADS[i], exc)
            continue
        n_ok += 1
        times.extend(peaks.tolist())
        owners.extend([i] * len(peaks))
    if not times or n_ok == 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    order = np.argsort(times, kind="mergesort")
    t = np.asarray(times)[order]
    o = np.asarray(owners)[order]
    tol = _smp(60.0, fs)
    beats, shares = [], []
    start = 0
    while start < len(t):
        stop = start + 1
        while stop < len(t) and t[stop] - t[start] <= tol:
            stop += 1
        leads_here = set(o[start:stop].tolist())
        beats.append(int(np.median(t[start:stop])))
        shares.append(len(leads_here) / n_ok)
        start = stop
    beats_a, shares_a = np.asarray(beats), np.asarray(shares)
    need = VOTE_FRACTION if n_ok >= 3 else 0.5
    keep = shares_a >= need - 1e-9
    beats_a, shares_a = beats_a[keep], shares_a[keep]
    # refractory period: two beats closer than 200 ms -> keep the better-supported one
    refr = _smp(200.0, fs)
    out_b, out_s = [], []
    for b, s in zip(beats_a.tolist(), shares_a.tolist(), strict=True):
        if out_b and b - out_b[-1] < refr:
            if s > out_s[-1]:
                out_b[-1], out_s[-1] = b, s
            continue
        out_b.append(b)
        out_s.append(s)
    return np.asarray(out_b, dtype=int), np.asarray(out_s)


def _align(x: np.ndarray, usable: list[int], beats: np.ndarray, fs: float) -> np.ndarray:
    """Move each beat to the peak of the QRS energy, then to the lag that best matches the multi-lead template."""
    n = x.shape[1]
    d = np.diff(x[usable], axis=1, prepend=x[usable][:, :1])
    energy = np.sum(d * d, axis=0)
    w = max(1, _smp(20.0, fs))
    energy = np.convolve(energy, np.ones(w) / w, mode="same")
    half = _smp(60.0, fs)
    out = beats.copy()
    for k, b in enumerate(beats):
        a, c = max(b - half, 0), min(b + half + 1, n)
        out[k] = a + int(np.argmax(energy[a:c]))
    # template matching on the QRS region (-60..+80 ms), lags within +-20 ms
    lo, hi, lag = -_smp(60.0, fs), _smp(80.0, fs), _smp(20.0, fs)
    segs = _segments(x[usable], out, lo - lag, hi + lag)
    if len(out) < 3:
        return out
    core = segs[:, :, lag:lag + (hi - lo)]
    tmpl = _nanmedian(core, axis=0)
    if not np.all(np.isfinite(tmpl)):
        return out
    t_flat = (tmpl - tmpl.mean(axis=1, keepdims=True)).ravel()
    for k in range(len(out)):
        best, best_c = 0, -np.inf
        for s in range(-lag, lag + 1):
            seg = segs[k, :, lag + s:lag + s + (hi - lo)]
            if not np.all(np.isfinite(seg)):
                continue
            c = float(np.dot((seg - seg.mean(axis=1, keepdims=True)).ravel(), t_flat))
            if c > best_c:
                best, best_c = s, c
        out[k] += best
    return out


# -- QRS boundaries on the median beat -----------------------------------------------------------------------------
def _qrs_bounds(med: np.ndarray, usable: list[int], r0: int, fs: float) -> tuple[float, float, str]:
    """QRS onset/offset (sample indices in the median-beat window) from the multi-lead spatial velocity."""
    m = med[usable]
    if not np.all(np.isfinite(m)):
        good = np.all(np.isfinite(m), axis=0)
        if not good[max(r0 - _smp(200, fs), 0):r0 + _smp(250, fs)].all():
            return float("nan"), float("nan"), "median beat incomplete around the QRS (record too short)"
        m = np.where(np.isfinite(m), m, 0.0)
    d = np.gradient(m, axis=1) * (fs / 1000.0)  # mV/ms
    w = max(1, _smp(8.0, fs))
    d = np.apply_along_axis(lambda v: np.convolve(v, np.ones(w) / w, mode="same"), 1, d)
    sv = np.sqrt(np.sum(d * d, axis=0))
    n = sv.size
    a, b = max(r0 - _smp(60, fs), 0), min(r0 + _smp(60, fs) + 1, n)
    anchor = a + int(np.argmax(sv[a:b]))
    peak = float(sv[anchor])
    base = float(np.percentile(sv, 10))
    if peak <= 0 or peak < 3 * base:
        return float("nan"), float("nan"), "no distinct QRS complex in the median beat"
    thr = base + QRS_THRESHOLD * (peak - base)
    hold = max(1, _smp(QRS_HOLD_MS, fs))
    lo_lim, hi_lim = max(r0 - _smp(200, fs), 0), min(r0 + _smp(250, fs), n - 1)
    on = anchor
    while on - hold >= lo_lim and np.any(sv[on - hold:on] >= thr):
        on -= 1
    # Offset: the same threshold, but at least ST_FACTOR x the median spatial velocity of the ST-T segment
    # (on + 180 ms to on + 280 ms, after even a wide QRS), so that the steep ST-T slope of a bundle branch block or
    # strain pattern does not prolong the QRS; in a normal ECG the ST-T velocity is far below the threshold.
    st = sv[min(on + _smp(180.0, fs), n):min(on + _smp(280.0, fs), n)]
    thr_off = max(thr, ST_FACTOR * float(np.median(st))) if st.size else thr
    off = anchor
    while off + hold <= hi_lim and np.any(sv[off + 1:off + 1 + hold] >= thr_off):
        off += 1
    if on - hold < lo_lim or off + hold > hi_lim:
        return float("nan"), float("nan"), "QRS boundaries not found within 200 ms before / 250 ms after the beat"
    return float(on), float(off), ""


# -- neurokit2 delineation (P wave, T-wave end) --------------------------------------------------------------
def _delineate(clean: np.ndarray, lead: int, beats: np.ndarray, fs: float) -> dict[str, np.ndarray] | None:
    import neurokit2 as nk

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, d = nk.ecg_delineate(clean[lead], beats, sampling_rate=int(fs), method="dwt")
    except Exception as exc:  # noqa: BLE001 - neurokit raises on short or degenerate signals
        logger.debug("ecg_delineate failed on lead %s: %s", _LEADS[lead], exc)
        return None
    out = {}
    for key in ("ECG_P_Onsets", "ECG_P_Peaks", "ECG_P_Offsets", "ECG_T_Peaks", "ECG_T_Offsets"):
        v = np.asarray(d.get(key, []), dtype=float)
        out[key] = v if v.size == beats.size else np.full(beats.size, np.nan)
    return out


def _rel_median(pos: np.ndarray, beats: np.ndarray, sel: np.ndarray, lo: int, hi: int, min_frac: float
                ) -> tuple[float, float]:
    """Median position relative to the beat over ``sel`` beats, keeping values in ``[lo, hi]``; and the kept share."""
    rel = pos[sel] - beats[sel]
    ok = np.isfinite(rel) & (rel >= lo) & (rel <= hi)
    share = float(ok.mean()) if ok.size else 0.0
    if ok.sum() == 0 or share < min_frac:
        return float("nan"), share
    return float(np.median(rel[ok])), share


# -- main ---------------------------------------------------------------------------------------------------------
def measure_ecg(ecg: Any, fs: float | None = None, leads: Sequence[str] | None = None,
                record_id: str | None = None, min_duration_s: float = MIN_DURATION_S) -> Measurements:
    """Measure one 12-lead ECG.

    Args:
        ecg: A medzs sample dict (``signal`` ``(leads, samples)`` mV, ``leads``, ``fs``, ``id``) or a ``(leads,
            samples)`` array in mV (then ``fs`` is required and ``leads`` defaults to the standard 12 in order).
        fs: Sampling rate, Hz (overrides the sample's).
        leads: Lead names of the rows (matched case-insensitively to the standard 12; others are ignored).
        record_id: Id used in results and logs (default: the sample's ``id``).
        min_duration_s: Shorter signals are not measured (every value NaN with the reason), s.

    Returns:
        :class:`Measurements` with every name of :data:`medzs.knowledge.schema.MEASUREMENTS`; values that cannot be
        measured are NaN with a reason. Units: ms, bpm, deg, mV, count, "1" (ratio).

    Raises:
        RecordError: only for malformed input (not a 2-D numeric array, no/invalid ``fs``, lead names that do not
            match the rows). Hard records (flat, missing or noisy leads, too short, no QRS) give NaNs, not errors.
    """
    t0 = time.perf_counter()
    x_in, fs_in, rid, excluded = _as_12_leads(ecg, fs, leads, record_id)
    res = _Result(rid)
    n_in = x_in.shape[1]
    res.info.update({"fs_in": fs_in, "fs": PROCESSING_FS, "duration_s": round(n_in / fs_in, 3)})
    try:
        _measure(x_in, fs_in, excluded, res, min_duration_s)
    except Exception as exc:  # noqa: BLE001 - last line of defence: a hard record never raises
        logger.warning("%s: measurement stopped early (%s: %s); remaining values are NaN", rid, type(exc).__name__, exc)
        res.fail_remaining(f"measurement failed ({type(exc).__name__}: {exc})")
    res.info["excluded_leads"] = dict(excluded)
    res.info["seconds"] = round(time.perf_counter() - t0, 4)
    return res.build()


def _measure(x_in: np.ndarray, fs_in: float, excluded: dict[str, str], res: _Result, min_duration_s: float) -> None:
    fs = PROCESSING_FS
    dur = x_in.shape[1] / fs_in
    if dur < min_duration_s:
        res.fail_remaining(f"signal too short ({dur:.2f} s < {min_duration_s:g} s)")
        return
    for i, lead in enumerate(_LEADS):
        if lead in excluded:
            continue
        if not np.all(np.isfinite(x_in[i])):
            excluded[lead] = "lead contains non-finite samples"
            x_in[i] = np.nan
    present = [i for i in range(len(_LEADS)) if _LEADS[i] not in excluded]
    from medzs.transforms.ecg import bandpass, resample

    x = np.full((len(_LEADS), math.ceil(x_in.shape[1] * fs / fs_in)), np.nan)
    if present:
        r = resample(x_in[present], fs_in, fs).astype(np.float64)
        x = np.full((len(_LEADS), r.shape[1]), np.nan)
        x[present] = r
        x[present] = bandpass(x[present], fs, BANDPASS_HZ[0], BANDPASS_HZ[1]).astype(np.float64)
    usable = []
    for i in present:
        lo, hi = np.percentile(x[i], [0.5, 99.5])
        if hi - lo < FLAT_PTP_MV:
            excluded[_LEADS[i]] = f"lead flat (peak-to-peak {hi - lo:.3f} mV < {FLAT_PTP_MV} mV)"
            x[i] = np.nan
        else:
            usable.append(i)
    res.info["usable_leads"] = [_LEADS[i] for i in usable]
    for lead, why in excluded.items():
        for name in PER_LEAD:
            res.set_lead(name, lead, float("nan"), why)
    if not usable:
        res.fail_remaining("no usable lead (all missing, non-finite or flat)")
        return

    import neurokit2 as nk

    clean = np.full_like(x, np.nan)
    for i in usable:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean[i] = nk.ecg_clean(x[i], sampling_rate=int(fs), method="neurokit")
    beats, _share = _rpeaks(clean, usable, fs)
    res.info["n_beats"] = int(beats.size)
    if beats.size == 0:
        res.fail_remaining("no QRS complexes detected")
        return
    beats = _align(x, usable, beats, fs)

    # ---- rate and rhythm
    rr = np.diff(beats) * 1000.0 / fs  # ms
    _rhythm(res, rr)

    # ---- beat classes
    n_b = beats.size
    med_rr = float(np.median(rr)) if rr.size else float("nan")
    premature = np.zeros(n_b, dtype=bool)
    if rr.size >= 3:
        for k in range(1, n_b):
            this = rr[k - 1]
            nxt = rr[k] if k < rr.size else float("inf")
            if this < PREMATURE_RR * med_rr and nxt >= PREMATURE_NEXT * this:
                premature[k] = True
    lo_q, hi_q = -_smp(60.0, fs), _smp(80.0, fs)
    qseg = _segments(x[usable], beats, lo_q, hi_q)
    qtmpl = _nanmedian(qseg, axis=0)
    corr = np.array([_corr(np.nan_to_num(qseg[k]).ravel(), np.nan_to_num(qtmpl).ravel()) for k in range(n_b)])
    morph_out = np.nan_to_num(corr, nan=0.0) < MORPH_CORR
    if rr.size >= 3:
        for k in range(1, n_b):
            if morph_out[k] and rr[k - 1] < 0.92 * med_rr:
                premature[k] = True
        res.set("premature_beats", float(premature.sum()))
    else:
        res.set("premature_beats", float("nan"), f"fewer than 4 beats ({n_b})")
    dominant = ~premature & ~morph_out
    if dominant.sum() == 0:
        dominant = ~premature if (~premature).any() else np.ones(n_b, dtype=bool)
    res.info["n_dominant"] = int(dominant.sum())

    # ---- median beat
    rr_w = med_rr if np.isfinite(med_rr) else 1000.0
    pre = _smp(min(400.0, max(0.45 * rr_w, 250.0)), fs)
    post = _smp(min(900.0, max(rr_w - 0.45 * rr_w, 350.0)), fs)
    segs = _segments(x, beats[dominant], -pre, post)
    med = _nanmedian(segs, axis=0)  # (12, pre + post); NaN rows for unusable leads
    r0 = pre
    on, off, why = _qrs_bounds(med, usable, r0, fs)
    fid: dict[str, float] = {}
    if np.isnan(on):
        res.fail_remaining(why)
        res.info["fiducials_ms"] = fid
        return
    fid["qrs_onset"], fid["qrs_offset"] = _ms(on - r0, fs), _ms(off - r0, fs)
    on_i, off_i = int(on), int(off)
    res.set("qrs_duration", _ms(off - on, fs))
    b0 = max(on_i - _smp(20.0, fs), 0)
    base = np.nanmean(med[:, b0:max(on_i - 1, b0 + 1)], axis=1) if on_i > 1 else np.zeros(len(_LEADS))
    medb = med - base[:, None]

    # ---- QRS per lead, axis, voltages
    _qrs_per_lead(res, medb, usable, on_i, off_i, fs)
    a_i, a_avf = (float(np.sum(medb[_IDX[k], on_i:off_i + 1])) if _IDX[k] in usable else float("nan")
                  for k in ("I", "aVF"))
    axis = _axis_deg(a_i, a_avf)
    res.set("qrs_axis", axis, "lead I or aVF not usable" if np.isnan(axis) else "")
    _voltages(res)

    # ---- T-wave end: tangent method on the median beat; P wave (and the T end when the tangent method finds
    # none) from neurokit2's delineation of lead II (other leads only when lead II gives none)
    rel_lo = -pre
    t_off, t_method = _t_end_tangent(medb, usable, r0, off_i, post, fs), "tangent"
    p_on = p_off = p_peak = float("nan")
    p_share = t_share = 0.0
    sel = dominant.copy()
    on_rel, off_rel = on - r0, off - r0
    delin_leads = []
    for lead in ("II", "V1", "aVF", "V5"):
        i = _IDX[lead]
        if i not in usable:
            continue
        need_p = np.isnan(p_on) and lead in ("II", "V1", "aVF")
        need_t = np.isnan(t_off) and lead in ("II", "V5")
        if not (need_p or need_t):
            continue
        d = _delineate(clean, i, beats, fs)
        delin_leads.append(lead)
        if d is None:
            continue
        if need_p:
            lim_lo, lim_hi = max(rel_lo, on_rel - _smp(400.0, fs)), on_rel - _smp(10.0, fs)
            c_on, s1 = _rel_median(d["ECG_P_Onsets"], beats, sel, lim_lo, lim_hi, 0.5)
            c_off, _ = _rel_median(d["ECG_P_Offsets"], beats, sel, lim_lo, on_rel, 0.5)
            c_pk, _ = _rel_median(d["ECG_P_Peaks"], beats, sel, lim_lo, lim_hi, 0.5)
            if np.isfinite(c_on) and np.isfinite(c_off) and np.isfinite(c_pk) and c_on < c_pk < c_off:
                p_on, p_off, p_peak, p_share = c_on, c_off, c_pk, s1
        if need_t:
            lim_lo = off_rel + _smp(100.0, fs)
            lim_hi = min(post - 1, off_rel + _smp(650.0, fs))
            c_t, s2 = _rel_median(d["ECG_T_Offsets"], beats, sel, lim_lo, lim_hi, 0.5)
            if np.isfinite(c_t):
                t_off, t_share, t_method = c_t, s2, f"neurokit2 dwt ({lead})"
    res.info["delineated_leads"] = delin_leads
    if _p_wave(res, x, medb, beats, usable, r0, p_on, p_off, on_rel, fs):
        fid["p_onset"], fid["p_peak"], fid["p_offset"] = _ms(p_on, fs), _ms(p_peak, fs), _ms(p_off, fs)
    if np.isfinite(t_off):
        fid["t_end"] = _ms(t_off, fs)
        res.info["t_end_method"] = t_method
    _repolarisation(res, medb, usable, r0, on_i, off_i, t_off, rr, fs, post)
    res.info["fiducials_ms"] = fid
    res.info["delineation_share"] = {"p": round(p_share, 3), "t": round(t_share, 3)}


def _t_end_tangent(medb: np.ndarray, usable: list[int], r0: int, off: int, post: int, fs: float) -> float:
    """T-wave end (samples from the beat's alignment point) by the tangent method on the median beat.

    In lead II or V5, whichever has the larger T wave (largest deflection from J + 80 ms to J + 600 ms), the tangent
    at the steepest point of the T wave's terminal limb (within 300 ms after the T peak) is intersected with the
    isoelectric (PR) level (Lepeschkin & Surawicz, Circulation 6:378-388, 1952; reviewed by Postema & Wilde, Curr
    Cardiol Rev 10:287-294, 2014). NaN when no lead gives a T wave of at least WAVE_MIN_MV or the intersection
    falls outside the median beat.
    """
    best = None
    a = off + _smp(80.0, fs)
    b = min(r0 + post - 1, off + _smp(600.0, fs), medb.shape[1] - 1)
    for lead in ("II", "V5"):
        i = _IDX[lead]
        if i not in usable or b - a < 10:
            continue
        seg = medb[i, a:b]
        if not np.all(np.isfinite(seg)):
            continue
        k = int(np.argmax(np.abs(seg)))
        if abs(seg[k]) >= WAVE_MIN_MV and (best is None or abs(seg[k]) > abs(best[1])):
            best = (i, float(seg[k]), a + k)
    if best is None:
        return float("nan")
    i, amp, tp = best
    x = medb[i]
    w = max(1, _smp(8.0, fs))
    d = np.convolve(np.gradient(x), np.ones(w) / w, mode="same")  # mV per sample
    stop = min(b, tp + _smp(300.0, fs))
    if stop - tp < 3:
        return float("nan")
    j = tp + int(np.argmin(d[tp:stop]) if amp > 0 else np.argmax(d[tp:stop]))
    if d[j] == 0 or np.sign(d[j]) == np.sign(amp):
        return float("nan")
    t_end = j - x[j] / d[j]
    if not (off + _smp(100.0, fs) <= t_end <= r0 + post - 1):
        return float("nan")
    return float(t_end - r0)


def _rhythm(res: _Result, rr: np.ndarray) -> None:
    n_rr = rr.size
    if n_rr >= 1:
        mean = float(np.mean(rr))
        res.set("rr_mean", mean)
        res.set("heart_rate", 60000.0 / mean)
        res.set("pause_max", float(np.max(rr)))
    else:
        for m in ("rr_mean", "heart_rate", "pause_max"):
            res.set(m, float("nan"), "fewer than 2 beats detected")
    if n_rr >= 3:
        sd = float(np.std(rr, ddof=1))
        res.set("rr_sd", sd)
        res.set("rr_cv", sd / float(np.mean(rr)))
        res.set("rmssd", float(np.sqrt(np.mean(np.diff(rr) ** 2))))
    else:
        for m in ("rr_sd", "rr_cv", "rmssd"):
            res.set(m, float("nan"), f"fewer than 4 beats detected ({n_rr + 1 if n_rr else 'under 2'})")


def _neg_lobe_ms(seg: np.ndarray, nadir: int, stop: int, fs: float) -> float:
    """Length of the negative deflection around ``nadir`` (bounded by the QRS window and ``stop``), ms."""
    a = nadir
    while a > 0 and seg[a - 1] < 0:
        a -= 1
    b = nadir
    while b < stop and seg[b] < 0:
        b += 1
    return _ms(b - a, fs)


def _qrs_per_lead(res: _Result, medb: np.ndarray, usable: list[int], on: int, off: int, fs: float) -> None:
    """Per-lead Q/R/S on the baseline-corrected median beat between the global QRS onset and offset.

    Waves are the interior peaks (R) and troughs (Q, S) of at least WAVE_MIN_MV: a rise that only ends at the QRS
    offset is the J point / ST segment, not an R wave. R = the highest peak (its time from QRS onset = R-peak time);
    S = the deepest trough after R; Q = the deepest trough before R when the QRS starts with a negative deflection;
    no peak = a QS complex, whose depth counts as both Q and S.
    """
    from scipy.signal import find_peaks

    small = WAVE_MIN_MV
    for i, lead in enumerate(_LEADS):
        if i not in usable:
            continue
        seg = medb[i, on:off + 1]
        if seg.size < 3 or not np.all(np.isfinite(seg)):
            for name in ("r_amplitude", "s_amplitude", "q_amplitude", "q_duration", "r_peak_time", "qrs_amplitude"):
                res.set_lead(name, lead, float("nan"), "median beat incomplete in the QRS")
            continue
        res.set_lead("qrs_amplitude", lead, float(seg.max() - seg.min()))
        peaks, _ = find_peaks(seg, height=small)
        troughs, _ = find_peaks(-seg, height=small)
        if peaks.size:
            r_idx = int(peaks[np.argmax(seg[peaks])])
            res.set_lead("r_amplitude", lead, float(seg[r_idx]))
            res.set_lead("r_peak_time", lead, _ms(r_idx, fs))
            after = troughs[troughs > r_idx]
            res.set_lead("s_amplitude", lead, float(-seg[after].min()) if after.size else 0.0)
            before = troughs[troughs < r_idx]
            first = np.flatnonzero(np.abs(seg) >= small)
            if before.size and first.size and seg[first[0]] < 0:
                nadir = int(before[np.argmin(seg[before])])
                res.set_lead("q_amplitude", lead, float(-seg[nadir]))
                res.set_lead("q_duration", lead, _neg_lobe_ms(seg, nadir, r_idx, fs))
            else:
                res.set_lead("q_amplitude", lead, 0.0)
                res.set_lead("q_duration", lead, 0.0)
        else:  # QS complex (or no wave above WAVE_MIN_MV): the negative deflection is both Q and S
            nadir = int(troughs[np.argmin(seg[troughs])]) if troughs.size else int(np.argmin(seg))
            depth = max(0.0, -float(seg[nadir]))
            res.set_lead("r_amplitude", lead, 0.0)
            res.set_lead("r_peak_time", lead, float("nan"), "no R wave (QS complex)")
            res.set_lead("s_amplitude", lead, depth)
            res.set_lead("q_amplitude", lead, depth)
            res.set_lead("q_duration", lead, _neg_lobe_ms(seg, nadir, seg.size, fs) if depth >= small else 0.0)


def _voltages(res: _Result) -> None:
    r = res.values["r_amplitude"]
    s = res.values["s_amplitude"]
    r56 = [v for v in (r["V5"], r["V6"]) if np.isfinite(v)]
    if np.isfinite(s["V1"]) and r56:
        res.set("sokolow_lyon", s["V1"] + max(r56))
    else:
        res.set("sokolow_lyon", float("nan"), "S in V1 or R in both V5 and V6 not measured")
    if np.isfinite(r["aVL"]) and np.isfinite(s["V3"]):
        res.set("cornell_voltage", r["aVL"] + s["V3"])
    else:
        res.set("cornell_voltage", float("nan"), "R in aVL or S in V3 not measured")


def _p_wave(res: _Result, x: np.ndarray, medb: np.ndarray, beats: np.ndarray, usable: list[int], r0: int,
            p_on: float, p_off: float, on_rel: float, fs: float) -> bool:
    """P-wave measurements; returns whether a reproducible P wave was found (else they are NaN, fraction 0)."""

    def no_p(why: str) -> bool:
        for m in ("p_axis", "p_duration", "pr_interval"):
            res.set(m, float("nan"), why)
        for lead in _LEADS:
            if _IDX[lead] in usable:
                res.set_lead("p_amplitude", lead, float("nan"), why)
        res.set("p_wave_fraction", 0.0)  # no median P wave: no beat has a P wave that matches it
        return False

    if np.isnan(p_on):
        return no_p("no consistent P wave delineated (leads II, V1, aVF)")
    # The reference lead for P-wave presence: of P_PRESENCE_LEADS, the one whose median P wave (+-20 ms) is largest,
    # if at least P_MIN_PTP_MV peak-to-peak; otherwise the delineated "P wave" is noise or f waves.
    pad = _smp(20.0, fs)
    lo, hi = int(p_on) - pad, int(p_off) + pad
    best, best_ptp = None, P_MIN_PTP_MV
    for lead in P_PRESENCE_LEADS:
        i = _IDX[lead]
        tmpl = medb[i, r0 + lo:r0 + hi] if i in usable and r0 + lo >= 0 else np.zeros(0)
        if tmpl.size >= 3 and np.all(np.isfinite(tmpl)) and float(np.ptp(tmpl)) >= best_ptp:
            best, best_ptp = lead, float(np.ptp(tmpl))
    res.info["p_presence_lead"] = best
    if best is None:
        return no_p(f"no reproducible P wave (median P wave below {P_MIN_PTP_MV} mV in {', '.join(P_PRESENCE_LEADS)})")
    a, b = int(r0 + p_on), int(r0 + p_off)
    res.set("p_duration", _ms(p_off - p_on, fs))
    res.set("pr_interval", _ms(on_rel - p_on, fs))
    k0 = max(a - _smp(10.0, fs), 0)
    p_base = np.nanmean(medb[:, k0:a + 1], axis=1)
    areas = {}
    for i, lead in enumerate(_LEADS):
        if i not in usable:
            continue
        wave = medb[i, a:b + 1] - p_base[i]
        if wave.size == 0 or not np.all(np.isfinite(wave)):
            res.set_lead("p_amplitude", lead, float("nan"), "median beat incomplete in the P wave")
            continue
        res.set_lead("p_amplitude", lead, float(wave[int(np.argmax(np.abs(wave)))]))
        areas[lead] = float(np.sum(wave))
    p_axis = _axis_deg(areas.get("I", float("nan")), areas.get("aVF", float("nan")))
    res.set("p_axis", p_axis, "lead I or aVF not usable" if np.isnan(p_axis) else "")
    # presence per beat: correlation of each beat's P segment with the median P wave in the reference lead
    ref = _IDX[best]
    seg = _segments(x[ref:ref + 1], beats, lo, hi)[:, 0, :]
    complete = np.all(np.isfinite(seg), axis=1)
    if complete.sum() == 0:
        res.set("p_wave_fraction", float("nan"), "no beat with a complete P-wave window")
        return True
    tmpl = medb[ref, r0 + lo:r0 + hi]
    has_p = np.array([_corr(seg[k], tmpl) >= P_CORR for k in np.flatnonzero(complete)])
    res.set("p_wave_fraction", float(has_p.mean()))
    return True


def _repolarisation(res: _Result, medb: np.ndarray, usable: list[int], r0: int, on: int, off: int, t_off: float,
                    rr: np.ndarray, fs: float, post: int) -> None:
    n = medb.shape[1]
    j60 = off + _smp(60.0, fs)
    rr_s = float(np.median(rr)) / 1000.0 if rr.size else float("nan")
    if np.isfinite(t_off):
        t_end = int(r0 + t_off)
        qt = _ms(t_end - on, fs)
        res.set("qt_interval", qt)
        if np.isfinite(rr_s):
            res.set("qtc_bazett", qt / math.sqrt(rr_s))
            res.set("qtc_fridericia", qt / rr_s ** (1.0 / 3.0))
        else:
            res.set("qtc_bazett", float("nan"), "fewer than 2 beats: no RR interval")
            res.set("qtc_fridericia", float("nan"), "fewer than 2 beats: no RR interval")
    else:
        for m in ("qt_interval", "qtc_bazett", "qtc_fridericia"):
            res.set(m, float("nan"), "T-wave end not found (tangent method and neurokit2, leads II, V5)")
        # T window without a delineated end: up to an expected QT (Bazett 400 ms at the measured rate)
        exp_qt = 400.0 * math.sqrt(rr_s) if np.isfinite(rr_s) else 400.0
        t_end = min(on + _smp(1.15 * exp_qt, fs), n - 1)
    t_a, t_b = off + _smp(80.0, fs), min(t_end, n - 1, r0 + post - 1)
    for i, lead in enumerate(_LEADS):
        if i not in usable:
            continue
        if j60 < n and np.isfinite(medb[i, j60]):
            res.set_lead("st_deviation", lead, float(medb[i, j60]))
        else:
            res.set_lead("st_deviation", lead, float("nan"), "J + 60 ms beyond the median beat")
        seg = medb[i, t_a:t_b + 1] if t_b > t_a else np.zeros(0)
        if seg.size >= 3 and np.all(np.isfinite(seg)):
            res.set_lead("t_amplitude", lead, float(seg[int(np.argmax(np.abs(seg)))]))
        else:
            res.set_lead("t_amplitude", lead, float("nan"), "no T-wave window in the median beat")


def measure_many(samples: Iterable[Any], fs: float | None = None, progress: bool = False) -> list[Measurements]:
    """:func:`measure_ecg` over records (sample dicts, or arrays with ``fs``), in order.

    Args:
        samples: Sample dicts, or ``(leads, samples)`` arrays (a ``(N, leads, samples)`` array works too).
        fs: Sampling rate for arrays, Hz.
        progress: Show a tqdm bar.
    """
    items = list(samples) if not isinstance(samples, np.ndarray) else [samples[k] for k in range(samples.shape[0])]
    it: Iterable[Any] = items
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(items, desc="measure ECGs", unit="ECG")
    out = []
    for k, s in enumerate(it):
        rid = None if isinstance(s, Mapping) else f"record{k}"
        out.append(measure_ecg(s, fs=fs if not isinstance(s, Mapping) else None, record_id=rid))
    return out


__all__ = ["BANDPASS_HZ", "MIN_DURATION_S", "PER_LEAD", "PROCESSING_FS", "RECORD_LEVEL", "Measurements",
           "canonical_lead", "measure_ecg", "measure_many"]
