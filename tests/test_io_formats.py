"""ECG file readers on the real files of ../shared/data/ecg (formats/, cinc-samples/), never copies in the repo.

Files are copied to tmp_path only to test detection under a wrong extension, header quirks and corruption.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medzs.errors import RecordError
from medzs.spec import STANDARD_12_LEADS

GEORGIA = [f"E075{i:02d}" for i in range(20)]
CHAPMAN = [f"JS200{i:02d}" for i in range(20)]
CPSC = [f"A19{80 + i}" for i in range(10)]
#: CPSC2018 record -> duration in s (data length / 500 Hz), from the files.
CPSC_DURATION = {
    "A1980": 10.0, "A1981": 15.9, "A1982": 10.0, "A1983": 15.0, "A1984": 19.0,
    "A1985": 11.034, "A1986": 43.0, "A1987": 13.556, "A1988": 54.314, "A1989": 17.0,
}
MUSE = "ecg2dcm_guangxi_teaching_sinus_rhythm_GE-MUSE.xml"
DCM_GUANGXI = "ecg2dcm_guangxi_teaching_sinus_rhythm.dcm"
DCM_PYDICOM = "pydicom_waveform_ecg.dcm"
PHILIPS = "spxml_129DYPRG_Philips-Sierra.xml"


# ---------------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def ecg_dir(shared_data: Path) -> Path:
    return shared_data / "ecg"


@pytest.fixture(scope="module")
def formats_dir(ecg_dir: Path) -> Path:
    return ecg_dir / "formats"


@pytest.fixture(scope="module")
def cinc_dir(ecg_dir: Path) -> Path:
    return ecg_dir / "cinc-samples" / "cinc2021_georgia_chapman"


@pytest.fixture(scope="module")
def cpsc_dir(ecg_dir: Path) -> Path:
    return ecg_dir / "cinc-samples" / "cpsc2018"


@pytest.fixture(scope="module")
def muse(formats_dir: Path) -> dict:
    from medzs.io.muse import read_muse

    return read_muse(formats_dir / MUSE)


@pytest.fixture(scope="module")
def dicom_guangxi(formats_dir: Path) -> dict:
    from medzs.io.dicom_ecg import read_dicom_ecg

    return read_dicom_ecg(formats_dir / DCM_GUANGXI)


@pytest.fixture(scope="module")
def dicom_pydicom(formats_dir: Path) -> dict:
    from medzs.io.dicom_ecg import read_dicom_ecg

    return read_dicom_ecg(formats_dir / DCM_PYDICOM)


@pytest.fixture(scope="module")
def philips(formats_dir: Path) -> dict:
    from medzs.io.philips import read_philips

    return read_philips(formats_dir / PHILIPS)


def leads_of(sample: dict) -> dict[str, np.ndarray]:
    return dict(zip(sample["leads"], sample["signal"], strict=True))


def assert_valid_12_lead(sample: dict, fs: float, duration_s: float, fmt: str) -> None:
    """Contract checks shared by every reader (docs/architecture.md)."""
    assert set(sample) == {"signal", "leads", "fs", "id", "meta", "path"}
    x = sample["signal"]
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2
    assert sample["leads"] == list(STANDARD_12_LEADS)
    assert x.shape[0] == 12
    assert sample["fs"] == pytest.approx(fs)
    assert x.shape[1] / sample["fs"] == pytest.approx(duration_s, abs=1e-9)
    assert np.isfinite(x).all()
    p99 = float(np.percentile(np.abs(x), 99))
    assert 0.05 < p99 < 10.0, f"99th percentile |signal| {p99} mV outside (0.05, 10)"
    assert sample["meta"]["format"] == fmt
    assert sample["id"] == Path(sample["path"]).stem
    assert isinstance(sample["meta"]["identifiers"], dict)
    assert_identifiers_apart(sample)


def assert_identifiers_apart(sample: dict) -> None:
    """No identifier value appears anywhere in the metadata outside meta['identifiers'] or in the id."""
    meta = {k: v for k, v in sample["meta"].items() if k != "identifiers"}
    text = json.dumps(meta, default=str, ensure_ascii=False)
    for key, value in sample["meta"]["identifiers"].items():
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            if isinstance(v, str) and len(v) >= 4:
                assert v not in text, f"identifier {key} leaks into meta"
                assert v != sample["id"]


def truncate(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


# ---------------------------------------------------------------------------------------------------- CinC


@pytest.mark.parametrize("record", GEORGIA + CHAPMAN)
def test_cinc_record(cinc_dir: Path, record: str) -> None:
    from medzs.io.cinc import read_cinc

    s = read_cinc(cinc_dir / f"{record}.hea")
    assert_valid_12_lead(s, 500.0, 10.0, "cinc")
    assert s["id"] == record
    # Dx, age and sex exactly as the header text says (parsed independently here)
    fields = {}
    for line in (cinc_dir / f"{record}.hea").read_text().splitlines():
        if line.startswith("#") and ":" in line:
            k, v = line[1:].split(":", 1)
            fields[k.strip()] = v.strip()
    assert s["meta"]["snomed_ct"] == fields["Dx"].split(",")
    assert s["meta"]["labels"] and s["meta"]["statements"]
    assert s["meta"]["age"] == float(fields["Age"])
    assert s["meta"]["sex"] == fields["Sex"].lower()


def test_cinc_known_record_and_scaling_against_wfdb(cinc_dir: Path) -> None:
    import wfdb

    from medzs.io.cinc import read_cinc

    s = read_cinc(cinc_dir / "E07500.mat")  # the .mat path finds its header
    assert s["path"].endswith("E07500.hea")
    assert s["meta"]["labels"] == ["LAE", "SB"]
    assert s["meta"]["statements"] == ["left atrial enlargement", "sinus bradycardia"]
    assert s["meta"]["gains"] == [1000.0] * 12 and s["meta"]["units"] == ["mV"] * 12
    ref = wfdb.rdrecord(str(cinc_dir / "E07500"))  # wfdb reads the same .mat independently
    np.testing.assert_allclose(s["signal"], ref.p_signal.T, atol=1e-6)
    assert s["meta"]["identifiers"] == {}


@pytest.mark.parametrize(
    ("record_line_tail", "parser"),
    [("05-May-2020 14:50:55", "wfdb"), ("05/05/2020 14:50:55", "medzs"), ("14:50:55 05/05/2020", "wfdb")],
)
def test_cinc_header_date_before_time(cinc_dir: Path, tmp_path: Path, record_line_tail: str, parser: str) -> None:
    """wfdb misreads (or rejects) headers with the date first; the reader still gets everything right."""
    from medzs.io.cinc import read_cinc

    shutil.copy(cinc_dir / "E07500.mat", tmp_path)
    text = (cinc_dir / "E07500.hea").read_text()
    first, rest = text.split("\n", 1)
    (tmp_path / "E07500.hea").write_text(f"{first} {record_line_tail}\n{rest}")
    s = read_cinc(tmp_path / "E07500.hea")
    ref = read_cinc(cinc_dir / "E07500.hea")
    np.testing.assert_array_equal(s["signal"], ref["signal"])
    assert s["fs"] == 500.0 and s["leads"] == ref["leads"]
    assert s["meta"]["header_parser"] == parser
    assert s["meta"]["identifiers"] == {"acquisition_date": "2020-05-05", "acquisition_time": "14:50:55"}
    assert_identifiers_apart(s)


def test_cinc_signal_file_of_another_record_is_rejected(cinc_dir: Path, tmp_path: Path) -> None:
    from medzs.io.cinc import read_cinc

    shutil.copy(cinc_dir / "E07500.hea", tmp_path)
    shutil.copy(cinc_dir / "JS20000.mat", tmp_path / "E07500.mat")
    with pytest.raises(RecordError, match=r"E07500\.mat.*lead 'I'"):
        read_cinc(tmp_path / "E07500.hea")


# ---------------------------------------------------------------------------------------------------- CPSC2018


@pytest.mark.parametrize("record", CPSC)
def test_cpsc_record(cpsc_dir: Path, record: str) -> None:
    from medzs.io.cpsc import read_cpsc

    s = read_cpsc(cpsc_dir / f"{record}.mat")
    assert_valid_12_lead(s, 500.0, CPSC_DURATION[record], "cpsc2018")
    with (cpsc_dir / "labels_from_MERL_icbeb_split.csv").open() as fh:
        row = {r["filename"]: r for r in csv.DictReader(fh)}[record]
    assert s["meta"]["age"] == float(row["age"])
    assert s["meta"]["sex"] == {"1": "male", "0": "female"}[row["sex"]]
    assert s["meta"]["identifiers"] == {}


def test_cpsc_reference_labels(cpsc_dir: Path, tmp_path: Path) -> None:
    """Official REFERENCE.csv layout (class numbers) -> class names and SNOMED CT / SCP-ECG codes."""
    from medzs.io.cpsc import read_cpsc, read_reference

    ref = tmp_path / "REFERENCE.csv"
    ref.write_text("Recording,First_label,Second_label,Third_label\nA1980,6,,\nA1982,3,1,\n")
    labels = read_reference(ref)
    assert labels == {"A1980": ["PAC"], "A1982": ["I-AVB", "Normal"]}
    s = read_cpsc(cpsc_dir / "A1982.mat", reference=ref)
    assert s["meta"]["cpsc2018"] == ["I-AVB", "Normal"]
    assert s["meta"]["snomed_ct"] == ["270492004", "164854000"]
    assert s["meta"]["scp_ecg"] == ["1AVB", "NORM"]
    with pytest.raises(RecordError, match="A1981"):
        read_cpsc(cpsc_dir / "A1981.mat", reference=labels)


# ---------------------------------------------------------------------------------------------------- GE MUSE


def test_muse(muse: dict) -> None:
    assert_valid_12_lead(muse, 500.0, 10.0, "muse")
    m = muse["meta"]
    assert m["waveform_type"] == "Rhythm"
    assert m["stored_leads"] == ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert m["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    assert m["units_per_bit_uv"] == pytest.approx(4.88)
    assert m["statements"] == ["窦性心律", "ST段抬高（提示心室早期复极）"]
    assert m["original_statements"][-1] == "正常心电图"
    assert m["measurements"]["VentricularRate"] == 97.0 and m["measurements"]["QRSDuration"] == 74.0
    assert m["age"] == 11.0 and m["sex"] == "male"
    assert {"patient_id", "patient_name", "birth_date", "acquisition_date"} <= set(m["identifiers"])


def test_muse_derived_leads_follow_einthoven_and_goldberger(muse: dict) -> None:
    lead = leads_of(muse)
    np.testing.assert_array_equal(lead["III"], lead["II"] - lead["I"])  # exactly
    np.testing.assert_array_equal(lead["aVR"], -(lead["I"] + lead["II"]) * np.float32(0.5))
    np.testing.assert_array_equal(lead["aVL"], lead["I"] - lead["II"] * np.float32(0.5))
    np.testing.assert_array_equal(lead["aVF"], lead["II"] - lead["I"] * np.float32(0.5))
    np.testing.assert_allclose(lead["aVR"] + lead["aVL"] + lead["aVF"], 0.0, atol=1e-5)


def test_muse_median_beat(formats_dir: Path) -> None:
    from medzs.io.muse import read_muse

    s = read_muse(formats_dir / MUSE, waveform="Median")
    assert s["signal"].shape == (12, 600) and s["fs"] == 500.0 and s["meta"]["waveform_type"] == "Median"


def test_muse_and_dicom_of_the_same_ecg_agree(muse: dict, dicom_guangxi: dict) -> None:
    """The DICOM file is ecg2dcm's conversion of the MUSE file: same rate and length, so no resampling is needed;
    the 8 stored leads are sample-identical, the derived ones differ by DICOM's rounding to whole units."""
    assert muse["fs"] == dicom_guangxi["fs"] == 500.0
    assert muse["signal"].shape == dicom_guangxi["signal"].shape
    a, b = leads_of(muse), leads_of(dicom_guangxi)
    assert np.corrcoef(a["II"], b["II"])[0, 1] > 0.99999
    for name in muse["meta"]["stored_leads"]:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6)
    lsb_mv = 4.88e-3
    for name in ("III", "aVR", "aVL", "aVF"):
        assert np.abs(a[name] - b[name]).max() <= 0.5 * lsb_mv + 1e-6


