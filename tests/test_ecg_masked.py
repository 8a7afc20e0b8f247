"""Missing and partial leads: masked preprocessing (3x4 printout layout, absent leads) on real PTB-XL records."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medzs.data.ptbxl import PTBXL
from medzs.errors import RecordError
from medzs.spec import STANDARD_12_LEADS, ECGInputSpec
from medzs.transforms import ecg as T

OLD = ECGInputSpec(fs=100.0, duration_s=10.0, bandpass_hz=(0.5, 40.0), normalization="zscore")
MASKED = replace(OLD, accepts_masked=True)


@pytest.fixture(scope="module")
def rec(ptbxl_root: Path) -> dict:
    return PTBXL(ptbxl_root).load(9)  # 500 Hz, 12 leads, 10 s


def _as_3x4(sample: dict) -> dict:
    """The PhysioNet/CinC 2024 digitised-paper format: each lead only in its 2.5 s column, lead II whole, NaN else."""
    n = sample["signal"].shape[1]
    keep = T.layout_mask(sample["leads"], n, "3x4")
    return {**sample, "signal": np.where(keep, sample["signal"], np.nan)}


def test_3x4_nan_record_scored_by_masked_spec_refused_by_old(rec: dict) -> None:
    paper = _as_3x4(rec)
    assert np.isnan(paper["signal"]).mean() == pytest.approx(11 * 0.75 / 12, abs=1e-3)
    assert T.detect_layout(paper["signal"], paper["leads"]) == "3x4"
    with pytest.raises(RecordError, match=r"00009_hr\.hea: lead 'I' contains NaN"):
        T.preprocess(paper, OLD)
    with pytest.raises(RecordError, match=r"layout '3x4' given.*accepts_masked=False"):
        T.preprocess(rec, OLD, layout="3x4")
    x = T.preprocess(paper, MASKED)
    assert x.shape == (12, 1000) and np.isfinite(x).all()
    present = x != 0
    np.testing.assert_allclose(present.mean(axis=1), [0.25, 1.0] + [0.25] * 10, atol=0.01)
    # lead V1 lives in the third column (5-7.5 s = samples 500-750 at 100 Hz), z-scored there
    v1 = STANDARD_12_LEADS.index("V1")
    assert present[v1, 500:750].all() and not present[v1, :500].any() and not present[v1, 750:].any()
    assert x[v1, 500:750].mean() == pytest.approx(0, abs=1e-4) and x[v1, 500:750].std() == pytest.approx(1, abs=1e-3)
    # close to the full record's signal inside the column (only edge effects of filtering the piece alone)
    full = T.preprocess(rec, MASKED)
    assert np.corrcoef(full[v1, 520:730], x[v1, 520:730])[0, 1] > 0.97
    # an explicit layout on the complete record gives the same columns
    np.testing.assert_array_equal(T.preprocess(rec, MASKED, layout="3x4") != 0, present)


def test_complete_record_unchanged_by_masking(rec: dict) -> None:
    np.testing.assert_array_equal(T.preprocess(rec, MASKED), T.preprocess(rec, OLD))
    assert T.detect_layout(rec["signal"], rec["leads"]) == "full"


def test_absent_and_nan_leads_zero_filled_min_leads_enforced(rec: dict) -> None:
    limb = [i for i, name in enumerate(rec["leads"]) if T.lead_key(name) in {"i", "ii", "iii", "avr", "avl", "avf"}]
    sample = {**rec, "signal": rec["signal"][limb], "leads": [rec["leads"][i] for i in limb]}
    x = T.preprocess(sample, MASKED)
    full = T.preprocess(rec, MASKED)
    np.testing.assert_allclose(x[:6], full[:6], atol=1e-5)  # per-lead z-score: present leads are unaffected
    assert not x[6:].any()
    with pytest.raises(RecordError, match=r"lead 'V1' missing"):
        T.preprocess(sample, OLD)
    with pytest.raises(RecordError, match=r"6 usable lead\(s\).*expected at least 8"):
        T.preprocess(sample, replace(MASKED, min_leads=8))
    nothing = {**rec, "signal": np.full_like(rec["signal"], np.nan)}
    with pytest.raises(RecordError, match=r"0 usable lead\(s\)"):
        T.preprocess(nothing, MASKED)


def test_nan_gap_does_not_spread(rec: dict) -> None:
    sig = rec["signal"].copy()
    sig[0, 2000:2500] = np.nan  # 1 s gap in lead I at 500 Hz -> samples 400-500 at 100 Hz
    x = T.preprocess({**rec, "signal": sig}, MASKED)
    assert np.isfinite(x).all()
    assert not x[0, 400:500].any() and (x[0, :400] != 0).all() and (x[0, 500:] != 0).all()
    np.testing.assert_allclose(x[1:], T.preprocess(rec, MASKED)[1:], atol=1e-5)
    assert T.detect_layout(sig, rec["leads"]) == "partial"
