"""Zero-shot imaging tasks: class codes of the imaging dataset adapters mapped to knowledge-base entries.

Class codes are the labels of :mod:`medzs.data.imaging` (``KermanyDataset``: ``pneumonia``, ``bacterial``,
``viral``, ``normal``; ``CovidCTDataset``: ``covid``, ``noncovid``); every class maps to an entry of
``knowledge/cxr`` or ``knowledge/ct`` whose name, synonyms, definition and criteria the prompt writers use.

For pos/neg scoring (CheXzero-style softmax over a pair of prompts, Tiu et al., Nat Biomed Eng 2022,
doi:10.1038/s41551-022-00936-9), :data:`NEGATIVE_KB_IDS` gives, per task and positive class, the entry whose
prompts are the pair's negative side (``no finding`` for a radiograph finding, ``negative for pneumonia`` for
COVID-19 on CT). A class that is itself the absence of findings (``normal``) has no negative entry: it is scored by
softmax over classes, never negated a second time.

Sources: Kermany DS et al., Cell 172:1122, 2018, doi:10.1016/j.cell.2018.02.010; Zhao J et al., COVID-CT-Dataset,
arXiv:2003.13865.
"""

from __future__ import annotations

from medzs.data.tasks import Task
from medzs.errors import SpecError

#: Imaging tasks by name (the lead registers them in ``medzs.data.tasks.TASKS``).
IMAGING_TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            name="cxr-pneumonia",
            dataset="kermany",
            label_set="pneumonia",
            classes=("pneumonia",),
            kb_ids={"pneumonia": "cxr.chexpert.Pneumonia"},
            display_names={"pneumonia": "pneumonia"},
        ),
        Task(
            name="cxr-pneumonia-type",
            dataset="kermany",
            label_set="subtype",
            classes=("normal", "bacterial", "viral"),
            kb_ids={"normal": "cxr.chexpert.NoFinding", "bacterial": "cxr.pneumonia.Bacterial",
                    "viral": "cxr.pneumonia.Viral"},
            display_names={"normal": "no finding", "bacterial": "bacterial pneumonia", "viral": "viral pneumonia"},
        ),
        Task(
            name="ct-covid",
            dataset="covid-ct",
            label_set="covid",
            classes=("covid",),
            kb_ids={"covid": "ct.covid.COVID19Pneumonia"},
            display_names={"covid": "COVID-19 pneumonia"},
        ),
    )
}

#: Task -> positive class -> knowledge-base entry of the negative prompt of its pos/neg pair.
NEGATIVE_KB_IDS: dict[str, dict[str, str]] = {
    "cxr-pneumonia": {"pneumonia": "cxr.chexpert.NoFinding"},
    "cxr-pneumonia-type": {"bacterial": "cxr.chexpert.NoFinding", "viral": "cxr.chexpert.NoFinding"},
    "ct-covid": {"covid": "ct.covid.NegativeForPneumonia"},
}

#: Default scoring of each task (``posneg``: softmax over the class's pos/neg pair; ``softmax``: over classes).
DEFAULT_SCORING: dict[str, str] = {"cxr-pneumonia": "posneg", "cxr-pneumonia-type": "softmax", "ct-covid": "posneg"}


def get_imaging_task(name: str) -> Task:
    """An imaging task by name.

    Raises:
        SpecError: unknown name (the message lists the imaging tasks).
    """
    try:
        return IMAGING_TASKS[name]
    except KeyError:
        raise SpecError(f"get_imaging_task: unknown task {name!r}; expected one of {sorted(IMAGING_TASKS)}") from None


def negative_kb_id(task: str, class_code: str) -> str | None:
    """KB id of the negative prompt paired with ``class_code`` in ``task`` (None: no pair, e.g. ``normal``)."""
    return NEGATIVE_KB_IDS.get(task, {}).get(class_code)


__all__ = ["DEFAULT_SCORING", "IMAGING_TASKS", "NEGATIVE_KB_IDS", "get_imaging_task", "negative_kb_id"]