# ---------------------------------------------------------------------------------------------------- DICOM


def test_dicom_guangxi(dicom_guangxi: dict) -> None:
    assert_valid_12_lead(dicom_guangxi, 500.0, 10.0, "dicom")
    m = dicom_guangxi["meta"]
    assert m["sop_class"] == "General ECG Waveform Storage"
    assert m["group_label"] == "Rhythm" and m["multiplex_group"] == 0 and m["n_multiplex_groups"] == 2
    assert m["sensitivity_uv"] == pytest.approx(4.88)  # 1 uV x correction factor 4.88
    assert m["statements"] == []  # ecg2dcm did not carry the MUSE statements over
    assert m["measurements"]["QRS duration global"] == {"value": 74.0, "unit": "ms"}


def test_dicom_pydicom_example(dicom_pydicom: dict, formats_dir: Path) -> None:
    import pydicom

    assert_valid_12_lead(dicom_pydicom, 1000.0, 10.0, "dicom")
    m = dicom_pydicom["meta"]
    assert m["sop_class"] == "12-lead ECG Waveform Storage"
    assert m["statements"] == ["RITMO SINUSALE", "ECG NORMALE"]
    assert m["sensitivity_uv"] == pytest.approx(1.25)
    assert m["age"] == 42.0 and m["sex"] == "female"
    ident = m["identifiers"]
    assert {"patient_id", "patient_name", "birth_date", "accession_number"} <= set(ident)
    # pydicom's own conversion (sensitivity x correction + baseline, in uV) agrees
    ds = pydicom.dcmread(formats_dir / DCM_PYDICOM)
    np.testing.assert_allclose(dicom_pydicom["signal"], ds.waveform_array(0).T / 1000.0, atol=1e-6)
    lead = leads_of(dicom_pydicom)
    np.testing.assert_allclose(lead["III"], lead["II"] - lead["I"], atol=1e-6)


