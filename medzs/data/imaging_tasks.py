"""Zero-shot imaging tasks: the imaging datasets' own label codes mapped to knowledge-base entries.

Tasks are built with :func:`medzs.data.tasks.task_from_codes` from each dataset's code system, the ``codes`` key the
knowledge-base entries list (``kermany`` in ``knowledge/cxr``, ``covid_ct`` in ``knowledge/ct``), so a class maps to
the entry whose codes name it and the prompt writers use that entry's name, synonyms, definition and criteria.

For pos/neg scoring (CheXzero-style softmax over a pair of prompts; Tiu et al., Nat Biomed Eng 6:1399, 2022,
doi:10.1038/s41551-022-00936-9), :data:`NEGATIVE_KB_IDS` gives, per task and positive class, the entry whose prompts
are the pair's negative side (``no finding`` for a radiograph finding, ``negative for pneumonia`` for COVID-19 on
CT). A class that is itself the absence of findings (``normal``) has no negative entry: it is scored by softmax
over classes and never negated a second time.

Sources: Kermany DS et al., Cell 172:1122, 2018, doi:10.1016/j.cell.2018.02.010; Zhao J et al., COVID-CT-Dataset,
arXiv:2003.13865.
"""

from __future__ import annotations

from medzs.data.tasks import _IMAGING_TASK_SPECS as _TASK_SPECS
from medzs.data.tasks import Task, imaging_tasks
from medzs.errors import SpecError

#: Task name -> (dataset, code system, classes, modality, display names).
#: Task -> positive class -> knowledge-base entry of the negative prompt of its pos/neg pair.
NEGATIVE_KB_IDS: dict[str, dict[str, str]] = {
    "cxr-pneumonia": {"pneumonia": "cxr.chexpert.NoFinding"},
    "cxr-pneumonia-type": {"bacterial": "cxr.chexpert.NoFinding", "viral": "cxr.chexpert.NoFinding"},
    "ct-covid": {"CT_COVID": "ct.covid.NegativeForPneumonia"},
}

#: Default scoring of each task (``posneg``: softmax over the class's pos/neg pair; ``softmax``: over classes).
DEFAULT_SCORING: dict[str, str] = {"cxr-pneumonia": "posneg", "cxr-pneumonia-type": "softmax", "ct-covid": "posneg"}


def get_imaging_task(name: str) -> Task:
    """An imaging task by name.

    Raises:
        SpecError: unknown name (the message lists the imaging tasks).
    """
    if name not in _TASK_SPECS:
        raise SpecError(f"get_imaging_task: unknown task {name!r}; expected one of {sorted(_TASK_SPECS)}")
    return imaging_tasks()[name]


def negative_kb_id(task: str, class_code: str) -> str | None:
    """KB id of the negative prompt paired with ``class_code`` in ``task`` (None: no pair, e.g. ``normal``)."""
    return NEGATIVE_KB_IDS.get(task, {}).get(class_code)


__all__ = ["DEFAULT_SCORING", "NEGATIVE_KB_IDS", "get_imaging_task", "imaging_tasks", "negative_kb_id"]
