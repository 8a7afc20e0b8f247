"""Signal-quality / plausibility stage (medzs.quality) and header metadata that is never invented.

Every case reads a real file: a shared record, or a WFDB record the test writes from a shared one (its header
fields, leads and sampling rate, with the signal replaced where the case needs it).
"""

from __future__ import annotations

import glob
import time
from pathlib import Path

import numpy as np
import pytest

from medzs.errors import RecordError
from medzs.io.detect import read_ecg
from medzs.quality import (
    AMPLITUDE_MAX_MV,
    ERROR_CODES,
    check_and_enforce,
    check_ecg,
    enforce,
    quality_flags_str,
)


@pytest.fixture(scope="module")
def ptbxl_hr(shared_data: Path) -> dict:
    return read_ecg(shared_data / "ecg" / "ptbxl500" / "records500" / "00000" / "00001_hr.hea")


@pytest.fixture(scope="module")
def cinc_dir(shared_data: Path) -> Path:
    return shared_data / "ecg" / "cinc-samples" / "cinc2021_georgia_chapman"


def _write(tmp: Path, name: str, counts: np.ndarray, template: dict, gain: float, units: str = "mV") -> Path:
    """Write ``counts`` ((leads, samples) int ADC values) as a WFDB format-16 record with the template's leads/fs."""
    import wfdb

    n = counts.shape[0]
    wfdb.wrsamp(name, fs=template["fs"], units=[units] * n, sig_name=list(template["leads"]),
                d_signal=np.ascontiguousarray(counts.T.astype(np.int64)), fmt=["16"] * n,
                adc_gain=[gain] * n, baseline=[0] * n, write_dir=str(tmp))
    return tmp / f"{name}.hea"


def _mv_record(tmp: Path, name: str, signal_mv: np.ndarray, template: dict) -> dict:
    counts = np.round(np.asarray(signal_mv) * 1000.0)  # 1 uV per ADC unit
    return read_ecg(_write(tmp, name, counts, template, 1000.0))


# ----------------------------------------------------------------------------------------- clean real records
def test_real_records_have_no_error(shared_data: Path, cinc_dir: Path):
    files = sorted(glob.glob(str(shared_data / "ecg/ptbxl500/records500/00000/*_hr.hea")))[:60]
    files += sorted(glob.glob(str(shared_data / "ecg/ptbxl500/records100/00000/*_lr.hea")))[:60]
    files += sorted(glob.glob(str(cinc_dir / "*.hea")))
    files += sorted(glob.glob(str(shared_data / "ecg/cinc-samples/cpsc2018/*.mat")))
    errors, notes = {}, {}
    for f in files:
        r = check_ecg(read_ecg(f))
        if r.is_error:
            errors[Path(f).name] = quality_flags_str(r)
        elif r.findings:
            notes[Path(f).name] = quality_flags_str(r)
    assert len(files) >= 150
    assert errors == {}
    # the notes are the real Chapman records with dead leads or strong 50 Hz hum
    assert notes["JS20004.hea"] == "disconnected_lead:V2;disconnected_lead:V4;disconnected_lead:V6"
    assert notes["JS20007.hea"] == "mains_noise:V6"
    assert set(notes) <= {"JS20004.hea", "JS20006.hea", "JS20007.hea", "JS20008.hea", "JS20011.hea"}


def test_disconnected_leads_of_a_real_record_annotate_only(cinc_dir: Path):
    s = read_ecg(cinc_dir / "JS20004.hea")
    r = check_ecg(s)
    assert [f.tag for f in r.findings] == ["disconnected_lead:V2", "disconnected_lead:V4", "disconnected_lead:V6"]
    assert not r.is_error
    enforce(r, s)  # no error: 3 of 12 leads is below the bad-lead limit


# ------------------------------------------------------------------------------------------- error cases
def test_all_zero_record_is_an_error(tmp_path: Path, ptbxl_hr: dict):
    s = read_ecg(_write(tmp_path, "zeros", np.zeros_like(ptbxl_hr["signal"], dtype=np.int64), ptbxl_hr, 1000.0))
    r = check_ecg(s)
    assert quality_flags_str(r) == "all_zero"
    with pytest.raises(RecordError, match=r"^zeros\.hea: quality all_zero: field 'signal'.*expected a recorded ECG"):
        enforce(r, s)