def test_dicom_median_group(formats_dir: Path) -> None:
    from medzs.io.dicom_ecg import read_dicom_ecg

    s = read_dicom_ecg(formats_dir / DCM_PYDICOM, group=1)
    assert s["signal"].shape == (12, 1200) and s["meta"]["group_label"] == "MEDIAN BEAT"


# ---------------------------------------------------------------------------------------------------- Philips


def test_philips(philips: dict) -> None:
    # 11 s in the file = 10.528 s of ECG + 0.472 s calibration segment (zeros, a 1 mV pulse, zeros)
    assert_valid_12_lead(philips, 500.0, 10.528, "philips")
    m = philips["meta"]
    assert m["duration_in_file_s"] == 11.0 and m["calibration_removed_s"] == pytest.approx(0.472)
    assert m["calibration_mv"] == pytest.approx(1.0)  # 200 units x 5 uV: the resolution is right
    assert m["resolution_uv"] == 5.0 and m["doc_version"] == "1.03"
    assert m["statements"] == [
        "Sinus bradycardia",
        "Nonspecific intraventricular conduction delay",
        "Inferior infarct, acute (LCx)",
        ">>> Acute MI <<<",
    ]
    assert m["statement_details"][0]["reason"] == "rate< 50"
    assert m["severity"] == "- ABNORMAL ECG -"
    assert m["age"] == 50.0 and m["sex"] == "male"
    assert m["identifiers"]["patient_id"]
    lead = leads_of(philips)
    # sierraecg rebuilds III from a residual with integer rounding: Einthoven holds to 2 units (10 uV)
    assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= 0.0100001


