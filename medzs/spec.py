"""Input specifications: what an encoder declares it needs.

Preprocessing is derived from these specs (:func:`medzs.transforms.ecg.preprocess`), never written twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from medzs.errors import SpecError

#: The standard 12 ECG leads, in the conventional order (limb leads, augmented limb leads, precordial leads).
STANDARD_12_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)

_NORMALIZATIONS = ("none", "zscore", "minmax", "scale")


@dataclass(frozen=True)
class ECGInputSpec:
    """What an ECG encoder expects as input.

    Attributes:
        leads: Lead names in the order the encoder expects (matched by name, never by position).
        fs: Sampling frequency in Hz.
        duration_s: Duration in seconds; records are cropped (centre) or zero-padded to it.
        units: Physical units of the signal; medzs works in millivolts.
        bandpass_hz: ``(low, high)`` cut-offs in Hz for a zero-phase Butterworth band-pass, or None.
        normalization: ``"none"``, ``"zscore"`` (per lead), ``"minmax"`` (per record to [0, 1]) or
            ``"scale"`` (divide by ``scale``).
        scale: Divisor used by ``normalization="scale"``.
    """

    leads: tuple[str, ...] = STANDARD_12_LEADS
    fs: float = 500.0
    duration_s: float = 10.0
    units: str = "mV"
    bandpass_hz: tuple[float, float] | None = None
    normalization: str = "none"
    scale: float = 1.0
    modality: str = field(default="ecg", init=False)

    def __post_init__(self) -> None:
        if not self.leads:
            raise SpecError("ECGInputSpec.leads: expected at least one lead name")
        if len(set(self.leads)) != len(self.leads):
            raise SpecError(f"ECGInputSpec.leads: duplicate lead names in {self.leads}")
        if self.fs <= 0:
            raise SpecError(f"ECGInputSpec.fs: expected a positive sampling rate in Hz, got {self.fs}")
        if self.duration_s <= 0:
            raise SpecError(f"ECGInputSpec.duration_s: expected a positive duration in s, got {self.duration_s}")
        if self.units != "mV":
            raise SpecError(f"ECGInputSpec.units: medzs works in 'mV', got {self.units!r}")
        if self.normalization not in _NORMALIZATIONS:
            raise SpecError(
                f"ECGInputSpec.normalization: expected one of {_NORMALIZATIONS}, got {self.normalization!r}"
            )
        if self.bandpass_hz is not None:
            lo, hi = self.bandpass_hz
            if not (0 <= lo < hi < self.fs / 2):
                raise SpecError(
                    f"ECGInputSpec.bandpass_hz: expected 0 <= low < high < fs/2 ({self.fs / 2} Hz), "
                    f"got {self.bandpass_hz}"
                )

    @property
    def n_samples(self) -> int:
        """Number of samples per lead: ``round(fs * duration_s)``."""
        return int(round(self.fs * self.duration_s))

    @property
    def shape(self) -> tuple[int, int]:
        """Channel-first shape of one preprocessed record: ``(leads, samples)``."""
        return (len(self.leads), self.n_samples)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for JSON provenance)."""
        d = asdict(self)
        d["leads"] = list(self.leads)
        if self.bandpass_hz is not None:
            d["bandpass_hz"] = list(self.bandpass_hz)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ECGInputSpec:
        """Inverse of :meth:`to_dict`."""
        d = {k: v for k, v in d.items() if k != "modality"}
        if "leads" in d:
            d["leads"] = tuple(d["leads"])
        if d.get("bandpass_hz") is not None:
            d["bandpass_hz"] = tuple(d["bandpass_hz"])
        return cls(**d)
