"""Imaging dataset adapters (medzs/data/imaging.py) on the shared copies and on tiny layouts built in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medzs.data.base import DATASETS, Dataset, create_dataset
from medzs.data.imaging import (
    CHESTXRAY14_FINDINGS,
    CHEXPERT_FINDINGS,
    assert_group_disjoint,
    covid_ct_source_group,
    group_kfold,
    group_split,
    hash_unit,
    kermany_person,
)
from medzs.errors import SpecError

IMAGING_NAMES = ("kermany", "covid-ct", "chexpert", "chestxray14", "rsna-pneumonia", "image-folder")


@pytest.fixture(scope="module")
def imaging(shared_data: Path) -> Path:
    return shared_data / "imaging"


@pytest.fixture(scope="module")
def kermany(imaging: Path):
    return create_dataset("kermany", root=imaging / "cxr-pneumonia")


def test_registered() -> None:
    for name in IMAGING_NAMES:
        assert DATASETS[name].startswith("medzs.data.imaging:")


def test_split_helpers_are_deterministic_and_group_level() -> None:
    groups = [f"g{i // 3}" for i in range(3000)]
    a, b = group_split(groups, 0.2, seed=0), group_split(list(reversed(groups)), 0.2, seed=0)
    assert a == list(reversed(b))  # order does not matter
    by_group = pd.Series(a, index=groups).groupby(level=0).nunique()
    assert by_group.max() == 1  # a group never straddles
    assert 0.15 < np.mean([s == "test" for s in a]) < 0.25
    assert group_split(groups, 0.2, seed=1) != a
    folds = group_kfold(groups, k=5)
    assert set(folds) == {0, 1, 2, 3, 4}
    assert pd.Series(folds, index=groups).groupby(level=0).nunique().max() == 1
    assert 0 <= hash_unit("x") < 1 and hash_unit("x") == hash_unit("x")
    with pytest.raises(SpecError, match="test_fraction"):
        group_split(groups, 1.5)
    with pytest.raises(SpecError, match="k: expected"):
        group_kfold(groups, 1)


def test_kermany_person_ids() -> None:
    assert kermany_person("NORMAL/IM-0115-0001.jpeg") == "IM-0115"
    assert kermany_person("IM-0115-0001-0002.jpeg") == "IM-0115"
    assert kermany_person("NORMAL2-IM-1427-0001.jpeg") == "NORMAL2-IM-1427"
    assert kermany_person("person1000_bacteria_2931.jpeg") == "person1000"
    assert kermany_person("person1000_virus_1681.jpeg") == "person1000"
    assert kermany_person("odd.jpeg") == "odd"


def test_kermany_shared_copy(kermany, imaging: Path) -> None:
    assert isinstance(kermany, Dataset) and kermany.modality == "cxr" and "Kermany" in kermany.citation
    assert len(kermany) == 5216
    y = kermany.labels(["pneumonia", "bacterial", "viral", "normal"])
    assert y.sum().to_dict() == {"pneumonia": 3875.0, "bacterial": 2530.0, "viral": 1345.0, "normal": 1341.0}
    assert not y.isna().any().any()
    assert ((y.bacterial + y.viral) == y.pneumonia).all()
    train, test = kermany.records("train"), kermany.records("test")
    assert len(train) + len(test) == 5216 and 0.15 < len(test) / 5216 < 0.3
    assert_group_disjoint(train, test)
    assert kermany.splits() == ["all", "train", "test", "official-train"]
    assert len(kermany.records("official-train")) == 5216  # the shared copy is Kermany's train split
    # person1000 has a bacterial and a viral image: one group
    g = kermany.groups()
    assert g["PNEUMONIA/person1000_bacteria_2931.jpeg"] == g["PNEUMONIA/person1000_virus_1681.jpeg"]
    # byte-identical files share a group, so they never straddle train and test
    assert kermany.n_duplicate_files > 0
    split = dict(zip(kermany.split("all"), [None] * 5216))
    for name in ("train", "test"):
        for rid in kermany.split(name):
            split[rid] = name
    import hashlib

    by_hash: dict[str, set] = {}
    for r in kermany.records():
        by_hash.setdefault(hashlib.sha1(Path(r.path).read_bytes()).hexdigest(), set()).add(split[r.id])
    assert all(len(v) == 1 for v in by_hash.values())
    # deterministic across instances
    again = create_dataset("kermany", root=imaging / "cxr-pneumonia")
    assert again.split("test") == kermany.split("test")
    with pytest.raises(SpecError, match="split expected one of"):
        kermany.records("val")
    with pytest.raises(SpecError, match="cannot label"):
        kermany.labels(["covid"])


def test_labels_from_knowledge_base_tasks(kermany, imaging: Path) -> None:
    """Tasks built from the KB codes (medzs.data.tasks.task_from_codes) label these datasets."""
    from medzs.data.tasks import task_from_codes

    task = task_from_codes("kermany-pneumonia", ["pneumonia", "normal"], "kermany", dataset="kermany", modality="cxr")
    y = kermany.labels(task)
    assert list(y.columns) == ["pneumonia", "normal"] and y.pneumonia.sum() == 3875 and y.normal.sum() == 1341
    covid = create_dataset("covid-ct", root=imaging / "ct-covid-slices")
    t2 = task_from_codes("covid", ["CT_COVID"], "covid_ct", dataset="covid-ct", modality="ct")
    assert covid.labels(t2).CT_COVID.sum() == 349
    t3 = task_from_codes("chexpert-pneu", ["Pneumonia"], "chexpert", modality="cxr")
    with pytest.raises(SpecError, match="chexpert codes, but dataset kermany labels kermany codes"):
        kermany.labels(t3)


def test_kermany_folder_layouts(imaging: Path, tmp_path: Path) -> None:
    tiny = create_dataset("kermany", root=imaging / "tiny/kermany224")
    assert len(tiny) == 8 and tiny.labels(["pneumonia"]).pneumonia.sum() == 4
    assert tiny.labels(["viral"]).loc["PNEUMONIA/person1003_virus_1685.jpeg", "viral"] == 1.0
    # the official Kermany layout: train/ and test/ folders
    for split, files in (("train", ["NORMAL/IM-0115-0001.jpeg", "PNEUMONIA/person1000_bacteria_2931.jpeg"]),
                         ("test", ["NORMAL/IM-0117-0001.jpeg", "PNEUMONIA/person1001_bacteria_2932.jpeg"])):
        for f in files:
            (tmp_path / split / Path(f).parent).mkdir(parents=True, exist_ok=True)
            shutil.copy(imaging / "tiny/kermany224" / f, tmp_path / split / f)
    ds = create_dataset("kermany", root=tmp_path)
    assert ds.split("official-test") == ["test/NORMAL/IM-0117-0001.jpeg", "test/PNEUMONIA/person1001_bacteria_2932.jpeg"]
    assert set(ds.splits()) == {"all", "train", "test", "official-train", "official-test"}
    with pytest.raises(SpecError, match="no images"):
        create_dataset("kermany", root=tmp_path / "train" / "NORMAL")


def test_covid_ct_shared_copy(imaging: Path) -> None:
    ds = create_dataset("covid-ct")  # default root: the shared mirror
    assert ds.root == imaging / "ct-covid-slices" and ds.modality == "ct"
    assert len(ds) == 746
    assert ds.label_codes() == ["CT_COVID", "CT_NonCOVID"] and ds.system == "covid_ct"
    y = ds.labels(["covid", "noncovid"])  # aliases of the folder names
    assert y.covid.sum() == 349 and y.noncovid.sum() == 397
    assert ds.labels(["CT_COVID"]).CT_COVID.sum() == 349
    train, test = ds.records("train"), ds.records("test")
    assert_group_disjoint(train, test)
    assert len(test) > 50 and y.loc[[r.id for r in test], "covid"].nunique() == 2
    csv = pd.read_csv(imaging / "ct-covid-slices/labels.csv", dtype={"source_group": str})
    groups = ds.groups()
    assert len(set(groups.values())) == csv.source_group.nunique() - 1  # PIIS..._0 merged with PIIS...
    assert groups["CT_COVID/PIIS0140673620301549_0%0.png"] == groups["CT_COVID/PIIS0140673620301549_1.png"]
    # the file-name rule reproduces the CSV's source_group (up to that merge)
    derived = csv.path.map(covid_ct_source_group)
    assert (derived != csv.source_group.str.replace(r"_\d+$", "", regex=True)).sum() == 0


def test_covid_ct_reads_and_folder_fallback(imaging: Path, tmp_path: Path) -> None:
    from medzs.io.image import read_image

    src = imaging / "ct-covid-slices"
    picks = ["CT_COVID/2020.03.12.20034686-p17-91-1.png", "CT_COVID/2020.03.12.20034686-p17-91-2.png",
             "CT_NonCOVID/10%0.jpg", "CT_NonCOVID/102.png"]
    for p in picks:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / p, tmp_path / p)
        s = read_image(tmp_path / p, modality="ct")
        assert s["image"].ndim == 3 and s["image"].shape[0] == 1 and s["modality"] == "ct"
    ds = create_dataset("covid-ct", root=tmp_path)
    assert ds.labels(["covid"]).covid.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert set(ds.groups().values()) == {"2020.03.12.20034686", "10", "102"}


def _chexpert_tree(imaging: Path, tmp_path: Path) -> Path:
    root = tmp_path / "chexpert"
    src = sorted((imaging / "tiny/kermany224").rglob("*.jpeg"))
    rows = []
    vals = [
        {"No Finding": 1.0, "Pneumonia": np.nan},
        {"Pneumonia": -1.0, "Pleural Effusion": 1.0, "Support Devices": 0.0},
        {"Pneumonia": 1.0, "Edema": -1.0},
        {"Pneumonia": 0.0},
    ]
    for k, v in enumerate(vals):
        rel = f"CheXpert-v1.0-small/train/patient0000{1 + k // 2}/study1/view{1 + k % 2}_{'frontal' if k % 2 == 0 else 'lateral'}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src[k], root / rel)
        row = {"Path": rel, "Sex": "Female", "Age": 50, "Frontal/Lateral": "Frontal" if k % 2 == 0 else "Lateral",
               "AP/PA": "PA"}
        row.update({c: v.get(c, np.nan) for c in CHEXPERT_FINDINGS})
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "CheXpert-v1.0-small" / "train.csv", index=False)
    return root


def test_chexpert(imaging: Path, tmp_path: Path) -> None:
    root = _chexpert_tree(imaging, tmp_path) / "CheXpert-v1.0-small"
    ds = create_dataset("chexpert", root=root)
    assert len(ds) == 4 and ds.label_codes() == list(CHEXPERT_FINDINGS)
    y = ds.labels(["Pneumonia", "Pleural Effusion", "Edema", "No Finding", "Support Devices"])
    ids = ds.split("all")
    p = y["Pneumonia"]
    assert np.isnan(p[ids[0]]) and np.isnan(p[ids[1]]) and p[ids[2]] == 1.0 and p[ids[3]] == 0.0  # blank, -1
    assert y.loc[ids[1], "Pleural Effusion"] == 1.0 and y.loc[ids[1], "Support Devices"] == 0.0
    assert np.isnan(y.loc[ids[2], "Edema"]) and y.loc[ids[0], "No Finding"] == 1.0
    assert all(Path(r.path).is_file() for r in ds.records())  # paths resolved against the root's parent
    assert ds.groups()[ids[0]] == ds.groups()[ids[1]] == "patient00001"
    ones = create_dataset("chexpert", root=root, uncertain="ones", blank="zeros")
    p1 = ones.labels(["Pneumonia"])["Pneumonia"]
    assert p1.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert create_dataset("chexpert", root=root, uncertain="zeros").labels(["Edema"]).loc[ids[2], "Edema"] == 0.0
    assert len(create_dataset("chexpert", root=root, views=("Frontal",))) == 2
    with pytest.raises(SpecError, match="uncertain expected"):
        create_dataset("chexpert", root=root, uncertain="maybe")


def test_chestxray14(imaging: Path, tmp_path: Path) -> None:
    root = tmp_path / "cxr14"
    (root / "images_001" / "images").mkdir(parents=True)
    for name in ("00000001_000.png", "00000001_001.png", "00000002_000.png"):
        shutil.copy(imaging / "tiny/png/nih_00000001_000.png", root / "images_001/images" / name)
    pd.DataFrame({
        "Image Index": ["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png"],
        "Finding Labels": ["Cardiomegaly", "Cardiomegaly|Effusion", "No Finding", "Hernia"],
        "Follow-up #": [0, 1, 0, 0], "Patient ID": [1, 1, 2, 3],
    }).to_csv(root / "Data_Entry_2017_v2020.csv", index=False)
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n")
    (root / "test_list.txt").write_text("00000002_000.png\n00000003_000.png\n")
    ds = create_dataset("chestxray14", root=root)
    assert len(ds) == 3 and ds.partial and ds.n_missing_images == 1
    assert ds.label_codes() == [*CHESTXRAY14_FINDINGS, "No Finding"]
    y = ds.labels(["Cardiomegaly", "Effusion", "No Finding", "Hernia"])
    assert y.to_dict("list") == {"Cardiomegaly": [1.0, 1.0, 0.0], "Effusion": [0.0, 1.0, 0.0],
                                 "No Finding": [0.0, 0.0, 1.0], "Hernia": [0.0, 0.0, 0.0]}
    assert ds.split("official-test") == ["00000002_000.png"]
    assert ds.groups()["00000001_001.png"] == "1"
    pd.DataFrame({"Image Index": ["00000001_000.png"], "Finding Labels": ["Pneumonia|Covid"],
                  "Patient ID": [1]}).to_csv(root / "bad.csv", index=False)
    with pytest.raises(SpecError, match="unknown finding"):
        create_dataset("chestxray14", root=root, csv="bad.csv")


def test_rsna_pneumonia(imaging: Path, tmp_path: Path) -> None:
    root = tmp_path / "rsna"
    (root / "stage_2_train_images").mkdir(parents=True)
    src = imaging / "tiny/dicom/cxr/chest_CR_rsna_jpeg_baseline.dcm"
    for pid in ("aaa", "bbb", "ccc"):
        shutil.copy(src, root / "stage_2_train_images" / f"{pid}.dcm")
    pd.DataFrame({
        "patientId": ["aaa", "aaa", "bbb", "ccc", "ddd"],
        "x": [10, 300, np.nan, np.nan, np.nan], "y": [10, 20, np.nan, np.nan, np.nan],
        "width": [50, 60, np.nan, np.nan, np.nan], "height": [50, 60, np.nan, np.nan, np.nan],
        "Target": [1, 1, 0, 0, 0],
    }).to_csv(root / "stage_2_train_labels.csv", index=False)
    pd.DataFrame({"patientId": ["aaa", "aaa", "bbb", "ccc"],
                  "class": ["Lung Opacity", "Lung Opacity", "No Lung Opacity / Not Normal", "Normal"]}).to_csv(
        root / "stage_2_detailed_class_info.csv", index=False)
    ds = create_dataset("rsna-pneumonia", root=root)
    assert len(ds) == 3 and ds.partial  # ddd has no image
    y = ds.labels(["pneumonia", "lung_opacity", "no_opacity_not_normal", "normal"])
    assert y.to_dict("list") == {"pneumonia": [1.0, 0.0, 0.0], "lung_opacity": [1.0, 0.0, 0.0],
                                 "no_opacity_not_normal": [0.0, 1.0, 0.0], "normal": [0.0, 0.0, 1.0]}
    r = ds.records()[0]
    assert r.format == "dicom-image" and r.group == "aaa"
    from medzs.io.image import read_image

    assert read_image(r.path)["image"].shape == (1, 1024, 1024)


def test_image_folder(imaging: Path, tmp_path: Path) -> None:
    ds = create_dataset("image-folder", root=imaging / "tiny")
    assert ds.label_codes() == ["pneumonia"]  # text columns (source, subtype) are not labels
    assert len(ds) == 9 and ds.labels(["pneumonia"]).pneumonia.sum() == 4
    assert all(Path(r.path).is_file() for r in ds.records())
    pd.DataFrame({
        "file": ["a.png", "b.png", "c.png", "ct"], "patient": ["p1", "p1", "p2", "p3"],
        "effusion": [1, -1, None, 0], "split": ["train", "train", "test", "test"], "note": ["x", "y", "z", "w"],
    }).to_csv(tmp_path / "labels.csv", index=False)
    ds = create_dataset("image-folder", root=tmp_path, path_column="file", group_column="patient", modality="ct")
    assert ds.modality == "ct" and ds.label_codes() == ["effusion"]
    e = ds.labels(["effusion"]).effusion
    assert e["a.png"] == 1.0 and np.isnan(e["b.png"]) and np.isnan(e["c.png"]) and e["ct"] == 0.0
    assert ds.split("official-test") == ["c.png", "ct"]
    assert ds.groups()["b.png"] == "p1"
    assert_group_disjoint(ds.records("train"), ds.records("test"))
    with pytest.raises(SpecError, match="path_column 'path' not a column"):
        create_dataset("image-folder", root=tmp_path)
    with pytest.raises(SpecError, match="not found"):
        create_dataset("image-folder", root=tmp_path, labels="nope.csv")
    with pytest.raises(SpecError, match="unexpected options"):
        create_dataset("image-folder", root=tmp_path, colour="red")


def test_roots_required(tmp_path: Path) -> None:
    for name in ("chexpert", "chestxray14", "rsna-pneumonia", "image-folder"):
        with pytest.raises(SpecError, match=name):
            create_dataset(name, root=tmp_path / "missing")
