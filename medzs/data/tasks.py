"""Zero-shot classification tasks: class lists, knowledge-base ids and display names.

The PTB-XL tasks (Wagner et al., Sci Data 7:154, 2020, doi:10.1038/s41597-020-0495-6) use the label sets of
:mod:`medzs.data.ptbxl` (Strodthoff et al. 2021 benchmark, class order of MERL's split files).

Knowledge-base ids (docs/architecture.md): ``ecg.scp.<CODE>`` for SCP-ECG statements, ``ecg.superclass.<CODE>``
for the 5 diagnostic superclasses, ``ecg.subclass.<CODE>`` for diagnostic subclasses that are not themselves a
statement (:data:`SUBCLASS_ONLY`). Subclasses named like a statement map to that statement's entry
(``ecg.scp.<CODE>``). In every id, characters other than letters, digits and ``_`` are replaced by ``_``
(:func:`kb_code`) so that ids are file names: ``LAO/LAE`` -> ``ecg.scp.LAO_LAE``, ``PRC(S)`` -> ``ecg.scp.PRC_S_``,
``LAFB/LPFB`` -> ``ecg.subclass.LAFB_LPFB``; these are the ids of the entries in ``knowledge/ecg/``.

``LAO/LAE`` and ``RAO/RAE`` are both statements and one-statement subclasses, so they map to ``ecg.scp.*`` in every
task. (docs/architecture.md cites ``LAO/LAE`` as an example of a subclass that is not a statement,
``ecg.subclass.LAO_LAE``; PTB-XL's ``scp_statements.csv`` lists it as a statement.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from medzs.data.ptbxl import FORM_CODES, RHYTHM_CODES, STATEMENT_CODES, SUBCLASSES, SUPERCLASSES
from medzs.errors import SpecError

#: English description of each of the 71 SCP-ECG statements, verbatim from PTB-XL's ``scp_statements.csv``
#: (``description`` column; CC-BY-4.0, Wagner et al. 2020).
STATEMENT_DESCRIPTIONS: dict[str, str] = {
    "NDT": "non-diagnostic T abnormalities",
    "NST_": "non-specific ST changes",
    "DIG": "digitalis-effect",
    "LNGQT": "long QT-interval",
    "NORM": "normal ECG",
    "IMI": "inferior myocardial infarction",
    "ASMI": "anteroseptal myocardial infarction",
    "LVH": "left ventricular hypertrophy",
    "LAFB": "left anterior fascicular block",
    "ISC_": "non-specific ischemic",
    "IRBBB": "incomplete right bundle branch block",
    "1AVB": "first degree AV block",
    "IVCD": "non-specific intraventricular conduction disturbance (block)",
    "ISCAL": "ischemic in anterolateral leads",
    "CRBBB": "complete right bundle branch block",
    "CLBBB": "complete left bundle branch block",
    "ILMI": "inferolateral myocardial infarction",
    "LAO/LAE": "left atrial overload/enlargement",
    "AMI": "anterior myocardial infarction",
    "ALMI": "anterolateral myocardial infarction",
    "ISCIN": "ischemic in inferior leads",
    "INJAS": "subendocardial injury in anteroseptal leads",
    "LMI": "lateral myocardial infarction",
    "ISCIL": "ischemic in inferolateral leads",
    "LPFB": "left posterior fascicular block",
    "ISCAS": "ischemic in anteroseptal leads",
    "INJAL": "subendocardial injury in anterolateral leads",
    "ISCLA": "ischemic in lateral leads",
    "RVH": "right ventricular hypertrophy",
    "ANEUR": "ST-T changes compatible with ventricular aneurysm",
    "RAO/RAE": "right atrial overload/enlargement",
    "EL": "electrolytic disturbance or drug (former EDIS)",
    "WPW": "Wolf-Parkinson-White syndrome",
    "ILBBB": "incomplete left bundle branch block",
    "IPLMI": "inferoposterolateral myocardial infarction",
    "ISCAN": "ischemic in anterior leads",
    "IPMI": "inferoposterior myocardial infarction",
    "SEHYP": "septal hypertrophy",
    "INJIN": "subendocardial injury in inferior leads",
    "INJLA": "subendocardial injury in lateral leads",
    "PMI": "posterior myocardial infarction",
    "3AVB": "third degree AV block",
    "INJIL": "subendocardial injury in inferolateral leads",
    "2AVB": "second degree AV block",
    "ABQRS": "abnormal QRS",
    "PVC": "ventricular premature complex",
    "STD_": "non-specific ST depression",
    "VCLVH": "voltage criteria (QRS) for left ventricular hypertrophy",
    "QWAVE": "Q waves present",
    "LOWT": "low amplitude T-waves",
    "NT_": "non-specific T-wave changes",
    "PAC": "atrial premature complex",
    "LPR": "prolonged PR interval",
    "INVT": "inverted T-waves",
    "LVOLT": "low QRS voltages in the frontal and horizontal leads",
    "HVOLT": "high QRS voltage",
    "TAB_": "T-wave abnormality",
    "STE_": "non-specific ST elevation",
    "PRC(S)": "premature complex(es)",
    "SR": "sinus rhythm",
    "AFIB": "atrial fibrillation",
    "STACH": "sinus tachycardia",
    "SARRH": "sinus arrhythmia",
    "SBRAD": "sinus bradycardia",
    "PACE": "normal functioning artificial pacemaker",
    "SVARR": "supraventricular arrhythmia",
    "BIGU": "bigeminal pattern (unknown origin, SV or Ventricular)",
    "AFLT": "atrial flutter",
    "SVTAC": "supraventricular tachycardia",
    "PSVT": "paroxysmal supraventricular tachycardia",
    "TRIGU": "trigeminal pattern (unknown origin, SV or Ventricular)",
}

#: Display names of the 5 diagnostic superclasses.
SUPERCLASS_NAMES: dict[str, str] = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}

#: Diagnostic subclasses that are not a statement code, with display names; they aggregate statements
#: (``STTC``: NDT, DIG, LNGQT, ANEUR, EL; ``ISCA``: ISCAL, ISCAS, ISCLA, ISCAN; ``ISCI``: ISCIN, ISCIL;
#: ``LAFB/LPFB``: LAFB, LPFB; ``_AVB``: 1AVB, 2AVB, 3AVB). KB ids ``ecg.subclass.<CODE, / -> _>``.
SUBCLASS_ONLY: dict[str, str] = {
    "STTC": "ST/T change",
    "ISCA": "ischemic in anterior leads",
    "ISCI": "ischemic in inferior leads",
    "LAFB/LPFB": "left anterior/posterior fascicular block",
    "_AVB": "atrioventricular block",
}

def kb_code(code: str) -> str:
    """Code as used in knowledge-base ids: characters other than ``[A-Za-z0-9_]`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", code)


def statement_kb_id(code: str) -> str:
    """Knowledge-base id of an SCP-ECG statement: ``ecg.scp.<kb_code(CODE)>``.

    Raises:
        SpecError: not one of PTB-XL's 71 statement codes.
    """
    if code not in STATEMENT_DESCRIPTIONS:
        raise SpecError(f"statement_kb_id: {code!r} is not one of PTB-XL's 71 SCP-ECG statement codes")
    return f"ecg.scp.{kb_code(code)}"


def subclass_kb_id(code: str) -> str:
    """Knowledge-base id of a PTB-XL diagnostic subclass (``ecg.subclass.*`` or the statement's ``ecg.scp.*``).

    Raises:
        SpecError: not one of PTB-XL's 23 diagnostic subclasses.
    """
    if code in SUBCLASS_ONLY:
        return f"ecg.subclass.{kb_code(code)}"
    if code in SUBCLASSES:
        return statement_kb_id(code)
    raise SpecError(f"subclass_kb_id: {code!r} is not one of PTB-XL's 23 diagnostic subclasses")


@dataclass(frozen=True)
class Task:
    """A zero-shot classification task.

    Attributes:
        name: Task id, e.g. ``"ptbxl-super"``.
        dataset: Dataset id, e.g. ``"ptbxl"``.
        label_set: Argument of the dataset's ``labels()`` (``"super"``, ``"sub"``, ...).
        classes: Class codes, in the benchmark's column order.
        kb_ids: Class code -> knowledge-base entry id.
        display_names: Class code -> human-readable English name.
        system: Code system of the classes for datasets that label by code (``snomed_ct``, ``scp_ecg``,
            ``cpsc2018``; empty for the PTB-XL label sets).
        label_codes: Class code -> the codes of ``system`` that make a record positive (the class code and its
            knowledge-base entry's equivalents, e.g. CinC 2021's two LBBB concepts); empty: the class code alone.
        modality: ``"ecg"``, ``"cxr"`` or ``"ct"``.

    Raises:
        SpecError: duplicate classes, or ``kb_ids``/``display_names`` keys differ from ``classes``.
    """

    name: str
    dataset: str
    label_set: str
    classes: tuple[str, ...]
    kb_ids: dict[str, str] = field(hash=False)
    display_names: dict[str, str] = field(hash=False)
    system: str = ""
    label_codes: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    modality: str = "ecg"

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "kb_ids", dict(self.kb_ids))
        object.__setattr__(self, "display_names", dict(self.display_names))
        if len(set(self.classes)) != len(self.classes):
            raise SpecError(f"Task {self.name!r}: classes: duplicate codes in {self.classes}")
        for attr in ("kb_ids", "display_names"):
            keys: Mapping[str, str] = getattr(self, attr)
            if set(keys) != set(self.classes):
                raise SpecError(
                    f"Task {self.name!r}: {attr}: keys {sorted(set(keys) ^ set(self.classes))} differ from classes"
                )

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def _make(label_set: str, classes: tuple[str, ...]) -> Task:
    if label_set == "super":
        kb = {c: f"ecg.superclass.{c}" for c in classes}
        names = {c: SUPERCLASS_NAMES[c] for c in classes}
    elif label_set == "sub":
        kb = {c: subclass_kb_id(c) for c in classes}
        names = {c: SUBCLASS_ONLY.get(c) or STATEMENT_DESCRIPTIONS[c] for c in classes}
    else:
        kb = {c: statement_kb_id(c) for c in classes}
        names = {c: STATEMENT_DESCRIPTIONS[c] for c in classes}
    return Task(f"ptbxl-{label_set}", "ptbxl", label_set, classes, kb, names)


#: All tasks by name.
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _make("super", SUPERCLASSES),
        _make("sub", SUBCLASSES),
        _make("form", FORM_CODES),
        _make("rhythm", RHYTHM_CODES),
        _make("all", STATEMENT_CODES),
    )
}


def task_from_codes(name: str, classes: Sequence[str], system: str, dataset: str = "",
                    modality: str = "ecg", names: Mapping[str, str] | None = None) -> Task:
    """A task built from a dataset's own label codes, each class mapped to its knowledge-base entry.

    The entry of a class is the one whose ``codes[system]`` lists the code exactly (``knowledge/<modality>/``).
    A record is positive for a class when it carries the class code or any other code of that entry in the same
    system (e.g. SNOMED CT 733534002 and 164909002 for LBBB, as the PhysioNet/CinC 2021 scoring treats them).

    Args:
        name: Task name (for reports).
        classes: Class codes of ``system``, in the wanted column order.
        system: ``snomed_ct``, ``scp_ecg``, ``cpsc2018`` (or another code system the KB entries list).
        dataset: Dataset name the task was made for.
        modality: Modality of the entries to search.
        names: Display names overriding the entries' names.

    Raises:
        SpecError: no classes, duplicates, or a code without a knowledge-base entry (the message names the code
            and the entry file that would be needed).
    """
    from medzs.knowledge.loader import load_entries

    classes = [str(c).strip() for c in classes]
    if not classes:
        raise SpecError(f"task {name!r}: classes: expected at least one class code")
    index: dict[str, list] = {}
    for e in load_entries(modality=modality):
        for code in e.codes.get(system, ()):
            index.setdefault(str(code), []).append(e)
    kb_ids, display, label_codes = {}, {}, {}
    for c in classes:
        hits = index.get(c)
        if not hits:
            raise SpecError(f"task {name!r}: class {c!r}: no knowledge-base entry lists {system} code {c!r} "
                            f"(expected e.g. knowledge/{modality}/{modality}.{system.split('_')[0]}.{kb_code(c)}.yaml)")
        entry = hits[0]
        kb_ids[c] = entry.id
        display[c] = (names or {}).get(c) or entry.name
        label_codes[c] = tuple(dict.fromkeys([c, *[str(x) for x in entry.codes.get(system, ())]]))
    return Task(name, dataset, "codes", tuple(classes), kb_ids, display, system=system, label_codes=label_codes,
                modality=modality)


#: Imaging tasks (:mod:`medzs.data.imaging_tasks`): name -> (dataset, code system, classes, modality, names).
_IMAGING_TASK_SPECS: dict[str, tuple[str, str, tuple[str, ...], str, dict[str, str]]] = {
    "cxr-pneumonia": ("kermany", "kermany", ("pneumonia",), "cxr", {}),
    "cxr-pneumonia-type": ("kermany", "kermany", ("normal", "bacterial", "viral"), "cxr", {}),
    "ct-covid": ("covid-ct", "covid_ct", ("CT_COVID",), "ct", {}),
}


@cache
def imaging_tasks() -> dict[str, Task]:
    """The imaging tasks by name (built from the knowledge base once, on first use; :func:`get_task` finds them).

    Raises:
        SpecError: a class code without a knowledge-base entry in its code system.
    """
    return {name: task_from_codes(name, classes, system, dataset=dataset, modality=modality, names=names or None)
            for name, (dataset, system, classes, modality, names) in _IMAGING_TASK_SPECS.items()}


def get_task(name: str) -> Task:
    """Look up a task by name (``ptbxl-super``, ``ptbxl-sub``, ``ptbxl-form``, ``ptbxl-rhythm``, ``ptbxl-all``).

    Raises:
        SpecError: unknown name.
    """
    if name in TASKS:
        return TASKS[name]
    imaging = imaging_tasks()  # built from the knowledge base on first use
    if name in imaging:
        return imaging[name]
    raise SpecError(f"get_task: unknown task {name!r}; expected one of {sorted([*TASKS, *imaging])}")


__all__ = [
    "STATEMENT_DESCRIPTIONS",
    "SUBCLASS_ONLY",
    "SUPERCLASS_NAMES",
    "TASKS",
    "Task",
    "get_task",
    "kb_code",
    "task_from_codes",
    "statement_kb_id",
    "subclass_kb_id",
]
