"""``medzs predict``: a readable answer with calibrated probabilities and cited evidence, on every shared hospital
export and on WFDB/CinC records, with no patient identifier in the output; the calibration and how it was fitted."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from medzs.calibration import calibration_path, expected_calibration_error, fit_platt, load_calibration

REPO = Path(__file__).resolve().parents[1]

EXPORTS = {
    "dicom-ge": "ecg/formats/ecg2dcm_guangxi_teaching_sinus_rhythm.dcm",
    "dicom-mortara": "ecg/formats/pydicom_waveform_ecg.dcm",
    "muse": "ecg/formats/ecg2dcm_guangxi_teaching_sinus_rhythm_GE-MUSE.xml",
    "philips": "ecg/formats/spxml_129DYPRG_Philips-Sierra.xml",
    "wfdb-ptbxl": "ecg/ptbxl500/records500/00000/00009_hr.hea",
    "cinc-georgia": "ecg/cinc-samples/cinc2021_georgia_chapman/E07500.hea",
}
FORMATS = {"dicom-ge": "dicom", "dicom-mortara": "dicom", "muse": "muse", "philips": "philips",
           "wfdb-ptbxl": "wfdb", "cinc-georgia": "cinc"}
CLASSES = {"NORM", "MI", "STTC", "CD", "HYP"}


def _identifier_strings(meta_ids) -> list[str]:
    """Identifier values long enough to be recognisable (nested mappings flattened); placeholders made of one
    repeated character (``000000``, a blanked time) are not distinctive and are skipped."""
    out = []
    stack = [meta_ids]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif v is not None and len(str(v)) >= 5 and len(set(str(v))) > 1:
            out.append(str(v))
    return out


@pytest.fixture(scope="module")
def answers(shared_data: Path):
    """One predict run over all inputs (the model loads once): (result dict, text, {key: identifier strings})."""
    from medzs.io.detect import read_ecg
    from medzs.predict import predict, render_text

    paths = [str(shared_data / rel) for rel in EXPORTS.values()]
    res = predict(paths, task="ptbxl-super", top=3)
    text = render_text(res, width=110)
    ids = {k: _identifier_strings(read_ecg(shared_data / rel)["meta"].get("identifiers", {}))
           for k, rel in EXPORTS.items()}
    return res, text, ids


def test_predict_is_calibrated_with_the_shipped_calibration(answers):
    res, text, _ = answers
    cal = res["calibration"]
    assert cal["calibrated"] is True and cal["method"] == "platt"
    assert "strat_fold 1-8" in cal["fitted_on"] and "folds 9-10 never used" in cal["fitted_on"]
    assert "Probabilities: platt calibration fitted on PTB-XL strat_fold 1-8" in text


@pytest.mark.parametrize("key", list(EXPORTS))
def test_predict_answers_each_export_with_cited_evidence(answers, key):
    res, text, ids = answers
    rec = next(r for r in res["records"] if r["input"] == Path(EXPORTS[key]).name)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["format"] == FORMATS[key]
    assert rec["quality_flags"] == []  # the shared files are clean (medzs.quality docstring)
    conds = rec["conditions"]
    assert [c["rank"] for c in conds] == [1, 2, 3] and {c["code"] for c in conds} <= CLASSES
    probs = [c["probability"] for c in conds]
    assert all(0.0 < p < 1.0 for p in probs) and probs == sorted(probs, reverse=True)
    for c in conds:
        assert c["name"] and c["name"] != c["code"]
        ev = c["evidence"]
        assert ev["passages"], c["code"]
        for p in ev["passages"]:  # a cited KB passage with its bibliography ids
            assert re.fullmatch(r"ecg\.superclass\.[A-Z]+#(definition|criterion-\d+|synonyms)", p["passage_id"])
            assert p["passage_id"].startswith(f"ecg.superclass.{c['code']}#")
            assert p["text"] and p["sources"] and all(s["id"] and s["citation"] for s in p["sources"])
        crit = ev["criteria"]
        assert crit["scorable"] and crit["rules"]
        assert crit["n_held"] + crit["n_failed"] + crit["n_unmeasured"] == len(crit["rules"])
        for r in crit["rules"]:
            assert r["status"] in ("held", "failed", "not measured")
            assert r["passage_id"].startswith(f"ecg.superclass.{c['code']}#criterion-") and r["sources"]
            if r["status"] != "not measured":
                assert (r["check"] >= 0.5) == (r["status"] == "held")
    # the readable text names the record, its conditions, the passages and the sources
    block = text.split(Path(EXPORTS[key]).name, 1)[1]
    for c in conds:
        assert f"{c['name']} ({c['code']})" in block and f"{100 * c['probability']:.0f}%" in block
        assert c["evidence"]["passages"][0]["passage_id"] in block
    assert "Knowledge passages matched best:" in block and "Measured criteria (" in block
    assert "Sources (knowledge/sources.yaml)" in text
    # no patient identifier, in the text or in the JSON
    dumped = json.dumps(res, ensure_ascii=False)
    for s in ids[key]:
        assert s not in text and s not in dumped, f"identifier {s!r} leaked"


def test_predict_measures_what_the_files_state(answers):
    """The measured criteria agree with the device's own statements where these are unambiguous."""
    res, _, _ = answers
    by = {r["input"]: r for r in res["records"]}
    philips = by["spxml_129DYPRG_Philips-Sierra.xml"]  # device: sinus bradycardia, rate 41
    assert philips["signal"]["heart_rate_bpm"] == pytest.approx(41, abs=3)
    norm = next((c for c in philips["conditions"] if c["code"] == "NORM"), None)
    if norm is not None:
        hr_rule = next(r for r in norm["evidence"]["criteria"]["rules"] if r["measurement"] == "heart_rate")
        assert hr_rule["status"] == "failed"
    ge = by["ecg2dcm_guangxi_teaching_sinus_rhythm.dcm"]  # device: ventricular rate 97
    assert ge["signal"]["heart_rate_bpm"] == pytest.approx(97, abs=3)


