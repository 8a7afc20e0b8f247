"""The knowledge base as a persistent, embedded Chroma store of passages.

Each entry (see :mod:`medzs.knowledge.schema`) becomes passages:

- ``<entry id>#definition``: ``"<name>: <definition>"``
- ``<entry id>#criterion-<i>``: ``"<name>: <criterion text>"`` (prefixed so that the passage is retrievable
  on its own)
- ``<entry id>#synonyms``: ``"<name> (<synonym>; <synonym>)"`` (only when the entry has synonyms; the name
  leads so that a query by name or abbreviation finds the entry)

with metadata ``entry_id``, ``modality``, ``field`` (``definition`` | ``criterion`` | ``synonyms``),
``index`` (criterion number, else -1), ``name``, ``codes`` (``"scp_ecg:CLBBB;snomed_ct:733534002"``),
``sources`` (``";"``-joined source ids), ``content_hash`` (sha256 of the passage text) and, for criteria with a
structured rule, ``rule`` (e.g. ``"qrs_duration >= 120 ms"``).

Builds are incremental: passages whose ``content_hash`` is unchanged are not re-embedded, changed metadata is
updated in place, passages of entries that disappeared are deleted (:class:`BuildReport` says what happened).

Concurrency (several processes on one store; POSIX ``fcntl.flock`` locks in the store folder):

- ``.medzs-write.lock``: writers (build, ingest, delete) run one at a time.
- ``.medzs-swap.lock``: every read (count, get, retrieve, query, entry ids) holds it shared; a writer holds it
  exclusively only while it makes its change visible, and every open of the store (client creation and
  collection creation) holds it exclusively, so three processes opening a fresh store at once never race
  inside Chroma's SQLite (``database is locked``).
- ``.medzs-generation``: a token that writers replace (atomic rename) after each change. A reader whose token
  is older drops its cached Chroma client and opens the collection again before reading, so a long-lived
  reader sees other processes' writes (Chroma's per-process client keeps a stale vector index otherwise,
  chroma-core/chroma#3792).
- ``build(..., rebuild=True)`` builds the new collection *beside* the old one
  (``<name>.rebuild-<pid>``), then, under the exclusive swap lock, drops the old collection and renames the new
  one: readers see either the old or the new collection, never a half-built one, and wait (milliseconds)
  during the swap instead of failing. Incremental builds embed first and write under the swap lock, so a
  reader sees a build whole or not at all.
- A read that fails inside Chroma is retried (:data:`READ_RETRIES` times, reopening the store in between)
  before a :class:`~medzs.errors.KnowledgeBaseError` names the store, the collection and the cause.
- Reading never writes: ``KnowledgeBase(path, create=False)`` on a folder without a store raises (telling to
  run ``medzs kb build``) instead of creating one.

The store lives at ``$MEDZS_HOME/chroma`` (``MEDZS_HOME`` defaults to ``~/.cache/medzs``). Embeddings come from
:mod:`medzs.knowledge.embedding` (local all-MiniLM-L6-v2, cosine space); Chroma telemetry is off.

Example:
    >>> from medzs.knowledge.loader import load_entries
    >>> kb = KnowledgeBase()  # doctest: +SKIP
    >>> kb.build(load_entries(modality="ecg"))  # doctest: +SKIP
    >>> [p.id for p in kb.retrieve("ecg.scp.CLBBB", "QRS duration", k=2)]  # doctest: +SKIP
    ['ecg.scp.CLBBB#criterion-0', 'ecg.scp.CLBBB#definition']
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medzs.errors import KnowledgeBaseError
from medzs.knowledge.schema import Entry, Rule

logger = logging.getLogger(__name__)

#: Environment variable for medzs' cache/state folder.
MEDZS_HOME_ENV = "MEDZS_HOME"
DEFAULT_COLLECTION = "medzs-ecg"
#: Bumped when the passage layout changes (stored in the collection metadata).
PASSAGE_SCHEMA_VERSION = 1
_FIELD_ORDER = {"definition": 0, "criterion": 1, "synonyms": 2}
#: Attempts of a read that fails inside Chroma (the store is reopened between attempts).
READ_RETRIES = 3
#: How many times a read starts again because a writer changed the store while it waited for the lock.
_MAX_GENERATION_RACES = 50
_WRITE_LOCK = ".medzs-write.lock"
_SWAP_LOCK = ".medzs-swap.lock"
_GENERATION = ".medzs-generation"
_REBUILD_SUFFIX = ".rebuild-"
#: Store path -> generation token when this process's cached Chroma client for it was created.
_CLIENT_GENERATION: dict[str, str] = {}


def medzs_home() -> Path:
    """medzs' state folder: ``$MEDZS_HOME``, else ``~/.cache/medzs``."""
    env = os.environ.get(MEDZS_HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medzs"


def default_store_path() -> Path:
    """Default Chroma folder: ``medzs_home() / "chroma"``."""
    return medzs_home() / "chroma"


def sha256_text(text: str) -> str:
    """Hex sha256 of UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Passage:
    """One retrievable passage of the knowledge base.

    Attributes:
        id: ``<entry id>#definition``, ``<entry id>#criterion-<i>`` or ``<entry id>#synonyms`` (for ingested
            documents: any id).
        entry_id: The entry the passage belongs to.
        text: The passage text.
        field: ``"definition"``, ``"criterion"`` or ``"synonyms"``.
        sources: Source ids (``knowledge/sources.yaml``) backing the passage.
        score: Cosine similarity to the query (``[-1, 1]``), None when not ranked.
        metadata: All stored metadata (``name``, ``codes``, ``modality``, ``content_hash``, ``rule``...).
    """

    id: str
    entry_id: str
    text: str
    field: str
    sources: tuple[str, ...] = ()
    score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def sha256(self) -> str:
        """Hex sha256 of :attr:`text` (equals the stored ``content_hash``)."""
        return sha256_text(self.text)


@dataclass
class BuildReport:
    """What :meth:`KnowledgeBase.build` did (passage ids per outcome).

    Attributes:
        added: New passages (embedded).
        updated: Passages whose text changed (re-embedded).
        metadata_only: Same text, changed metadata (updated without embedding).
        unchanged: Untouched passages.
        deleted: Passages removed because their entry (or criterion) disappeared.
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    metadata_only: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def embedded(self) -> list[str]:
        """Ids of the passages that were (re-)embedded: ``added + updated``."""
        return self.added + self.updated

    def __str__(self) -> str:
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, metadata-only {len(self.metadata_only)}, "
            f"unchanged {len(self.unchanged)}, deleted {len(self.deleted)}"
        )


