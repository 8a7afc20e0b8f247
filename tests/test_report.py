"""Run reports: scores.csv, metrics.json, a self-contained report.html, and the CLI table."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medzs.metrics import evaluate, macro_auroc
from medzs.report import format_table, rich_table, write_report

CLASSES = ["NORM", "MI", "CD"]


@pytest.fixture(scope="module")
def run():
    rng = np.random.default_rng(0)
    n = 40
    y = (rng.random((n, 3)) < 0.35).astype(float)
    y[:, 2] = 0.0  # CD: no positive -> AUROC undefined
    y[3, 0] = np.nan
    s = 0.8 * y + rng.normal(size=(n, 3))
    table, macro = evaluate(y, s, CLASSES, n_boot=200, seed=0)
    ids = [f"{i:05d}_hr" for i in range(1, n + 1)]
    return ids, y, s, table, macro


def _provenance():
    return {"task": "ptbxl-super", "dataset": "ptbxl",
            "model": {"name": "ecg-resnet18.medzs-ptbxl", "sha256": "ab" * 32},
            "prompts_cache_hash": "cd" * 32, "writer": "grounded", "seed": 0}


def test_write_report_files(tmp_path: Path, run):
    ids, y, s, table, macro = run
    files = write_report(tmp_path / "out", record_ids=ids, classes=CLASSES, scores=s, y_true=y, table=table,
                         macro=macro, provenance=_provenance())
    assert set(files) == {"scores", "metrics", "html"}
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in files.values())

    df = pd.read_csv(files["scores"], dtype={"record_id": str})
    assert df.columns.tolist() == ["record_id", *CLASSES, *(f"y_{c}" for c in CLASSES)]
    assert df["record_id"].tolist() == ids
    np.testing.assert_allclose(df[CLASSES].to_numpy(), s, rtol=1e-5)
    assert np.isnan(df.loc[3, "y_NORM"]) and df["y_MI"].tolist() == y[:, 1].tolist()

    m = json.loads(files["metrics"].read_text())
    conds = {c["condition"]: c for c in m["conditions"]}
    assert list(conds) == CLASSES
    for name, row in zip(CLASSES, table.to_dict("records")):
        assert conds[name]["n_pos"] == row["n_pos"] and conds[name]["n_neg"] == row["n_neg"]
    assert conds["NORM"]["n"] == 39
    assert conds["MI"]["auroc"] == pytest.approx(table.loc[1, "auroc"])
    assert conds["CD"]["auroc"] is None and conds["CD"]["n_pos"] == 0  # NaN -> null, valid JSON
    assert m["macro"]["auroc"] == pytest.approx(macro_auroc(table)) and m["macro"]["n_conditions"] == 2
    prov = m["provenance"]
    assert prov["model"]["sha256"] == "ab" * 32 and prov["task"] == "ptbxl-super"
    assert prov["prompts_cache_hash"] == "cd" * 32 and prov["writer"] == "grounded" and prov["seed"] == 0
    assert prov["medzs_version"] and prov["command_line"] and re.match(r"\d{4}-\d\d-\d\dT", prov["time"])
    assert "PTB-XL" in prov["dataset_citation"][0]
    assert "NaN" not in files["metrics"].read_text()


def test_report_html_is_self_contained(tmp_path: Path, run):
    ids, y, s, table, macro = run
    files = write_report(tmp_path, record_ids=ids, classes=CLASSES, scores=s, y_true=y, table=table, macro=macro,
                         provenance=_provenance())
    html = files["html"].read_text()
    assert '<img alt="ROC curves per condition" src="data:image/png;base64,' in html
    b64 = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html).group(1)
    assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "http" not in html
    mi = table.loc[1]
    assert f"{mi['auroc']:.3f} [{mi['ci_low']:.3f}, {mi['ci_high']:.3f}]" in html
    assert f"<td class=\"num\">{int(mi['n_pos'])}</td><td class=\"num\">{int(mi['n_neg'])}</td>" in html
    assert f"Macro AUROC: {macro['auroc']:.3f}" in html and "over 2 of 3 conditions" in html
    assert "Dataset citation" in html and "doi:10.1038/s41597-020-0495-6" in html
    assert "ecg-resnet18.medzs-ptbxl" in html and "ab" * 32 in html


def test_report_refuses_patient_identifiers_and_handles_no_labels(tmp_path: Path, run):
    ids, y, s, table, macro = run
    bad = {**_provenance(), "dataset": {"name": "ptbxl", "identifiers": {"patient_name": "Canary McTestface"}}}
    with pytest.raises(ValueError, match="identifiers"):
        write_report(tmp_path / "bad", record_ids=ids, classes=CLASSES, scores=s, y_true=y, table=table,
                     macro=macro, provenance=bad)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match=r"scores: expected shape \(39, 3\).*got \(40, 3\)"):
        write_report(tmp_path, record_ids=ids[:-1], classes=CLASSES, scores=s, provenance={})
    files = write_report(tmp_path / "nolab", record_ids=ids, classes=CLASSES, scores=s, provenance={})
    df = pd.read_csv(files["scores"])
    assert df.columns.tolist() == ["record_id", *CLASSES]
    html = files["html"].read_text()
    assert "data:image/png" not in html and "Macro AUROC" not in html
    assert json.loads(files["metrics"].read_text())["conditions"] == []


def test_pipeline_style_provenance_dataset_dict_citation(tmp_path: Path, run):
    ids, y, s, table, _ = run
    prov = {"dataset": {"name": "PTB-XL", "citation": "Wagner P et al. PTB-XL. Sci Data 7, 154 (2020)."},
            "command": "medzs zeroshot pipelines/ptbxl-super.yaml", "created": "2026-01-01T00:00:00+0000"}
    files = write_report(tmp_path, record_ids=ids, classes=CLASSES, scores=s, y_true=y, table=table,
                         macro=macro_auroc(table), provenance=prov)
    m = json.loads(files["metrics"].read_text())
    assert "command_line" not in m["provenance"] and "time" not in m["provenance"]
    assert m["macro"] == {"auroc": pytest.approx(macro_auroc(table))}
    assert "Wagner P et al. PTB-XL. Sci Data 7, 154 (2020)." in files["html"].read_text()


def test_format_table(run):
    _, _, _, table, macro = run
    text = format_table(table, macro, title="ptbxl-super")
    lines = text.splitlines()
    assert lines[0] == "ptbxl-super"
    assert lines[1].split() == ["condition", "AUROC", "[95%", "CI]", "n_pos", "n_neg", "flag"]
    mi = table.loc[1]
    row = next(line for line in lines if line.startswith("MI "))
    assert f"{mi['auroc']:.3f} [{mi['ci_low']:.3f}, {mi['ci_high']:.3f}]" in row
    assert row.split()[-2:] == [str(mi["n_pos"]), str(mi["n_neg"])]
    cd = next(line for line in lines if line.startswith("CD "))
    assert "n/a" in cd and cd.split()[-4:] == ["0", "40", "few", "positives"]
    assert lines[-1] == (f"macro AUROC {macro['auroc']:.3f} [{macro['ci_low']:.3f}, {macro['ci_high']:.3f}] "
                         "over 2 condition(s)")
    assert format_table(table, 0.5).splitlines()[-1] == "macro AUROC 0.500"
    from rich.console import Console

    console = Console(width=100, record=True)
    console.print(rich_table(table, macro))
    out = console.export_text()
    assert "│ MI " in out and f"{mi['auroc']:.3f} [{mi['ci_low']:.3f}, {mi['ci_high']:.3f}]" in out


# ---------------------------------------------------------------------------------------------- a real small run
@pytest.fixture(scope="module")
def small_run(tmp_path_factory, ptbxl_root: Path):
    """`run_zeroshot` on 40 records of the reported folds of the PTB-XL mirror (the embedded model)."""
    from medzs.data.ptbxl import PTBXL
    from medzs.pipeline import parse_pipeline, run_zeroshot

    ids = PTBXL(ptbxl_root).split("test9-10")[:40]
    cfg = parse_pipeline({
        "name": "report-test", "task": "ptbxl-super",
        "dataset": {"name": "ptbxl", "root": str(ptbxl_root), "split": "test9-10", "ecg_ids": ids},
        "model": "ecg-resnet18.medzs-ptbxl",
        "prompts": {"writer": "grounded", "cache": "knowledge/prompts/ptbxl-super.grounded.json"},
        "metrics": {"n_boot": 50, "seed": 0, "min_positives": 5},
    })
    out = tmp_path_factory.mktemp("report-run")
    res = run_zeroshot(cfg, out_dir=out, progress=False)
    return res, (out / "report.html").read_text(encoding="utf-8"), json.loads((out / "metrics.json").read_text())


def test_report_of_a_real_run_has_header_names_and_sections(small_run):
    res, html, metrics = small_run
    prov = metrics["provenance"]
    n = res["n_records"]
    assert n > 20
    # header: model, dataset, split, record count, code version, date
    assert "<th>Model</th><td>ecg-resnet18.medzs-ptbxl (weights sha256 " in html
    assert "<th>Dataset</th><td>PTB-XL (ptbxl500)</td>" in html
    assert "<th>Split</th><td>test9-10 (strat_fold 9-10: held out, never used to train or tune)</td>" in html
    assert f"<th>Records</th><td>{n} ECG records scored</td>" in html
    from medzs import __version__

    code = prov["code_version"]
    assert code["medzs"] == __version__
    version = f"medzs {__version__}" + (f", git {code['git_commit']}" if code["git_commit"] else "")
    assert f"<th>Code version</th><td>{version}</td>" in html
    assert re.search(r"<th>Date</th><td>\d{4}-\d\d-\d\d \d\d:\d\d UTC", html)
    # the mirror holds 500 of PTB-XL's 21,799 records
    assert "Partial local mirror." in html and "<code>ptbxl500</code> holds only part of PTB-XL" in html
    # spelled-out condition names, in the table and the prompt tables
    for code_, name in (("NORM", "normal ECG"), ("MI", "myocardial infarction"), ("STTC", "ST/T change"),
                        ("CD", "conduction disturbance"), ("HYP", "hypertrophy")):
        assert f"<td><code>{code_}</code></td><td>{name}</td>" in html
        assert f"<summary>{code_} — {name}: " in html
    # macro both ways when a condition has few positives, flags as badges
    table = res["table"]
    macro = res["macro"]
    assert f"Macro AUROC: {macro['auroc']:.3f}" in html
    few = table[table["n_pos"] < 5]
    if len(few):
        assert 'class="flag few"' in html and "including those with few positives" in html
    # provenance as readable tables, collapsible, raw JSON last and collapsed
    assert "<h3>Model</h3>" in html and "<th>Input</th><td>12 leads (I, II, III" in html
    assert "<details><summary>Prompts per condition</summary>" in html
    assert "Cited passages: <code>ecg.superclass." in html or '<td class="pid"><code>ecg.superclass.' in html
    assert html.rindex("<h2>Raw provenance</h2>") > html.rindex("<h2>Provenance</h2>")
    assert "<details><summary>Provenance as JSON" in html
    assert "<h2>Dataset citation</h2>" in html and "doi:10.1038/s41597-020-0495-6" in html
    assert "http" not in html.split("<h2>Raw provenance</h2>")[0].replace("https://doi", "")  # self-contained


def test_report_lists_errors_collapsed_with_id_and_message(tmp_path: Path, run):
    ids, y, s, table, macro = run
    prov = {**_provenance(), "dataset": {"name": "ptbxl", "split": "test9-10", "n_records": 42, "n_errors": 2,
                                         "partial_mirror": False},
            "class_names": {"NORM": "normal ECG", "MI": "myocardial infarction", "CD": "conduction disturbance"},
            "errors": [{"record_id": "17", "error_class": "RecordError",
                        "error_message": "00017_lr.hea: field 'signal': all_zero (expected an ECG)"},
                       {"record_id": "23", "error_class": "RecordError",
                        "error_message": "00023_lr.hea: field 'adc_gain': uncalibrated_gain:V1"}]}
    files = write_report(tmp_path, record_ids=ids, classes=CLASSES, scores=s, y_true=y, table=table, macro=macro,
                         provenance=prov)
    html = files["html"].read_text()
    assert "<th>Records</th><td>40 of 42 ECG records scored (2 could not be scored, listed below)</td>" in html
    assert '<h2 id="errors">Records not scored (2)</h2>' in html
    assert "<details><summary>Show the 2 record(s) and why</summary>" in html
    assert ("<tr><td><code>17</code></td><td>RecordError</td>"
            "<td>00017_lr.hea: field &#x27;signal&#x27;: all_zero (expected an ECG)</td></tr>") in html
    assert "Partial local mirror" not in html
    assert "<td><code>MI</code></td><td>myocardial infarction</td>" in html
    assert '<span class="flag few"' in html  # CD has no positive


def test_imaging_report_shows_thumbnails_only_when_asked(tmp_path) -> None:
    """report.thumbnails in an imaging pipeline puts the highest-scored images per finding into report.html, with
    their id, score and label; without it no image of a record is written."""
    import re

    from medzs.pipeline import load_pipeline, run_zeroshot

    cfg = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines" / "ct-covid.yaml")
    assert cfg.report["thumbnails"] == 4
    res = run_zeroshot(cfg, out_dir=tmp_path / "a", progress=False)
    html = res["files"]["html"].read_text()
    caps = re.findall(r"<figcaption[^>]*>([^<]+)<br>score ([0-9.]+), label ([01?])", html)
    assert len(caps) == 4 and all(float(c[1]) <= 1.0 for c in caps)
    assert [float(c[1]) for c in caps] == sorted((float(c[1]) for c in caps), reverse=True)
    cfg.report["thumbnails"] = 0
    html0 = run_zeroshot(cfg, out_dir=tmp_path / "b", progress=False)["files"]["html"].read_text()
    assert "<figcaption" not in html0 and html0.count("data:image/png") == 1  # the ROC figure only
