"""Measurements of medical signals (rates, intervals, axes, amplitudes) with units and reasons for NaNs.

- :mod:`medzs.measure.ecg`: 12-lead ECG measurements (:func:`~medzs.measure.ecg.measure_ecg`) named and
  unit-matched to :data:`medzs.knowledge.schema.MEASUREMENTS`, used by the knowledge-criteria scorer
  (:mod:`medzs.criteria`).

Importing this package is cheap; neurokit2 is imported only when a record is measured.
"""

from __future__ import annotations

from medzs.measure.ecg import PER_LEAD, Measurements, measure_ecg, measure_many

__all__ = ["PER_LEAD", "Measurements", "measure_ecg", "measure_many"]