def format_rule(rule: Rule) -> str:
    """Human-readable form of a rule, e.g. ``"qrs_duration >= 120 ms"`` or ``"st_deviation >= 0.1 mV in
    V1,V2 (any, >= 2 leads)"``."""
    if rule.comparison == "between":
        lo, hi = rule.threshold  # type: ignore[misc]
        s = f"{rule.measurement} between {lo:g} and {hi:g} {rule.unit}"
    else:
        s = f"{rule.measurement} {rule.comparison} {rule.threshold:g} {rule.unit}"  # type: ignore[str-format]
    if rule.leads:
        s += f" in {','.join(rule.leads)} ({rule.lead_aggregation}"
        s += f", >= {rule.min_leads} leads)" if rule.lead_aggregation == "any" else ")"
    return s


def _codes_str(entry: Entry) -> str:
    return ";".join(f"{system}:{code}" for system, codes in sorted(entry.codes.items()) for code in codes)


def passages_from_entry(entry: Entry) -> list[Passage]:
    """Turn one entry into its passages (definition, each criterion, synonyms), with metadata.

    Args:
        entry: A validated entry.

    Returns:
        Passages in canonical order; ``score`` is None.
    """
    base = {
        "entry_id": entry.id,
        "modality": entry.modality,
        "name": entry.name,
        "codes": _codes_str(entry),
        "sources": ";".join(entry.sources),
    }
    out: list[Passage] = []

    def add(pid: str, text: str, fld: str, index: int = -1, **extra: Any) -> None:
        meta = {**base, "field": fld, "index": index, "content_hash": sha256_text(text), **extra}
        out.append(Passage(pid, entry.id, text, fld, tuple(entry.sources), None, meta))

    add(f"{entry.id}#definition", f"{entry.name}: {entry.definition}", "definition")
    for i, crit in enumerate(entry.criteria):
        extra = {"rule": format_rule(crit.rule)} if crit.rule is not None else {}
        add(f"{entry.id}#criterion-{i}", f"{entry.name}: {crit.text}", "criterion", i, **extra)
    if entry.synonyms:
        add(f"{entry.id}#synonyms", f"{entry.name} ({'; '.join(entry.synonyms)})", "synonyms")
    return out


