"""PTB-XL loader, benchmark labels, splits, download and tasks, on the real 500-record mirror."""

from __future__ import annotations

import csv
import re
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medzs.data import ptbxl as P
from medzs.data.ptbxl import PTBXL, default_root, download, relabel, to_merl_columns
from medzs.data.tasks import SUBCLASS_ONLY, TASKS, get_task
from medzs.errors import RecordError, SpecError

MERL_TASKS = {  # our label set -> (MERL split folder, labels_merl_splits.csv column)
    "super": ("super_class", "merl_super_class"),
    "sub": ("sub_class", "merl_sub_class"),
    "form": ("form", "merl_form"),
    "rhythm": ("rhythm", "merl_rhythm"),
}


@pytest.fixture(scope="module")
def db(ptbxl_root: Path) -> PTBXL:
    return PTBXL(ptbxl_root)


@pytest.fixture(scope="module")
def merl(ptbxl_root: Path) -> pd.DataFrame:
    return pd.read_csv(ptbxl_root / "labels_merl_splits.csv", index_col="ecg_id")


def _merl_header(shared_data: Path, folder: str) -> list[str]:
    path = shared_data / "benchmarks" / "merl-splits" / "ptbxl" / folder / f"ptbxl_{folder}_test.csv"
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    return header[header.index(folder) + 1 :]  # class columns follow the list-valued column named like the task


# -- class lists ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", list(MERL_TASKS))
def test_class_order_matches_merl_split_files(shared_data: Path, task: str) -> None:
    folder = MERL_TASKS[task][0]
    ours = [P.MERL_COLUMN_NAMES.get(c, c) for c in P.LABEL_SETS[task]]
    assert ours == _merl_header(shared_data, folder)


def test_class_lists_match_scp_statements(db: PTBXL) -> None:
    st = db.statements
    assert list(st.index) == list(P.STATEMENT_CODES) and len(P.STATEMENT_CODES) == 71
    assert set(P.FORM_CODES) == set(st.index[st["form"]]) and len(P.FORM_CODES) == 19
    assert set(P.RHYTHM_CODES) == set(st.index[st["rhythm"]]) and len(P.RHYTHM_CODES) == 12
    diag = st[st["diagnostic"]]
    assert set(P.SUBCLASSES) == set(diag["diagnostic_subclass"]) and len(P.SUBCLASSES) == 23
    assert set(P.SUPERCLASSES) == set(diag["diagnostic_class"]) and len(P.SUPERCLASSES) == 5


# -- labels vs the published MERL benchmark ---------------------------------------------------------------------
def _label_sets(frame: pd.DataFrame) -> dict[int, set[str]]:
    frame = to_merl_columns(frame)
    return {int(i): {c for c in frame.columns if row[c] == 1.0} for i, row in frame.iterrows()}


@pytest.mark.parametrize("task", list(MERL_TASKS))
def test_labels_reproduce_merl_benchmark(db: PTBXL, merl: pd.DataFrame, task: str) -> None:
    """Agreement on all 500 records; the only differences are the 12 ecg_ids PTB-XL v1.0.3 dropped.

    The mirror's ptbxl_database.csv is from v1.0.1 and still lists ecg_ids 137, 139-143, 145, 456, 458, 459, 461,
    462. MERL built its splits from v1.0.3 (21,799 records), so these records are in no MERL split although our
    derivation gives them labels. ``v1_0_3_only=True`` removes them and the agreement is then exact.
    """
    col = MERL_TASKS[task][1]
    ref = {int(i): set(v.split(";")) for i, v in merl[col].dropna().items()}  # multi-labels joined by ';'
    ours = _label_sets(db.labels(task, drop_empty=True))

    differing = {i for i in set(ours) | set(ref) if ours.get(i) != ref.get(i)}
    assert differing <= P.NOT_IN_V1_0_3
    assert all(i not in ref for i in differing)  # they are missing from MERL, never labelled differently
    in_mirror_removed = P.NOT_IN_V1_0_3 & set(db.ecg_ids)
    assert len(in_mirror_removed) == 12
    # every one of the 12 is a difference where our derivation yields labels for the task
    assert differing == {i for i in in_mirror_removed if i in ours}

    exact = _label_sets(db.labels(task, drop_empty=True, v1_0_3_only=True))
    assert exact == ref


