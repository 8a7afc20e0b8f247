"""ECG preprocessing on real PTB-XL / PhysioNet records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medzs.data.ptbxl import PTBXL
from medzs.errors import RecordError
from medzs.io.wfdb import read_wfdb
from medzs.spec import STANDARD_12_LEADS, ECGInputSpec
from medzs.transforms import ecg as T


@pytest.fixture(scope="module")
def db(ptbxl_root: Path) -> PTBXL:
    return PTBXL(ptbxl_root)


@pytest.fixture(scope="module")
def rec(db: PTBXL) -> dict:
    return db.load(9)  # 500 Hz, leads I II III AVR AVL AVF V1-V6 (upper-case augmented leads in the header)


def _shuffled(sample: dict, seed: int) -> dict:
    order = np.random.default_rng(seed).permutation(len(sample["leads"]))
    return {**sample, "signal": sample["signal"][order], "leads": [sample["leads"][i] for i in order]}


SPECS = [
    ECGInputSpec(),
    ECGInputSpec(fs=100.0, duration_s=8.0, bandpass_hz=(0.5, 40.0), normalization="zscore"),
    ECGInputSpec(leads=("V6", "aVR", "II"), fs=250.0, normalization="minmax"),
]


@pytest.mark.parametrize("spec", SPECS)
def test_lead_order_does_not_matter(rec: dict, spec: ECGInputSpec) -> None:
    ref = T.preprocess(rec, spec)
    assert ref.shape == spec.shape and ref.dtype == np.float32
    for seed in (0, 1):
        shuffled = _shuffled(rec, seed)
        assert shuffled["leads"] != rec["leads"]
        np.testing.assert_array_equal(T.preprocess(shuffled, spec), ref)


def test_leads_matched_by_name_case_insensitively(rec: dict) -> None:
    out = T.preprocess(rec, ECGInputSpec())  # spec says aVR, the file says AVR
    assert rec["leads"][3] == "AVR"
    np.testing.assert_array_equal(out[STANDARD_12_LEADS.index("aVR")], rec["signal"][3])
    np.testing.assert_array_equal(out, rec["signal"])  # 500 Hz, 10 s, no filter: unchanged


def test_missing_lead_raises_naming_it(rec: dict) -> None:
    keep = [i for i, name in enumerate(rec["leads"]) if name != "V3"]
    sample = {**rec, "signal": rec["signal"][keep], "leads": [rec["leads"][i] for i in keep]}
    with pytest.raises(RecordError, match=r"00009_hr\.hea: lead 'V3' missing"):
        T.preprocess(sample, ECGInputSpec())
    with pytest.raises(RecordError, match="duplicate lead 'avr'"):
        T.reorder_leads(rec["signal"][:2], ["AVR", "avr"], ["aVR"], record="x")


def test_extra_leads_dropped(shared_data: Path) -> None:
    s = read_wfdb(shared_data / "ecg" / "wfdb-samples" / "sample-data" / "s0010_re")  # 15 leads incl. vx vy vz
    out = T.preprocess(s, ECGInputSpec(fs=1000.0, duration_s=38.4))
    assert out.shape == (12, 38400)
    np.testing.assert_array_equal(out, s["signal"][:12])


def test_resample_matches_shipped_100hz(db: PTBXL) -> None:
    """500 Hz -> 100 Hz polyphase resampling agrees with PTB-XL's own 100 Hz files (first 8 test-fold records)."""
    per_record = []
    for ecg_id in db.split("test")[:8]:
        hr, lr = db.load(ecg_id, 500), db.load(ecg_id, 100)
        x = T.resample(hr["signal"], 500, 100)
        assert x.shape == lr["signal"].shape == (12, 1000)
        r = [np.corrcoef(x[i], lr["signal"][i])[0, 1] for i in range(12)]
        per_record.append(np.median(r))
        assert np.abs(x - lr["signal"]).mean() < 0.02  # mV
    assert np.median(per_record) > 0.98
    assert min(per_record) > 0.9