def _passage_from_row(pid: str, doc: str | None, meta: dict[str, Any] | None, score: float | None) -> Passage:
    meta = dict(meta or {})
    sources = tuple(s for s in str(meta.get("sources", "")).split(";") if s)
    return Passage(
        id=pid,
        entry_id=str(meta.get("entry_id", pid.split("#", 1)[0])),
        text=doc or "",
        field=str(meta.get("field", "")),
        sources=sources,
        score=score,
        metadata=meta,
    )


def _canonical_key(p: Passage) -> tuple[int, int, str]:
    return (_FIELD_ORDER.get(p.field, 9), int(p.metadata.get("index", -1)), p.id)


@contextlib.contextmanager
def _flock(lock_file: Path, exclusive: bool) -> Iterator[None]:
    """Inter-process ``flock`` on ``lock_file`` (no-op where ``fcntl`` is unavailable or the file cannot be made)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fh = open(lock_file, "a+")  # noqa: SIM115 - closed below
    except OSError:  # read-only store: nobody can write it either
        yield
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _write_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock for writers (``<path>/.medzs-write.lock``)."""
    path.mkdir(parents=True, exist_ok=True)
    with _flock(path / _WRITE_LOCK, exclusive=True):
        yield


def _swap_lock(path: Path, exclusive: bool) -> contextlib.AbstractContextManager[None]:
    """Readers hold ``<path>/.medzs-swap.lock`` shared; opening and making a write visible hold it exclusively."""
    return _flock(path / _SWAP_LOCK, exclusive=exclusive)


def read_generation(path: Path) -> str:
    """The store's generation token (``""`` before the first write by this version of medzs)."""
    try:
        return (path / _GENERATION).read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _bump_generation(path: Path) -> str:
    token = uuid.uuid4().hex
    tmp = path / f"{_GENERATION}.{os.getpid()}.tmp"
    tmp.write_text(token, encoding="ascii")
    os.replace(tmp, path / _GENERATION)  # atomic on POSIX
    return token


def _drop_cached_client(path: Path) -> None:
    """Forget this process's cached Chroma client of ``path`` so that the next open reads the store afresh."""
    from chromadb.api.client import SharedSystemClient

    # chromadb keys its per-process client cache by the persist directory (private maps, no public API for one
    # store; clear_system_cache() would drop every store's client)
    for cache in (SharedSystemClient._identifier_to_system, SharedSystemClient._identifier_to_refcount):
        cache.pop(str(path), None)
    _CLIENT_GENERATION.pop(str(path), None)


def _collection_names(client: Any) -> list[str]:
    return [c if isinstance(c, str) else c.name for c in client.list_collections()]


