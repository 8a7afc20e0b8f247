"""Imaging loaders and transforms on the real shared cases (../shared/data/imaging/{dicom,tiny,ct-series}).

Every file of ``imaging/dicom/`` and ``imaging/tiny/`` either loads with its right values or fails with a
specific error naming the file and the reason (see EXPECTED). The values come from the files' own headers
(window, spacing, photometric interpretation; checked with pydicom) and from the known quirks in the folders'
README/MANIFEST (RG1: MONOCHROME1 with PixelSpacing 0\\0; the CT series: file order != spatial order,
SliceThickness 3 mm but 2 mm steps).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="the imaging extra (pydicom) is not installed")
pytest.importorskip("nibabel", reason="the imaging extra (nibabel) is not installed")

from medzs.errors import RecordError
from medzs.io.ct import (
    list_series,
    read_ct_dicom,
    read_ct_series,
    read_nifti,
    read_volume,
)
from medzs.io.image import detect_image_format, read_image

# Metadata files that are not images (every other file is in EXPECTED).
NOT_IMAGES = {"MANIFEST.json", "PYDICOM_TEST_FILES_README.txt", "labels.csv"}
SERIES_20 = "tiny/dicom/ct_series_20slices"
SERIES_4 = "dicom/series_tiny_ct_head_4slices"

# path -> (reader, modality argument, expectation). Expectation: dict of values, or the error text (regex).
_CXR = {"modality": "cxr"}
EXPECTED: dict[str, tuple[str, dict, object]] = {
    # chest CR, NEMA WG04 RG1: MONOCHROME1, 15-bit, window 15000/30000, PixelSpacing 0\0 -> unknown
    "dicom/cr_dx/chest_CR_RG1_UNCR.dcm": ("image", _CXR, {"shape": (1955, 1841), "spacing": None, "mean": 0.7536,
                                          "voi": "WindowCenter/WindowWidth", "inverted": True, "fmt": "dicom",
                                          "flags": {"pixel_spacing_unknown"}, "ts": "1.2.840.10008.1.2.1"}),
    "dicom/cr_dx/chest_CR_RG1_J2KR.dcm": ("image", _CXR, {"shape": (1955, 1841), "spacing": None, "mean": 0.7536,
                                          "voi": "WindowCenter/WindowWidth", "inverted": True, "fmt": "dicom",
                                          "flags": {"pixel_spacing_unknown"}, "ts": "1.2.840.10008.1.2.4.90"}),
    "dicom/cr_dx/chest_CR_RG1_J2KI.dcm": ("image", _CXR, {"shape": (1955, 1841), "spacing": None, "mean": 0.7536,
                                          "voi": "WindowCenter/WindowWidth", "inverted": True, "fmt": "dicom",
                                          "flags": {"pixel_spacing_unknown"}, "ts": "1.2.840.10008.1.2.4.91"}),
    "tiny/dicom/cxr/chest_CR_RG1_J2KI.dcm": ("image", _CXR, {"shape": (1955, 1841), "spacing": None, "mean": 0.7536,
                                             "voi": "WindowCenter/WindowWidth", "inverted": True, "fmt": "dicom",
                                             "flags": {"pixel_spacing_unknown"}, "ts": "1.2.840.10008.1.2.4.91"}),
    # RSNA / NIH CR, JPEG baseline 8-bit MONOCHROME2, 0.168 mm; the "fake" copy only has PI set to MONOCHROME1
    "dicom/cr_dx/chest_CR_rsna_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm": (
        "image", _CXR, {"shape": (1024, 1024), "spacing": (0.168, 0.168), "mean": 0.6291, "voi": "BitsStored range",
                            "inverted": False, "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.4.50"}),
    "tiny/dicom/cxr/chest_CR_rsna_jpeg_baseline.dcm": (
        "image", _CXR, {"shape": (1024, 1024), "spacing": (0.168, 0.168), "mean": 0.6291, "voi": "BitsStored range",
                            "inverted": False, "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.4.50"}),
    "dicom/cr_dx/chest_CR_rsna_fake_MONOCHROME1.dcm": (
        "image", _CXR, {"shape": (1024, 1024), "spacing": (0.168, 0.168), "mean": 1 - 0.6291, "voi": "BitsStored range",
                            "inverted": True, "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.4.50"}),
    # highdicom DX thumbnail, MONOCHROME1, window 128/256, PixelSpacing = ImagerPixelSpacing 1.2\1.2012
    "dicom/cr_dx/chest_DX_highdicom_small.dcm": (
        "image", _CXR, {"shape": (169, 211), "spacing": (1.2, 1.2012), "mean": 0.3497, "voi": "WindowCenter/WindowWidth",
                            "inverted": True, "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.1"}),
    "tiny/dicom/cxr/chest_DX_small_MONOCHROME1.dcm": (
        "image", _CXR, {"shape": (169, 211), "spacing": (1.2, 1.2012), "mean": 0.3497, "voi": "WindowCenter/WindowWidth",
                            "inverted": True, "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.1"}),
    # NEMA RG3 tibia CR (Fuji), MONOCHROME1, 10-bit, window 550/1024, no spacing at all
    "dicom/cr_dx/extremity_CR_RG3_J2KI.dcm": ("image", _CXR, {"shape": (1760, 1760), "spacing": None, "mean": 0.6961,
                                              "voi": "WindowCenter/WindowWidth", "inverted": True, "fmt": "dicom",
                                              "flags": {"pixel_spacing_unknown", "body_part_not_chest"},
                                              "ts": "1.2.840.10008.1.2.4.91"}),
    # single CT slices read as 2-D images (file window, else the default CT window -1000..1000 HU)
    "dicom/ct/CQ500_head_693_UNCR.dcm": ("image", {"modality": "ct"}, {
        "shape": (512, 512), "spacing": (0.478516, 0.478516), "mean": 0.1574, "voi": "WindowCenter/WindowWidth", "inverted": False,
        "fmt": "dicom", "flags": {"mostly_saturated"}, "ts": "1.2.840.10008.1.2.1"}),
    "dicom/ct/CQ500_head_693_J2KR.dcm": ("image", {"modality": "ct"}, {
        "shape": (512, 512), "spacing": (0.478516, 0.478516), "mean": 0.1574, "voi": "WindowCenter/WindowWidth", "inverted": False,
        "fmt": "dicom", "flags": {"mostly_saturated"}, "ts": "1.2.840.10008.1.2.4.90"}),
    "dicom/ct/CQ500_head_693_J2KI.dcm": ("image", {"modality": "ct"}, {
        "shape": (512, 512), "spacing": (0.478516, 0.478516), "mean": 0.1739, "voi": "WindowCenter/WindowWidth", "inverted": False,
        "fmt": "dicom", "flags": {"mostly_saturated"}, "ts": "1.2.840.10008.1.2.4.91"}),
    "dicom/ct/CT_small.dcm": ("image", {"modality": "ct"}, {
        "shape": (128, 128), "spacing": (0.661468, 0.661468), "mean": 0.4404, "voi": "default CT window", "inverted": False,
        "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.1"}),
    "tiny/dicom/ct_single/CT_small.dcm": ("image", {"modality": "ct"}, {
        "shape": (128, 128), "spacing": (0.661468, 0.661468), "mean": 0.4404, "voi": "default CT window", "inverted": False,
        "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.1"}),
    "dicom/ct/lungmask_chest_ct_0.dcm": ("image", {"modality": "ct"}, {
        "shape": (512, 512), "spacing": (0.625, 0.625), "mean": None, "voi": "default CT window", "inverted": False, "fmt": "dicom",
        "flags": {"modality_tag_absent"}, "ts": "1.2.840.10008.1.2.1"}),
    "dicom/ct/lungmask_chest_ct_1.dcm": ("image", {"modality": "ct"}, {
        "shape": (512, 512), "spacing": (0.625, 0.625), "mean": None, "voi": "default CT window", "inverted": False, "fmt": "dicom",
        "flags": {"modality_tag_absent"}, "ts": "1.2.840.10008.1.2.1"}),
    "dicom/ct/neck_ct_jpegll_bad_sequence.dcm": ("image", {"modality": "ct"}, {
        "shape": (512, 512), "spacing": (0.287109375, 0.287109375), "mean": 0.4671, "voi": "WindowCenter/WindowWidth",
        "inverted": False, "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.4.70"}),
    "dicom/ct/pancreas_ct_j2k_explicitVR_UN.dcm": ("image", {"modality": "ct"}, {
        "shape": (512, 512), "spacing": (0.859375, 0.859375), "mean": 0.1665, "voi": "default CT window", "inverted": False,
        "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.4.90"}),
    # enhanced multi-frame CT: not a 2-D image; read_ct_dicom places the 2 frames (see test below)
    "dicom/ct/enhanced_ct_2frame.dcm": ("image", {"modality": "ct"}, r"NumberOfFrames: 2 frames.*read_ct_dicom"),
    # a DICOM ECG has no pixel data
    "dicom/ecg/waveform_ecg.dcm": ("image", _CXR, r"PixelData: absent \(SOP class 12-lead ECG Waveform Storage"),
    "tiny/dicom/ecg/waveform_ecg.dcm": ("image", _CXR, r"PixelData: absent \(SOP class 12-lead ECG Waveform Storage"),
    # other modalities: any-modality read works (RLE, JPEG-LS, JPEG extended 12-bit decoders)...
    "dicom/other/MR_small.dcm": ("image", {"modality": None}, {
        "shape": (64, 64), "spacing": (0.3125, 0.3125), "mean": 0.4434, "voi": "WindowCenter/WindowWidth", "inverted": False,
        "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.1"}),
    "dicom/other/MR_small_RLE.dcm": ("image", {"modality": None}, {
        "shape": (64, 64), "spacing": (0.3125, 0.3125), "mean": 0.4434, "voi": "WindowCenter/WindowWidth", "inverted": False,
        "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.5"}),
    "dicom/other/MR_small_jpeg_ls_lossless.dcm": ("image", {"modality": None}, {
        "shape": (64, 64), "spacing": (0.3125, 0.3125), "mean": 0.4434, "voi": "WindowCenter/WindowWidth", "inverted": False,
        "fmt": "dicom", "flags": set(), "ts": "1.2.840.10008.1.2.4.80"}),
    "dicom/other/NM_JPGExtended_12bit.dcm": ("image", {"modality": None}, {
        "shape": (1024, 256), "spacing": (2.26, 2.26), "mean": 0.0035, "voi": "BitsStored range", "inverted": False, "fmt": "dicom",
        "flags": set(), "ts": "1.2.840.10008.1.2.4.51"}),
    # Kermany 224x224 RGB JPEGs and the NIH 8-bit grey PNG
    **{
        f"tiny/kermany224/{p}": ("image", _CXR, {"shape": (224, 224), "spacing": None, "mean": m, "voi": None, "inverted": None,
                                                     "fmt": "jpeg", "flags": set(), "ts": None})
        for p, m in [("NORMAL/IM-0115-0001.jpeg", 0.5055), ("NORMAL/IM-0117-0001.jpeg", 0.3948),
                     ("NORMAL/IM-0119-0001.jpeg", 0.4786), ("NORMAL/IM-0122-0001.jpeg", 0.5217),
                     ("PNEUMONIA/person1000_bacteria_2931.jpeg", 0.4494),
                     ("PNEUMONIA/person1000_virus_1681.jpeg", 0.4994),
                     ("PNEUMONIA/person1001_bacteria_2932.jpeg", 0.4393),
                     ("PNEUMONIA/person1003_virus_1685.jpeg", 0.5762)]
    },
    "tiny/png/nih_00000001_000.png": ("image", _CXR, {"shape": (512, 512), "spacing": None, "mean": 0.5025, "voi": None,
                                                          "inverted": None, "fmt": "png", "flags": set(), "ts": None}),
    # NIfTI volumes (TotalSegmentator example): CT in HU, and its organ label mask
    "tiny/nifti/example_ct_sm.nii.gz": ("nifti", {}, {"shape": (30, 101, 122), "spacing": (3.0, 3.0, 3.0),
                                                          "value_range": (-1100.0, 1207.0), "flags": set()}),
    "tiny/nifti/example_seg.nii.gz": ("nifti", {}, {"shape": (30, 101, 122), "spacing": (3.0, 3.0, 3.0),
                                                        "value_range": (0.0, 117.0), "flags": {"not_hu_like"}}),
}
# every slice of the two CT series also loads on its own as a 2-D CT image
_SLICE_FILES = {SERIES_20: {"shape": (512, 512), "spacing": (0.9765625, 0.9765625)},
                SERIES_4: {"shape": (16, 16), "spacing": (0.488281, 0.488281)}}


def _all_files(imaging: Path) -> list[str]:
    out = []
    for top in ("dicom", "tiny"):
        out += [p.relative_to(imaging).as_posix() for p in sorted((imaging / top).rglob("*"))
                if p.is_file() and p.name not in NOT_IMAGES]
    return out


@pytest.fixture(scope="module")
def imaging(shared_data: Path) -> Path:
    return shared_data / "imaging"


def test_expected_covers_every_shared_file(imaging: Path) -> None:
    files = _all_files(imaging)
    assert len(files) == (26 - 1) + (37 - 1)  # the MANIFESTs' n_files minus the README / labels.csv
    uncovered = [f for f in files if f not in EXPECTED and not any(f.startswith(d + "/") for d in _SLICE_FILES)]
    assert uncovered == []


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_every_file_loads_or_fails_clearly(imaging: Path, rel: str) -> None:
    reader, kwargs, exp = EXPECTED[rel]
    path = imaging / rel
    if isinstance(exp, str):
        with pytest.raises(RecordError) as info:
            read_image(path, **kwargs)
        msg = str(info.value)
        assert msg.startswith(str(path)), msg  # names the file
        assert __import__("re").search(exp, msg), msg
        assert "\n" not in msg
        return
    if reader == "nifti":
        assert detect_image_format(path) == "nifti"
        s = read_nifti(path)
        assert s["volume"].shape == (1, *exp["shape"]) and s["volume"].dtype == np.float32
        assert s["spacing_mm"] == pytest.approx(exp["spacing"])
        assert (float(s["volume"].min()), float(s["volume"].max())) == pytest.approx(exp["value_range"])
        assert set(s["meta"]["quality_flags"]) == exp["flags"]
        assert s["modality"] == "ct" and s["meta"]["identifiers"] == {}
        return
    assert detect_image_format(path) == ("dicom-image" if exp["fmt"] == "dicom" else exp["fmt"])
    s = read_image(path, **kwargs)
    img = s["image"]
    assert img.shape == (1, *exp["shape"]) and img.dtype == np.float32
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    if exp["mean"] is not None:
        assert float(img.mean()) == pytest.approx(exp["mean"], abs=2e-3)
    if exp["spacing"] is None:
        assert s["spacing_mm"] is None
    else:
        assert s["spacing_mm"] == pytest.approx(exp["spacing"], abs=1e-4)
    meta = s["meta"]
    assert meta["format"] == exp["fmt"]
    assert set(meta["quality_flags"]) == exp["flags"]
    assert s["modality"] == (kwargs.get("modality") or ("mr" if "MR_" in rel else "nm" if "NM_" in rel else None))
    if exp["fmt"] == "dicom":
        assert meta["voi"]["source"] == exp["voi"]
        assert meta["inverted"] is exp["inverted"]
        assert meta["photometric_interpretation"] == ("MONOCHROME1" if exp["inverted"] else "MONOCHROME2")
        assert meta["transfer_syntax"]["uid"] == exp["ts"]
        # identifiers only under meta["identifiers"]
        flat = {k: v for k, v in meta.items() if k != "identifiers"}
        for v in meta["identifiers"].values():
            assert v not in map(str, flat.values())
    assert s["id"] == Path(rel).name.rsplit(".", 1)[0]


@pytest.mark.parametrize("series", sorted(_SLICE_FILES))
def test_every_series_slice_loads_as_a_ct_image(imaging: Path, series: str) -> None:
    files = sorted((imaging / series).iterdir())
    assert len(files) == (20 if "20" in series else 4)
    for f in files:
        s = read_image(f, modality="ct")
        assert s["image"].shape == (1, *_SLICE_FILES[series]["shape"])
        assert s["spacing_mm"] == pytest.approx(_SLICE_FILES[series]["spacing"])
        assert s["meta"]["voi"]["source"] == "WindowCenter/WindowWidth"


# -------------------------------------------------------------------------------------------- radiograph values
def test_rg1_monochrome1_polarity(imaging: Path) -> None:
    """MONOCHROME1 is inverted last: lungs (air) end darker than the mediastinum; raw values say the opposite."""
    path = imaging / "dicom/cr_dx/chest_CR_RG1_UNCR.dcm"
    img = read_image(path)["image"][0]
    raw = pydicom.dcmread(path).pixel_array.astype(float)
    h, w = img.shape
    rows = slice(int(0.35 * h), int(0.5 * h))
    right_lung, left_lung = img[rows, int(0.2 * w):int(0.33 * w)], img[rows, int(0.67 * w):int(0.8 * w)]
    mediastinum = img[rows, int(0.47 * w):int(0.53 * w)]
    assert right_lung.mean() < mediastinum.mean() - 0.2
    assert left_lung.mean() < mediastinum.mean() - 0.2
    raw_lung, raw_med = raw[rows, int(0.2 * w):int(0.33 * w)].mean(), raw[rows, int(0.47 * w):int(0.53 * w)].mean()
    assert raw_lung > raw_med  # stored MONOCHROME1: the lungs are the high values
    # exact pipeline: window 15000/30000 (LINEAR, PS3.3 C.11.2.1.2.1) over 0..2^15-1, then 1 - x
    c, wd = 15000.0, 30000.0
    y = np.clip(((raw - (c - 0.5)) / (wd - 1) + 0.5), 0, 1)
    np.testing.assert_allclose(img, 1.0 - y, atol=1e-4)


def test_fake_monochrome1_is_exact_inverse(imaging: Path) -> None:
    real = read_image(imaging / "dicom/cr_dx/chest_CR_rsna_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")
    fake = read_image(imaging / "dicom/cr_dx/chest_CR_rsna_fake_MONOCHROME1.dcm")
    np.testing.assert_allclose(fake["image"], 1.0 - real["image"], atol=1e-6)
    # 8-bit, no window: BitsStored scaling, value / 255
    raw = pydicom.dcmread(imaging / "tiny/dicom/cxr/chest_CR_rsna_jpeg_baseline.dcm").pixel_array
    np.testing.assert_allclose(real["image"][0], raw / 255.0, atol=1e-6)


@pytest.mark.parametrize(("a", "b", "lossless"), [
    ("dicom/cr_dx/chest_CR_RG1_UNCR.dcm", "dicom/cr_dx/chest_CR_RG1_J2KR.dcm", True),
    ("dicom/cr_dx/chest_CR_RG1_UNCR.dcm", "dicom/cr_dx/chest_CR_RG1_J2KI.dcm", False),
    ("dicom/ct/CQ500_head_693_UNCR.dcm", "dicom/ct/CQ500_head_693_J2KR.dcm", True),
    ("dicom/ct/CQ500_head_693_UNCR.dcm", "dicom/ct/CQ500_head_693_J2KI.dcm", False),
    ("dicom/other/MR_small.dcm", "dicom/other/MR_small_RLE.dcm", True),
    ("dicom/other/MR_small.dcm", "dicom/other/MR_small_jpeg_ls_lossless.dcm", True),
])
def test_codecs_agree_with_uncompressed(imaging: Path, a: str, b: str, lossless: bool) -> None:
    x = read_image(imaging / a, modality=None)["image"]
    y = read_image(imaging / b, modality=None)["image"]
    if lossless:
        np.testing.assert_array_equal(x, y)
    else:  # lossy JPEG 2000 (the CQ500 J2KI copy is a 3.5 kB, very lossy file)
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.85


def test_ct_slice_hu_window(imaging: Path) -> None:
    path = imaging / "dicom/ct/CT_small.dcm"
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * 1.0 + (-1024.0)
    s = read_image(path, modality="ct", window=(-1000.0, 400.0))
    np.testing.assert_allclose(s["image"][0], np.clip((hu + 1000) / 1400, 0, 1), atol=1e-6)
    assert s["meta"]["voi"] == {"source": "argument", "low": -1000.0, "high": 400.0}
    with pytest.raises(RecordError, match="window: expected"):
        read_image(path, modality="ct", window=(400.0, -1000.0))


def test_wrong_modality_is_refused(imaging: Path) -> None:
    with pytest.raises(RecordError, match=r"MR_small\.dcm: Modality: MR is not a cxr image"):
        read_image(imaging / "dicom/other/MR_small.dcm", modality="cxr")
    with pytest.raises(RecordError, match=r"Modality: CR is not a ct image"):
        read_image(imaging / "dicom/cr_dx/chest_CR_RG1_J2KI.dcm", modality="ct")


def test_imager_pixel_spacing_fallback_and_zero_spacing(imaging: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(imaging / "dicom/cr_dx/chest_DX_highdicom_small.dcm")
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.15, 0.16]
    ds.save_as(tmp_path / "dx.dcm")
    s = read_image(tmp_path / "dx.dcm")
    assert s["spacing_mm"] == pytest.approx((0.15, 0.16)) and s["meta"]["spacing_source"] == "ImagerPixelSpacing"
    ds.ImagerPixelSpacing = [0, 0]
    ds.save_as(tmp_path / "dx0.dcm")
    s = read_image(tmp_path / "dx0.dcm")
    assert s["spacing_mm"] is None and "pixel_spacing_unknown" in s["meta"]["quality_flags"]
    assert any("unknown spacing" in n for n in s["meta"]["spacing_notes"])
    rg1 = read_image(imaging / "tiny/dicom/cxr/chest_CR_RG1_J2KI.dcm")
    assert rg1["spacing_mm"] is None and rg1["meta"]["spacing_notes"] == ["PixelSpacing is 0\\0 (unknown spacing)"]


def test_undecodable_transfer_syntax_names_syntax_and_package(imaging: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000, JPEG2000MCLossless

    # a syntax pydicom has no decoder for
    ds = pydicom.dcmread(imaging / "dicom/other/MR_small_jpeg_ls_lossless.dcm")
    ds.file_meta.TransferSyntaxUID = JPEG2000MCLossless
    ds.save_as(tmp_path / "mc.dcm")
    with pytest.raises(RecordError, match=r"mc\.dcm: PixelData: transfer syntax 1\.2\.840\.10008\.1\.2\.4\.92 "
                                          r"\(JPEG 2000 Part 2 Multi-component"):
        read_image(tmp_path / "mc.dcm", modality=None)
    # JPEG 2000 when its plugins are missing (simulated): names pylibjpeg-openjpeg
    dec = get_decoder(JPEG2000)
    monkeypatch.setattr(dec, "_available", {})
    monkeypatch.setattr(dec, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0")})
    with pytest.raises(RecordError) as info:
        read_image(imaging / "dicom/cr_dx/extremity_CR_RG3_J2KI.dcm")
    msg = str(info.value)
    assert "extremity_CR_RG3_J2KI.dcm" in msg and "1.2.840.10008.1.2.4.91 (JPEG 2000 Image Compression)" in msg
    assert "pylibjpeg-openjpeg" in msg


def test_unsupported_photometric_interpretation(imaging: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(imaging / "dicom/other/MR_small.dcm")
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.save_as(tmp_path / "pal.dcm")
    with pytest.raises(RecordError, match=r"pal\.dcm: PhotometricInterpretation: PALETTE COLOR is not supported"):
        read_image(tmp_path / "pal.dcm", modality=None)


def test_not_an_image(tmp_path: Path, imaging: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(RecordError, match=r"x\.txt: unknown image format"):
        read_image(tmp_path / "x.txt")
    with pytest.raises(RecordError, match="file not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(RecordError, match="read_nifti"):
        read_image(imaging / "tiny/nifti/example_ct_sm.nii.gz")
    assert detect_image_format(tmp_path / "x.txt") is None
    assert detect_image_format(imaging / "dicom/ecg/waveform_ecg.dcm") is None
    assert detect_image_format(imaging / SERIES_20) == "dicom-series"
    assert detect_image_format(tmp_path) is None


def test_png_modes_agree(imaging: Path, tmp_path: Path) -> None:
    """L, RGB, RGBA, LA, P and 16-bit versions of the NIH PNG give the same grey image."""
    from PIL import Image

    ref = read_image(imaging / "tiny/png/nih_00000001_000.png")["image"]
    im = Image.open(imaging / "tiny/png/nih_00000001_000.png")
    for mode in ("RGB", "RGBA", "LA", "P"):
        im.convert(mode).save(tmp_path / f"{mode}.png")
        s = read_image(tmp_path / f"{mode}.png")
        np.testing.assert_allclose(s["image"], ref, atol=1.5 / 255 if mode == "P" else 1e-6, err_msg=mode)
        assert s["meta"]["quality_flags"] == []
    a16 = np.asarray(im, dtype=np.uint16) * 257
    Image.fromarray(a16).save(tmp_path / "g16.png")
    s = read_image(tmp_path / "g16.png")
    assert s["meta"]["bits"] == 16
    np.testing.assert_allclose(s["image"], ref, atol=1e-6)
    im.convert("RGB").save(tmp_path / "x.jpg", quality=95)
    assert read_image(tmp_path / "x.jpg")["meta"]["format"] == "jpeg"


def test_quality_flags_for_implausible_images(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((32, 32), 77, np.uint8)).save(tmp_path / "flat.png")
    assert "constant_image" in read_image(tmp_path / "flat.png")["meta"]["quality_flags"]
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 100
    rgba[0, 0, 1] = 50
    Image.fromarray(rgba).save(tmp_path / "col.png")
    flags = read_image(tmp_path / "col.png")["meta"]["quality_flags"]
    assert {"alpha_not_opaque", "colour_image"} <= set(flags)


# -------------------------------------------------------------------------------------------- CT volumes
def test_ct_series_spatial_order_spacing_and_hu(imaging: Path) -> None:
    s = read_ct_series(imaging / "ct-series/example_ct_dicom")
    vol, meta = s["volume"], s["meta"]
    assert vol.shape == (1, 20, 512, 512) and vol.dtype == np.float32
    assert s["spacing_mm"] == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert meta["slice_thickness_header"] == 3.0  # the header says 3 mm; the positions say 2 mm
    assert meta["slice_positions_mm"] == pytest.approx(np.arange(-804.5, -766.0, 2.0))
    assert meta["slice_steps_mm"] == pytest.approx([2.0] * 19)
    assert meta["quality_flags"] == [] and meta["axcodes"] == "SPL"
    # HU: stored 0..2757 (12 bits) with slope 1, intercept -1024
    assert meta["hu_range"] == pytest.approx((-1024.0, 1839.0))
    assert float(np.median(vol[0, :, :40, :40])) == pytest.approx(-1024.0, abs=30)  # air outside the body
    # spatial order: the file with the lowest z (-804.5, the LAST by file name) comes first
    files = sorted((imaging / "ct-series/example_ct_dicom").iterdir())
    last = pydicom.dcmread(files[-1])
    assert float(last.ImagePositionPatient[2]) == -804.5
    np.testing.assert_array_equal(vol[0, 0], last.pixel_array.astype(np.float32) - 1024.0)
    # affine: voxel (0, 0, 0) is that slice's ImagePositionPatient, converted LPS -> RAS
    ipp = np.array([float(v) for v in last.ImagePositionPatient])
    np.testing.assert_allclose(s["affine"] @ [0, 0, 0, 1], [-ipp[0], -ipp[1], ipp[2], 1.0])
    np.testing.assert_allclose(s["affine"] @ [19, 0, 0, 1], [-ipp[0], -ipp[1], ipp[2] + 38.0, 1.0])


def test_ct_series_order_does_not_depend_on_file_names(imaging: Path, tmp_path: Path) -> None:
    ref = read_ct_series(imaging / SERIES_20)
    files = sorted((imaging / SERIES_20).iterdir())
    rng = np.random.default_rng(0)
    for new, f in zip(rng.permutation(len(files)), files):
        shutil.copy(f, tmp_path / f"IMG{new:04d}")
    ds = pydicom.dcmread(tmp_path / "IMG0000")
    ds.InstanceNumber = 999  # InstanceNumber is never used either
    ds.save_as(tmp_path / "IMG0000")
    s = read_ct_series(tmp_path)
    np.testing.assert_array_equal(s["volume"], ref["volume"])
    np.testing.assert_allclose(s["affine"], ref["affine"])
    assert s["spacing_mm"] == ref["spacing_mm"]


def test_ct_series_missing_slice_reported(imaging: Path, tmp_path: Path) -> None:
    files = sorted((imaging / SERIES_20).iterdir())
    for f in files[:9] + files[10:]:
        shutil.copy(f, tmp_path / f.name)
    s = read_ct_series(tmp_path)
    assert s["volume"].shape[1] == 19 and s["spacing_mm"][0] == pytest.approx(2.0)
    assert "missing_slices" in s["meta"]["quality_flags"] and s["meta"]["n_missing_slices"] == 1


def test_ct_series_uneven_spacing_reported(imaging: Path, tmp_path: Path) -> None:
    for k, f in enumerate(sorted((imaging / SERIES_20).iterdir())[:6]):
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], [0, 2, 4, 6.5, 8, 10][k]]
        ds.save_as(tmp_path / f.name)
    s = read_ct_series(tmp_path)
    assert "uneven_spacing" in s["meta"]["quality_flags"] and s["spacing_mm"][0] == pytest.approx(2.0)
    assert "gantry_tilt" not in s["meta"]["quality_flags"]
    for k, f in enumerate(sorted(tmp_path.iterdir())):  # shift each slice 0.5 mm along y: a tilted stack
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], float(ds.ImagePositionPatient[1]) + 0.5 * k,
                                   ds.ImagePositionPatient[2]]
        ds.save_as(f)
    assert "gantry_tilt" in read_ct_series(tmp_path)["meta"]["quality_flags"]


def test_several_series_need_a_choice(imaging: Path, tmp_path: Path) -> None:
    shutil.copytree(imaging / SERIES_4, tmp_path / "head")
    for f in sorted((imaging / SERIES_20).iterdir())[:3]:
        shutil.copy(f, tmp_path / f.name)
    series = list_series(tmp_path)
    assert sorted(s["n_files"] for s in series) == [3, 4]
    with pytest.raises(RecordError) as info:
        read_ct_series(tmp_path)
    msg = str(info.value)
    assert "2 series" in msg and all(s["series_uid"] in msg for s in series)
    head = next(s for s in series if s["n_files"] == 4)
    v = read_ct_series(tmp_path, series_uid=head["series_uid"])
    assert v["volume"].shape == (1, 4, 16, 16)
    # the 4-slice head series: one slice far from the others -> reported as missing slices
    assert "missing_slices" in v["meta"]["quality_flags"]
    with pytest.raises(RecordError, match="not found"):
        read_ct_series(tmp_path, series_uid="1.2.3")


def test_rescale_missing_warns_and_is_recorded(imaging: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for f in sorted((imaging / SERIES_20).iterdir())[:3]:
        ds = pydicom.dcmread(f)
        del ds.RescaleSlope, ds.RescaleIntercept
        ds.save_as(tmp_path / f.name)
    with caplog.at_level(logging.WARNING, logger="medzs.io.ct"):
        s = read_ct_series(tmp_path, min_hu=None)
    assert "rescale_missing" in s["meta"]["quality_flags"]
    assert any("RescaleSlope" in r.getMessage() for r in caplog.records)
    assert float(s["volume"].min()) == 0.0  # stored values kept, no -1024 shift


def test_padding_values_replaced_by_air(imaging: Path, tmp_path: Path) -> None:
    """lungmask slices: no Modality tag, -2048 HU outside the reconstruction circle."""
    for f in ("lungmask_chest_ct_0.dcm", "lungmask_chest_ct_1.dcm"):
        shutil.copy(imaging / "dicom/ct" / f, tmp_path / f)
    s = read_ct_series(tmp_path)
    m = s["meta"]
    assert s["volume"].shape == (1, 2, 512, 512) and s["spacing_mm"] == pytest.approx((1.0, 0.625, 0.625))
    assert m["hu_range_raw"][0] == -2048.0 and m["hu_range"][0] == -1024.0
    assert m["padding_values_hu"] == [-2048.0] and 0.2 < m["padding_fraction"] < 0.25
    assert "modality_tag_absent" in m["quality_flags"]
    raw = read_ct_series(tmp_path, min_hu=None)
    assert float(raw["volume"].min()) == -2048.0


def test_enhanced_multiframe_ct(imaging: Path) -> None:
    s = read_ct_dicom(imaging / "dicom/ct/enhanced_ct_2frame.dcm")
    assert s["volume"].shape == (1, 2, 512, 512) and s["spacing_mm"] == pytest.approx((10.0, 0.388672, 0.388672))
    assert s["meta"]["slice_positions_mm"] == [149.0, 159.0]
    assert read_volume(imaging / "dicom/ct/enhanced_ct_2frame.dcm")["volume"].shape == (1, 2, 512, 512)


def test_nifti_affine_and_roundtrip_with_dicom(imaging: Path, tmp_path: Path) -> None:
    import nibabel as nib

    n = read_nifti(imaging / "ct-series/example_ct_sm.nii.gz")
    img = nib.load(imaging / "ct-series/example_ct_sm.nii.gz")
    data = img.get_fdata()
    assert n["volume"][0, 5, 7, 9] == pytest.approx(data[9, 7, 5])
    np.testing.assert_allclose(n["affine"] @ [5, 7, 9, 1], img.affine @ [9, 7, 5, 1])
    assert n["meta"]["axcodes"] == "RAS"
    mr = read_nifti(imaging / "ct-series/example_mr_sm.nii.gz")
    assert mr["meta"]["axcodes"] == "LPS" and "not_hu_like" in mr["meta"]["quality_flags"]
    # DICOM series -> NIfTI (nibabel, our affine) -> read_nifti gives the same volume and affine back
    s = read_ct_series(imaging / SERIES_20)
    aff_ijk = s["affine"].copy()
    aff_ijk[:, :3] = s["affine"][:, [2, 1, 0]]
    nib.save(nib.Nifti1Image(s["volume"][0].transpose(2, 1, 0), aff_ijk), tmp_path / "ct.nii.gz")
    back = read_volume(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(back["volume"], s["volume"])
    np.testing.assert_allclose(back["affine"], s["affine"], atol=1e-5)
    assert back["spacing_mm"] == pytest.approx(s["spacing_mm"])


# -------------------------------------------------------------------------------------------- transforms
def test_preprocess_image_modes(imaging: Path) -> None:
    from medzs.spec import ImageInputSpec
    from medzs.transforms.image import PreprocessImaged, preprocess_image

    sample = {"image": np.ones((1, 100, 200), np.float32), "id": "x"}
    pad = preprocess_image(sample, ImageInputSpec(size=(64, 64), resize="pad_resize"))
    assert pad.shape == (1, 64, 64)
    assert pad[0, :14].max() == 0.0 and pad[0, 18:46].min() == pytest.approx(1.0)  # black bars, aspect kept
    crop = preprocess_image(sample, ImageInputSpec(size=(64, 64), resize="center_crop"))
    assert crop.shape == (1, 64, 64) and crop.min() == pytest.approx(1.0)
    spec3 = ImageInputSpec(size=(32, 48), channels=3, normalization="mean_std", mean=(0.5, 0.5, 0.5),
                           std=(0.25, 0.25, 0.25))
    out = preprocess_image({"image": np.full((1, 10, 10), 0.75, np.float32)}, spec3)
    assert out.shape == (3, 32, 48) and np.allclose(out, 1.0)
    # pixel spacing: 1024 px at 0.168 mm -> 0.336 mm = 512 px, centre-padded to 600
    cxr = read_image(imaging / "tiny/dicom/cxr/chest_CR_rsna_jpeg_baseline.dcm")
    spec = ImageInputSpec(size=(600, 600), pixel_spacing_mm=0.336)
    y = preprocess_image(cxr, spec)
    assert y.shape == (1, 600, 600) and y[0, :40].max() == 0.0 and y[0, 44:556].mean() > 0.3
    d = PreprocessImaged(spec)(cxr)
    assert d["image"].shape == (1, 600, 600) and d["spacing_mm"] == (0.336, 0.336)
    assert cxr["image"].shape == (1, 1024, 1024)  # input untouched
    rg1 = read_image(imaging / "tiny/dicom/cxr/chest_CR_RG1_J2KI.dcm")  # spacing unknown: plain resize
    assert preprocess_image(rg1, spec).shape == (1, 600, 600)
    with pytest.raises(RecordError, match="image shape"):
        preprocess_image({"image": np.zeros((2, 5, 5)), "path": "p"}, spec)


def test_preprocess_volume_orientation_is_exact(imaging: Path) -> None:
    """With the series' own grid, Orientation to RAS (output axes SAR) only flips H (P->A) and W (L->R)."""
    pytest.importorskip("monai", reason="the imaging extra (monai) is not installed")
    from medzs.spec import VolumeInputSpec
    from medzs.transforms.image import PreprocessVolumed, preprocess_volume

    full = read_ct_series(imaging / SERIES_20)
    # a non-square corner keeps it fast and catches any H/W swap (voxel (0, 0, 0) and the affine are unchanged)
    s = dict(full, volume=np.ascontiguousarray(full["volume"][:, :, 200:296, 160:288]))
    s["affine"] = full["affine"].copy()
    s["affine"][:, 3] = full["affine"] @ [0, 200, 160, 1]
    spec = VolumeInputSpec(shape=(20, 96, 128), spacing_mm=(2.0, 0.9765625, 0.9765625), hu_window=(-1024.0, 3071.0))
    x = preprocess_volume(s, spec)
    assert x.shape == (1, 20, 96, 128)
    expected = (s["volume"][:, :, ::-1, ::-1] + 1024.0) / 4095.0
    np.testing.assert_allclose(x, expected, atol=1e-4)
    small = VolumeInputSpec(shape=(16, 96, 96), spacing_mm=(4.0, 3.0, 3.0), channels=3)
    d = PreprocessVolumed(small)(s)
    assert d["volume"].shape == (3, 16, 96, 96) and 0.0 <= d["volume"].min() and d["volume"].max() <= 1.0
    import nibabel as nib

    assert "".join(nib.orientations.aff2axcodes(d["affine"])) == "SAR"
    assert np.linalg.norm(d["affine"][:3, :3], axis=0) == pytest.approx([4.0, 3.0, 3.0])
    # the NIfTI path goes through the same transforms
    n = preprocess_volume(read_nifti(imaging / "tiny/nifti/example_ct_sm.nii.gz"), small)
    assert n.shape == (3, 16, 96, 96)


