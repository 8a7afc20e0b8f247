"""Helpers shared by the imaging readers (:mod:`medzs.io.image`, :mod:`medzs.io.ct`): format detection by
content, DICOM identifiers, and the decoder error message. Import the public names from :mod:`medzs.io.image`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medzs.errors import RecordError

#: Values :func:`detect_image_format` returns.
IMAGE_FORMATS: tuple[str, ...] = ("dicom-image", "dicom-series", "png", "jpeg", "nifti")

#: Transfer syntax UID -> the pip packages that let pydicom decode it (PS3.5 Annex A; pydicom 3 pixel plugins).
DECODER_PACKAGES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg + pylibjpeg-libjpeg (or pillow, or python-gdcm)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg + pylibjpeg-libjpeg (or pillow, or python-gdcm)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg + pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.70": "pylibjpeg + pylibjpeg-libjpeg (or python-gdcm)",
    "1.2.840.10008.1.2.4.80": "pylibjpeg + pylibjpeg-libjpeg (or pyjpegls, or python-gdcm)",
    "1.2.840.10008.1.2.4.81": "pylibjpeg + pylibjpeg-libjpeg (or pyjpegls, or python-gdcm)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg + pylibjpeg-openjpeg (or pillow built with OpenJPEG, or python-gdcm)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg + pylibjpeg-openjpeg (or pillow built with OpenJPEG, or python-gdcm)",
    "1.2.840.10008.1.2.4.201": "pylibjpeg + pylibjpeg-openjpeg>=2.2",
    "1.2.840.10008.1.2.4.202": "pylibjpeg + pylibjpeg-openjpeg>=2.2",
    "1.2.840.10008.1.2.4.203": "pylibjpeg + pylibjpeg-openjpeg>=2.2",
    "1.2.840.10008.1.2.5": "pydicom itself (or pylibjpeg + pylibjpeg-rle)",
}

#: Identifying DICOM attributes copied (when present) to ``meta["identifiers"]``: keyword -> key. Shared by the
#: image, CT and ECG-waveform readers (medzs.io.dicom_ecg), so every DICOM reader keeps the same identifiers apart.
DICOM_IDENTIFIERS: dict[str, str] = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "AdmissionID": "admission_id",
    "RequestingPhysician": "requesting_physician",
    "OtherPatientIDs": "other_patient_ids",
    "PatientBirthDate": "birth_date",
    "PatientAddress": "patient_address",
    "AccessionNumber": "accession_number",
    "StudyID": "study_id",
    "StudyInstanceUID": "study_instance_uid",
    "SeriesInstanceUID": "series_instance_uid",
    "SOPInstanceUID": "sop_instance_uid",
    "FrameOfReferenceUID": "frame_of_reference_uid",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "SeriesDate": "series_date",
    "AcquisitionDate": "acquisition_date",
    "AcquisitionDateTime": "acquisition_datetime",
    "ContentDate": "content_date",
    "InstitutionName": "institution_name",
    "InstitutionAddress": "institution_address",
    "ReferringPhysicianName": "referring_physician",
    "OperatorsName": "operators",
    "PerformingPhysicianName": "performing_physician",
    "NameOfPhysiciansReadingStudy": "reading_physicians",
    "StationName": "station_name",
    "DeviceSerialNumber": "device_serial_number",
}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

# --------------------------------------------------------------------------------------------------- detection
def _is_nifti(path: Path, head: bytes) -> bool:
    """NIfTI-1/2 header (``sizeof_hdr`` 348 or 540, magic ``n+1``/``ni1``/``n+2``/``ni2``), gzipped or not."""
    if head[:2] == b"\x1f\x8b":
        import gzip

        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(544)
        except (OSError, EOFError):
            return False
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        return True
    return len(head) >= 540 and head[4:7] in (b"n+2", b"ni2")


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _dicom_has_pixels(path: Path) -> bool:
    """True when the DICOM header declares an image (Rows present); False for waveforms, reports, DICOMDIR."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "SOPClassUID"])
    except Exception:  # noqa: BLE001 - detection never raises
        return False
    return "Rows" in ds


def detect_image_format(path: str | os.PathLike[str]) -> str | None:
    """Detect an imaging input format from the content (not the file name).

    Args:
        path: A file or a folder.

    Returns:
        ``"dicom-image"`` (DICOM Part 10 file with pixel data), ``"png"``, ``"jpeg"``, ``"nifti"`` (``.nii`` or
        ``.nii.gz``, by header), ``"dicom-series"`` (a folder holding at least one DICOM image file), or None
        (not an imaging input medzs reads, e.g. a DICOM ECG waveform or a text file).
    """
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file() and _is_dicom_file(f) and _dicom_has_pixels(f):
                return "dicom-series"
        return None
    try:
        with open(p, "rb") as fh:
            head = fh.read(544)
    except OSError:
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom-image" if _dicom_has_pixels(p) else None
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if _is_nifti(p, head):
        return "nifti"
    return None


def _identifiers(ds: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for kw, key in DICOM_IDENTIFIERS.items():
        v = ds.get(kw)
        if v is not None and str(v).strip():
            out[key] = str(v)
    return out


def _decode_error(p: Path, ds: Any, exc: Exception) -> RecordError:
    """A RecordError naming the transfer syntax and what would decode it."""
    from pydicom.uid import UID

    tsuid = UID(str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""))
    ts_name = tsuid.name if tsuid else "absent"
    if not tsuid:
        return RecordError(f"{p}: TransferSyntaxUID: absent from the file meta, cannot decode pixel data ({exc})")
    packages = DECODER_PACKAGES.get(str(tsuid))
    missing = ""
    try:
        from pydicom.pixels import get_decoder

        dec = get_decoder(tsuid)
        if not dec.is_available:
            missing = "; pydicom plugins missing: " + ", ".join(dec.missing_dependencies)
            return RecordError(
                f"{p}: PixelData: transfer syntax {tsuid} ({ts_name}) cannot be decoded here; install "
                f"{packages or 'a pydicom pixel-data plugin for it'}{missing}"
            )
    except NotImplementedError:
        return RecordError(
            f"{p}: PixelData: transfer syntax {tsuid} ({ts_name}) has no pixel-data decoder in pydicom "
            f"{'(install ' + packages + ')' if packages else '(convert the file, e.g. with dcmtk dcmdjpeg/gdcmconv)'}"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RecordError(
        f"{p}: PixelData: decoding transfer syntax {tsuid} ({ts_name}) failed ({first}); "
        f"decoders for it: {packages or 'pydicom'}"
    )