def test_philips_keep_calibration(formats_dir: Path) -> None:
    from medzs.io.philips import read_philips

    s = read_philips(formats_dir / PHILIPS, strip_calibration=False)
    assert s["signal"].shape == (12, 5500)
    np.testing.assert_allclose(s["signal"][:, 5350:5450], 1.0)  # the pulse, identical in every lead


# ---------------------------------------------------------------------------------------------------- HL7 aECG


@pytest.mark.parametrize(
    ("source", "resolution_uv"),
    [("dicom_pydicom", 1.25), ("muse", 1.0), ("cinc", 1.0)],
)
def test_hl7aecg_round_trip(
    source: str, resolution_uv: float, request: pytest.FixtureRequest, cinc_dir: Path, tmp_path: Path
) -> None:
    from lxml import etree

    from medzs.io.cinc import read_cinc
    from medzs.io.hl7aecg import read_hl7aecg, write_hl7aecg

    sample = read_cinc(cinc_dir / "JS20000.hea") if source == "cinc" else request.getfixturevalue(source)
    out = write_hl7aecg(sample, tmp_path / "record.xml", resolution_uv=resolution_uv)
    root = etree.parse(str(out)).getroot()
    assert root.tag == "{urn:hl7-org:v3}AnnotatedECG"
    back = read_hl7aecg(out)
    assert back["leads"] == sample["leads"] and back["fs"] == sample["fs"]
    assert back["signal"].shape == sample["signal"].shape
    # equal within quantisation (half a step), plus float32 rounding
    assert np.abs(back["signal"] - sample["signal"]).max() <= resolution_uv / 2000 + 1e-6
    assert back["meta"]["statements"] == list(sample["meta"].get("statements") or [])
    assert back["meta"]["sex"] == sample["meta"]["sex"]
    assert back["meta"]["identifiers"] == {}  # nothing identifying is written by default
    assert back["meta"]["scale_uv"] == pytest.approx(resolution_uv)