def test_predict_error_record_and_cli_json(tmp_path: Path, shared_data: Path):
    """A record that cannot be scored is an error answer (one line), and `medzs predict --json` parses."""
    from typer.testing import CliRunner

    from medzs.cli import app

    bad = tmp_path / "flat.hea"
    (tmp_path / "flat.dat").write_bytes(np.zeros((1000, 12), dtype="<i2").tobytes())
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    bad.write_text("flat 12 100 1000\n" + "".join(f"flat.dat 16 1000/mV 16 0 0 0 0 {ld}\n" for ld in leads))
    good = shared_data / EXPORTS["philips"]
    r = CliRunner().invoke(app, ["predict", str(good), str(bad), "--json", "--top", "20", "--no-criteria",
                                 "--task", "ptbxl-rhythm"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    ok, err = res["records"]
    assert ok["status"] == "ok" and "criteria" not in ok["conditions"][0]["evidence"]
    assert err["status"] == "error" and err["conditions"] == []
    # rhythm: conditions with too few training positives have no calibration; they come last, with their cosine
    uncal = res["calibration"]["uncalibrated_conditions"]
    conds = ok["conditions"]
    assert len(conds) == 12 and {"BIGU", "TRIGU"} <= set(uncal) and "SR" not in uncal
    probs = [c["probability"] for c in conds]
    n_cal = 12 - len(uncal)
    assert all(p is not None for p in probs[:n_cal]) and all(p is None for p in probs[n_cal:])
    assert probs[:n_cal] == sorted(probs[:n_cal], reverse=True)
    tail = [c["score"] for c in conds[n_cal:]]
    assert tail == sorted(tail, reverse=True) and {c["code"] for c in conds[n_cal:]} == set(uncal)
    assert "all_zero" in err["error"] and "\n" not in err["error"]


def test_uncalibrated_scores_are_labelled(shared_data: Path, tmp_path: Path):
    """A calibration that does not fit the prompts is refused: scores are shown as cosines, said so."""
    from medzs import registry
    from medzs.data.tasks import get_task
    from medzs.prompts.types import ClassPrompts, Prompt

    cfg = registry.get_config("ecg-resnet18.medzs-ptbxl")
    task = get_task("ptbxl-super")
    other = {c: ClassPrompts(c, task.kb_ids[c], task.display_names[c], (Prompt(task.display_names[c]),))
             for c in task.classes}
    cal, why = load_calibration(cfg, "ptbxl-super", other, list(task.classes))
    assert cal is None and "other class prompts" in why
    cal, why = load_calibration(cfg, "ptbxl-all", other, list(task.classes))
    assert cal is None and "no entry for task 'ptbxl-all'" in why
    (tmp_path / "c.json").write_text("{}")
    from medzs.errors import SpecError

    with pytest.raises(SpecError, match="field 'format'"):
        load_calibration(cfg, "ptbxl-super", other, list(task.classes), path=tmp_path / "c.json")


def test_calibration_file_was_fitted_on_training_folds_only(shared_data: Path):
    """Recompute the fit set from the PTB-XL mirror: folds 1-8 labelled for the task, minus the model's training
    records -- or, when the model was trained on all of them, exactly those records, declared in-sample. Its hash is
    the one stored; no fold 9-10 record is in it."""
    from medzs import registry
    from medzs.data.ptbxl import PTBXLDataset
    from medzs.data.tasks import get_task

    cfg = registry.get_config("ecg-resnet18.medzs-ptbxl")
    path = calibration_path(REPO / cfg.weights)
    doc = json.loads(path.read_text())
    assert doc["format"] == "medzs-calibration" and doc["weights_sha256"] == cfg.sha256
    entry = doc["tasks"]["ptbxl-super"]
    card = json.loads((REPO / cfg.weights).with_suffix(".json").read_text())
    trained = {str(i) for i in card["data"]["ecg_ids"]}
    ds = PTBXLDataset(shared_data / "ecg" / "ptbxl2k", fs=100)
    labels = ds.labels(get_task("ptbxl-super"))
    train_ids = [r.id for r in ds.records("train") if r.id in labels.index]
    ids = [i for i in train_ids if i not in trained]
    if not ids:  # the default was trained on every fold 1-8 record: the fit is in-sample, and says so
        assert entry["in_sample"] is True and "in-sample" in entry["fitted_on"]
        ids = train_ids
    else:
        assert entry.get("in_sample") is False
    assert hashlib.sha256(",".join(ids).encode()).hexdigest() == entry["fit_record_ids_sha256"]
    folds = ds.db.folds
    assert all(int(folds[int(i)]) <= 8 for i in ids)
    for c, p in entry["classes"].items():
        assert p["n"] == len(ids) and p["a"] > 0, c  # a higher cosine means a higher probability
        assert p["test9_10"]["ece"] < 0.15


def test_fit_platt_recovers_a_logistic_model():
    rng = np.random.default_rng(0)
    s = rng.uniform(-0.5, 1.0, 20000)
    y = (rng.random(s.size) < 1 / (1 + np.exp(-(4.0 * s - 1.5)))).astype(float)
    a, b = fit_platt(s, y)
    assert a == pytest.approx(4.0, abs=0.25) and b == pytest.approx(-1.5, abs=0.15)
    p = 1 / (1 + np.exp(-(a * s + b)))
    assert expected_calibration_error(p, y) < 0.02
    with pytest.raises(ValueError, match="both label values"):
        fit_platt(s[:10], np.zeros(10))