def test_resample_rational_factors(shared_data: Path) -> None:
    mit = read_wfdb(shared_data / "ecg" / "wfdb-samples" / "sample-data" / "100")
    x = mit["signal"][:, :3600]  # 10 s at 360 Hz
    y = T.resample(x, 360, 500)  # 25/18
    assert y.shape == (2, 5000) and y.dtype == np.float32
    back = T.resample(y, 500, 360)
    assert back.shape == x.shape
    inner = slice(100, -100)
    assert np.corrcoef(back[0, inner], x[0, inner])[0, 1] > 0.999
    assert T.resample(x, 360, 360) is not None and np.array_equal(T.resample(x, 360, 360), x)
    with pytest.raises(ValueError, match="positive"):
        T.resample(x, 0, 100)


def test_bandpass_removes_offset_and_mains_zero_phase(rec: dict) -> None:
    x = rec["signal"]
    t = np.arange(x.shape[1]) / 500.0
    clean = T.bandpass(x, 500, 0.5, 40)
    core = slice(500, -500)
    # a 1 mV baseline offset disappears entirely
    assert np.abs(T.bandpass(x + 1.0, 500, 0.5, 40) - clean).max() < 1e-4
    # 50 Hz mains: forward-backward 4th-order Butterworth gain |H|^2 = 1 / (1 + (50/40)^8) = 0.144
    mains = 0.3 * np.sin(2 * np.pi * 50.0 * t)[None, :]
    residual = (T.bandpass(x + mains, 500, 0.5, 40) - clean)[:, core]
    ratio = np.sqrt((residual**2).mean()) / np.sqrt((mains**2).mean())
    assert 0.10 < ratio < 0.17
    # zero phase: the filtered lead II lines up with the raw one (best lag 0 among -10..10 samples)
    d_raw, d_out = np.diff(x[1]), np.diff(clean[1])
    lags = range(-10, 11)
    corr = [np.dot(d_out[500 + k : -500 + k], d_raw[500:-500]) for k in lags]
    assert list(lags)[int(np.argmax(corr))] == 0
    assert T.bandpass(x, 500, 0, 40).shape == x.shape  # low == 0: low-pass
    with pytest.raises(ValueError, match="fs/2"):
        T.bandpass(x, 500, 1, 300)


def test_crop_or_pad_shapes() -> None:
    x = np.arange(2 * 5000, dtype=np.float32).reshape(2, 5000)
    np.testing.assert_array_equal(T.crop_or_pad(x, 4000), x[:, 500:4500])
    np.testing.assert_array_equal(T.crop_or_pad(x, 4000, mode="start"), x[:, :4000])
    np.testing.assert_array_equal(T.crop_or_pad(x, 4999), x[:, :4999])
    p = T.crop_or_pad(x, 6001)
    assert p.shape == (2, 6001)
    np.testing.assert_array_equal(p[:, 500:5500], x)
    assert not p[:, :500].any() and not p[:, 5500:].any()
    q = T.crop_or_pad(x, 6000, mode="start")
    np.testing.assert_array_equal(q[:, :5000], x)
    assert not q[:, 5000:].any()
    assert T.crop_or_pad(x, 5000) is x
    with pytest.raises(ValueError, match="mode"):
        T.crop_or_pad(x, 10, mode="end")


def test_short_record_padded_by_preprocess(db: PTBXL) -> None:
    lr = db.load(9, 100)
    out = T.preprocess(lr, ECGInputSpec(fs=500.0, duration_s=12.0))
    assert out.shape == (12, 6000)
    assert not out[:, :500].any() and not out[:, -500:].any() and out[:, 500:5500].any()


def test_too_short_signal_raises(rec: dict) -> None:
    short = {**rec, "signal": rec["signal"][:, :250]}
    with pytest.raises(RecordError, match=r"00009_hr\.hea: signal too short: 0\.5 s \(250 samples at 500 Hz\), "
                       r"expected at least 1 s"):
        T.preprocess(short, ECGInputSpec())
    assert T.preprocess(short, ECGInputSpec(), min_duration_s=0.5).shape == (12, 5000)


