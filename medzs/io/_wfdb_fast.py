"""A fast path for the common WFDB case: one format-16 signal file, plain header, no invalid samples.

``wfdb.rdrecord`` spends ~3.6 ms per PTB-XL record parsing the header (profiled on the 2-core development box;
benchmarks/ecg_throughput.py), more than the rest of reading and preprocessing together. This module reads the same
records from a split of the header text and :func:`numpy.fromfile` (~0.1 ms). Anything unusual -- several signal
files, another format, byte offsets, skew, several samples per frame, multi-segment or counter-frequency record
lines, a size that does not match, invalid (-32768) samples -- returns None and :func:`medzs.io.wfdb.read_wfdb` falls
back to the ``wfdb`` package. ``tests/test_io_wfdb.py`` checks that both paths give equal signals and metadata on
every shared WFDB record.

WFDB header and signal formats: https://physionet.org/physiotools/wag/header-5.htm, signal-5.htm.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

_GAIN = re.compile(r"^(?P<gain>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)(\((?P<baseline>[-+]?\d+)\))?(/(?P<units>\S+))?$")
_INVALID_16 = -32768


def read_header_fast(text: str) -> dict[str, Any] | None:
    """Parse a single-segment header whose signals share one format-16 file; None when anything is unusual."""
    lines = text.splitlines()
    comments: list[str] = []
    spec: list[str] = []
    for line in lines:
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            comments.append(s.lstrip("#").strip())
        else:
            spec.append(s)
    if not spec:
        return None
    rec = spec[0].split()
    if len(rec) < 4 or "/" in rec[0] or "/" in rec[2]:
        return None
    try:
        n_sig, fs, n_samples = int(rec[1]), float(rec[2]), int(rec[3])
    except ValueError:
        return None
    if n_sig < 1 or fs <= 0 or n_samples < 1 or len(spec) != n_sig + 1:
        return None
    files, gains, baselines, units, checksums, names, init = [], [], [], [], [], [], []
    for s in spec[1:]:
        f = s.split(maxsplit=8)
        if len(f) < 9 or f[1] != "16":
            return None
        m = _GAIN.match(f[2])
        if m is None or m.group("baseline") is None:
            return None
        try:
            gain = float(m.group("gain"))
            adc_zero, init_val, checksum, block = int(f[4]), int(f[5]), int(f[6]), int(f[7])
        except ValueError:
            return None
        if gain <= 0 or block != 0:
            return None
        files.append(f[0])
        gains.append(gain)
        baselines.append(int(m.group("baseline")))
        units.append(m.group("units") or "mV")
        init.append(init_val)
        checksums.append(checksum)
        names.append(f[8].strip())
        del adc_zero
    if len(set(files)) != 1 or "/" in files[0] or files[0] == "~":
        return None
    return {"record_name": rec[0], "n_sig": n_sig, "fs": fs, "n_samples": n_samples, "file": files[0],
            "gains": gains, "baselines": baselines, "units": units, "checksums": checksums, "names": names,
            "init": init, "comments": comments}


def read_signal_fast(header: Path, h: dict[str, Any], verify_checksum: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """``(digital (samples, leads) int16, physical (samples, leads) float64)`` or None to fall back to wfdb.

    Returns None on a size mismatch or any invalid (-32768) sample, so that wfdb's path reports those cases.
    """
    dat = header.parent / h["file"]
    n, k = h["n_samples"], h["n_sig"]
    try:
        if dat.stat().st_size != 2 * n * k:
            return None
        d = np.fromfile(dat, dtype="<i2")
    except OSError:
        return None
    d = d.reshape(n, k)
    if (d == _INVALID_16).any():
        return None
    if verify_checksum:
        sums = d.sum(axis=0, dtype=np.int64)
        if any((int(a) - int(b)) % 65536 != 0 for a, b in zip(sums, h["checksums"], strict=True)):
            return None  # wfdb's path names the leads
    phys = (d.astype(np.float64) - np.asarray(h["baselines"], dtype=np.float64)) / np.asarray(h["gains"])
    return d, phys
