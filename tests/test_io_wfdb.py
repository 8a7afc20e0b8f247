"""WFDB reader on real PTB-XL and PhysioNet sample records (copies in tmp_path for the corrupt cases)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from medzs.errors import RecordError
from medzs.io.wfdb import read_wfdb

STANDARD_ORDER = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _copy_record(root: Path, rel: str, dest: Path) -> Path:
    for ext in (".hea", ".dat"):
        target = dest / Path(rel + ext).name
        shutil.copyfile(root / (rel + ext), target)  # copyfile: the copy is writable even if the source is not
    return dest / Path(rel).name


@pytest.fixture()
def rec1(ptbxl_root: Path, tmp_path: Path) -> Path:
    return _copy_record(ptbxl_root, "records500/00000/00001_hr", tmp_path)


def test_read_ptbxl_record(ptbxl_root: Path) -> None:
    path = ptbxl_root / "records500" / "00000" / "00001_hr"
    s = read_wfdb(path)
    assert s["signal"].shape == (12, 5000) and s["signal"].dtype == np.float32
    assert s["leads"] == STANDARD_ORDER
    assert s["fs"] == 500.0 and s["id"] == "00001_hr"
    assert s["path"] == str(path.with_suffix(".hea"))
    assert s["meta"]["units"] == ["mV"] * 12 and s["meta"]["adc_gain"] == [1000.0] * 12
    # first samples = header init values / gain: I -115, II -50, III 65 adu at 1000 adu/mV
    np.testing.assert_allclose(s["signal"][:3, 0], [-0.115, -0.050, 0.065], atol=1e-6)
    ref = wfdb.rdrecord(str(path)).p_signal.T
    np.testing.assert_allclose(s["signal"], ref, atol=1e-6)


def test_extension_is_optional(ptbxl_root: Path) -> None:
    base = ptbxl_root / "records100" / "00000" / "00007_lr"
    a = read_wfdb(base)
    for variant in (base.with_suffix(".hea"), base.with_suffix(".dat"), str(base)):
        b = read_wfdb(variant)
        assert b["id"] == "00007_lr" and np.array_equal(a["signal"], b["signal"])
    assert a["signal"].shape == (12, 1000) and a["fs"] == 100.0


def test_physionet_samples(shared_data: Path) -> None:
    ptb = read_wfdb(shared_data / "ecg" / "wfdb-samples" / "sample-data" / "s0010_re")  # two signal files
    assert ptb["signal"].shape == (15, 38400) and ptb["fs"] == 1000.0
    assert ptb["leads"][:4] == ["i", "ii", "iii", "avr"] and ptb["leads"][-3:] == ["vx", "vy", "vz"]
    assert "age: 81" in ptb["meta"]["comments"]
    mit = read_wfdb(shared_data / "ecg" / "wfdb-samples" / "sample-data" / "100")  # format 212, no units -> mV
    assert mit["signal"].shape == (2, 650000) and mit["fs"] == 360.0 and mit["leads"] == ["MLII", "V5"]
    np.testing.assert_allclose(mit["signal"][:, 0], [-0.145, -0.065], atol=1e-6)


@pytest.mark.parametrize(("unit", "factor"), [("uV", 1e-3), ("V", 1e3), ("mV", 1.0)])
def test_units_converted_to_mv(rec1: Path, ptbxl_root: Path, unit: str, factor: float) -> None:
    hea = rec1.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("/mV", f"/{unit}"))
    s = read_wfdb(rec1)
    ref = read_wfdb(ptbxl_root / "records500" / "00000" / "00001_hr")["signal"]
    np.testing.assert_allclose(s["signal"], ref * factor, rtol=1e-6)
    assert s["meta"]["units"] == [unit] * 12


def test_non_voltage_units_raise(rec1: Path) -> None:
    hea = rec1.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    lines[3] = lines[3].replace("/mV", "/degC")  # third signal line: lead III
    hea.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"00001_hr: lead 'III': units 'degC' \(expected a voltage"):
        read_wfdb(rec1)


def test_missing_record_raises(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match=r"nothere_hr: header file nothere_hr.hea not found"):
        read_wfdb(tmp_path / "nothere_hr")


def test_missing_dat_raises(rec1: Path) -> None:
    rec1.with_suffix(".dat").unlink()
    with pytest.raises(RecordError, match=r"00001_hr: 00001_hr.dat not found"):
        read_wfdb(rec1)


@pytest.mark.parametrize("size", [1000, 24000, 0])
def test_truncated_dat_raises(rec1: Path, size: int) -> None:
    with open(rec1.with_suffix(".dat"), "r+b") as fh:
        fh.truncate(size)
    with pytest.raises(RecordError, match=r"00001_hr: signal data unreadable"):
        read_wfdb(rec1)


def test_corrupt_dat_fails_checksum(rec1: Path) -> None:
    data = np.fromfile(rec1.with_suffix(".dat"), dtype="<i2").reshape(-1, 12)
    data[2000:2010, 7] += 300  # lead V2, same file size
    data.tofile(rec1.with_suffix(".dat"))
    with pytest.raises(RecordError, match=r"00001_hr: lead\(s\) \['V2'\]: data checksum differs"):
        read_wfdb(rec1)
    s = read_wfdb(rec1, verify_checksum=False)  # explicit opt-out reads the altered data
    assert s["signal"].shape == (12, 5000)


def test_nan_samples_kept_and_refused_by_an_unmasked_spec(rec1: Path) -> None:
    """WFDB invalid samples are read as NaN (meta counts them); a spec without masked input refuses the record,
    naming the lead."""
    from medzs.spec import ECGInputSpec
    from medzs.transforms.ecg import preprocess

    data = np.fromfile(rec1.with_suffix(".dat"), dtype="<i2").reshape(-1, 12)
    data[100:110, 8] = -32768  # WFDB's invalid-sample value for format 16 -> NaN in lead V3
    data.tofile(rec1.with_suffix(".dat"))
    s = read_wfdb(rec1, verify_checksum=False)
    assert int(np.isnan(s["signal"][8]).sum()) == 10 and s["meta"]["nan_samples"] == {"V3": 10}
    with pytest.raises(RecordError, match=r"lead 'V3' contains NaN"):
        preprocess(s, ECGInputSpec(fs=500.0))


def _all_shared_wfdb_headers(shared: Path) -> list[Path]:
    out = []
    for sub in ("ecg/ptbxl2k/records100", "ecg/ptbxl2k/records500", "ecg/wfdb-samples"):
        out.extend(sorted((shared / sub).rglob("*.hea")))
    return out


def test_fast_path_equals_wfdb_on_every_shared_record(shared_data: Path) -> None:
    """The fast WFDB path (medzs.io._wfdb_fast) and the wfdb package give the same sample on every shared record."""
    headers = _all_shared_wfdb_headers(shared_data)
    assert len(headers) >= 2400
    n_fast = 0
    for h in headers:
        try:
            slow = read_wfdb(h, fast=False)
        except Exception as exc:  # noqa: BLE001 - then the fast path must fail the same way
            with pytest.raises(type(exc)):
                read_wfdb(h)
            continue
        from medzs.io._wfdb_fast import read_header_fast

        fast = read_wfdb(h)
        n_fast += read_header_fast(h.read_text(encoding="latin-1")) is not None
        assert fast["leads"] == slow["leads"] and fast["fs"] == slow["fs"] and fast["id"] == slow["id"], h
        assert fast["signal"].dtype == np.float32 and fast["signal"].shape == slow["signal"].shape, h
        np.testing.assert_array_equal(fast["signal"], slow["signal"], err_msg=str(h))
        for key in ("units", "adc_gain", "baseline", "fmt", "n_samples", "base_date", "base_time", "comments",
                    "uncalibrated_leads"):
            assert fast["meta"][key] == slow["meta"][key], (h, key)
    assert n_fast >= 2400  # PTB-XL records take the fast path
