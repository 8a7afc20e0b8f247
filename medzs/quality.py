"""Per-record signal-quality and plausibility checks for ECG samples.

:func:`check_ecg` looks at one sample dict (``signal`` ``(leads, samples)`` in mV, ``leads``, ``fs``, ``meta``)
and returns a :class:`QualityReport` of findings, each with a stable string code. It is a pure function of the
sample (no I/O, no state) and cheap (numpy percentiles and one real FFT per record; 0.5 ms for a
12 x 1000 record measured on the shared 2-core development box, see ``tests/test_quality.py``).

Codes (lead-level codes are written ``code:LEAD``, e.g. ``flat_lead:V3``):

======================  =====  ==================================================================================
code                    kind   when
======================  =====  ==================================================================================
``all_zero``            error  every sample of every lead is exactly 0
``disconnected_lead``   note   a lead is constant over the whole record (all-zero or any other value) or has no
                               finite sample (a lead with NaN gaps, as in a 3x4 printout, is judged on its finite part)
``flat_lead``           note   a lead's robust range (99th - 1st percentile) is below :data:`FLAT_RANGE_MV`
``mains_noise``         note   50 or 60 Hz and their harmonics carry at least :data:`MAINS_NOISE_FRACTION` of a
                               lead's power (DC excluded)
``mains_only``          error  every lead that is not disconnected carries at least :data:`MAINS_ONLY_FRACTION`
                               of its power at 50 or 60 Hz (a mains hum, e.g. a pure 50 Hz sine, with no ECG)
``amplitude_implausible`` error  a lead's robust amplitude (99th percentile of ``|x - median|``) exceeds
                               :data:`AMPLITUDE_MAX_MV` for data declared in mV (e.g. microvolts labelled mV,
                               ~1,600 mV)
``uncalibrated_gain``   error  the reader reported the lead in ``meta["uncalibrated_leads"]`` (WFDB ADC gain 0:
                               "uncalibrated" in the WFDB header specification; ``wfdb`` silently assumes 200)
``too_many_bad_leads``  error  more than :data:`MAX_BAD_LEAD_FRACTION` of the leads are disconnected, flat or
                               mains-dominated
``padded_start``        note   the record starts with at least :data:`PAD_MIN_S` seconds where every lead is
                               constant (zero padding, or edge-replicate padding)
``padded_end``          note   the same at the end
``too_short``           error  the record without that padding lasts less than :data:`MIN_DURATION_S` seconds
======================  =====  ==================================================================================

**The rule** (:data:`ERROR_CODES`): a record with any *error* finding becomes an error row
(:func:`enforce` raises :class:`~medzs.errors.RecordError`, naming the file, the field and what was expected);
*note* findings only annotate the score row (``quality_flags`` column, :func:`quality_flags_str`, e.g.
``"disconnected_lead:V2;mains_noise:V6"``). Errors are the findings that make the numbers meaningless (no signal,
wrong unit or scale, only mains hum, too little signal left); notes are the ones that a real clinical record may
have and still be read (one lead off, some hum, padding). On 1,154 real records (PTB-XL at 100 and 500 Hz,
PhysioNet/CinC 2021 Georgia and Chapman, CPSC 2018, the hospital exports) no error fires; notes fire on real
Chapman records with three leads all-zero (JS20004) or strong 50 Hz hum in one lead (JS20007, V6).

Thresholds were set against those records: the smallest robust lead range seen was 0.25 mV (1st percentile;
:data:`FLAT_RANGE_MV` = 0.05 mV is 5x below it), the largest robust amplitude 8.7 mV (:data:`AMPLITUDE_MAX_MV` = 30 mV;
adult QRS amplitudes rarely exceed 5-6 mV, Surawicz & Knilans, Chou's Electrocardiography in Clinical Practice,
6th ed.), the longest constant edge 0.12 s (PTB-XL 500 Hz records; :data:`PAD_MIN_S` = 0.5 s). The minimum
duration of 2.5 s is the length of one lead's strip in the standard 12-lead printout. The mains check needs
``fs`` above twice the mains frequency plus 1 Hz and is skipped otherwise (e.g. 100 Hz PTB-XL has 50 Hz at its
Nyquist frequency).

Example:
    >>> from medzs.quality import check_ecg, enforce, quality_flags_str
    >>> report = check_ecg(sample)  # doctest: +SKIP
    >>> row["quality_flags"] = quality_flags_str(report)  # doctest: +SKIP
    >>> enforce(report, sample)  # doctest: +SKIP  (raises RecordError for an error finding)
    >>> flags = check_and_enforce(sample)  # doctest: +SKIP  (both in one call: what the engine runs per record)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError

__all__ = [
    "AMPLITUDE_MAX_MV",
    "ERROR_CODES",
    "FLAT_RANGE_MV",
    "MAINS_FREQUENCIES_HZ",
    "MAINS_NOISE_FRACTION",
    "MAINS_ONLY_FRACTION",
    "MAX_BAD_LEAD_FRACTION",
    "MIN_DURATION_S",
    "NOTE_CODES",
    "PAD_MIN_S",
    "Finding",
    "QualityReport",
    "check_and_enforce",
    "check_ecg",
    "enforce",
    "quality_flags_str",
]

#: A lead whose 99th - 1st percentile range is below this (mV) is flat.
FLAT_RANGE_MV = 0.05
#: A lead whose 99th percentile of ``|x - median|`` exceeds this (mV) is implausible for data declared in mV.
AMPLITUDE_MAX_MV = 30.0
#: Mains frequencies checked (Hz), with their 2nd and 3rd harmonics, +- :data:`MAINS_BAND_HZ`.
MAINS_FREQUENCIES_HZ = (50.0, 60.0)
#: Half-width of each mains band (Hz).
MAINS_BAND_HZ = 1.0
#: Share of a lead's power (DC excluded) in the mains bands from which the lead is noted ``mains_noise``.
MAINS_NOISE_FRACTION = 0.3
#: Share from which a lead counts as mains-dominated (``mains_only`` when every live lead is).
MAINS_ONLY_FRACTION = 0.8
#: Largest share of leads that may be disconnected, flat or mains-dominated before the record is an error.
MAX_BAD_LEAD_FRACTION = 0.5
#: Shortest constant run at an end of the record (s) that counts as padding.
PAD_MIN_S = 0.5
#: Shortest signal (s) left after removing the padding.
MIN_DURATION_S = 2.5

#: Codes that turn a record into an error row (the rule; see the module docstring).
ERROR_CODES = frozenset(
    {"all_zero", "mains_only", "amplitude_implausible", "uncalibrated_gain", "too_many_bad_leads", "too_short"}
)
#: Codes that only annotate the row.
NOTE_CODES = frozenset({"disconnected_lead", "flat_lead", "mains_noise", "padded_start", "padded_end"})


@dataclass(frozen=True)
class Finding:
    """One quality finding.

    Attributes:
        code: Stable code (one of :data:`ERROR_CODES` or :data:`NOTE_CODES`).
        lead: Lead name for lead-level findings, else None.
        field: The sample field or metadata item the finding is about (``signal``, ``adc_gain``...).
        detail: What was found (no patient data), e.g. ``"robust amplitude 1612.4 mV"``.
        expected: What was expected, e.g. ``"<= 30 mV for a signal in mV"``.
    """

    code: str
    lead: str | None
    field: str
    detail: str
    expected: str

    @property
    def is_error(self) -> bool:
        """True when the rule makes this finding an error."""
        return self.code in ERROR_CODES

    @property
    def tag(self) -> str:
        """``code`` or ``code:LEAD``."""
        return f"{self.code}:{self.lead}" if self.lead else self.code


@dataclass(frozen=True)
class QualityReport:
    """Findings and measurements of :func:`check_ecg` for one record.

    Attributes:
        findings: In a stable order (record-level errors, lead-level findings in lead order, padding).
        lead_range_mv: Per lead, 99th - 1st percentile (mV); NaN for leads with non-finite samples.
        lead_amplitude_mv: Per lead, 99th percentile of ``|x - median|`` (mV).
        mains_fraction: Per lead, share of power in the mains bands (NaN when ``fs`` is too low to check).
        pad_start_s: Constant run at the start (s).
        pad_end_s: Constant run at the end (s).
        duration_s: Record duration (s).
    """

    findings: tuple[Finding, ...] = ()
    lead_range_mv: tuple[float, ...] = ()
    lead_amplitude_mv: tuple[float, ...] = ()
    mains_fraction: tuple[float, ...] = ()
    pad_start_s: float = 0.0
    pad_end_s: float = 0.0
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings that make the record an error."""
        return tuple(f for f in self.findings if f.is_error)

    @property
    def is_error(self) -> bool:
        """True when the rule turns the record into an error row."""
        return any(f.is_error for f in self.findings)

    @property
    def flags(self) -> tuple[str, ...]:
        """Tags of all findings (``code`` or ``code:LEAD``), in order."""
        return tuple(f.tag for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no signal values)."""
        return {
            "flags": list(self.flags),
            "errors": [f.tag for f in self.errors],
            "pad_start_s": self.pad_start_s,
            "pad_end_s": self.pad_end_s,
            "duration_s": self.duration_s,
        }


def _mains_fraction(x: np.ndarray, fs: float) -> np.ndarray:
    """Per-lead share of power (DC excluded) within +-MAINS_BAND_HZ of 50/60 Hz and their 2nd/3rd harmonics."""
    n = x.shape[1]
    out = np.full(x.shape[0], np.nan)
    nyq = fs / 2.0
    if n < 8 or MAINS_FREQUENCIES_HZ[0] + MAINS_BAND_HZ >= nyq:
        return out
    spec = np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)
    power = spec.real**2 + spec.imag**2
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    total = power[:, 1:].sum(axis=1)
    best = np.zeros(x.shape[0])
    for f0 in MAINS_FREQUENCIES_HZ:
        if f0 + MAINS_BAND_HZ >= nyq:
            continue
        band = np.zeros(freqs.shape, dtype=bool)
        for k in (1, 2, 3):
            if k * f0 + MAINS_BAND_HZ < nyq:
                band |= np.abs(freqs - k * f0) <= MAINS_BAND_HZ
        best = np.maximum(best, power[:, band].sum(axis=1) / np.maximum(total, 1e-30))
    out[:] = np.where(total > 0, best, 0.0)
    return out


def check_ecg(sample: Mapping[str, Any]) -> QualityReport:
    """Check one ECG sample for signal quality and plausibility (pure function; no I/O).

    Args:
        sample: A medzs sample dict: ``signal`` ``(leads, samples)`` in mV (any float dtype; NaN allowed),
            ``leads`` (names), ``fs`` (Hz), ``meta`` (``uncalibrated_leads`` is read when present).

    Returns:
        A :class:`QualityReport`; :attr:`QualityReport.is_error` applies the rule in :data:`ERROR_CODES`.

    Raises:
        RecordError: ``signal`` is not 2-D with one row per lead, or ``fs`` is not a positive number.
    """
    where = _where(sample)
    x = np.asarray(sample["signal"], dtype=np.float64)
    leads = [str(n) for n in sample.get("leads") or [f"ch{i}" for i in range(x.shape[0] if x.ndim else 0)]]
    if x.ndim != 2 or x.shape[0] != len(leads) or x.shape[0] == 0 or x.shape[1] == 0:
        raise RecordError(f"{where}: field 'signal' has shape {x.shape} (expected (leads, samples) with "
                          f"{len(leads)} leads)")
    fs = float(sample.get("fs") or 0.0)
    if not np.isfinite(fs) or fs <= 0:
        raise RecordError(f"{where}: field 'fs' is {sample.get('fs')!r} (expected a positive number of Hz)")
    meta = sample.get("meta") or {}
    n_leads, n = x.shape
    findings_err: list[Finding] = []
    lead_findings: list[Finding] = []

    finite = np.isfinite(x)
    # a lead with no finite sample is disconnected; a lead with NaN gaps (e.g. an ECG digitised from a 3x4 printout,
    # each lead kept only in its 2.5 s column) is judged on its finite samples
    nonfinite = ~finite.any(axis=1)
    partial = ~finite.all(axis=1) & ~nonfinite
    if partial.any() or nonfinite.any():
        xn = np.where(finite, x, np.nan)
        xn[nonfinite] = 0.0
        q1, q50, q99 = np.nanpercentile(xn, [1.0, 50.0, 99.0], axis=1)
        constant = (np.nanmax(xn, axis=1) == np.nanmin(xn, axis=1)) | nonfinite
        x = np.where(finite, x, 0.0)
    else:
        q1, q50, q99 = np.percentile(x, [1.0, 50.0, 99.0], axis=1)
        constant = x.max(axis=1) == x.min(axis=1)
    rng = q99 - q1
    amp = np.maximum(q99 - q50, q50 - q1)
    mains = _mains_fraction(x, fs)
    all_zero = not nonfinite.any() and not x.any()

    if all_zero:
        findings_err.append(Finding("all_zero", None, "signal", "every sample of every lead is 0",
                                    "a recorded ECG"))
    uncal = [str(v) for v in (meta.get("uncalibrated_leads") or [])]
    for lead in uncal:
        findings_err.append(Finding("uncalibrated_gain", lead, "adc_gain",
                                    "ADC gain 0 (uncalibrated in the WFDB header; the reader assumed 200)",
                                    "a calibrated ADC gain in ADC units per mV"))
    bad = np.zeros(n_leads, dtype=bool)
    if not all_zero:
        for i, lead in enumerate(leads):
            if constant[i]:
                what = "non-finite samples" if nonfinite[i] else f"constant at {x[i, 0]:g} mV"
                lead_findings.append(Finding("disconnected_lead", lead, "signal", what, "a varying, finite signal"))
                bad[i] = True
                continue
            if amp[i] > AMPLITUDE_MAX_MV:
                findings_err.append(Finding(
                    "amplitude_implausible", lead, "signal",
                    f"robust amplitude {amp[i]:.1f} mV (is the unit uV or ADC counts instead of mV?)",
                    f"<= {AMPLITUDE_MAX_MV:g} mV for a signal declared in mV"))
            if rng[i] < FLAT_RANGE_MV:
                lead_findings.append(Finding("flat_lead", lead, "signal", f"robust range {rng[i]:.3f} mV",
                                             f">= {FLAT_RANGE_MV:g} mV"))
                bad[i] = True
            if np.isfinite(mains[i]) and mains[i] >= MAINS_NOISE_FRACTION:
                lead_findings.append(Finding("mains_noise", lead, "signal",
                                             f"{100 * mains[i]:.0f} % of the power at 50/60 Hz",
                                             f"< {100 * MAINS_NOISE_FRACTION:.0f} %"))
                bad[i] |= mains[i] >= MAINS_ONLY_FRACTION
        live = ~constant
        if live.any() and np.isfinite(mains).all() and (mains[live] >= MAINS_ONLY_FRACTION).all():
            findings_err.append(Finding(
                "mains_only", None, "signal",
                f"every live lead has >= {100 * MAINS_ONLY_FRACTION:.0f} % of its power at 50/60 Hz",
                "an ECG, not only mains hum"))
        elif bad.sum() > MAX_BAD_LEAD_FRACTION * n_leads:
            findings_err.append(Finding(
                "too_many_bad_leads", None, "signal",
                f"{int(bad.sum())} of {n_leads} leads disconnected, flat or mains-dominated",
                f"at most {MAX_BAD_LEAD_FRACTION:.0%} of the leads"))

    # padding: a run at an end where every lead keeps its edge value
    pad_start = pad_end = 0
    if not all_zero:
        moving = np.flatnonzero((x != x[:, :1]).any(axis=0))
        pad_start = int(moving[0]) if moving.size else n
        moving = np.flatnonzero((x != x[:, -1:]).any(axis=0))
        pad_end = int(n - 1 - moving[-1]) if moving.size else n
    pad_s, end_s, duration = pad_start / fs, pad_end / fs, n / fs
    tail: list[Finding] = []
    if not all_zero and pad_start < n:
        if pad_s >= PAD_MIN_S:
            tail.append(Finding("padded_start", None, "signal", f"{pad_s:.2f} s constant at the start",
                                f"< {PAD_MIN_S:g} s"))
        if end_s >= PAD_MIN_S:
            tail.append(Finding("padded_end", None, "signal", f"{end_s:.2f} s constant at the end",
                                f"< {PAD_MIN_S:g} s"))
        effective = max(n - pad_start - pad_end, 0) / fs
        if effective < MIN_DURATION_S:
            findings_err.append(Finding("too_short", None, "signal",
                                        f"{effective:.2f} s of signal (of {duration:.2f} s)",
                                        f">= {MIN_DURATION_S:g} s"))
    return QualityReport(
        findings=tuple(findings_err + lead_findings + tail),
        lead_range_mv=tuple(float(v) if not nonfinite[i] else float("nan") for i, v in enumerate(rng)),
        lead_amplitude_mv=tuple(float(v) for v in amp),
        mains_fraction=tuple(float(v) for v in mains),
        pad_start_s=float(pad_s),
        pad_end_s=float(end_s),
        duration_s=float(duration),
    )


def quality_flags_str(report: QualityReport) -> str:
    """The ``quality_flags`` column value: tags joined by ``;`` (``""`` when the record is clean).

    Example: ``"disconnected_lead:V2;disconnected_lead:V4;mains_noise:V6"``.
    """
    return ";".join(report.flags)


def _where(sample: Mapping[str, Any]) -> str:
    p = sample.get("path")
    if p:
        return Path(str(p)).name
    return str(sample.get("id") or "record")


def enforce(report: QualityReport, sample: Mapping[str, Any]) -> None:
    """Apply the rule: raise for a record with an error finding, return None otherwise.

    Args:
        report: From :func:`check_ecg`.
        sample: The same sample (for the file name in the message).

    Raises:
        RecordError: one line naming the file, the field, what was found and what was expected, e.g.
            ``"E07836.hea: quality uncalibrated_gain:II: field 'adc_gain' ADC gain 0 (...) (expected a calibrated
            ADC gain in ADC units per mV)"``; further errors are summarised by code (``"; also
            amplitude_implausible (11 leads)"``); the full list is in :func:`quality_flags_str`.
    """
    errors = report.errors
    if not errors:
        return
    first = errors[0]
    counts: dict[str, int] = {}
    for f in errors[1:]:
        counts[f.code] = counts.get(f.code, 0) + 1
    more = ("; also " + ", ".join(f"{code} ({n} lead{'s' if n > 1 else ''})" if any(
        f.lead for f in errors[1:] if f.code == code) else code for code, n in counts.items())) if counts else ""
    lead = f" of lead {first.lead!r}" if first.lead else ""
    raise RecordError(f"{_where(sample)}: quality {first.tag}: field {first.field!r}{lead}: {first.detail} "
                      f"(expected {first.expected}){more}")


def check_and_enforce(sample: Mapping[str, Any]) -> str | None:
    """The engine's per-record quality stage: :func:`check_ecg`, then :func:`enforce`.

    Args:
        sample: A medzs ECG sample dict (see :func:`check_ecg`).

    Returns:
        The ``quality_flags`` value (:func:`quality_flags_str`), or None for a clean record.

    Raises:
        RecordError: an error finding (the rule in :data:`ERROR_CODES`); the exception carries the record's
            flags as ``exc.quality_flags`` so that the error row keeps them.
    """
    report = check_ecg(sample)
    flags = quality_flags_str(report) or None
    try:
        enforce(report, sample)
    except RecordError as exc:
        exc.quality_flags = flags  # type: ignore[attr-defined]
        raise
    return flags