def test_hl7aecg_identifiers_only_on_request(dicom_pydicom: dict, tmp_path: Path) -> None:
    from medzs.io.hl7aecg import read_hl7aecg, write_hl7aecg

    out = write_hl7aecg(dicom_pydicom, tmp_path / "with_ids.xml", resolution_uv=1.25, include_identifiers=True)
    back = read_hl7aecg(out)
    assert back["meta"]["identifiers"]["subject_id"] == dicom_pydicom["meta"]["identifiers"]["patient_id"]
    assert back["meta"]["identifiers"]["birth_date"] == "19710123"
    assert_identifiers_apart(back)
    plain = write_hl7aecg(dicom_pydicom, tmp_path / "no_ids.xml", resolution_uv=1.25).read_text()
    for value in ("642341", "19710123", "Anonymous", "03028041970546"):
        assert value not in plain


# ---------------------------------------------------------------------------------------------------- detection


def test_read_ecg_detects_by_content_despite_wrong_extension(
    formats_dir: Path, cinc_dir: Path, cpsc_dir: Path, tmp_path: Path
) -> None:
    from medzs.io.detect import detect_format, read_ecg

    cases = [
        (formats_dir / MUSE, "muse.dcm", "muse"),
        (formats_dir / DCM_GUANGXI, "guangxi.xml", "dicom"),
        (formats_dir / DCM_PYDICOM, "pydicom.mat", "dicom"),
        (formats_dir / PHILIPS, "philips.hea", "philips"),
        (cpsc_dir / "A1983.mat", "A1983.xml", "cpsc2018"),
    ]
    for src, name, fmt in cases:
        dst = tmp_path / name
        shutil.copy(src, dst)
        assert detect_format(dst) == fmt, name
        s = read_ecg(dst)
        assert s["meta"]["format"] == fmt and s["signal"].shape[0] == 12
    # CinC: the .mat under another name next to its header, and the header under another name
    d1 = tmp_path / "cinc1"
    d1.mkdir()
    shutil.copy(cinc_dir / "E07501.hea", d1)
    shutil.copy(cinc_dir / "E07501.mat", d1 / "E07501.bin")
    assert detect_format(d1 / "E07501.bin") == "cinc"
    assert read_ecg(d1 / "E07501.bin")["meta"]["labels"] == ["LAA", "STach"]
    d2 = tmp_path / "cinc2"
    d2.mkdir()
    shutil.copy(cinc_dir / "E07501.hea", d2 / "E07501.txt")
    shutil.copy(cinc_dir / "E07501.mat", d2)
    assert detect_format(d2 / "E07501.txt") == "cinc"
    s = read_ecg(d2 / "E07501.txt")
    assert s["meta"]["header_parser"] == "medzs" and s["signal"].shape == (12, 5000)
    # an HL7 aECG file written here
    from medzs.io.hl7aecg import write_hl7aecg

    aecg = write_hl7aecg(read_ecg(formats_dir / DCM_PYDICOM), tmp_path / "aecg.dat", resolution_uv=1.25)
    assert detect_format(aecg) == "hl7aecg"


