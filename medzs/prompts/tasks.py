"""A task's class prompts: from the prompt cache, written from the knowledge base when missing or stale.

This is the prompts stage of the one-way flow (retrieve passages -> write prompts); the engine, ``medzs score`` and
``medzs zeroshot`` all get their class prompts here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medzs.errors import SpecError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _resolve(p: str | None) -> Path | None:
    if p is None:
        return None
    q = Path(p)
    return q if q.is_absolute() or q.exists() else REPO_ROOT / q


def task_prompts(task, writer_name: str, cache_path: str | Path | None, kb_path: str | Path | None = None,
                 llm: str | None = None):
    """Class prompts of a task: from the prompt cache, written from the knowledge base when missing/stale.

    Args:
        task: A :class:`medzs.data.tasks.Task`.
        writer_name: ``"grounded"``, ``"names"`` or ``"llm"`` (needs ``llm``).
        cache_path: Prompt cache file/folder, or None (in memory).
        kb_path: Chroma folder (default ``$MEDZS_HOME/chroma``).
        llm: LLM backend setting for the ``"llm"`` writer (``gguf:PATH``, ``openai:MODEL@BASE_URL``,
            ``ollama:MODEL[@URL]``; see :mod:`medzs.prompts.backends`). Its descriptors pass the grounding
            validator; drops are recorded in the cache entries and in the validator log
            (:func:`medzs.prompts.validator.validator_log_path`).

    Returns:
        ``dict[class_code, ClassPrompts]`` in the task's class order.
    """
    from medzs.prompts.cache import PromptCache, build_task_prompts
    from medzs.prompts.controls import VARIANTS, variant_task_prompts
    from medzs.prompts.grounded import GroundedWriter, NamesOnlyWriter

    if writer_name in VARIANTS and writer_name != "names":  # controls: templates, random-words, chils, posneg
        return variant_task_prompts(task, writer_name, _resolve(str(cache_path)) if cache_path else None, kb_path)
    writers = {"grounded": GroundedWriter, "names": NamesOnlyWriter, "llm": None}
    if writer_name not in writers:
        raise SpecError(f"prompts.writer: expected one of {sorted(writers)}, got {writer_name!r}")
    if (writer_name == "llm") != bool(llm and str(llm).lower() != "none"):
        raise SpecError(f"prompts: writer 'llm' needs an llm setting and only it takes one (writer "
                        f"{writer_name!r}, llm {llm!r})")
    if writer_name == "llm":
        from medzs.prompts.backends import make_llm_writer

        writer = make_llm_writer(llm)
    else:
        writer = writers[writer_name]()
    classes = {c: (task.kb_ids[c], task.display_names[c]) for c in task.classes}
    cache = PromptCache(_resolve(str(cache_path)) if cache_path else None)
    from medzs.knowledge.kb import KnowledgeBase
    from medzs.knowledge.loader import load_entries

    kb = KnowledgeBase(kb_path)
    if kb.count() == 0:
        logger.info("knowledge base is empty: building it from knowledge/")
        kb.build(load_entries())

    def retrieve(entry_id: str, class_name: str):
        return kb.retrieve(entry_id, query=class_name, k=None)

    try:
        return build_task_prompts(classes, retrieve, writer, cache)
    finally:  # also when a class fails: the classes written so far are cached, keep their validator log
        if writer_name == "llm" and cache.path is not None:
            from medzs.prompts.validator import validator_log_path, write_validator_log

            write_validator_log(validator_log_path(cache.path), writer.validator, model=writer.model,
                                writer_template_hash=writer.template_hash,
                                class_codes={eid: code for code, (eid, _) in classes.items()})


def posneg_prompts(task, prompts, cache_path: str | Path | None = None) -> dict:
    """Pos/neg pairs for ``scoring.method: posneg`` (CheXzero style, softmax over the pair per class).

    The positives are the class's prompts. The negatives are the prompts of the knowledge-base entry that states the
    finding's absence where the task names one (:data:`medzs.data.imaging_tasks.NEGATIVE_KB_IDS`, e.g. "no finding"
    for pneumonia), written by the same grounded writer; otherwise the class name negated
    (:func:`medzs.prompts.controls.negative_phrase`: "no X", and a "normal"/"no finding" class becomes "abnormal
    ...", never a double negation).

    Returns:
        ``{class_code: PosNegClassPrompts}``.
    """
    from dataclasses import fields

    from medzs.data.imaging_tasks import negative_kb_id
    from medzs.data.tasks import Task
    from medzs.prompts.controls import PosNegClassPrompts, negative_phrase
    from medzs.prompts.types import Prompt

    neg_ids = {c: negative_kb_id(task.name, c) for c in task.classes}
    kb_negs = {c: e for c, e in neg_ids.items() if e}
    written = {}
    if kb_negs:
        from medzs.knowledge.loader import load_entries

        names = {e.id: e.name for e in load_entries()}
        neg_task = Task(f"{task.name}-negatives", task.dataset, task.label_set, tuple(kb_negs),
                        {c: e for c, e in kb_negs.items()}, {c: names.get(e, e) for c, e in kb_negs.items()})
        written = task_prompts(neg_task, "grounded", cache_path)
    out = {}
    for c in task.classes:
        cp = prompts[c]
        negs = (tuple(written[c].prompts) if c in written
                else (Prompt(negative_phrase(task.display_names[c])),))
        base = {f.name: getattr(cp, f.name) for f in fields(cp) if f.name in {g.name for g in fields(PosNegClassPrompts)}}
        out[c] = PosNegClassPrompts(**{**base, "writer": f"{cp.writer}+posneg"}, negatives=negs)
    return out


__all__ = ["posneg_prompts", "task_prompts"]