class KnowledgeBase:
    """A persistent Chroma collection of knowledge passages with incremental builds and retrieval.

    Safe for several processes on one store (see the module docstring: locks, generation token, rebuild beside
    and swap).

    Args:
        path: Chroma folder; default ``$MEDZS_HOME/chroma`` (:func:`default_store_path`).
        collection: Collection name (3-512 chars of ``[a-zA-Z0-9._-]``); ``"medzs-ecg"`` for the curated ECG
            knowledge, other names for e.g. user-ingested documents.
        model_path: sentence-transformers folder for embeddings; None = bundled all-MiniLM-L6-v2.
        device: torch device for embeddings (``"cpu"``).
        create: Create the store and the collection when they do not exist. With False nothing is written:
            a folder without a store, or a store without the collection, raises.

    Raises:
        KnowledgeBaseError: ``path`` is a file, there is no store and ``create`` is False, the store cannot be
            opened, the collection is missing and ``create`` is False, or the collection was built with a
            different embedding model.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        collection: str = DEFAULT_COLLECTION,
        model_path: str | Path | None = None,
        device: str = "cpu",
        create: bool = True,
    ) -> None:
        from medzs.knowledge.embedding import embedding_function

        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.collection_name = collection
        self._create = create
        if self.path.exists() and not self.path.is_dir():
            raise KnowledgeBaseError(f"{self.path}: store path is a file (expected a folder for the Chroma store)")
        if not create and not (self.path / "chroma.sqlite3").is_file():
            raise KnowledgeBaseError(
                f"{self.path}: no knowledge base store here (expected a Chroma folder; build it with "
                f"`medzs kb build --path {self.path}`, or ingest documents with `medzs kb ingest`); "
                "reading never creates one"
            )
        self.embedding_function = embedding_function(model_path, device=device)
        self.last_build: BuildReport | None = None
        self._generation = ""
        self._client: Any = None
        self._collection: Any = None
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise KnowledgeBaseError(f"{self.path}: cannot create the store folder ({exc.strerror}); expected a "
                                         "writable folder (or pass --path)") from exc
        self._open(create)

    # ------------------------------------------------------------------ opening
    def _open(self, create: bool) -> None:
        """(Re)open client and collection under the exclusive swap lock, as the store is now."""
        with _swap_lock(self.path, exclusive=True):
            gen = read_generation(self.path)
            if _CLIENT_GENERATION.get(str(self.path), gen) != gen:
                _drop_cached_client(self.path)
            self._client = self._open_client()
            _CLIENT_GENERATION.setdefault(str(self.path), gen)
            self._collection = self._open_collection(create)
            self._generation = gen

    def _refresh_if_stale(self) -> None:
        if read_generation(self.path) != self._generation:
            self._open(self._create)

    def _open_client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        try:
            return chromadb.PersistentClient(
                path=str(self.path), settings=Settings(anonymized_telemetry=False, allow_reset=False)
            )
        except Exception as exc:
            raise KnowledgeBaseError(f"{self.path}: cannot open the Chroma store ({type(exc).__name__}: {exc})") from exc

    def _collection_args(self) -> dict[str, Any]:
        ef = self.embedding_function
        return {
            "configuration": {"hnsw": {"space": "cosine"}},
            "metadata": {"medzs_schema": PASSAGE_SCHEMA_VERSION, "embedding_model": ef.model_name},
            "embedding_function": ef,
        }

    def _fix_hint(self) -> str:
        if self.collection_name == DEFAULT_COLLECTION:
            return f"rebuild it with `medzs kb build --rebuild --path {self.path}`"
        return (f"ingest the documents again into a new collection (`medzs kb ingest PATH --collection NEW "
                f"--store {self.path}`)")

    def _open_collection(self, create: bool) -> Any:
        ef = self.embedding_function
        name = self.collection_name
        try:
            if create:
                col = self._client.get_or_create_collection(name, **self._collection_args())
            else:
                col = self._client.get_collection(name, embedding_function=ef)
        except Exception as exc:
            from chromadb.errors import NotFoundError

            if isinstance(exc, NotFoundError) or "does not exist" in str(exc):
                how = ("`medzs kb build`" if name == DEFAULT_COLLECTION
                       else f"`medzs kb ingest PATH --collection {name}`")
                raise KnowledgeBaseError(
                    f"{self.path}: collection {name!r} not found (expected one made by {how} in this store)"
                ) from exc
            raise KnowledgeBaseError(
                f"{self.path}: collection {name!r} cannot be opened ({type(exc).__name__}: {exc}); {self._fix_hint()}"
            ) from exc
        stored = (col.metadata or {}).get("embedding_model")
        if stored is not None and stored != ef.model_name:
            raise KnowledgeBaseError(
                f"{self.path}: collection {name!r} was embedded with {stored!r}, not {ef.model_name!r}; "
                f"open it with the same model or {self._fix_hint()}"
            )
        return col

    def __repr__(self) -> str:
        return f"KnowledgeBase(path={str(self.path)!r}, collection={self.collection_name!r})"

    # ------------------------------------------------------------------ dimension check
    def _expected_dim(self) -> int:
        from medzs.knowledge.embedding import EMBED_DIM

        if getattr(self.embedding_function, "model_path", None) is None:
            return EMBED_DIM
        return len(self.embedding_function.embed_query(["dimension probe"])[0])

    def _stored_dim(self) -> int | None:
        try:
            got = self._collection.get(limit=1, include=["embeddings"])
        except Exception:  # noqa: BLE001 - diagnosis only
            return None
        emb = got.get("embeddings")
        if emb is None or len(emb) == 0:
            return None
        return len(emb[0])

    def _dimension_error(self, found: int | None = None) -> KnowledgeBaseError | None:
        found = self._stored_dim() if found is None else found
        expected = self._expected_dim()
        if found is None or found == expected:
            return None
        return KnowledgeBaseError(
            f"{self.path}: collection {self.collection_name!r} holds {found}-dimensional vectors but the embedding "
            f"model {self.embedding_function.model_name!r} gives {expected} (expected {expected}); {self._fix_hint()}"
        )

    # ------------------------------------------------------------------ reading
    def _read(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run a read under the shared swap lock on the current generation, retrying Chroma failures."""
        failures: list[Exception] = []
        races = 0
        while len(failures) < READ_RETRIES:
            self._refresh_if_stale()
            with _swap_lock(self.path, exclusive=False):
                if read_generation(self.path) != self._generation:
                    races += 1  # a writer swapped between the check and the lock: open again
                    if races > _MAX_GENERATION_RACES:
                        raise KnowledgeBaseError(f"{self.path}: collection {self.collection_name!r}: {what}: the "
                                                 "store kept changing while waiting to read")
                    continue
                try:
                    return fn()
                except KnowledgeBaseError:
                    raise
                except Exception as exc:  # noqa: BLE001 - chromadb raises many types; named below
                    dim = self._dimension_error()
                    if dim is not None:
                        raise dim from exc
                    failures.append(exc)
            logger.info("%s/%s: %s failed (%s); retrying", self.path, self.collection_name, what,
                        type(failures[-1]).__name__)
            time.sleep(0.05 * 2 ** len(failures))
            self._generation = ""  # reopen before the next attempt
            _drop_cached_client(self.path)
        last = failures[-1]
        raise KnowledgeBaseError(
            f"{self.path}: collection {self.collection_name!r}: {what} failed {READ_RETRIES} times "
            f"({type(last).__name__}: {last}); if it persists, {self._fix_hint()}"
        ) from last

    def count(self) -> int:
        """Number of passages in the collection."""
        return int(self._read("count", self._collection_count))

    def _collection_count(self) -> int:
        return int(self._collection.count())

    def entry_ids(self) -> list[str]:
        """Sorted ids of the entries that have passages in the collection."""
        rows = self._read("entry ids", lambda: self._all_rows(include=["metadatas"]))
        return sorted({str(m.get("entry_id")) for _, m in rows.values() if m.get("entry_id")})

    def get(self, ids: Sequence[str]) -> list[Passage]:
        """Passages by id, in the order asked.

        Raises:
            KnowledgeBaseError: some ids are not in the collection (they are named).
        """
        ids = list(ids)
        if not ids:
            return []
        res = self._read("get", lambda: self._collection.get(ids=ids, include=["documents", "metadatas"]))
        found = {
            pid: _passage_from_row(pid, doc, meta, None)
            for pid, doc, meta in zip(res["ids"], res["documents"], res["metadatas"])
        }
        missing = [i for i in ids if i not in found]
        if missing:
            raise KnowledgeBaseError(
                f"{self.path}: collection {self.collection_name!r}: passage ids not found: {missing}"
            )
        return [found[i] for i in ids]

    def retrieve(self, entry_id: str, query: str | None = None, k: int | None = 8) -> list[Passage]:
        """Passages of one entry (exact metadata filter), ranked by similarity.

        Args:
            entry_id: e.g. ``"ecg.scp.CLBBB"``.
            query: Text to rank against; default the entry's name.
            k: How many passages (at most); None returns all passages of the entry in canonical order
                (definition, criteria, synonyms) without scores.

        Returns:
            Up to ``k`` passages, highest cosine similarity first (``score`` set; ties in canonical order).

        Raises:
            KnowledgeBaseError: the entry has no passages in this collection, or the stored vectors have
                another dimension than the embedding model's.
        """
        import numpy as np

        include = ["documents", "metadatas"] + (["embeddings"] if k is not None else [])
        res = self._read("retrieve", lambda: self._collection.get(where={"entry_id": entry_id}, include=include))
        if not res["ids"]:
            raise KnowledgeBaseError(
                f"{self.path}: collection {self.collection_name!r}: entry_id {entry_id!r} has no passages "
                "(expected an entry that was built into this collection)"
            )
        passages = [
            _passage_from_row(pid, doc, meta, None)
            for pid, doc, meta in zip(res["ids"], res["documents"], res["metadatas"])
        ]
        if k is None:
            return sorted(passages, key=_canonical_key)
        if k <= 0:
            return []
        text = query if query else str(passages[0].metadata.get("name") or entry_id)
        qv = np.asarray(self.embedding_function.embed_query([text])[0], dtype=np.float32)
        emb = np.asarray(res["embeddings"], dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != qv.shape[0]:
            raise self._dimension_error(int(emb.shape[-1])) or KnowledgeBaseError(
                f"{self.path}: collection {self.collection_name!r}: stored vectors of shape {emb.shape} "
                f"(expected (n, {qv.shape[0]})); {self._fix_hint()}")
        emb = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        qv = qv / max(float(np.linalg.norm(qv)), 1e-12)
        sims = emb @ qv
        order = sorted(range(len(passages)), key=lambda i: (-float(sims[i]), _canonical_key(passages[i])))
        out = []
        for i in order[:k]:
            p = passages[i]
            out.append(Passage(p.id, p.entry_id, p.text, p.field, p.sources, float(sims[i]), p.metadata))
        return out

    def query(
        self, text: str, k: int = 5, modality: str | None = None, where: dict[str, Any] | None = None
    ) -> list[Passage]:
        """Semantic search over the whole collection.

        Args:
            text: Query text.
            k: Number of passages.
            modality: Only passages of this modality (``"ecg"``...).
            where: Extra Chroma metadata filter (combined with ``modality`` by ``$and``).

        Returns:
            Up to ``k`` passages, best first; ``score`` = cosine similarity (``1 - cosine distance``).

        Raises:
            KnowledgeBaseError: the stored vectors have another dimension than the embedding model's (named,
                with the fix), or Chroma fails on every retry.
        """
        if k <= 0:
            return []
        filters = [f for f in ({"modality": modality} if modality else None, where) if f]
        flt = None if not filters else filters[0] if len(filters) == 1 else {"$and": filters}

        def run() -> Any:
            n = self._collection_count()
            if n == 0:
                return None
            return self._collection.query(query_texts=[text], n_results=min(k, n), where=flt,
                                          include=["documents", "metadatas", "distances"])

        res = self._read("query", run)
        if res is None:
            return []
        return [
            _passage_from_row(pid, doc, meta, 1.0 - float(dist))
            for pid, doc, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0],
                                            res["distances"][0])
        ]

    # ------------------------------------------------------------------ writing
    def _batches(self, items: Sequence[Any]) -> Iterator[Sequence[Any]]:
        try:
            size = int(self._client.get_max_batch_size())
        except Exception:  # noqa: BLE001 - older clients
            size = 1000
        size = max(1, min(size, 1000))
        for i in range(0, len(items), size):
            yield items[i:i + size]

    def _all_rows(self, include: list[str]) -> dict[str, tuple[str | None, dict[str, Any]]]:
        res = self._collection.get(include=include)
        docs = res.get("documents") or [None] * len(res["ids"])
        metas = res.get("metadatas") or [{}] * len(res["ids"])
        return {pid: (doc, dict(meta or {})) for pid, doc, meta in zip(res["ids"], docs, metas)}

    def _embed(self, texts: Sequence[str]) -> list[Any]:
        """Embeddings of ``texts`` (computed before a write, so that the write itself is short)."""
        out: list[Any] = []
        for batch in self._batches(list(texts)):
            out.extend(self.embedding_function(list(batch)))
        return out

    def _commit(self, deleted: Sequence[str], upserts: Sequence[tuple[str, str, dict[str, Any], Any]],
                metadata_only: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Apply a write under the exclusive swap lock and publish a new generation (caller holds the write lock)."""
        if not (deleted or upserts or metadata_only):
            return
        with _swap_lock(self.path, exclusive=True):
            try:
                for batch in self._batches(list(deleted)):
                    self._collection.delete(ids=list(batch))
                for batch in self._batches(list(upserts)):
                    self._collection.upsert(ids=[u[0] for u in batch], documents=[u[1] for u in batch],
                                            metadatas=[u[2] for u in batch], embeddings=[u[3] for u in batch])
                for batch in self._batches(list(metadata_only)):
                    self._collection.update(ids=[m[0] for m in batch], metadatas=[m[1] for m in batch])
            except Exception as exc:
                dim = self._dimension_error()
                raise (dim or KnowledgeBaseError(
                    f"{self.path}: writing collection {self.collection_name!r} failed ({type(exc).__name__}: {exc})"
                )) from exc
            self._generation = _bump_generation(self.path)
            _CLIENT_GENERATION[str(self.path)] = self._generation

    def _rebuild_beside(self, wanted: dict[str, Passage]) -> None:
        """Build a fresh collection beside the live one, then swap it in atomically (caller holds the write lock)."""
        from chromadb.errors import NotFoundError

        name = self.collection_name
        tmp_name = f"{name}{_REBUILD_SUFFIX}{os.getpid()}"
        for stale in _collection_names(self._client):
            if stale.startswith(name + _REBUILD_SUFFIX):  # left by a crashed rebuild (we hold the write lock)
                self._client.delete_collection(stale)
        passages = list(wanted.values())
        vectors = self._embed([p.text for p in passages])
        try:
            tmp = self._client.create_collection(tmp_name, **self._collection_args())
            for batch in self._batches(list(zip(passages, vectors))):
                tmp.add(ids=[p.id for p, _ in batch], documents=[p.text for p, _ in batch],
                        metadatas=[p.metadata for p, _ in batch], embeddings=[v for _, v in batch])
            with _swap_lock(self.path, exclusive=True):
                with contextlib.suppress(NotFoundError):
                    self._client.delete_collection(name)
                tmp.modify(name=name)
                self._generation = _bump_generation(self.path)
                _CLIENT_GENERATION[str(self.path)] = self._generation
        except Exception as exc:
            raise KnowledgeBaseError(
                f"{self.path}: rebuilding collection {name!r} failed ({type(exc).__name__}: {exc}); the previous "
                "collection is still in use"
            ) from exc
        self._collection = self._client.get_collection(name, embedding_function=self.embedding_function)

    def build(self, entries: Sequence[Entry], rebuild: bool = False) -> BuildReport:
        """Make the collection hold exactly the passages of ``entries`` (incrementally).

        Args:
            entries: Validated entries (e.g. :func:`medzs.knowledge.loader.load_entries`).
            rebuild: Embed everything again into a new collection built beside the live one, then swap it in
                (readers in other processes never see a half-built collection).

        Returns:
            A :class:`BuildReport`; also kept as :attr:`last_build`.

        Raises:
            KnowledgeBaseError: two entries share an id, or Chroma fails to write.
        """
        wanted: dict[str, Passage] = {}
        for entry in entries:
            for p in passages_from_entry(entry):
                if p.id in wanted:
                    raise KnowledgeBaseError(
                        f"{entry.path}: field 'id': passage {p.id!r} produced twice (duplicate entry id {entry.id!r})"
                    )
                wanted[p.id] = p
        report = BuildReport()
        with _write_lock(self.path):
            self._refresh_if_stale()
            if rebuild:
                self._rebuild_beside(wanted)
                report.added = list(wanted)
                self.last_build = report
                logger.info("knowledge base %s/%s rebuilt: %s", self.path, self.collection_name, report)
                return report
            existing = self._all_rows(include=["metadatas"])
            to_embed: list[Passage] = []
            meta_only: list[Passage] = []
            for pid, p in wanted.items():
                if pid not in existing:
                    report.added.append(pid)
                    to_embed.append(p)
                elif existing[pid][1].get("content_hash") != p.metadata["content_hash"]:
                    report.updated.append(pid)
                    to_embed.append(p)
                elif existing[pid][1] != p.metadata:
                    report.metadata_only.append(pid)
                    meta_only.append(p)
                else:
                    report.unchanged.append(pid)
            report.deleted = sorted(set(existing) - set(wanted))
            vectors = self._embed([p.text for p in to_embed])
            self._commit(report.deleted, [(p.id, p.text, p.metadata, v) for p, v in zip(to_embed, vectors)],
                         [(p.id, p.metadata) for p in meta_only])
        self.last_build = report
        logger.info("knowledge base %s/%s built: %s", self.path, self.collection_name, report)
        return report

    def add_passages(self, passages: Sequence[Passage]) -> BuildReport:
        """Upsert free-form passages (e.g. user-ingested documents) without touching other passages.

        Each passage's ``metadata`` is stored together with ``entry_id``, ``field``, ``sources`` and
        ``content_hash``; passages whose text is unchanged are not re-embedded.

        Args:
            passages: Passages with unique ids.

        Returns:
            A :class:`BuildReport` (``deleted`` stays empty).
        """
        report = BuildReport()
        ids = [p.id for p in passages]
        if len(set(ids)) != len(ids):
            raise KnowledgeBaseError(f"passages: expected unique ids, got duplicates in {ids}")
        with _write_lock(self.path):
            self._refresh_if_stale()
            got = self._collection.get(ids=ids, include=["metadatas"]) if ids else {"ids": [], "metadatas": []}
            existing = {pid: dict(m or {}) for pid, m in zip(got["ids"], got["metadatas"] or [])}
            to_embed, meta_only = [], []
            for p in passages:
                meta = {k: v for k, v in p.metadata.items() if v is not None}
                meta.update(entry_id=p.entry_id, field=p.field, sources=";".join(p.sources),
                            content_hash=p.sha256)
                item = (p, meta)
                if p.id not in existing:
                    report.added.append(p.id)
                    to_embed.append(item)
                elif existing[p.id].get("content_hash") != p.sha256:
                    report.updated.append(p.id)
                    to_embed.append(item)
                elif existing[p.id] != meta:
                    report.metadata_only.append(p.id)
                    meta_only.append(item)
                else:
                    report.unchanged.append(p.id)
            vectors = self._embed([p.text for p, _ in to_embed])
            self._commit([], [(p.id, p.text, m, v) for (p, m), v in zip(to_embed, vectors)],
                         [(p.id, m) for p, m in meta_only])
        self.last_build = report
        return report

    def delete(self, ids: Sequence[str]) -> None:
        """Delete passages by id (missing ids are ignored), as one locked, atomically visible write."""
        ids = sorted(set(ids))
        if not ids:
            return
        with _write_lock(self.path):
            self._refresh_if_stale()
            self._commit(ids, [], [])