def test_lut_sequences_then_inversion(imaging: Path, tmp_path: Path) -> None:
    """Modality LUT sequence, then VOI LUT sequence (preferred over the window), then MONOCHROME1 inversion."""
    from pydicom.dataset import Dataset as DicomDataset

    ds = pydicom.dcmread(imaging / "dicom/cr_dx/chest_DX_highdicom_small.dcm")  # 8-bit MONOCHROME1
    raw = ds.pixel_array.astype(np.float64)
    voi = DicomDataset()
    voi.LUTDescriptor = [256, 0, 8]
    voi.LUTData = np.arange(255, -1, -1, dtype=np.uint16).tobytes()  # y = 255 - x
    ds.VOILUTSequence = [voi]
    ds.save_as(tmp_path / "voi.dcm")
    s = read_image(tmp_path / "voi.dcm")
    assert s["meta"]["voi"] == {"source": "VOILUTSequence", "output_bits": 8}
    np.testing.assert_allclose(s["image"][0], 1.0 - (255.0 - raw) / 255.0, atol=1e-6)
    del ds.VOILUTSequence, ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth
    mod = DicomDataset()
    mod.LUTDescriptor = [256, 0, 16]
    mod.ModalityLUTType = "OD"
    mod.LUTData = (4 * np.arange(256, dtype=np.uint16)).tobytes()  # 16-bit LUT: output range 0..65535
    ds.ModalityLUTSequence = [mod]
    ds.save_as(tmp_path / "mod.dcm")
    s = read_image(tmp_path / "mod.dcm")
    assert s["meta"]["modality_lut"] == "ModalityLUTSequence"
    np.testing.assert_allclose(s["image"][0], 1.0 - 4.0 * raw / 65535.0, atol=1e-6)
    mod.LUTDescriptor = [256, 0, 12]  # pydicom 3.0 cannot apply a 12-bit LUT: a clear error, not a crash
    ds.save_as(tmp_path / "mod12.dcm")
    with pytest.raises(RecordError, match=r"mod12\.dcm: Modality LUT: cannot apply it"):
        read_image(tmp_path / "mod12.dcm")
    rg3 = read_image(imaging / "dicom/cr_dx/extremity_CR_RG3_J2KI.dcm")
    assert rg3["meta"]["body_part"] == "EXTREMITY"


