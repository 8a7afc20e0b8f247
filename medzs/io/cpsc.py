"""Read the original China Physiological Signal Challenge 2018 (CPSC2018) ``.mat`` records.

Each record ``A0001.mat`` .. ``A6877.mat`` is a MATLAB 5 file with one struct ``ECG`` whose fields are ``sex``
(``'Male'``/``'Female'``), ``age`` (years) and ``data`` (12 x N float, millivolts). All records are sampled at
500 Hz, last 6-60 s, and store the leads in the order I, II, III, aVR, aVL, aVF, V1-V6 (Liu et al.,
"An Open Access Database for Evaluating the Algorithms of Electrocardiogram Rhythm and Morphology Abnormality
Detection", J Med Imaging Health Inform 8:1368-1373, 2018). Labels are not in the ``.mat`` files but in the
challenge's ``REFERENCE.csv`` (``Recording,First_label,Second_label,Third_label`` with class numbers 1-9).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.io._ecg_common import build_sample, normalize_sex, to_float
from medzs.spec import STANDARD_12_LEADS

logger = logging.getLogger(__name__)

#: CPSC2018 sampling frequency in Hz.
CPSC_FS = 500.0
#: CPSC2018 lead order (rows of ``ECG.data``).
CPSC_LEADS: tuple[str, ...] = STANDARD_12_LEADS


def read_reference(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read the official CPSC2018 ``REFERENCE.csv`` (record -> class names).

    Args:
        path: CSV with header ``Recording,First_label,Second_label,Third_label``; labels are class numbers 1-9
            (1 Normal, 2 AF, 3 I-AVB, 4 LBBB, 5 RBBB, 6 PAC, 7 PVC, 8 STD, 9 STE).

    Returns:
        ``{"A0001": ["Normal"], ...}``; a record's classes in the file's order.

    Raises:
        RecordError: missing column or a label outside 1-9.
    """
    from medzs.data.vocab import CPSC2018_CLASSES

    p = Path(path)
    out: dict[str, list[str]] = {}
    try:
        fh = p.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise RecordError(f"{p.name}: cannot read ({exc}); expected the CPSC2018 REFERENCE.csv") from exc
    with fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if "Recording" not in cols or "First_label" not in cols:
            raise RecordError(f"{p.name}: columns {cols} (expected Recording, First_label[, Second_label, ...])")
        label_cols = [c for c in cols if c.endswith("_label")]
        for row in reader:
            classes: list[str] = []
            for c in label_cols:
                v = (row.get(c) or "").strip()
                if not v:
                    continue
                try:
                    classes.append(CPSC2018_CLASSES[int(float(v))])
                except (ValueError, KeyError) as exc:
                    raise RecordError(
                        f"{p.name}: record {row['Recording']!r} {c} = {v!r} (expected a class number 1-9)"
                    ) from exc
            out[row["Recording"].strip()] = classes
    return out


def read_cpsc(
    path: str | os.PathLike[str],
    reference: str | os.PathLike[str] | dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Read a CPSC2018 ``.mat`` record as a medzs sample.

    Args:
        path: The ``.mat`` file.
        reference: Optional labels: the path of ``REFERENCE.csv`` or the dict from :func:`read_reference`.

    Returns:
        Sample dict (``docs/architecture.md``): 12 leads at 500 Hz in mV. ``meta``: ``format="cpsc2018"``,
        ``age`` (years or None), ``sex`` (``"male"``/``"female"``/None), and with ``reference`` also
        ``cpsc2018`` (class names), ``snomed_ct`` and ``scp_ecg`` (via :mod:`medzs.data.vocab`).
        There are no identifiers in these files (``meta["identifiers"] == {}``).

    Raises:
        RecordError: unreadable or truncated file, no ``ECG`` struct, ``data`` not 12 x N, non-finite values.
    """
    import scipy.io

    from medzs.io._ecg_common import check_file_size

    p = Path(path)
    check_file_size(p)
    try:
        mat = scipy.io.loadmat(str(p), simplify_cells=True)
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError, TypeError, OSError, MatReadError, ...
        raise RecordError(f"{p.name}: unreadable MATLAB file ({exc}); expected a complete CPSC2018 .mat") from exc
    ecg = mat.get("ECG")
    if not isinstance(ecg, dict):
        keys = [k for k in mat if not k.startswith("__")]
        raise RecordError(f"{p.name}: struct 'ECG' missing (found {keys}; expected struct ECG with sex, age, data)")
    if "data" not in ecg:
        raise RecordError(f"{p.name}: field ECG.data missing (expected a 12 x N matrix in mV)")
    data = np.asarray(ecg["data"])
    if data.ndim != 2 or data.shape[0] != len(CPSC_LEADS) or data.shape[1] == 0:
        raise RecordError(f"{p.name}: ECG.data has shape {data.shape} (expected (12, N) with N > 0)")
    if not np.issubdtype(data.dtype, np.number):
        raise RecordError(f"{p.name}: ECG.data has dtype {data.dtype} (expected numbers in mV)")
    age = ecg.get("age")
    age = to_float(np.asarray(age).ravel()[0]) if age is not None and np.asarray(age).size else None
    sex = ecg.get("sex")
    sex = normalize_sex(np.asarray(sex).ravel()[0] if sex is not None and np.asarray(sex).size else None)
    meta: dict[str, Any] = {"age": age, "sex": sex, "n_samples": int(data.shape[1])}
    if reference is not None:
        from medzs.data.vocab import map_codes

        ref = reference if isinstance(reference, dict) else read_reference(reference)
        if p.stem not in ref:
            raise RecordError(f"{p.name}: record {p.stem!r} not in the reference labels (expected a row for it)")
        classes = list(ref[p.stem])
        meta["cpsc2018"] = classes
        meta["labels"] = classes
        meta["snomed_ct"] = map_codes(classes, "cpsc2018", "snomed_ct")
        meta["scp_ecg"] = map_codes(classes, "cpsc2018", "scp_ecg")
    logger.debug("read_cpsc: 12 leads x %d samples", data.shape[1])
    return build_sample(data, list(CPSC_LEADS), CPSC_FS, p, "cpsc2018", meta, {})


__all__ = ["CPSC_FS", "CPSC_LEADS", "read_cpsc", "read_reference"]
