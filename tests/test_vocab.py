"""Vocabulary table and exact code matching (medzs.data.vocab), checked against the real source tables."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from medzs.data import vocab
from medzs.errors import RecordError


@pytest.fixture(scope="module")
def cinc_mapping(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / "ecg" / "cinc-samples" / "challenge2021_dx_mapping.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def scp_statements(ptbxl_root: Path) -> dict[str, str]:
    with (ptbxl_root / "scp_statements.csv").open() as fh:
        return {r[""]: r["description"] for r in csv.DictReader(fh)}


def test_table_covers_the_source_vocabularies(cinc_mapping: list, scp_statements: dict) -> None:
    rows = vocab.load_table()
    by_snomed = {r["snomed_ct"]: r for r in rows if r["snomed_ct"]}
    assert len(by_snomed) == sum(1 for r in rows if r["snomed_ct"])  # SNOMED CT ids unique
    for src in cinc_mapping:  # every CinC 2021 concept, with its abbreviation
        assert by_snomed[src["snomed_code"]]["cinc"] == src["abbreviation"]
    assert vocab.codes("scp_ecg") == set(scp_statements)  # all 71 PTB-XL statements, nothing invented
    assert vocab.codes("cpsc2018") == {"Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"}
    cinc = [r["cinc"] for r in rows if r["cinc"]]
    assert len(cinc) == len(set(cinc)) == len(cinc_mapping)


def test_parse_dx_matches_whole_codes_only() -> None:
    assert vocab.parse_dx("AFIB") == ["AFIB"]
    assert vocab.parse_dx("AFLT, AFIB;AFIB") == ["AFLT", "AFIB"]
    with pytest.raises(RecordError, match=r"\['AFIB'\] unknown"):
        vocab.parse_dx("AFIB", system="cinc")  # no substring hit on the CinC code AF
    assert vocab.parse_dx("AF", system="cinc") == ["AF"]
    with pytest.raises(RecordError):
        vocab.parse_dx("afib", system="scp_ecg")  # case matters
    assert vocab.parse_dx("# Dx: 164889003,426783006", system="snomed_ct") == ["164889003", "426783006"]
    assert vocab.parse_dx("{'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}", system="scp") == ["NORM", "LVOLT", "SR"]
    assert vocab.parse_dx(None) == [] and vocab.parse_dx("  ") == [] and vocab.parse_dx("Dx: ") == []


def test_afib_is_never_atrial_flutter() -> None:
    assert vocab.map_codes(["AFIB"], "scp_ecg", "cinc") == ["AF"]
    assert vocab.map_codes(["AFLT"], "scp_ecg", "cinc") == ["AFL"]
    assert vocab.map_codes(["AFIB"], "scp_ecg", "snomed_ct") == ["164889003"]
    assert vocab.map_codes(["AFLT"], "scp_ecg", "snomed_ct") == ["164890007"]
    with pytest.raises(RecordError, match="'AF' unknown"):
        vocab.map_codes(["AF"], "scp_ecg", "snomed_ct")  # AF is a CinC code, not an SCP-ECG one


def test_same_abbreviation_in_two_systems() -> None:
    """SCP-ECG AMI = anterior MI, CinC AMI = acute MI: the system decides."""
    assert vocab.map_codes("AMI", "scp", "snomed") == ["54329005"]
    assert vocab.map_codes("AMI", "cinc", "snomed") == ["57054005"]
    assert vocab.code_name("AMI", "cinc") == "acute myocardial infarction"


def test_real_dx_lines_parse_and_map(shared_data: Path) -> None:
    folder = shared_data / "ecg" / "cinc-samples" / "cinc2021_georgia_chapman"
    for hea in sorted(folder.glob("*.hea")):
        dx = next(ln for ln in hea.read_text().splitlines() if ln.startswith("# Dx:"))
        codes = vocab.parse_dx(dx, system="snomed_ct", source=hea.name)
        assert codes == dx.split(":", 1)[1].strip().split(",")
        assert len(vocab.map_codes(codes, "snomed_ct", "cinc")) == len(codes)


def test_ptbxl_scp_codes_parse(ptbxl_root: Path) -> None:
    with (ptbxl_root / "ptbxl_database.csv").open() as fh:
        for row in csv.DictReader(fh):
            assert vocab.parse_dx(row["scp_codes"], system="scp_ecg", source=f"ecg_id {row['ecg_id']}")


def test_round_trips() -> None:
    rows = vocab.load_table()
    for r in rows:  # SNOMED CT <-> CinC: both columns unique, exact round trip
        if r["snomed_ct"] and r["cinc"]:
            assert vocab.map_codes([r["cinc"]], "cinc", "snomed_ct") == [r["snomed_ct"]]
            assert vocab.map_codes([r["snomed_ct"]], "snomed_ct", "cinc") == [r["cinc"]]
    for code in vocab.codes("scp_ecg"):  # SCP-ECG -> SNOMED CT -> SCP-ECG gives the code back, alone
        snomed = vocab.map_codes([code], "scp_ecg", "snomed_ct")
        if snomed:
            assert vocab.map_codes(snomed, "snomed_ct", "scp_ecg") == [code]
    for cls in vocab.codes("cpsc2018"):  # CPSC2018 -> SCP-ECG -> CPSC2018 and via SNOMED CT
        assert vocab.map_codes(vocab.map_codes([cls], "cpsc", "scp"), "scp", "cpsc") == [cls]
        assert vocab.map_codes(vocab.map_codes([cls], "cpsc", "snomed"), "snomed", "cpsc") == [cls]
    assert vocab.map_codes(["CLBBB"], "scp", "snomed") == ["733534002", "164909002"]  # equivalent codes


def test_cpsc_classes_map_as_expected() -> None:
    expected = {
        "Normal": "NORM", "AF": "AFIB", "I-AVB": "1AVB", "LBBB": "CLBBB", "RBBB": "CRBBB",
        "PAC": "PAC", "PVC": "PVC", "STD": "STD_", "STE": "STE_",
    }
    for cls, scp in expected.items():
        assert vocab.map_codes([cls], "cpsc2018", "scp_ecg") == [scp]
    assert vocab.CPSC2018_CLASSES[3] == "I-AVB"


def test_unknown_code_policies() -> None:
    assert vocab.map_codes(["NDT"], "scp", "snomed") == []  # known code, no SNOMED CT equivalent
    assert vocab.map_codes(["XYZ", "AFIB"], "scp", "cinc", unknown="skip") == ["AF"]
    assert vocab.map_codes(["XYZ", "AFIB"], "scp", "cinc", unknown="keep") == ["XYZ", "AF"]
    with pytest.raises(RecordError, match="code system 'icd10' unknown"):
        vocab.map_codes(["I48"], "icd10", "snomed")
    with pytest.raises(RecordError, match="unknown="):
        vocab.map_codes(["AFIB"], "scp", "cinc", unknown="ignore")
