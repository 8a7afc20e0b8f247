"""Ingest user documents (Markdown, CSV, plain text, PDF) into a separate, named knowledge-base collection.

Users can add their own expert-verified material (local guidelines, a department's reporting criteria) next to
the curated ``knowledge/`` entries without mixing the two: each ingest goes into a named Chroma collection in
the same store (:class:`~medzs.knowledge.kb.KnowledgeBase` with ``collection=NAME``). Names starting with
``medzs-`` are reserved for the curated knowledge.

Documents are read with langchain document loaders and cut with langchain text splitters:

===============  ==========================================  ===================================================
suffix           loader                                      passages
===============  ==========================================  ===================================================
``.md``          ``TextLoader``                              split at headings (``MarkdownHeaderTextSplitter``),
``.markdown``                                                then into chunks; the heading path is recorded
``.txt``         ``TextLoader``                              chunks (``RecursiveCharacterTextSplitter``)
``.text``
``.csv``         ``CSVLoader`` (one document per data row)   one passage per row (long rows are chunked)
``.pdf``         ``PyPDFLoader`` (pypdf, one per page)       chunks of each page
===============  ==========================================  ===================================================

Every passage records where it came from, in its metadata: ``source`` (absolute path), ``file`` (path
relative to the ingested folder, or the file name), ``kind`` (``markdown``/``text``/``csv``/``pdf``),
``page`` (PDF: 1 = first page), ``row`` (CSV: 1 = first data row after the header), ``section`` (Markdown
heading path), ``chunk`` (0-based within its page/row/section), ``content_hash``, and ``modality`` when given.
Passage ids are stable: ``doc:<file>#<locator>c<chunk>`` (e.g. ``doc:guide.pdf#page-2-c0``,
``doc:criteria.csv#row-3-c0``); the entry id of every passage of a file is ``doc:<file>``, so
``kb.retrieve("doc:guide.pdf", k=None)`` lists a file's passages. Re-ingesting a file re-embeds only changed
chunks and deletes chunks that the new version no longer has.

Each file is written in its own locked transaction, so readers in other processes can query the collection
while an ingest runs and see it grow. Chroma keeps one client per store and process whose vector index does not
follow another process's later writes (chroma-core/chroma#3792); a long-lived reader that wants the current
state opens the collection again with :func:`open_collection`, which drops that cached client first.

Example:
    >>> from medzs.knowledge.ingest import ingest
    >>> report = ingest("docs/local-criteria/", collection="hospital-ecg")  # doctest: +SKIP
    >>> report.n_passages  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medzs.errors import KnowledgeBaseError

logger = logging.getLogger(__name__)

__all__ = [
    "IngestReport",
    "SUPPORTED_SUFFIXES",
    "check_collection_name",
    "discover_files",
    "document_passages",
    "ingest",
    "load_file",
    "open_collection",
]

#: File suffix -> document kind.
SUPPORTED_SUFFIXES: dict[str, str] = {
    ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text", ".csv": "csv", ".pdf": "pdf",
}
#: Collection-name prefix reserved for the curated knowledge base.
RESERVED_PREFIX = "medzs-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
_MD_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]


@dataclass
class IngestReport:
    """What :func:`ingest` did.

    Attributes:
        collection: Collection name.
        store: Chroma folder.
        files: Ingested files (as recorded in ``file`` metadata), in order.
        added: New passage ids (embedded).
        updated: Passages whose text changed (re-embedded).
        unchanged: Passages already present with the same text and metadata.
        metadata_only: Same text, changed metadata.
        deleted: Passages of re-ingested files that their new version no longer has.
        passages_per_file: ``{file: number of passages}``.
    """

    collection: str
    store: str
    files: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    metadata_only: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    passages_per_file: dict[str, int] = field(default_factory=dict)

    @property
    def n_passages(self) -> int:
        """Passages produced by this ingest (all files)."""
        return sum(self.passages_per_file.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (counts, files)."""
        return {"collection": self.collection, "store": self.store, "files": list(self.files),
                "passages": self.n_passages, "added": len(self.added), "updated": len(self.updated),
                "unchanged": len(self.unchanged), "metadata_only": len(self.metadata_only),
                "deleted": len(self.deleted), "passages_per_file": dict(self.passages_per_file)}