def test_read_any_image_dispatch(imaging: Path, tmp_path: Path) -> None:
    from medzs.io.image import read_any_image

    assert read_any_image(imaging / "tiny/png/nih_00000001_000.png")["image"].shape == (1, 512, 512)
    ct = read_any_image(imaging / "tiny/dicom/ct_single/CT_small.dcm", modality="ct")
    assert ct["image"].shape == (1, 128, 128) and ct["modality"] == "ct"
    assert read_any_image(imaging / SERIES_4, modality="ct")["volume"].shape == (1, 4, 16, 16)
    assert read_any_image(imaging / "tiny/nifti/example_ct_sm.nii.gz", "nifti", "ct")["volume"].shape == (1, 30, 101, 122)
    assert read_any_image(imaging / "dicom/ct/enhanced_ct_2frame.dcm", modality="ct")["volume"].shape == (1, 2, 512, 512)
    with pytest.raises(RecordError, match=r"waveform_ecg\.dcm: not an imaging input"):
        read_any_image(imaging / "tiny/dicom/ecg/waveform_ecg.dcm")
    with pytest.raises(RecordError, match="file not found"):
        read_any_image(tmp_path / "nothing.png")
    with pytest.raises(RecordError, match="format 'tiff'"):
        read_any_image(imaging / "tiny/png/nih_00000001_000.png", format="tiff")
