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


def _write_3x4_wfdb(src_root: Path, dest: Path, ecg_id: int) -> Path:
    """A PTB-XL record rewritten as a PhysioNet/CinC 2024-style digitised ECG: each lead only in its 2.5 s column of
    the 3x4 printout (lead II whole), NaN elsewhere (WFDB invalid samples)."""
    import wfdb

    rec = wfdb.rdrecord(str(src_root / "records100" / "00000" / f"{ecg_id:05d}_lr"))
    sig = rec.p_signal.copy()
    keep = T.layout_mask(list(rec.sig_name), sig.shape[0], "3x4")  # (leads, samples) bool
    sig[~keep.T] = np.nan
    name = f"paper{ecg_id:05d}"
    wfdb.wrsamp(name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name, p_signal=sig, fmt=["16"] * sig.shape[1],
                adc_gain=[1000.0] * sig.shape[1], baseline=[0] * sig.shape[1], write_dir=str(dest))
    return dest / f"{name}.hea"


def test_3x4_nan_wfdb_record_is_scored_by_score_zeroshot_and_predict(tmp_path: Path, shared_data: Path) -> None:
    """A 3x4-layout record with NaN leads (written from shared PTB-XL records) is scored, not refused, by
    `medzs score`, `medzs zeroshot` and `medzs predict`."""
    import pandas as pd

    from medzs.batch import score_files
    from medzs.pipeline import parse_pipeline, run_zeroshot
    from medzs.predict import predict

    root = shared_data / "ecg" / "ptbxl2k"
    folder = tmp_path / "paper"
    folder.mkdir()
    heads = [_write_3x4_wfdb(root, folder, i) for i in (9, 10, 11, 12, 13, 14)]
    from medzs.io.wfdb import read_wfdb

    s = read_wfdb(heads[0])
    assert np.isnan(s["signal"]).any() and T.detect_layout(s["signal"], s["leads"]) == "3x4"

    out = tmp_path / "s.parquet"
    res = score_files([folder], out, model="ecg-resnet18.medzs-ptbxl", task="ptbxl-super", progress=False,
                      prompts_writer="names")
    df = pd.read_parquet(out)
    assert res.n_ok == 6 and (df["status"] == "ok").all() and df.filter(like="score_").notna().all().all()

    (tmp_path / "labels.csv").write_text("record_id,426783006\n" + "".join(f"{h.stem},{i % 2}\n"
                                                                            for i, h in enumerate(heads)))
    cfg = parse_pipeline({"name": "paper", "model": "ecg-resnet18.medzs-ptbxl",
                          "task": {"name": "sr", "system": "snomed_ct", "classes": ["426783006"]},
                          "dataset": {"name": "folder", "root": str(folder), "labels": str(tmp_path / "labels.csv")},
                          "prompts": {"writer": "names"}, "metrics": {"n_boot": 10, "seed": 0, "min_positives": 1},
                          "output": str(tmp_path / "zs")}, tmp_path / "p.yaml")
    zs = run_zeroshot(cfg, progress=False)
    assert zs["n_records"] == 6 and zs["n_errors"] == 0

    pr = predict([str(heads[0])], task="ptbxl-super", criteria=False)
    rec0 = pr["records"][0]
    assert rec0.get("error") in (None, "") and rec0["conditions"], rec0
