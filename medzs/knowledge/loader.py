"""Load and validate the curated knowledge base (``knowledge/<modality>/*.yaml``).

Every file goes through :func:`medzs.knowledge.schema.parse_entry` with the source ids of
``knowledge/sources.yaml``; the loader then checks what a single file cannot: unique ids across files,
parents that exist, no cycles in the hierarchy, and that each entry sits in the folder of its modality.

Example:
    >>> from medzs.knowledge.loader import load_entries, kb_stats
    >>> entries = load_entries(modality="ecg")  # doctest: +SKIP
    >>> kb_stats(entries)["modalities"]["ecg"]["entries"]  # doctest: +SKIP
    76
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from medzs.errors import KnowledgeBaseError
from medzs.knowledge.schema import MODALITIES, Entry, parse_entry

logger = logging.getLogger(__name__)

#: Environment variable that points at a ``knowledge/`` folder (overrides the one next to the package).
KNOWLEDGE_DIR_ENV = "MEDZS_KNOWLEDGE_DIR"
SOURCES_FILE = "sources.yaml"

_LIMB_LEADS = {"avr": "aVR", "avl": "aVL", "avf": "aVF"}


def knowledge_dir() -> Path:
    """Return the ``knowledge/`` folder of the curated knowledge base.

    Resolution order: the environment variable ``MEDZS_KNOWLEDGE_DIR``, else ``<package>/../knowledge``
    (the folder at the root of a source checkout or editable install).

    Returns:
        The folder path (it exists).

    Raises:
        KnowledgeBaseError: when the folder does not exist.
    """
    env = os.environ.get(KNOWLEDGE_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        where = f"${KNOWLEDGE_DIR_ENV}={env}"
    else:
        import medzs

        path = Path(medzs.__file__).resolve().parent.parent / "knowledge"
        where = "the folder next to the medzs package"
    if not path.is_dir():
        raise KnowledgeBaseError(
            f"{path}: knowledge folder not found ({where}); expected a directory holding sources.yaml and "
            f"<modality>/*.yaml; set {KNOWLEDGE_DIR_ENV}"
        )
    return path


def _read_yaml(path: Path) -> Any:
    try:
        with path.open("r", encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise KnowledgeBaseError(f"{path}: field '<root>': expected valid YAML ({exc})") from exc
    except OSError as exc:
        raise KnowledgeBaseError(f"{path}: cannot be read ({exc})") from exc


def load_sources(root: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """Read the bibliography ``<root>/sources.yaml``.

    Args:
        root: The knowledge folder; default :func:`knowledge_dir`.

    Returns:
        Source id -> mapping with at least ``citation`` (and optionally ``doi``, ``isbn``, ``url``, ``arxiv``).

    Raises:
        KnowledgeBaseError: the file is missing, is not a mapping, or a source has no ``citation``.
    """
    root = Path(root) if root is not None else knowledge_dir()
    path = root / SOURCES_FILE
    if not path.is_file():
        raise KnowledgeBaseError(f"{path}: bibliography not found (expected {SOURCES_FILE} in {root})")
    raw = _read_yaml(path)
    if not isinstance(raw, dict) or not raw:
        raise KnowledgeBaseError(f"{path}: field '<root>': expected a mapping of source id -> citation")
    out: dict[str, dict[str, Any]] = {}
    for sid, rec in raw.items():
        if not isinstance(rec, dict) or not str(rec.get("citation", "")).strip():
            raise KnowledgeBaseError(f"{path}: field '{sid}.citation': expected a non-empty citation string")
        out[str(sid)] = dict(rec)
    return out


def _check_raw_codes(raw: Any, path: Path) -> None:
    """Reject YAML scalars that would silently change meaning when stringified (``NO`` -> False, 1.0)."""
    codes = raw.get("codes") if isinstance(raw, dict) else None
    if not isinstance(codes, dict):
        return  # parse_entry reports it
    for system, values in codes.items():
        for v in values if isinstance(values, list) else [values]:
            if isinstance(v, (bool, float)):
                raise KnowledgeBaseError(
                    f"{path}: field 'codes.{system}': expected codes as strings (quote them in YAML), got {v!r}"
                )


def _check_entry(entry: Entry, folder_modality: str) -> None:
    """Checks beyond :func:`parse_entry`: folder, lead names, rule consistency."""
    from medzs.spec import STANDARD_12_LEADS

    where = entry.path
    if entry.modality != folder_modality:
        raise KnowledgeBaseError(
            f"{where}: field 'modality': expected {folder_modality!r} (the folder it is in), got {entry.modality!r}"
        )
    stem = Path(where).stem
    if stem != entry.id:
        logger.warning("%s: file name does not match id %r (expected %s.yaml)", where, entry.id, entry.id)
    leads = set(STANDARD_12_LEADS)
    for i, crit in enumerate(entry.criteria):
        rule = crit.rule
        if rule is None:
            continue
        fld = f"criteria[{i}].rule"
        for lead in rule.leads:
            if _LIMB_LEADS.get(lead.lower(), lead) not in leads and lead.upper() not in leads:
                raise KnowledgeBaseError(
                    f"{where}: field '{fld}.leads': expected standard 12-lead names {STANDARD_12_LEADS}, got {lead!r}"
                )
        if rule.comparison == "between":
            lo, hi = rule.threshold  # type: ignore[misc]
            if lo > hi:
                raise KnowledgeBaseError(f"{where}: field '{fld}.threshold': expected low <= high, got {[lo, hi]}")
        if rule.min_leads < 1 or (rule.leads and rule.min_leads > len(rule.leads)):
            raise KnowledgeBaseError(
                f"{where}: field '{fld}.min_leads': expected 1..{len(rule.leads) or 1}, got {rule.min_leads}"
            )


def load_entry(path: Path | str, known_sources: set[str] | None = None) -> Entry:
    """Read and validate one entry file.

    Args:
        path: A ``*.yaml`` entry.
        known_sources: Valid source ids (see :func:`load_sources`); None skips that check.

    Returns:
        The parsed entry (``entry.path`` is the file).

    Raises:
        KnowledgeBaseError: invalid YAML or an invalid entry; the message names the file and the field.
    """
    path = Path(path)
    raw = _read_yaml(path)
    _check_raw_codes(raw, path)
    entry = parse_entry(raw, path, known_sources=known_sources)
    if entry.extra:
        logger.debug("%s: extra fields kept in entry.extra: %s", path, sorted(entry.extra))
    return entry


def load_entries(root: Path | str | None = None, modality: str | None = None) -> list[Entry]:
    """Load, validate and cross-check every entry under ``<root>/<modality>/*.yaml``.

    Args:
        root: The knowledge folder; default :func:`knowledge_dir`.
        modality: Only this modality (``"ecg"``, ``"cxr"``, ``"ct"``); None loads all modality folders.
            Folders that are not modalities (e.g. ``knowledge/prompts``) are never read as entries.

    Returns:
        Entries sorted by id.

    Raises:
        KnowledgeBaseError: an invalid file (message names file and field), an entry in the wrong modality
            folder, two files with the same id (message names both files), a parent id that is not loaded,
            or a cycle in the parent hierarchy.
    """
    root = Path(root) if root is not None else knowledge_dir()
    if modality is not None and modality not in MODALITIES:
        raise KnowledgeBaseError(f"modality: expected one of {MODALITIES}, got {modality!r}")
    known = set(load_sources(root))
    modalities = (modality,) if modality is not None else MODALITIES
    by_id: dict[str, Entry] = {}
    for mod in modalities:
        folder = root / mod
        if not folder.is_dir():
            continue
        for stray in sorted(folder.glob("*.yml")):
            logger.warning("%s: ignored (knowledge entries must end in .yaml)", stray)
        for path in sorted(folder.glob("*.yaml")):
            entry = load_entry(path, known)
            _check_entry(entry, mod)
            if entry.id in by_id:
                raise KnowledgeBaseError(
                    f"{path}: field 'id': duplicate id {entry.id!r}, also defined in {by_id[entry.id].path}"
                )
            by_id[entry.id] = entry
    for entry in by_id.values():
        for parent in entry.parents:
            if parent not in by_id:
                raise KnowledgeBaseError(
                    f"{entry.path}: field 'parents': expected ids of existing entries, got unknown {parent!r}"
                )
            if parent == entry.id:
                raise KnowledgeBaseError(f"{entry.path}: field 'parents': an entry cannot be its own parent")
    _check_acyclic(by_id)
    entries = sorted(by_id.values(), key=lambda e: e.id)
    logger.info("loaded %d knowledge entries from %s", len(entries), root)
    return entries


def _check_acyclic(by_id: dict[str, Entry]) -> None:
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(eid: str, trail: list[str]) -> None:
        if state.get(eid) == 2:
            return
        if state.get(eid) == 1:
            cycle = trail[trail.index(eid):] + [eid]
            raise KnowledgeBaseError(
                f"{by_id[eid].path}: field 'parents': cycle in the hierarchy: {' -> '.join(cycle)}"
            )
        state[eid] = 1
        for p in by_id[eid].parents:
            visit(p, trail + [eid])
        state[eid] = 2

    for eid in by_id:
        visit(eid, [])


def ancestors(entry_id: str, entries: list[Entry]) -> list[str]:
    """Ids of all ancestors of an entry (parents, their parents, ...), nearest first.

    Raises:
        KnowledgeBaseError: the id is not among ``entries``.
    """
    by_id = {e.id: e for e in entries}
    if entry_id not in by_id:
        raise KnowledgeBaseError(f"entry_id: {entry_id!r} is not a loaded knowledge entry")
    out: list[str] = []
    frontier = list(by_id[entry_id].parents)
    while frontier:
        nxt: list[str] = []
        for p in frontier:
            if p not in out:
                out.append(p)
                nxt.extend(by_id[p].parents if p in by_id else ())
        frontier = nxt
    return out


def kb_stats(entries: list[Entry]) -> dict[str, Any]:
    """Summarise a list of entries.

    Args:
        entries: As returned by :func:`load_entries`.

    Returns:
        ``{"entries": N, "with_rules": n, "rules": r, "criteria": c, "code_systems": {system: n_entries},
        "modalities": {modality: {same keys}}}`` where ``with_rules`` counts entries having at least one
        structured rule and ``code_systems`` counts entries carrying a code in each coding system.
    """

    def summary(items: list[Entry]) -> dict[str, Any]:
        systems: Counter[str] = Counter()
        for e in items:
            systems.update(s for s, codes in e.codes.items() if codes)
        return {
            "entries": len(items),
            "with_rules": sum(1 for e in items if e.rules),
            "rules": sum(len(e.rules) for e in items),
            "criteria": sum(len(e.criteria) for e in items),
            "code_systems": dict(sorted(systems.items())),
        }

    out = summary(entries)
    mods = sorted({e.modality for e in entries})
    out["modalities"] = {m: summary([e for e in entries if e.modality == m]) for m in mods}
    return out