def check_collection_name(name: str) -> str:
    """Check a user collection name (3-512 chars of ``[A-Za-z0-9._-]``, not starting with ``medzs-``).

    Raises:
        KnowledgeBaseError: the name is malformed or reserved.
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise KnowledgeBaseError(f"collection {name!r}: expected 3-512 characters of [A-Za-z0-9._-], starting and "
                                 "ending with a letter or digit")
    if name.lower().startswith(RESERVED_PREFIX):
        raise KnowledgeBaseError(f"collection {name!r}: names starting with {RESERVED_PREFIX!r} are reserved for the "
                                 "curated knowledge base; choose another name for ingested documents")
    return name


def discover_files(path: str | Path) -> tuple[Path, list[Path]]:
    """The supported files under ``path`` (a file, or a folder searched recursively; hidden entries skipped).

    Returns:
        ``(root, files)``: the folder that ``file`` metadata is relative to, and the files sorted by path.

    Raises:
        KnowledgeBaseError: ``path`` does not exist, a single file has an unsupported suffix, or a folder holds
            no supported file.
    """
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise KnowledgeBaseError(f"{p}: unsupported document type {p.suffix!r} (expected one of "
                                     f"{', '.join(sorted(SUPPORTED_SUFFIXES))})")
        return p.parent.resolve(), [p.resolve()]
    if not p.is_dir():
        raise KnowledgeBaseError(f"{p}: no such file or folder to ingest")
    root = p.resolve()
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES
                   and not any(part.startswith(".") for part in f.relative_to(root).parts))
    if not files:
        raise KnowledgeBaseError(f"{p}: no supported documents found (expected files ending in "
                                 f"{', '.join(sorted(SUPPORTED_SUFFIXES))})")
    return root, files


def _loaders() -> dict[str, Any]:
    with warnings.catch_warnings():  # langchain-community announces its own sunset on import
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from langchain_community.document_loaders import CSVLoader, PyPDFLoader, TextLoader
        except ImportError as exc:
            raise KnowledgeBaseError("kb ingest: packages 'langchain-community', 'langchain-text-splitters' and "
                                     "'pypdf' are needed (pip install langchain-community "
                                     "langchain-text-splitters pypdf)") from exc
    return {"text": TextLoader, "markdown": TextLoader, "csv": CSVLoader, "pdf": PyPDFLoader}


def load_file(path: str | Path) -> tuple[str, list[Any]]:
    """Load one file with its langchain document loader.

    Args:
        path: A ``.md``/``.markdown``/``.txt``/``.text``/``.csv``/``.pdf`` file.

    Returns:
        ``(kind, documents)``: langchain ``Document`` objects (one per PDF page / CSV row / text file).

    Raises:
        KnowledgeBaseError: unsupported suffix, or the loader failed (the message names the file).
    """
    p = Path(path)
    kind = SUPPORTED_SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise KnowledgeBaseError(f"{p}: unsupported document type {p.suffix!r}")
    loader_cls = _loaders()[kind]
    try:
        if kind in ("text", "markdown"):
            loader = loader_cls(str(p), encoding="utf-8", autodetect_encoding=True)
        elif kind == "csv":
            loader = loader_cls(str(p), encoding="utf-8", autodetect_encoding=True)
        else:
            loader = loader_cls(str(p), mode="page")
        docs = loader.load()
    except Exception as exc:
        raise KnowledgeBaseError(f"{p}: cannot read the {kind} document ({type(exc).__name__}: {exc})") from exc
    return kind, docs


def _split(kind: str, docs: Sequence[Any], chunk_size: int, chunk_overlap: int) -> list[tuple[str, str, dict]]:
    """Cut documents into ``(locator, text, extra metadata)`` chunks, in document order."""
    from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    out: list[tuple[str, str, dict]] = []
    for doc in docs:
        meta = dict(doc.metadata or {})
        text = doc.page_content or ""
        if kind == "markdown":
            sections = MarkdownHeaderTextSplitter(_MD_HEADERS, strip_headers=False).split_text(text)
            for s_idx, sec in enumerate(sections):
                heads = [sec.metadata[k] for _, k in _MD_HEADERS if sec.metadata.get(k)]
                extra = {"section": " > ".join(heads)} if heads else {}
                for c, chunk in enumerate(splitter.split_text(sec.page_content)):
                    out.append((f"s{s_idx}-c{c}", chunk, extra))
        elif kind == "pdf":
            page = int(meta.get("page", 0)) + 1
            for c, chunk in enumerate(splitter.split_text(text)):
                out.append((f"page-{page}-c{c}", chunk, {"page": page}))
        elif kind == "csv":
            row = int(meta.get("row", 0)) + 1
            for c, chunk in enumerate(splitter.split_text(text)):
                out.append((f"row-{row}-c{c}", chunk, {"row": row}))
        else:
            for c, chunk in enumerate(splitter.split_text(text)):
                out.append((f"c{c}", chunk, {}))
    return out


def document_passages(path: str | Path, root: str | Path | None = None, *, chunk_size: int = 1000,
                      chunk_overlap: int = 100, modality: str | None = None) -> list[Any]:
    """Load, split and wrap one file as knowledge-base passages (see the module docstring for ids/metadata).

    Args:
        path: The document.
        root: Folder that ``file`` metadata is relative to (default: the file's folder).
        chunk_size: Maximum characters per passage.
        chunk_overlap: Characters shared by neighbouring chunks.
        modality: Recorded as ``modality`` metadata (e.g. ``"ecg"``), or None.

    Returns:
        ``list[medzs.knowledge.kb.Passage]`` (empty for a document without text).

    Raises:
        KnowledgeBaseError: unsupported or unreadable file.
        ValueError: ``chunk_size < 1`` or ``chunk_overlap`` not in ``[0, chunk_size)``.
    """
    from medzs.knowledge.kb import Passage, sha256_text

    if chunk_size < 1 or not 0 <= chunk_overlap < chunk_size:
        raise ValueError(f"chunk_size/chunk_overlap: expected chunk_size >= 1 and 0 <= chunk_overlap < chunk_size, "
                         f"got {chunk_size}/{chunk_overlap}")
    p = Path(path).resolve()
    base = Path(root).resolve() if root is not None else p.parent
    rel = p.relative_to(base).as_posix() if p.is_relative_to(base) else p.name
    kind, docs = load_file(p)
    entry_id = f"doc:{rel}"
    passages = []
    for locator, chunk, extra in _split(kind, docs, chunk_size, chunk_overlap):
        text = " ".join(chunk.split()) if kind != "markdown" else chunk.strip()
        if not text:
            continue
        chunk_no = int(locator.rsplit("c", 1)[1])
        meta: dict[str, Any] = {"name": p.stem, "source": str(p), "file": rel, "kind": kind, "chunk": chunk_no,
                                "content_hash": sha256_text(text), **extra}
        if modality:
            meta["modality"] = modality
        passages.append(Passage(id=f"{entry_id}#{locator}", entry_id=entry_id, text=text, field="document",
                                sources=(f"file:{rel}",), metadata=meta))
    return passages


def open_collection(path: str | Path | None = None, collection: str = "", *, refresh: bool = True) -> Any:
    """Open an existing collection for reading, as it is on disk now.

    Chroma's embedded client is cached per store and process; a cached client keeps the vector index it loaded
    and does not see vectors another process wrote afterwards (it can even keep failing with "Error creating
    hnsw segment reader" when it was opened during another process's first write to the collection). With
    ``refresh`` this process's cached client for the store is dropped first, so the collection is read like a
    new process would read it. Handles opened before keep their own (older) view.

    Args:
        path: Chroma folder (default ``$MEDZS_HOME/chroma``).
        collection: Collection name.
        refresh: Drop the cached client of this store first.

    Returns:
        A :class:`~medzs.knowledge.kb.KnowledgeBase` on the collection.

    Raises:
        KnowledgeBaseError: the collection does not exist.
    """
    from medzs.knowledge.kb import KnowledgeBase, default_store_path

    from medzs.knowledge.kb import _drop_cached_client

    p = Path(path).expanduser() if path is not None else default_store_path()
    if refresh:
        _drop_cached_client(p)
    return KnowledgeBase(p, collection=collection, create=False)


def _existing_ids(kb: Any, entry_id: str) -> set[str]:
    try:
        return {p.id for p in kb.retrieve(entry_id, k=None)}
    except KnowledgeBaseError:
        return set()


def _delete(kb: Any, ids: Iterable[str]) -> None:
    kb.delete(list(ids))  # locked, and published to readers in other processes


def ingest(path: str | Path, collection: str, kb_path: str | Path | None = None, *, chunk_size: int = 1000,
           chunk_overlap: int = 100, modality: str | None = None, kb: Any | None = None) -> IngestReport:
    """Ingest a document or a folder of documents into the named collection.

    Args:
        path: A supported file, or a folder (searched recursively).
        collection: Target collection (created when missing); see :func:`check_collection_name`.
        kb_path: Chroma folder (default ``$MEDZS_HOME/chroma``); ignored when ``kb`` is given.
        chunk_size: Maximum characters per passage.
        chunk_overlap: Characters shared by neighbouring chunks.
        modality: Recorded on every passage (``"ecg"``, ``"cxr"``, ``"ct"``), or None.
        kb: An open :class:`~medzs.knowledge.kb.KnowledgeBase` on ``collection`` to write to.

    Returns:
        An :class:`IngestReport`.

    Raises:
        KnowledgeBaseError: bad collection name, nothing to ingest, an unreadable file, or a Chroma failure.
    """
    from medzs.knowledge.kb import KnowledgeBase

    check_collection_name(collection)
    root, files = discover_files(path)
    if kb is None:
        kb = KnowledgeBase(kb_path, collection=collection)
    elif kb.collection_name != collection:
        raise KnowledgeBaseError(f"ingest: the open knowledge base is collection {kb.collection_name!r}, "
                                 f"not {collection!r}")
    report = IngestReport(collection=collection, store=str(kb.path))
    for f in files:
        passages = document_passages(f, root, chunk_size=chunk_size, chunk_overlap=chunk_overlap, modality=modality)
        rel = f.relative_to(root).as_posix()
        report.files.append(rel)
        report.passages_per_file[rel] = len(passages)
        if not passages:
            logger.warning("%s: no text found (a scanned PDF needs OCR first); nothing ingested", f)
        stale = _existing_ids(kb, f"doc:{rel}") - {p.id for p in passages}
        if passages:
            r = kb.add_passages(passages)
            report.added += r.added
            report.updated += r.updated
            report.unchanged += r.unchanged
            report.metadata_only += r.metadata_only
        if stale:
            _delete(kb, stale)
            report.deleted += sorted(stale)
        logger.info("ingested %s: %d passages (%d stale removed)", rel, len(passages), len(stale))
    return report