def test_check_signal_validates(rec: dict) -> None:
    x = rec["signal"].copy()
    x[7, 10] = np.nan
    with pytest.raises(RecordError, match=r"r1: lead 'V2' contains NaN"):
        T.check_signal(x, 500, leads=rec["leads"], record="r1")
    with pytest.raises(RecordError, match=r"expected 2-D"):
        T.check_signal(x[0], 500)
    with pytest.raises(RecordError, match="11 names for 12"):
        T.check_signal(rec["signal"], 500, leads=rec["leads"][:11])
    with pytest.raises(RecordError, match="sample field 'fs' missing"):
        T.preprocess({"signal": rec["signal"], "leads": rec["leads"], "id": "r2"}, ECGInputSpec())


def test_normalize(rec: dict) -> None:
    x = rec["signal"]
    z = T.normalize(x, "zscore")
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-4)
    m = T.normalize(x, "minmax")
    assert m.min() == 0.0 and m.max() == pytest.approx(1.0)
    np.testing.assert_allclose(T.normalize(x, "scale", 2.0), x / 2)
    flat = T.normalize(np.ones((2, 100)), "zscore")
    assert not flat.any()
    with pytest.raises(ValueError, match="method"):
        T.normalize(x, "l2")


def test_dict_transforms_match_preprocess(rec: dict) -> None:
    spec = SPECS[1]
    steps = [
        T.ReorderLeadsd(spec.leads),
        T.Resampled(spec.fs),
        T.Bandpassd(*spec.bandpass_hz),
        T.CropOrPadd(spec.n_samples),
        T.Normalized(spec.normalization, spec.scale),
    ]
    s = _shuffled(rec, 3)
    before = s["signal"].copy()
    for step in steps:
        s = step(s)
    np.testing.assert_array_equal(s["signal"], T.preprocess(rec, spec))
    assert s["leads"] == list(spec.leads) and s["fs"] == 100.0 and s["id"] == "00009_hr"
    out = T.ECGPreprocessd(spec)(rec)
    np.testing.assert_array_equal(out["signal"], s["signal"])
    assert out["leads"] == list(spec.leads) and out["fs"] == 100.0
    assert rec["signal"].shape == (12, 5000) and rec["fs"] == 500.0  # input untouched
    assert np.array_equal(_shuffled(rec, 3)["signal"], before)


def test_batch(db: PTBXL) -> None:
    spec = ECGInputSpec(fs=100.0)
    samples = [db.load(i, fs) for i, fs in ((9, 500), (38, 100), (40, 500))]
    b = T.batch(samples, spec)
    assert b.shape == (3, 12, 1000) and b.dtype == np.float32
    np.testing.assert_array_equal(b[1], samples[1]["signal"])
    np.testing.assert_array_equal(b[2], T.preprocess(samples[2], spec))
    assert T.batch([], spec).shape == (0, 12, 1000)


def test_preprocess_many_equals_preprocess_record_by_record(shared_data) -> None:
    """The batched path (one band-pass call per length group) gives each record exactly what preprocess gives it,
    and a bad record's exception in its slot."""
    import glob

    from medzs import registry
    from medzs.io.wfdb import read_wfdb
    from medzs.transforms.ecg import preprocess, preprocess_many

    root = shared_data / "ecg" / "ptbxl500"
    samples = [read_wfdb(p) for p in sorted(glob.glob(str(root / "records100/00000/*.hea")))[:12]]
    samples += [read_wfdb(p) for p in sorted(glob.glob(str(root / "records500/00000/*.hea")))[:6]]
    bad = dict(samples[0])
    bad["leads"] = ["I"] * 12
    samples.insert(3, bad)
    for name in ("ecg-resnet18.medzs-ptbxl", "ecg-resnet18.merl"):
        spec = registry.get_config(name).input_spec
        many = preprocess_many(samples, spec)
        assert isinstance(many[3], RecordError)
        for s, got in zip(samples[:3] + samples[4:], many[:3] + many[4:]):
            np.testing.assert_allclose(got, preprocess(s, spec), rtol=0, atol=1e-6)
