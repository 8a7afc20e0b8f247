"""Batch scoring of ECG files: discovery, streaming, resumable atomic Parquet shards, local engine.

:func:`score_files` scores every ECG found in folders, globs or manifest CSVs against the classes of a task and
writes one Parquet row per record (docs/batch.md)::

    from medzs.batch import score_files
    result = score_files(["exports/"], "scores.parquet", model="ecg-resnet18.medzs-ptbxl", task="ptbxl-super")

How it works:

1. **Discovery** (:func:`discover_records`) expands the inputs to a deterministic list of
   :class:`Record` objects (folders walked recursively and sorted; WFDB/CinC records counted once by their
   ``.hea``; manifest rows kept in file order). The list is fingerprinted (:func:`records_fingerprint`).
2. **Plan**: records ``[start, end)`` form shard ``part-<start>-<end>.parquet`` (9-digit, zero-padded) in
   ``<out>.shards/``. ``_run.json`` there holds the run key: a hash of the record list, model, weights, task,
   classes, prompts, shard size and id hashing. A restart with a different key stops with an error (unless
   ``overwrite=True``) instead of mixing two runs.
3. **Scoring**: an engine (local: :func:`local_engine`; Ray: :func:`medzs.batch_ray.ray_engine`) reads,
   preprocesses and embeds the records of the missing shards in batches of ``batch_size`` with
   :class:`BatchScorer`; only one batch of signals and one shard of scores are held in memory. Any exception
   while reading or preprocessing a record becomes an error row (``status="error"``, ``error_class``,
   ``error_message``), never a crash. With a registered scorer (``model="ecg-criteria.kb"``,
   :data:`medzs.registry.SCORERS`) each record is measured and scored from the knowledge base's criteria instead
   of embedded; with ``hybrid="ecg-criteria.kb"`` both are computed and fused per record
   (:func:`fuse_per_record`).
4. **Atomic writes**: a shard is written to a hidden temporary file, fsynced, then :func:`os.replace`\\ d to its
   final name, so a shard file either exists complete or not at all, whenever the process is killed
   (``kill -9`` included). A restart skips the complete shards. The final file ``out`` is merged from the
   shards the same way (temporary file + :func:`os.replace`), one shard at a time.

Identifiers: ``record_id`` is the source identifier (path relative to its input root, or the manifest's
``record_id``), or, with ``hash_ids=True``, ``HMAC-SHA256(salt, source identifier)`` in hex; error messages
then have the path and file name replaced by that hash. Log messages emitted while a record is being read
(by medzs or any library) have the record's path, file name and id replaced by ``record #<index>``; medzs logs
only counts and error classes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medzs.engine import (  # noqa: F401  (re-exported)
    Engine,
    Job,
    Record,
    check_rows,
    identifier_pattern,
    local_engine,
    reading,
    redact_logs,
    resolve_precision,
)
from medzs.errors import SpecError
from medzs.io.discover import FOLDER_EXTENSIONS  # noqa: F401  (re-exported)
from medzs.scoring import fuse_per_record  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

__all__ = [
    "BatchResult",
    "Record",
    "discover_records",
    "hash_id",
    "records_fingerprint",
    "score_files",
    "shard_name",
]

ENGINES: tuple[str, ...] = ("local", "ray")
BATCH_FORMAT = "medzs-batch-scores"
BATCH_FORMAT_VERSION = 2  # 2: quality_flags column
METADATA_KEY = b"medzs.batch"
RUN_FILE = "_run.json"
LOCK_FILE = ".lock"
_SHARD_RE = re.compile(r"^part-(\d{9})-(\d{9})\.parquet$")

#: Output columns before the per-class score columns ``score_<class code>``; ``model`` and ``task`` follow them.
BASE_COLUMNS: tuple[str, ...] = ("record_id", "record_index", "source_format", "status", "error_class",
                                 "error_message", "quality_flags")


# ---------------------------------------------------------------------------------------------- discovery
def discover_records(inputs: Sequence[str | os.PathLike[str]], modality: str = "ecg") -> list[Record]:
    """Expand inputs to a deterministic list of records (:func:`medzs.io.discover.discover_files`, which documents
    the rules); ``index`` is 0..N-1 in that order. Folder walks pick ECG file types for ``modality="ecg"``, image
    types (DICOM, PNG, JPEG, NIfTI) otherwise.

    Raises:
        SpecError: a glob that matches nothing, a path that does not exist, or a malformed manifest.
    """
    from medzs.io.discover import IMAGE_EXTENSIONS, discover_files

    exts = FOLDER_EXTENSIONS if modality == "ecg" else IMAGE_EXTENSIONS
    return [Record(i, path, sid) for i, (path, sid) in enumerate(discover_files(inputs, extensions=exts))]


def records_fingerprint(records: Sequence[Record]) -> str:
    """SHA-256 (hex) of the ordered record list (paths and source ids); identifies the input set of a run."""
    h = hashlib.sha256()
    for r in records:
        h.update(f"{r.index}\0{r.path}\0{r.source_id}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- identifiers
def hash_id(source_id: str, salt: str) -> str:
    """Salted SHA-256 of a source identifier: ``HMAC-SHA256(key=salt, msg=source_id)`` as 64 hex digits.

    Raises:
        SpecError: empty salt.
    """
    if not salt:
        raise SpecError("hash_ids: the salt is empty (expected a secret string, e.g. from --salt-env)")
    return hmac.new(salt.encode("utf-8"), source_id.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------------- scoring
# ---------------------------------------------------------------------------------------------- rows -> Parquet
def score_column(class_code: str) -> str:
    """Name of the score column of a class: ``score_<class code>``."""
    return f"score_{class_code}"


def output_schema(classes: Sequence[str], metadata: Mapping[str, Any] | None = None) -> Any:
    """The ``pyarrow.Schema`` of a scores file (see :data:`BASE_COLUMNS`)."""
    import pyarrow as pa

    fields = [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("record_index", pa.int64(), nullable=False),
        pa.field("source_format", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_class", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("quality_flags", pa.string()),
        *[pa.field(score_column(c), pa.float32()) for c in classes],
        pa.field("model", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
    ]
    meta = {METADATA_KEY: json.dumps(dict(metadata), sort_keys=True).encode()} if metadata else None
    return pa.schema(fields, metadata=meta)


@dataclass
class _RowFormatter:
    """Turns raw rows into the output table: ids (hashed or not), redacted messages, fixed schema."""

    records: Sequence[Record]
    classes: Sequence[str]
    model: str
    task: str
    salt: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def table(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        import pyarrow as pa

        ids, messages = [], []
        for row in rows:
            rec = self.records[int(row["record_index"])]
            msg = row["error_message"]
            if self.salt is not None:
                rid = hash_id(rec.source_id, self.salt)
                if msg is not None:
                    msg = identifier_pattern(rec).sub(rid, msg)
            else:
                rid = rec.source_id
            ids.append(rid)
            messages.append(msg)
        n = len(rows)
        scores = np.stack([np.asarray(r["scores"], dtype=np.float32) for r in rows]) if n else \
            np.zeros((0, len(self.classes)), np.float32)
        schema = output_schema(self.classes, self.metadata)
        columns = [
            pa.array(ids, pa.string()),
            pa.array([int(r["record_index"]) for r in rows], pa.int64()),
            pa.array([r["source_format"] for r in rows], pa.string()),
            pa.array([r["status"] for r in rows], pa.string()),
            pa.array([r["error_class"] for r in rows], pa.string()),
            pa.array(messages, pa.string()),
            pa.array([r.get("quality_flags") for r in rows], pa.string()),
            *[pa.array(scores[:, j], pa.float32()) for j in range(len(self.classes))],
            pa.array([self.model] * n, pa.string()),
            pa.array([self.task] * n, pa.string()),
        ]
        return pa.Table.from_arrays(columns, schema=schema)


def shard_name(start: int, end: int) -> str:
    """File name of the shard holding records ``[start, end)``."""
    return f"part-{start:09d}-{end:09d}.parquet"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(path: Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary sibling of ``path``; on success fsync it, ``os.replace`` it onto ``path`` and fsync the
    folder, so a reader (or a resumed run) sees either the old file or the complete new one, never a part."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _atomic_write_table(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    with _atomic_file(path) as fh:
        pq.write_table(table, fh)


def _shard_ok(path: Path, start: int, end: int, run_key: str) -> bool:
    import pyarrow.parquet as pq

    try:
        md = pq.read_metadata(path)
        meta = json.loads((md.schema.to_arrow_schema().metadata or {}).get(METADATA_KEY, b"{}"))
    except Exception:  # noqa: BLE001 - any unreadable file is redone
        return False
    return md.num_rows == end - start and meta.get("run_key") == run_key


def _file_run_key(path: Path) -> tuple[str | None, int]:
    import pyarrow.parquet as pq

    try:
        md = pq.read_metadata(path)
        meta = json.loads((md.schema.to_arrow_schema().metadata or {}).get(METADATA_KEY, b"{}"))
    except Exception:  # noqa: BLE001
        return None, -1
    return meta.get("run_key"), md.num_rows


# ---------------------------------------------------------------------------------------------- engines
# ---------------------------------------------------------------------------------------------- backends
def _engine(name: str) -> Callable[[Job], Iterator[tuple[int, int, list[dict[str, Any]]]]]:
    if name == "local":
        return local_engine
    if name == "ray":
        try:
            import ray.data  # noqa: F401
        except ImportError as exc:
            raise SpecError("engine 'ray' needs Ray Data: pip install 'medzs[ray]'") from exc
        from medzs.batch_ray import ray_engine

        return ray_engine
    raise SpecError(f"engine: expected one of {ENGINES}, got {name!r}")


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class BatchResult:
    """Summary of a :func:`score_files` run (counts only, no identifiers).

    Attributes:
        out: The merged Parquet file.
        n_records: Rows written (= records discovered).
        n_ok: Rows with ``status == "ok"``. n_error: Error rows.
        error_classes: Error class -> count.
        n_shards: Shards in the plan. n_shards_resumed: Shards found complete at start (not recomputed).
        already_complete: ``out`` was already complete for this run; nothing was recomputed.
        engine: Engine used. seconds: Wall time. run_key: The run key.
    """

    out: Path
    n_records: int
    n_ok: int
    n_error: int
    error_classes: dict[str, int]
    n_shards: int
    n_shards_resumed: int
    already_complete: bool
    engine: str
    seconds: float
    run_key: str

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        return d


def _count_statuses(path: Path) -> tuple[int, Counter[str]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    n_ok, errors = 0, Counter()
    for rb in pf.iter_batches(columns=["status", "error_class"]):
        d = rb.to_pydict()
        for status, cls in zip(d["status"], d["error_class"], strict=True):
            if status == "ok":
                n_ok += 1
            else:
                errors[cls or "?"] += 1
    return n_ok, errors


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpecError(f"{folder}: another `medzs score` run is writing these shards (lock held); wait for it "
                            "or stop it") from None
        yield
    finally:
        os.close(fd)


def class_scorer(model: Any, prompts: Mapping[str, Any], classes: Sequence[str], softmax: bool = False) -> Any:
    """The task's :class:`medzs.scoring.ClassScorer` for a loaded model (text encoded once, no gradients)."""
    import torch

    from medzs.scoring import ClassScorer

    with torch.inference_mode():
        return ClassScorer(lambda t: model.encode_text(list(t)), [prompts[c] for c in classes], softmax=softmax)