def test_read_ecg_all_real_files(formats_dir: Path, cinc_dir: Path, cpsc_dir: Path) -> None:
    from medzs.io.detect import detect_format

    expected = {
        formats_dir / MUSE: "muse",
        formats_dir / DCM_GUANGXI: "dicom",
        formats_dir / DCM_PYDICOM: "dicom",
        formats_dir / PHILIPS: "philips",
        cinc_dir / "E07500.mat": "cinc",
        cinc_dir / "E07500.hea": "cinc",
        cinc_dir / "JS20019": "cinc",
        cpsc_dir / "A1989.mat": "cpsc2018",
    }
    for path, fmt in expected.items():
        assert detect_format(path) == fmt, path.name


def test_read_ecg_dispatches_wfdb_headers(ptbxl_root: Path) -> None:
    from medzs.io.detect import detect_format, read_ecg

    hea = ptbxl_root / "records500" / "00000" / "00001_hr.hea"
    assert detect_format(hea) == "wfdb"
    assert detect_format(hea.with_suffix(".dat")) == "wfdb"  # binary signal file -> its header
    s = read_ecg(hea.with_suffix(".dat"))
    assert s["fs"] == 500.0 and s["signal"].shape == (12, 5000)


# ---------------------------------------------------------------------------------------------------- corruption


@pytest.mark.parametrize(
    ("src", "keep"),
    [
        (f"formats/{MUSE}", 0.6),
        (f"formats/{MUSE}", 0.999),
        (f"formats/{PHILIPS}", 0.8),
        (f"formats/{DCM_GUANGXI}", 0.5),
        (f"formats/{DCM_GUANGXI}", 0.999),
        (f"formats/{DCM_PYDICOM}", 0.9),
        ("cinc-samples/cpsc2018/A1984.mat", 0.7),
    ],
)
def test_truncated_files_raise_record_error(ecg_dir: Path, tmp_path: Path, src: str, keep: float) -> None:
    from medzs.io.detect import read_ecg

    source = ecg_dir / src
    dst = truncate(source, tmp_path / f"cut_{source.name}", keep)
    with pytest.raises(RecordError, match=dst.name.replace(".", r"\.")):
        read_ecg(dst)


def test_truncated_cinc_mat_raises(cinc_dir: Path, tmp_path: Path) -> None:
    from medzs.io.detect import read_ecg

    shutil.copy(cinc_dir / "E07502.hea", tmp_path)
    truncate(cinc_dir / "E07502.mat", tmp_path / "E07502.mat", 0.9)
    with pytest.raises(RecordError, match=r"E07502\.mat"):
        read_ecg(tmp_path / "E07502.hea")


def test_truncated_hl7aecg_raises(dicom_pydicom: dict, tmp_path: Path) -> None:
    from medzs.io.hl7aecg import read_hl7aecg, write_hl7aecg

    out = write_hl7aecg(dicom_pydicom, tmp_path / "full.xml", resolution_uv=1.25)
    cut = truncate(out, tmp_path / "cut.xml", 0.5)
    with pytest.raises(RecordError, match=r"cut\.xml.*not well-formed"):
        read_hl7aecg(cut)