def test_pure_50hz_sine_is_mains_only(tmp_path: Path, ptbxl_hr: dict):
    t = np.arange(ptbxl_hr["signal"].shape[1]) / ptbxl_hr["fs"]
    sine = np.tile(np.sin(2 * np.pi * 50.0 * t), (12, 1))  # 1 mV, 50 Hz, every lead
    s = _mv_record(tmp_path, "sine50", sine, ptbxl_hr)
    r = check_ecg(s)
    assert r.flags[0] == "mains_only"
    assert all(f >= 0.99 for f in r.mains_fraction)
    assert r.is_error
    with pytest.raises(RecordError, match=r"sine50\.hea: quality mains_only: field 'signal'"):
        enforce(r, s)


def test_microvolts_labelled_mv_are_implausible(tmp_path: Path, ptbxl_hr: dict):
    microvolts = np.round(ptbxl_hr["signal"] * 1000.0)  # the real record in uV ...
    s = read_ecg(_write(tmp_path, "uv_as_mv", microvolts, ptbxl_hr, 1.0, units="mV"))  # ... declared mV
    assert np.abs(s["signal"]).max() > 1000  # loads at ~1,000s of "mV"
    r = check_ecg(s)
    assert r.is_error and all(f.code == "amplitude_implausible" for f in r.errors)
    assert max(r.lead_amplitude_mv) > AMPLITUDE_MAX_MV
    with pytest.raises(RecordError, match=r"quality amplitude_implausible:\w+: field 'signal' of lead .* mV for a "
                                          r"signal declared in mV"):
        enforce(r, s)
    # the same numbers declared in uV are fine
    ok = read_ecg(_write(tmp_path, "uv_as_uv", microvolts, ptbxl_hr, 1.0, units="uV"))
    assert not check_ecg(ok).is_error


def test_flat_lead_is_a_note(tmp_path: Path, ptbxl_hr: dict):
    sig = ptbxl_hr["signal"].astype(np.float64).copy()
    v3 = ptbxl_hr["leads"].index("V3")
    sig[v3] = np.random.default_rng(0).normal(0, 0.004, sig.shape[1])  # 4 uV noise: lead off
    s = _mv_record(tmp_path, "flatv3", sig, ptbxl_hr)
    r = check_ecg(s)
    assert quality_flags_str(r) == "flat_lead:V3"
    assert not r.is_error


def test_most_leads_flat_is_an_error(tmp_path: Path, ptbxl_hr: dict):
    sig = ptbxl_hr["signal"].astype(np.float64).copy()
    sig[:7] = 0.0
    s = _mv_record(tmp_path, "mostlyoff", sig, ptbxl_hr)
    r = check_ecg(s)
    assert [f.tag for f in r.errors] == ["too_many_bad_leads"]
    assert sum(f.code == "disconnected_lead" for f in r.findings) == 7


def test_padding_and_cropping(tmp_path: Path, ptbxl_hr: dict):
    fs = int(ptbxl_hr["fs"])
    sig = ptbxl_hr["signal"].astype(np.float64).copy()
    padded = sig.copy()
    padded[:, : 2 * fs] = 0.0
    padded[:, -fs:] = 0.0
    r = check_ecg(_mv_record(tmp_path, "padded", padded, ptbxl_hr))
    assert quality_flags_str(r) == "padded_start;padded_end"
    assert r.pad_start_s == pytest.approx(2.0, abs=0.01) and r.pad_end_s == pytest.approx(1.0, abs=0.01)
    assert not r.is_error
    cropped = sig.copy()
    cropped[:, 2 * fs:] = 0.0  # 2 s of signal, then zeros
    r = check_ecg(_mv_record(tmp_path, "cropped", cropped, ptbxl_hr))
    assert "too_short" in r.flags and "padded_end" in r.flags and r.is_error


def test_nan_lead_is_disconnected(ptbxl_hr: dict):
    s = dict(ptbxl_hr, signal=ptbxl_hr["signal"].copy())
    s["signal"][4] = np.nan
    r = check_ecg(s)
    assert quality_flags_str(r) == f"disconnected_lead:{s['leads'][4]}"


# --------------------------------------------------------------------------- header metadata never invented
def _header_copy(src: Path, dst_dir: Path, name: str, record_line: str, gain0_lead: int | None = None) -> Path:
    lines = src.read_text().splitlines()
    lines[0] = record_line
    out = []
    for i, ln in enumerate(lines):
        ln = ln.replace(src.stem + ".mat", name + ".mat")
        if gain0_lead is not None and i == 1 + gain0_lead:
            tok = ln.split()
            tok[2] = "0(0)/mV"
            ln = " ".join(tok)
        out.append(ln)
    (dst_dir / f"{name}.mat").write_bytes(src.with_suffix(".mat").read_bytes())
    hea = dst_dir / f"{name}.hea"
    hea.write_text("\n".join(out) + "\n")
    return hea


