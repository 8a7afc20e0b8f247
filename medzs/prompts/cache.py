"""A deterministic, diff-friendly cache of class prompts with their provenance.

Each cached entry is identified by ``(class_code, entry_id, class_name, passages_hash, writer, model,
template_hash)``: a hit needs all of them to match, so a changed passage text (which changes
:func:`~medzs.prompts.types.passages_hash`) re-writes exactly that class. Entries live in *slots*
``(class_code, entry_id, writer, model, template_hash)``; re-writing a class replaces its stale entry, so the
cache holds one entry per class and writer configuration and a committed cache diffs cleanly.

Storage:

- a path ending in ``.json``: one file ``{"format": ..., "version": 1, "entries": {slot: record}}``;
- any other path: a folder with one ``<slot>.json`` per entry;
- None: in memory only (nothing is written).

Files are written atomically (temporary file in the same folder + :func:`os.replace`) as sorted, indented
JSON. Records hold condition names, KB passage ids and prompt texts only — never patient data.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medzs.errors import PromptError
from medzs.prompts.types import ClassPrompts, check_passages, passages_hash

logger = logging.getLogger(__name__)

__all__ = ["CACHE_FORMAT", "PromptCache", "build_task_prompts", "prompts_hash", "write_class_prompts"]

CACHE_FORMAT = "medzs-prompt-cache"
CACHE_VERSION = 1
_SAFE = re.compile(r"[^A-Za-z0-9_+-]+")


def _sha(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _medzs_version() -> str:
    from medzs import __version__

    return __version__


def prompts_hash(class_prompts: Mapping[str, ClassPrompts] | Iterable[ClassPrompts]) -> str:
    """SHA-256 (hex) of a set of class prompts (codes, entry ids, texts, cited ids, writer, model, hashes).

    Record it in a run's provenance: it identifies exactly which prompts produced the scores.
    """
    items = class_prompts.values() if isinstance(class_prompts, Mapping) else class_prompts
    return _sha(sorted((cp.to_dict() for cp in items), key=lambda d: (d["class_code"], d["entry_id"])))


def write_class_prompts(
    writer: Any, class_code: str, entry_id: str, class_name: str, passages: Sequence[Any]
) -> ClassPrompts:
    """Run a writer for one class: ``writer.write_class`` when it has one, else ``writer.write``.

    Raises:
        medzs.errors.PromptError: the writer returned no prompt (the message names the class).
    """
    passages = check_passages(passages)
    if hasattr(writer, "write_class"):
        cp = writer.write_class(class_code, entry_id, class_name, passages)
    else:
        prompts = tuple(writer.write(class_name, passages))
        cp = ClassPrompts(class_code, entry_id, class_name, prompts, writer=_writer_name(writer),
                          model=getattr(writer, "model", None), template_hash=str(getattr(writer, "template_hash", "")),
                          passages_hash=passages_hash(passages))
    if not cp.prompts:
        raise PromptError(f"class {class_code} ({entry_id}, '{class_name}'): writer {_writer_name(writer)!r} "
                          "returned no prompt")
    return cp


def _writer_name(writer: Any) -> str:
    name = getattr(writer, "name", None)
    return name if isinstance(name, str) and name else type(writer).__name__


class PromptCache:
    """Prompt cache backed by a JSON file (``*.json``) or a folder of JSON files.

    Args:
        path: Cache file (ends in ``.json``) or folder, created on first write; None keeps the cache in memory.

    Example:
        >>> cache = PromptCache(tmp / "prompts.json")            # doctest: +SKIP
        >>> cp = cache.get_or_write("CLBBB", "ecg.scp.CLBBB", "complete left bundle branch block",
        ...                         passages, GroundedWriter())   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str] | None):
        self.path = None if path is None else Path(path)
        self.single_file = self.path is not None and self.path.suffix.lower() == ".json"
        self._memory: dict[str, dict] | None = {} if self.path is None else None

    # ----------------------------------------------------------------- keys
    @staticmethod
    def slot(class_code: str, entry_id: str, writer: str, model: str | None, template_hash: str) -> str:
        """Slot name of a class under one writer configuration (also the file stem in folder mode)."""
        digest = _sha([class_code, entry_id, writer, model, template_hash])[:16]
        return f"{_SAFE.sub('_', class_code)}.{_SAFE.sub('_', writer)}.{digest}"

    @staticmethod
    def key(class_code: str, entry_id: str, class_name: str, passages_hash_: str, writer: str,
            model: str | None, template_hash: str) -> str:
        """Full cache key (SHA-256 hex) of an entry."""
        return _sha([class_code, entry_id, class_name, passages_hash_, writer, model, template_hash])

    # -------------------------------------------------------------- storage
    def _load_all(self) -> dict[str, dict]:
        if self._memory is not None:
            return json.loads(json.dumps(self._memory))  # a copy, as if read from disk
        if self.single_file:
            if not self.path.is_file():
                return {}
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise PromptError(f"{self.path}: prompt cache is not valid JSON ({exc})") from exc
            if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
                raise PromptError(f"{self.path}: field 'format': expected {CACHE_FORMAT!r}")
            return dict(data.get("entries", {}))
        out: dict[str, dict] = {}
        if self.path.is_dir():
            for f in sorted(self.path.glob("*.json")):
                try:
                    out[f.stem] = json.loads(f.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise PromptError(f"{f}: prompt cache entry is not valid JSON ({exc})") from exc
        return out

    def _load_slot(self, slot: str) -> dict | None:
        if self._memory is not None or self.single_file:
            return self._load_all().get(slot)
        f = self.path / f"{slot}.json"
        if not f.is_file():
            return None
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PromptError(f"{f}: prompt cache entry is not valid JSON ({exc})") from exc

    def _store(self, slot: str, record: dict) -> None:
        if self._memory is not None:
            self._memory[slot] = json.loads(json.dumps(record))
        elif self.single_file:
            entries = self._load_all()  # re-read: keep entries written meanwhile by another process
            entries[slot] = record
            _atomic_write(self.path, _dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": entries}))
        else:
            _atomic_write(self.path / f"{slot}.json", _dumps(record))

    # ------------------------------------------------------------------ API
    def records(self) -> list[dict]:
        """All cached records (with provenance), sorted by slot."""
        entries = self._load_all()
        return [entries[k] for k in sorted(entries)]

    def __len__(self) -> int:
        return len(self._load_all())

    def get(self, class_code: str, entry_id: str, class_name: str, passages: Sequence[Any], writer: Any
            ) -> ClassPrompts | None:
        """The cached prompts of a class when every key part matches, else None."""
        wname, model, thash = _writer_name(writer), getattr(writer, "model", None), str(writer.template_hash)
        record = self._load_slot(self.slot(class_code, entry_id, wname, model, thash))
        if record is None:
            return None
        key = self.key(class_code, entry_id, class_name, passages_hash(passages), wname, model, thash)
        if record.get("key") != key:
            return None
        return ClassPrompts.from_dict(record)

    def get_or_write(self, class_code: str, entry_id: str, class_name: str, passages: Sequence[Any], writer: Any,
                     *, refresh: bool = False) -> ClassPrompts:
        """Return the cached prompts of a class, or write them with ``writer`` and store them.

        Args:
            class_code: Task class code, e.g. ``"CLBBB"``.
            entry_id: Knowledge-base entry id, e.g. ``"ecg.scp.CLBBB"``.
            class_name: Condition name given to the writer.
            passages: Retrieved passages (:class:`~medzs.prompts.types.PassageLike`).
            writer: A prompt writer (``name``, ``model``, ``template_hash``, ``write_class`` or ``write``).
            refresh: Re-write even on a cache hit.

        Returns:
            The class prompts with provenance (``writer``, ``model``, ``template_hash``, ``passages_hash``).

        Raises:
            TypeError: an item of ``passages`` is not a passage.
            medzs.errors.PromptError: the writer failed, or the cache file is corrupt.
        """
        passages = check_passages(passages)
        if not refresh:
            hit = self.get(class_code, entry_id, class_name, passages, writer)
            if hit is not None:
                logger.debug("prompt cache hit: %s (%s)", class_code, _writer_name(writer))
                return hit
        cp = write_class_prompts(writer, class_code, entry_id, class_name, passages)
        phash = passages_hash(passages)
        record = cp.to_dict()
        record.update(
            passages_hash=phash,
            template_hash=str(writer.template_hash),
            key=self.key(class_code, entry_id, class_name, phash, cp.writer, cp.model, str(writer.template_hash)),
            passage_ids=sorted(p.id for p in passages),
            created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            medzs_version=_medzs_version(),
        )
        slot = self.slot(class_code, entry_id, cp.writer, cp.model, str(writer.template_hash))
        self._store(slot, record)
        logger.info("prompt cache: wrote %s (%s, %d prompts)", class_code, cp.writer, len(cp.prompts))
        return ClassPrompts.from_dict(record)

    def file_hash(self) -> str:
        """SHA-256 (hex) of the cache content (all records, canonical JSON); for run provenance."""
        return _sha(self._load_all())


def build_task_prompts(
    task_classes: Mapping[str, tuple[str, str]],
    retrieve: Callable[[str, str], Sequence[Any]],
    writer: Any,
    cache: PromptCache | None = None,
) -> dict[str, ClassPrompts]:
    """Write (or fetch from the cache) the prompts of every class of a task.

    Args:
        task_classes: ``{class_code: (entry_id, class_name)}`` in task order.
        retrieve: ``retrieve(entry_id, class_name) -> list[Passage]``, e.g.
            ``lambda eid, q: kb.retrieve(eid, q, k=8)``.
        writer: A prompt writer.
        cache: A :class:`PromptCache`, or None to write without caching.

    Returns:
        ``{class_code: ClassPrompts}`` in the order of ``task_classes``.

    Raises:
        medzs.errors.PromptError: a class got no prompt (the message names it).
    """
    out: dict[str, ClassPrompts] = {}
    for code, (entry_id, class_name) in task_classes.items():
        passages = check_passages(retrieve(entry_id, class_name))
        if cache is None:
            out[code] = write_class_prompts(writer, code, entry_id, class_name, passages)
        else:
            out[code] = cache.get_or_write(code, entry_id, class_name, passages, writer)
    return out