def test_not_in_v103_matches_merl_union(shared_data: Path) -> None:
    ids: set[int] = set()
    for path in (shared_data / "benchmarks" / "merl-splits" / "ptbxl").glob("*/*.csv"):
        ids |= set(pd.read_csv(path, usecols=["ecg_id"])["ecg_id"].astype(int))
    assert len(ids) == 21799 and max(ids) == 21837
    assert set(range(1, 21838)) - ids == P.NOT_IN_V1_0_3


def test_merl_split_membership_is_strat_fold(db: PTBXL, merl: pd.DataFrame) -> None:
    expected = {i: name for name in ("train", "val", "test") for i in db.split(name)}
    for _, col in MERL_TASKS.values():
        split = merl[col + "_split"].dropna()
        assert len(split) > 100
        assert all(expected[int(i)] == s for i, s in split.items())


def test_superclass_multilabel_values(db: PTBXL) -> None:
    y = db.labels("super")
    assert list(y.columns) == ["HYP", "NORM", "MI", "CD", "STTC"]
    assert y.dtypes.eq(float).all() and y.index.name == "ecg_id" and len(y) == 500
    # ecg 39: IMI (MI) + NDT/NST_ (STTC); ecg 45: RAO/RAE, RVH (HYP) + IRBBB (CD); ecg 1: NORM only
    assert y.loc[39].tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert y.loc[45].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert y.loc[1].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    # records without a diagnostic statement are all-NaN ("not labelled"), or dropped on request
    empty = y.index[y.isna().all(axis=1)]
    assert len(empty) == 12 and not y.loc[~y.index.isin(empty)].isna().any().any()
    assert len(db.labels("super", drop_empty=True)) == 488
    assert y.sum().to_dict() == {"HYP": 40, "NORM": 297, "MI": 73, "CD": 78, "STTC": 96}


def test_likelihood_zero_statements_count(db: PTBXL) -> None:
    # ecg 1: {'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}: LVOLT and SR are stated with likelihood 0 and still count
    assert db.database.at[1, "scp_codes"] == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    assert db.labels("form").loc[1, "LVOLT"] == 1.0 and db.labels("form").loc[1].sum() == 1.0
    assert db.labels("rhythm").loc[1, "SR"] == 1.0
    all_ = db.labels("ptbxl-all")
    assert all_.shape == (500, 71) and not all_.isna().any().any()
    assert all_.loc[1][all_.loc[1] == 1.0].index.tolist() == ["NORM", "LVOLT", "SR"]


def test_labels_unknown_task(db: PTBXL) -> None:
    with pytest.raises(ValueError, match="'diagnostic'"):
        db.labels("diagnostic")


def test_relabel(db: PTBXL) -> None:
    y = relabel(db.labels("super"), ["MI", "AFIB", "NORM"])
    assert list(y.columns) == ["MI", "AFIB", "NORM"]
    assert y["AFIB"].isna().all()
    assert y.loc[39, "MI"] == 1.0 and y.loc[39, "NORM"] == 0.0
    with pytest.raises(ValueError, match="duplicate"):
        relabel(y, ["MI", "MI"])


# -- tables, splits, paths --------------------------------------------------------------------------------------
def test_database_statements_reports(db: PTBXL) -> None:
    assert len(db) == 500 and db.ecg_ids[0] == 1 and db.ecg_ids[-1] == 500
    assert db.reports.loc[1] == "sinusrhythmus periphere niederspannung"
    desc = db.statement_descriptions
    assert len(desc) == 71 and desc["CLBBB"] == "complete left bundle branch block"
    assert db.folds.loc[1] == 3


def test_splits(db: PTBXL, ptbxl_root: Path) -> None:
    train, val, test, test910 = (db.split(n) for n in ("train", "val", "test", "test9-10"))
    assert (len(train), len(val), len(test), len(test910)) == (353, 81, 66, 147)
    demo = [int(x) for x in (ptbxl_root / "demo_ids_folds9-10.txt").read_text().split()]
    assert test910 == sorted(demo) == sorted(val + test)
    assert not set(train) & set(test910) and len(set(train) | set(test910)) == 500
    with pytest.raises(ValueError, match="'holdout'"):
        db.split("holdout")


def test_record_path(db: PTBXL, ptbxl_root: Path) -> None:
    hr = db.record_path(42)
    assert hr == ptbxl_root / "records500" / "00000" / "00042_hr"
    assert hr.with_suffix(".hea").is_file() and hr.with_suffix(".dat").is_file()
    assert db.record_path(42, fs=100) == ptbxl_root / "records100" / "00000" / "00042_lr"
    assert P.record_relpath(1234, 100) == "records100/01000/01234_lr"
    assert all(str(db.record_path(i).relative_to(ptbxl_root)) == P.record_relpath(i) for i in (1, 250, 500))
    with pytest.raises(ValueError, match="100 or 500"):
        db.record_path(42, fs=250)
    with pytest.raises(RecordError, match="ecg_id 9999 not found"):
        db.record_path(9999)
    sample = db.load(42, fs=100)
    assert sample["id"] == "00042_lr" and sample["signal"].shape == (12, 1000)