def test_date_before_time_is_read_right(tmp_path: Path, cinc_dir: Path):
    from medzs.io.cinc import read_cinc
    from medzs.io.wfdb import read_wfdb

    hea = _header_copy(cinc_dir / "E07500.hea", tmp_path, "E07835", "E07835 12 500 5000 05-May-2020 09:49:17")
    import wfdb

    assert str(wfdb.rdheader(str(hea.with_suffix(""))).base_time) == "00:00:05"  # what wfdb invents
    w = read_wfdb(hea)
    assert (w["meta"]["base_date"], w["meta"]["base_time"]) == ("2020-05-05", "09:49:17")
    c = read_cinc(hea)
    assert c["meta"]["identifiers"] == {"acquisition_date": "2020-05-05", "acquisition_time": "09:49:17"}
    # the usual WFDB order gives the same
    hea2 = _header_copy(cinc_dir / "E07500.hea", tmp_path, "E07837", "E07837 12 500 5000 09:49:17 05/05/2020")
    w2 = read_wfdb(hea2)
    assert (w2["meta"]["base_date"], w2["meta"]["base_time"]) == ("2020-05-05", "09:49:17")


def test_unparseable_date_is_unknown(tmp_path: Path, cinc_dir: Path):
    from medzs.io.cinc import read_cinc
    from medzs.io.wfdb import read_wfdb

    hea = _header_copy(cinc_dir / "E07500.hea", tmp_path, "E07838", "E07838 12 500 5000 31-Foo-2020 09:49:17")
    w = read_wfdb(hea)
    assert w["meta"]["base_date"] is None and w["meta"]["base_time"] == "09:49:17"
    assert read_cinc(hea)["meta"]["identifiers"] == {"acquisition_time": "09:49:17"}


@pytest.mark.parametrize("reader", ["wfdb", "cinc"])
def test_adc_gain_zero_is_flagged_and_an_error(tmp_path: Path, cinc_dir: Path, reader: str):
    from medzs.io.cinc import read_cinc
    from medzs.io.wfdb import read_wfdb

    hea = _header_copy(cinc_dir / "E07500.hea", tmp_path, "E07836", "E07836 12 500 5000", gain0_lead=1)
    good = read_cinc(cinc_dir / "E07500.hea")
    s = read_wfdb(hea) if reader == "wfdb" else read_cinc(hea)
    assert s["meta"]["uncalibrated_leads"] == ["II"]
    ii = s["leads"].index("II")
    # wfdb's silent default (200 instead of the real 1000) makes lead II exactly 5x too large
    np.testing.assert_allclose(s["signal"][ii], good["signal"][ii] * 5.0, rtol=1e-5, atol=1e-5)
    r = check_ecg(s)
    assert r.flags[0] == "uncalibrated_gain:II" and "uncalibrated_gain" in ERROR_CODES
    with pytest.raises(RecordError, match=r"^E07836\.hea: quality uncalibrated_gain:II: field 'adc_gain' of lead "
                                          r"'II'.*expected a calibrated ADC gain"):
        enforce(r, s)


def test_check_is_cheap(ptbxl_hr: dict):
    s = dict(ptbxl_hr, signal=ptbxl_hr["signal"][:, :1000].copy())  # 12 x 1000
    check_ecg(s)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        check_ecg(s)
    per = (time.perf_counter() - t0) / n
    print(f"check_ecg 12x1000: {per * 1e3:.3f} ms per record")  # reported, not asserted (shared CPU)


def test_check_and_enforce_is_what_the_engine_runs(tmp_path: Path, ptbxl_hr: dict, cinc_dir: Path):
    from medzs.engine import quality_check

    stage = quality_check("ecg")
    assert stage is check_and_enforce  # the engine really runs this module's rule
    assert stage(ptbxl_hr) is None  # a clean record: no flags
    assert stage(read_ecg(cinc_dir / "JS20004.hea")) == "disconnected_lead:V2;disconnected_lead:V4;disconnected_lead:V6"
    zeros = read_ecg(_write(tmp_path, "zeros", np.zeros_like(ptbxl_hr["signal"], dtype=np.int64), ptbxl_hr, 1000.0))
    with pytest.raises(RecordError, match="quality all_zero") as info:
        stage(zeros)
    assert info.value.quality_flags == "all_zero"