def test_muse_corrupt_waveform_fails_crc(formats_dir: Path, tmp_path: Path) -> None:
    from medzs.io.muse import read_muse

    text = (formats_dir / MUSE).read_text(encoding="utf-8")
    start = text.index("<WaveFormData>", text.index("<WaveformType>Rhythm")) + len("<WaveFormData>") + 40
    swapped = "B" if text[start] != "B" else "C"
    bad = tmp_path / "bad_crc.xml"
    bad.write_text(text[:start] + swapped + text[start + 1 :], encoding="utf-8")
    with pytest.raises(RecordError, match=r"bad_crc\.xml: lead 'I' LeadDataCRC32"):
        read_muse(bad)
    assert read_muse(bad, verify_crc=False)["signal"].shape == (12, 5000)


def test_wrong_xml_and_unknown_content(formats_dir: Path, tmp_path: Path) -> None:
    from medzs.io.detect import read_ecg
    from medzs.io.hl7aecg import read_hl7aecg
    from medzs.io.muse import read_muse
    from medzs.io.philips import read_philips

    other = tmp_path / "other.xml"
    other.write_text('<?xml version="1.0"?><PatientRecord><Waveform/></PatientRecord>')
    with pytest.raises(RecordError, match=r"other\.xml: root element <PatientRecord>.*RestingECG"):
        read_ecg(other)
    with pytest.raises(RecordError, match=r"expected <RestingECG>"):
        read_muse(formats_dir / PHILIPS)
    with pytest.raises(RecordError, match=r"expected <restingecgdata>"):
        read_philips(formats_dir / MUSE)
    with pytest.raises(RecordError, match=r"AnnotatedECG"):
        read_hl7aecg(formats_dir / MUSE)
    noise = tmp_path / "noise.ecg"
    noise.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(RecordError, match=r"noise\.ecg: unrecognised content.*DICOM.*MUSE.*Philips.*aECG"):
        read_ecg(noise)
    with pytest.raises(RecordError, match="file not found"):
        read_ecg(tmp_path / "missing.xml")


def test_cinc_mat_without_header_is_explained(cinc_dir: Path, tmp_path: Path) -> None:
    from medzs.io.detect import read_ecg

    shutil.copy(cinc_dir / "E07503.mat", tmp_path)
    with pytest.raises(RecordError, match=r"E07503\.mat: MATLAB matrix 'val' but no header E07503\.hea"):
        read_ecg(tmp_path / "E07503.mat")


# ---------------------------------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("Lead I (Einthoven)", "I"),
        ("aVR, augmented voltage, right", "aVR"),
        ("AVL", "aVL"),
        ("MDC_ECG_LEAD_AVF", "aVF"),
        ("v3", "V3"),
        ("C6", "V6"),
        ("Lead III", "III"),
        ("V4R", "V4R"),
    ],
)
def test_lead_names_are_normalised(label: str, name: str) -> None:
    from medzs.io._ecg_common import normalize_lead_name

    assert normalize_lead_name(label) == name


def test_non_finite_values_name_the_lead(tmp_path: Path) -> None:
    from medzs.io._ecg_common import build_sample

    x = np.zeros((2, 10))
    x[1, 3] = np.nan
    with pytest.raises(RecordError, match=r"rec\.xml: lead 'II' contains NaN"):
        build_sample(x, ["I", "II"], 500.0, tmp_path / "rec.xml", "test")


def test_import_stays_light() -> None:
    code = (
        "import sys, medzs.io.detect, medzs.io.cinc, medzs.io.cpsc, medzs.io.muse, medzs.io.dicom_ecg, "
        "medzs.io.philips, medzs.io.hl7aecg, medzs.data.vocab\n"
        "heavy = [m for m in ('pydicom', 'lxml', 'sierraecg', 'scipy.io', 'wfdb') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
