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


__all__ = ["task_prompts"]