def test_malformed_database_raises(ptbxl_root: Path, tmp_path: Path) -> None:
    shutil.copy(ptbxl_root / "scp_statements.csv", tmp_path)
    frame = pd.read_csv(ptbxl_root / "ptbxl_database.csv")
    frame.loc[frame["ecg_id"] == 7, "scp_codes"] = "{'NORM': 100.0"
    frame.to_csv(tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(RecordError, match=r"ecg_id 7: scp_codes .* not a dict"):
        PTBXL(tmp_path)
    frame.loc[frame["ecg_id"] == 7, "scp_codes"] = "{'NOPE': 100.0}"
    frame.to_csv(tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(RecordError, match=r"ecg_id 7: scp_codes \['NOPE'\] not in scp_statements.csv"):
        PTBXL(tmp_path)
    (tmp_path / "scp_statements.csv").unlink()
    with pytest.raises(RecordError, match="scp_statements.csv: file not found"):
        PTBXL(tmp_path)


def test_default_root(monkeypatch: pytest.MonkeyPatch, ptbxl_root: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDZS_PTBXL_ROOT", str(tmp_path))
    assert default_root() == tmp_path
    monkeypatch.delenv("MEDZS_PTBXL_ROOT")
    monkeypatch.delenv("MEDZS_SHARED_DATA", raising=False)
    found = default_root().resolve()
    big = ptbxl_root.parent / "ptbxl2k"  # the 1,978-record mirror is preferred when present
    assert found == (big if (big / "ptbxl_database.csv").is_file() else ptbxl_root).resolve()


# -- download ---------------------------------------------------------------------------------------------------
@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"unexpected network access: {args}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fs": 250}, ValueError, "100 or 500"),
        ({"fs": ()}, ValueError, "at least one"),
        ({"fs": "500"}, TypeError, "fs"),
        ({"ecg_ids": []}, ValueError, "at least one id"),
        ({"ecg_ids": "12"}, TypeError, "ecg_ids"),
        ({"ecg_ids": [1, 0]}, ValueError, "positive"),
        ({"ecg_ids": [1.5]}, TypeError, "positive int"),
        ({"base_url": "ftp://example.org/"}, ValueError, "base_url"),
        ({"timeout": 0}, ValueError, "timeout"),
    ],
)
def test_download_checks_arguments_first(
    no_network: None, tmp_path: Path, kwargs: dict, error: type, match: str
) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(error, match=match):
        download(dest, **kwargs)
    assert not dest.exists()