def _prompts_digest(prompts: Mapping[str, Any], classes: Sequence[str]) -> str:
    texts = {}
    for c in classes:
        cp = prompts[c]
        if hasattr(cp, "texts"):
            texts[c] = list(cp.texts)
        elif hasattr(cp, "prompts"):
            texts[c] = [p.text for p in cp.prompts]
        else:
            texts[c] = [str(t) for t in cp]
    return hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()


def _criteria_digest(scorer: Any, task: Any) -> str:
    """sha256 of what a criteria scorer scores a task with: its settings and each class's compiled rules."""
    kb = dict(task.kb_ids)
    doc = {"settings": {k: v for k, v in scorer.describe().items() if k != "kb_entries"}, "classes": {}}
    for c in task.classes:
        ce = scorer.compiled(kb[c])
        doc["classes"][c] = [ce.entry_id, ce.logic, [[repr(cr.rule), cr.scale] for cr in ce.rules]]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def score_files(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    model: str,
    task: Any,
    weights: str | os.PathLike[str] | None = None,
    engine: str = "local",
    batch_size: int = 32,
    shard_size: int = 1024,
    hash_ids: bool = False,
    salt: str | None = None,
    prompts_writer: str = "grounded",
    prompts_cache: str | os.PathLike[str] | None = None,
    kb_path: str | os.PathLike[str] | None = None,
    class_prompts: Mapping[str, Any] | None = None,
    softmax: bool = False,
    overwrite: bool = False,
    keep_shards: bool = False,
    progress: bool = True,
    torch_threads: int | None = None,
    ray_address: str | None = None,
    ray_actors: int | None = None,
    ray_cpus_per_actor: float = 1.0,
    ray_num_cpus: int | None = None,
    hybrid: str | None = None,
    precision: str = "fp32",
    quality: bool = True,
) -> BatchResult:
    """Score ECG files zero-shot against a task's classes and write one Parquet row per record.

    Resumable: killed at any point and called again with the same arguments, it skips the complete shards in
    ``<out>.shards/`` and writes ``out`` with no row lost or duplicated. Called again after success, it returns
    at once (``already_complete``).

    Args:
        inputs: Folders (recursive), files, glob patterns or manifest CSVs (:func:`discover_records`).
        out: Output Parquet file; shards go to ``<out>.shards/`` (removed after the merge unless ``keep_shards``).
        model: Registry name (``medzs models``): an embedding model, or a scorer such as ``ecg-criteria.kb``
            (measurements + knowledge-base criteria, no weights; classes it cannot score are NaN columns).
        weights: Checkpoint path overriding the model's.
        task: Task name (:mod:`medzs.data.tasks`) or a :class:`~medzs.data.tasks.Task`; one score column per class.
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data, :mod:`medzs.batch_ray`).
        batch_size: Records per encoder batch (memory is flat in the number of records).
        shard_size: Records per Parquet shard (the unit of resumption).
        hash_ids: Write ``HMAC-SHA256(salt, source id)`` as ``record_id`` and in error messages.
        salt: The secret salt (required with ``hash_ids``).
        prompts_writer: ``"grounded"`` or ``"names"`` (:func:`medzs.pipeline.task_prompts`).
        prompts_cache: Prompt cache file (None: in memory). kb_path: Chroma folder (None: ``$MEDZS_HOME``).
        class_prompts: ``{class code: ClassPrompts | list of texts}`` to use instead of writing prompts from
            the knowledge base.
        softmax: Per-record class probabilities instead of cosine similarities.
        overwrite: Discard shards of a different run in ``<out>.shards/`` instead of stopping.
        keep_shards: Keep ``<out>.shards/`` after the merge.
        progress: Show a progress bar (records, counts only).
        torch_threads: Torch threads of the local engine during the run (None: torch's default). One thread is
            often faster on a busy machine.
        ray_address: Ray cluster address (default: ``$RAY_ADDRESS``, else a local instance).
        ray_actors: Scoring actors (default: one per CPU of the local instance / cluster).
        ray_cpus_per_actor: CPUs (and torch threads) per actor.
        ray_num_cpus: CPUs of the local Ray instance (default: ``min(2, os.cpu_count())``).
        hybrid: A scorer (``"ecg-criteria.kb"``) fused with the embedding model per record
            (:func:`medzs.scoring.fuse_per_record`); the ``model`` column reads ``<model>+<hybrid>``.
        precision: Encoder forward precision, ``"fp32"``, ``"bf16"`` or ``"auto"``
            (:func:`medzs.engine.resolve_precision`).
        quality: Run the plausibility checks (:mod:`medzs.quality`); their flags fill ``quality_flags``.

    Returns:
        A :class:`BatchResult` (counts only).

    Raises:
        SpecError: bad inputs or options, a salt missing, or ``<out>.shards/`` holding another run's shards
            (without ``overwrite``), or another run holding its lock.
    """
    from medzs import registry
    from medzs.data.tasks import get_task

    t0 = time.time()
    if engine not in ENGINES:
        raise SpecError(f"engine: expected one of {ENGINES}, got {engine!r}")
    if batch_size < 1 or shard_size < 1:
        raise SpecError(f"batch_size and shard_size: expected >= 1, got {batch_size} and {shard_size}")
    if hash_ids and not salt:
        raise SpecError("hash_ids: a salt is required (pass salt=, or --salt-env VAR with VAR set)")
    out = Path(out)
    the_task = get_task(task) if isinstance(task, str) else task
    task = the_task.name
    classes = list(the_task.classes)
    criteria_name = model if model in registry.SCORERS else hybrid
    if model in registry.SCORERS:
        if hybrid:
            raise SpecError(f"hybrid: {model} is a scorer already; give an embedding model with hybrid={hybrid!r}")
        if weights is not None:
            raise SpecError(f"weights: {model} uses no weights (it scores from measurements and KB criteria)")
        if softmax:
            raise SpecError(f"softmax: {model} scores are already in [0, 1]; softmax applies to embedding models")
        config = None
    else:
        config = registry.get_config(model)
        if hybrid is not None and hybrid not in registry.SCORERS:
            raise SpecError(f"hybrid: expected a registered scorer ({', '.join(registry.list_scorers())}), "
                            f"got {hybrid!r}")
    if config is not None and getattr(the_task, "modality", "ecg") != config.modality:
        raise SpecError(f"task {the_task.name!r} is a {getattr(the_task, 'modality', 'ecg')} task but model {model!r} "
                        f"reads {config.modality} inputs (see `medzs models`)")
    weights = str(weights) if weights is not None else (config.weights if config is not None else None)
    model_label = f"{model}+{hybrid}" if hybrid else model
    records = discover_records(inputs, modality=config.modality if config is not None else "ecg")
    if not records:
        raise SpecError(f"inputs {[os.fspath(i) for i in inputs]}: no ECG file found")
    n = len(records)
    logger.info("score: %d records discovered", n)

    if config is None:  # a scorer alone: no prompts
        prompts: Mapping[str, Any] | None = None
    elif class_prompts is None:
        from medzs.prompts.tasks import task_prompts

        prompts = task_prompts(the_task, prompts_writer, prompts_cache, kb_path=kb_path)
    else:
        missing = [c for c in classes if c not in class_prompts]
        if missing:
            raise SpecError(f"class_prompts: classes {missing} of task {task} missing")
        prompts = class_prompts
    run_info = {
        "format": BATCH_FORMAT,
        "version": BATCH_FORMAT_VERSION,
        "records_sha256": records_fingerprint(records),
        "n_records": n,
        "model": model,
        "weights_sha256": registry.sha256_file(weights) if weights and Path(weights).is_file() else None,
        "task": task,
        "classes": classes,
        "prompts_sha256": _prompts_digest(prompts, classes) if prompts is not None else None,
        "softmax": bool(softmax),
        "precision": resolve_precision(precision, config),
        "quality": bool(quality),
        "shard_size": int(shard_size),
        "hash_ids": bool(hash_ids),
        "salt_check": hash_id("medzs-salt-check", salt) if hash_ids and salt else None,
    }
    criteria_scorer = None
    if criteria_name:  # only then: keeps the run keys of embedding-only runs unchanged
        criteria_scorer = registry.create_scorer(criteria_name)
        run_info["criteria"] = {"name": criteria_name, "rules_sha256": _criteria_digest(criteria_scorer, the_task),
                                "fusion": ("fuse_per_record: 0.5 * embedding on [0, 1] ((cos+1)/2, or the softmax "
                                           "probability) + 0.5 * criteria; criteria NaN: embedding alone")
                                if hybrid else None}
    run_key = hashlib.sha256(json.dumps(run_info, sort_keys=True).encode()).hexdigest()
    metadata = {"run_key": run_key, **{k: run_info[k] for k in ("format", "version", "n_records", "model", "task",
                                                                "classes", "prompts_sha256", "hash_ids",
                                                                "softmax")}}
    if criteria_name:
        metadata["criteria"] = run_info["criteria"]
    plan = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]

    def result(n_resumed: int, complete: bool) -> BatchResult:
        n_ok, errors = _count_statuses(out)
        res = BatchResult(out=out, n_records=n, n_ok=n_ok, n_error=sum(errors.values()),
                          error_classes=dict(sorted(errors.items())), n_shards=len(plan),
                          n_shards_resumed=n_resumed, already_complete=complete, engine=engine,
                          seconds=round(time.time() - t0, 3), run_key=run_key)
        logger.info("score: %d records, %d ok, %d errors (%s); %d shards, %d resumed; %.1f s", n, res.n_ok,
                    res.n_error, ", ".join(f"{k}={v}" for k, v in res.error_classes.items()) or "none",
                    res.n_shards, n_resumed, res.seconds)
        return res

    shards = Path(f"{out}.shards")
    if out.is_file() and _file_run_key(out) == (run_key, n):
        if shards.is_dir() and not keep_shards:
            with _locked(shards):
                _remove_shards(shards)
        logger.info("score: output already complete for this run; nothing to do")
        return result(len(plan), True)

    with _locked(shards):
        run_file = shards / RUN_FILE
        if run_file.is_file():
            try:
                previous = json.loads(run_file.read_text()).get("run_key")
            except (OSError, ValueError):
                previous = None
            if previous != run_key:
                if not overwrite:
                    raise SpecError(
                        f"{shards}: holds shards of a different run (input records, model, weights, task, prompts, "
                        "shard size or id hashing changed); pass --overwrite to discard them, or choose another --out")
                logger.warning("score: discarding shards of a different run (overwrite)")
                _clear_shards(shards)
        if not run_file.is_file():
            _atomic_write_text(run_file, json.dumps({**run_info, "run_key": run_key}, sort_keys=True, indent=1))
        for stale in shards.glob(".part-*.tmp"):
            stale.unlink(missing_ok=True)
        for stale in out.parent.glob(f".{out.name}.*.tmp"):
            stale.unlink(missing_ok=True)

        done, redo = set(), 0
        for s, e in plan:
            p = shards / shard_name(s, e)
            if p.is_file():
                if _shard_ok(p, s, e, run_key):
                    done.add((s, e))
                else:
                    p.unlink()
                    redo += 1
        if redo:
            logger.warning("score: %d unreadable shard(s) will be recomputed", redo)
        pending = [r for r in plan if r not in done]
        logger.info("score: %d shards, %d complete, %d to do (engine %s)", len(plan), len(done), len(pending),
                    engine)
        formatter = _RowFormatter(records, classes, model_label, task, salt if hash_ids else None, metadata)

        if pending:
            from tqdm.auto import tqdm

            w_override = weights if config is not None and weights != config.weights else None
            loaded = registry.create_model(model, weights=w_override) if config is not None else None
            scorer_obj = class_scorer(loaded, prompts, classes, softmax=softmax) if loaded is not None else None
            unit = "ECG" if loaded is None or loaded.config.modality == "ecg" else "image"
            bar = tqdm(total=n, initial=n - sum(e - s for s, e in pending), unit=unit, desc="score",
                       disable=not progress, dynamic_ncols=True)
            engine_options = {"softmax": softmax, "fusion": "per-record", "precision": precision,
                              "quality": quality}
            built = None
            if engine == "local":
                built = Engine(loaded, scorer_obj, criteria=criteria_scorer, task=the_task if criteria_scorer else None,
                               **engine_options)
            job = Job(records=records, pending=pending, model_name=model if config is not None else None,
                      weights=w_override, class_scorer=scorer_obj, batch_size=batch_size, engine=built,
                      torch_threads=torch_threads, progress=bar.update,
                      options={"address": ray_address, "num_actors": ray_actors,
                               "cpus_per_actor": ray_cpus_per_actor, "num_cpus": ray_num_cpus,
                               "show_progress": progress},
                      criteria=criteria_name, task=the_task if criteria_name else None,
                      engine_options=engine_options)
            del loaded
            try:
                for s, e, rows in _engine(engine)(job):
                    check_rows(rows, s, e, engine)
                    _atomic_write_table(formatter.table(rows), shards / shard_name(s, e))
            finally:
                bar.close()
        _merge(shards, plan, out, output_schema(classes, metadata), run_key)
        if not keep_shards:
            _remove_shards(shards)
    return result(len(done), False)


def _atomic_write_text(path: Path, text: str) -> None:
    with _atomic_file(path, "w") as fh:
        fh.write(text)


def _clear_shards(shards: Path) -> None:
    for p in shards.iterdir():
        if p.name != LOCK_FILE and (p.name == RUN_FILE or _SHARD_RE.match(p.name) or p.name.endswith(".tmp")):
            p.unlink(missing_ok=True)


def _remove_shards(shards: Path) -> None:
    _clear_shards(shards)
    (shards / LOCK_FILE).unlink(missing_ok=True)
    try:
        shards.rmdir()
    except OSError:
        logger.warning("score: shards folder kept (it holds other files)")


def _merge(shards: Path, plan: Sequence[tuple[int, int]], out: Path, schema: Any, run_key: str) -> None:
    """Concatenate the shards in record order into ``out`` (temporary file + :func:`os.replace`)."""
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_file(out) as fh, pq.ParquetWriter(fh, schema) as writer:
        for s, e in plan:
            table = pq.read_table(shards / shard_name(s, e))
            if table.num_rows != e - s:
                raise RuntimeError(f"{shards / shard_name(s, e)}: {table.num_rows} rows, expected {e - s}")
            writer.write_table(table.replace_schema_metadata(schema.metadata))
