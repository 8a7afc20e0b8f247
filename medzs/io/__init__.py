"""Record loaders: files -> medzs sample dicts (see docs/architecture.md).

- :func:`medzs.io.detect.read_ecg`: any supported ECG file, format detected by content.
- :func:`medzs.io.wfdb.read_wfdb`: WFDB records (PhysioNet, PTB-XL).
- :func:`medzs.io.cinc.read_cinc`: PhysioNet/CinC 2020-2021 ``.hea`` + ``.mat``.
- :func:`medzs.io.cpsc.read_cpsc`: CPSC2018 original ``.mat``.
- :func:`medzs.io.dicom_ecg.read_dicom_ecg`: DICOM 12-lead ECG Waveform Storage.
- :func:`medzs.io.muse.read_muse`: GE MUSE XML.
- :func:`medzs.io.philips.read_philips`: Philips Sierra XML (XLI-compressed).
- :func:`medzs.io.hl7aecg.read_hl7aecg` / :func:`medzs.io.hl7aecg.write_hl7aecg`: HL7 aECG XML.
- :func:`medzs.io.image.read_image`: 2-D images (DICOM CR/DX/CT slice, PNG, JPEG) -> ``(1, H, W)`` in [0, 1];
  :func:`medzs.io.image.detect_image_format`: imaging format by content.
- :func:`medzs.io.ct.read_ct_series` / :func:`~medzs.io.ct.read_ct_dicom` / :func:`~medzs.io.ct.read_nifti` /
  :func:`~medzs.io.ct.read_volume`: CT volumes -> ``(1, D, H, W)`` HU with spacing and affine;
  :func:`medzs.io.ct.list_series`.

Loaders import their format libraries lazily; ``import medzs.io`` stays cheap.

Every reader refuses a file above 256 MiB (:data:`medzs.io._ecg_common.MAX_FILE_BYTES`; ``MEDZS_MAX_FILE_MB``
overrides it) with a one-line :class:`~medzs.errors.RecordError` before reading it.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "read_ecg": "medzs.io.detect",
    "detect_format": "medzs.io.detect",
    "read_wfdb": "medzs.io.wfdb",
    "read_cinc": "medzs.io.cinc",
    "read_cpsc": "medzs.io.cpsc",
    "read_dicom_ecg": "medzs.io.dicom_ecg",
    "read_muse": "medzs.io.muse",
    "read_philips": "medzs.io.philips",
    "read_hl7aecg": "medzs.io.hl7aecg",
    "write_hl7aecg": "medzs.io.hl7aecg",
    # imaging
    "read_image": "medzs.io.image",
    "read_any_image": "medzs.io.image",
    "detect_image_format": "medzs.io.image",
    "read_ct_series": "medzs.io.ct",
    "read_ct_dicom": "medzs.io.ct",
    "read_nifti": "medzs.io.ct",
    "read_volume": "medzs.io.ct",
    "list_series": "medzs.io.ct",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medzs.io' has no attribute {name!r}")