def test_download_dest_is_file(no_network: None, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        download(tmp_path / "f", ecg_ids=[1])


def test_download_skips_present_files_without_network(no_network: None, ptbxl_root: Path) -> None:
    # the shared mirror is read-only: nothing may be fetched or written
    assert download(ptbxl_root, ecg_ids=[1, 2]) == []
    assert download(ptbxl_root, ecg_ids=[500], fs=100) == []
    assert download(ptbxl_root) == []  # all records listed in the mirror's database csv


def _local_mirror(ptbxl_root: Path, dest: Path, ids: list[int]) -> Path:
    """A small file:// source in PhysioNet's layout (copies in tmp_path, never in the repo)."""
    dest.mkdir()
    for name in ("ptbxl_database.csv", "scp_statements.csv", "SHA256SUMS.txt"):
        shutil.copy(ptbxl_root / name, dest / name)
    for i in ids:
        rel = P.record_relpath(i, 100)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        for ext in (".hea", ".dat"):
            shutil.copy(ptbxl_root / (rel + ext), dest / (rel + ext))
    return dest


def test_download_from_file_url(ptbxl_root: Path, tmp_path: Path) -> None:
    src = _local_mirror(ptbxl_root, tmp_path / "src", [1, 2])
    dest = tmp_path / "dest"
    got = download(dest, ecg_ids=[2, 1], fs=100, base_url=src.as_uri())
    rel = sorted(str(p.relative_to(dest)) for p in got)
    assert rel == sorted(
        ["ptbxl_database.csv", "scp_statements.csv"]
        + [f"records100/00000/0000{i}_lr{e}" for i in (1, 2) for e in (".hea", ".dat")]
    )
    assert all((dest / r).read_bytes() == (ptbxl_root / r).read_bytes() for r in rel)
    assert not list(dest.rglob("*.part"))
    assert PTBXL(dest).load(2, fs=100)["signal"].shape == (12, 1000)
    assert download(dest, ecg_ids=[1, 2], fs=100, base_url=src.as_uri()) == []


def test_download_rejects_bad_sha256(ptbxl_root: Path, tmp_path: Path) -> None:
    src = _local_mirror(ptbxl_root, tmp_path / "src", [3])
    sums = (src / "SHA256SUMS.txt").read_text().replace(
        "./records100/00000/00003_lr.dat", "./records100/00000/00003_lr.dat.orig"
    )
    (src / "SHA256SUMS.txt").write_text(sums + "0" * 64 + "  ./records100/00000/00003_lr.dat\n")
    dest = tmp_path / "dest"
    with pytest.raises(RecordError, match=r"00003_lr.dat: sha256 [0-9a-f]{64} \(expected 0{64}"):
        download(dest, ecg_ids=[3], fs=100, base_url=src.as_uri())
    assert not (dest / "records100/00000/00003_lr.dat").exists()
    assert not list(dest.rglob("*.part"))
    assert (dest / "records100/00000/00003_lr.hea").is_file()  # files checked OK before it were kept


# -- tasks ------------------------------------------------------------------------------------------------------
def test_tasks(db: PTBXL) -> None:
    sizes = {name: t.n_classes for name, t in TASKS.items()}
    assert sizes == {"ptbxl-super": 5, "ptbxl-sub": 23, "ptbxl-form": 19, "ptbxl-rhythm": 12, "ptbxl-all": 71}
    for task in TASKS.values():
        assert task.classes == P.LABEL_SETS[task.label_set]
        assert list(db.labels(task.label_set).columns) == list(task.classes)
        assert all(re.fullmatch(r"ecg\.(scp|subclass|superclass)\.\w+", kb) for kb in task.kb_ids.values())
    sub = get_task("ptbxl-sub")
    assert sub.kb_ids["ISCA"] == "ecg.subclass.ISCA"
    assert sub.kb_ids["LAFB/LPFB"] == "ecg.subclass.LAFB_LPFB"
    assert sub.kb_ids["_AVB"] == "ecg.subclass._AVB"
    assert sub.kb_ids["LAO/LAE"] == "ecg.scp.LAO_LAE"  # a statement too; '/' -> '_' (see medzs.data.tasks)
    assert sub.kb_ids["NST_"] == "ecg.scp.NST_" and sub.kb_ids["CLBBB"] == "ecg.scp.CLBBB"
    assert sub.display_names["_AVB"] == "atrioventricular block"
    assert sub.display_names["ISCA"] == "ischemic in anterior leads"
    sup = get_task("ptbxl-super")
    assert sup.kb_ids["STTC"] == "ecg.superclass.STTC" and sup.display_names["CD"] == "conduction disturbance"
    all_ = get_task("ptbxl-all")
    assert all_.display_names == db.statement_descriptions
    assert all_.kb_ids["1AVB"] == "ecg.scp.1AVB" and all_.kb_ids["RAO/RAE"] == "ecg.scp.RAO_RAE"
    assert get_task("ptbxl-form").kb_ids["PRC(S)"] == "ecg.scp.PRC_S_"
    # subclasses that are not statement codes are exactly the ones listed in SUBCLASS_ONLY
    assert set(SUBCLASS_ONLY) == set(P.SUBCLASSES) - set(db.statements.index)
    assert hash(sup) == hash(get_task("ptbxl-super"))
    with pytest.raises(SpecError, match="ptbxl-superclass"):
        get_task("ptbxl-superclass")


def test_labels_dtype_values_all_tasks(db: PTBXL) -> None:
    for task in P.LABEL_SETS:
        y = db.labels(task).to_numpy()
        assert set(np.unique(y[~np.isnan(y)])) <= {0.0, 1.0}


def test_every_task_class_has_a_knowledge_base_entry() -> None:
    """Each kb id names a file ``knowledge/ecg/<id>.yaml`` (docs/architecture.md)."""
    kb_dir = Path(__file__).resolve().parents[1] / "knowledge" / "ecg"
    missing = sorted({kb for t in TASKS.values() for kb in t.kb_ids.values() if not (kb_dir / f"{kb}.yaml").is_file()})
    assert missing == []
