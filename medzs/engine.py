"""The zero-shot engine: the one place where records become scores, for every dataset and modality.

::

    records -> content-detected reader (medzs.io) -> quality checks (medzs.quality)
            -> transforms derived from the encoder's InputSpec (medzs.transforms)
            -> batched encoder (medzs.registry) -> class scorer (medzs.scoring) -> per-record rows

``medzs score`` (:mod:`medzs.batch`) writes the rows to resumable Parquet shards; ``medzs zeroshot``
(:mod:`medzs.pipeline`) joins them with a dataset's labels for AUROC. Both call :meth:`Engine.stream`, so the same
record gets the same score from both commands. Memory is bounded: one batch of signals (plus one being read ahead)
is held at a time.

A record that fails to read, preprocess or pass the quality rule becomes an *error row* (``status="error"``,
``error_class``, ``error_message``), never a crash; the message is the reader's one-line error.

Identifiers: while a record is read, log records created in that thread have its path, file name and id replaced
by ``record #<index>`` (:func:`redact_logs`, :func:`reading`); medzs logs only counts and error classes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medzs.errors import RecordError, SpecError

logger = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS", "Engine", "Job", "Record", "identifier_pattern", "local_engine", "read_record",
    "reading", "redact_logs",
]

#: Numeric precisions of the encoder forward pass (``--precision``).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")


# ---------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Record:
    """One input record of a run.

    Attributes:
        index: Position in the run's deterministic ordering (0-based).
        path: Absolute path of the file (or series folder) to read (a WFDB/CinC record's ``.hea``).
        source_id: Source identifier: a dataset's record id, the path relative to its input root (POSIX
            separators), or a manifest's ``record_id``.
        format: Reader format when known (skips content detection), e.g. ``"wfdb"``; None: detect.
        read_kwargs: Reader keyword arguments as ``((name, value), ...)`` (hashable).
    """

    index: int
    path: str
    source_id: str
    format: str | None = None
    read_kwargs: tuple[tuple[str, Any], ...] = ()


def read_record(record: Record, modality: str = "ecg") -> tuple[str | None, dict[str, Any]]:
    """Read one record with the reader of its modality (format detected from content unless given).

    Returns:
        ``(format name, sample dict)``.

    Raises:
        RecordError: unreadable or unsupported content (one line naming the file, field and expectation).
    """
    kwargs = dict(record.read_kwargs)
    if modality == "ecg":
        from medzs.io.detect import detect_format, read_ecg

        fmt = record.format or detect_format(record.path)
        return fmt, read_ecg(record.path, format=fmt, **kwargs)
    if modality in ("cxr", "ct"):
        from medzs.io.image import read_any_image

        sample = read_any_image(record.path, format=record.format, modality=modality, **kwargs)
        return str(sample.get("meta", {}).get("format") or record.format or ""), sample
    raise SpecError(f"engine: no reader for modality {modality!r} (expected 'ecg', 'cxr' or 'ct')")


#: Python module -> the medzs extra that installs it (for one-line errors when a reader's package is missing).
EXTRAS: dict[str, str] = {"pydicom": "formats", "lxml": "formats", "sierraecg": "formats", "neurokit2": "measure",
                          "monai": "imaging", "nibabel": "imaging", "PIL": "imaging", "pylibjpeg": "imaging",
                          "open_clip": "imaging-models", "timm": "imaging-models"}


def missing_package_message(record: Record, exc: ImportError) -> str:
    """``"<file>: needs the package X (pip install 'medzs[extra]')"`` for an ImportError raised while reading."""
    name = (getattr(exc, "name", None) or str(exc)).split(".")[0]
    extra = EXTRAS.get(name)
    hint = f"pip install 'medzs[{extra}]'" if extra else f"pip install {name}"
    return f"{os.path.basename(record.path)}: reading it needs the package {name!r}, which is not installed ({hint})"


def preprocessor(spec: Any) -> Callable[[Mapping[str, Any]], np.ndarray]:
    """The array transform an InputSpec implies: ``sample -> channel-first float32 array`` of ``spec``'s shape."""
    from medzs.spec import ECGInputSpec, ImageInputSpec, VolumeInputSpec

    if isinstance(spec, ECGInputSpec):
        from medzs.transforms.ecg import preprocess

        return lambda sample: preprocess(sample, spec)
    if isinstance(spec, ImageInputSpec):
        from medzs.transforms.image import preprocess_image

        return lambda sample: preprocess_image(sample, spec)
    if isinstance(spec, VolumeInputSpec):
        from medzs.transforms.image import preprocess_volume

        return lambda sample: preprocess_volume(sample, spec)
    raise SpecError(f"engine: unsupported input spec {type(spec).__name__}")


def quality_check(modality: str) -> Callable[[Mapping[str, Any]], str | None] | None:
    """The plausibility stage of a modality: ``sample -> quality_flags string or None``; raises
    :class:`~medzs.errors.RecordError` when a flag turns the record into an error (rule in :mod:`medzs.quality`).
    None when the modality has no checks."""
    if modality != "ecg":
        return None
    from medzs.quality import check_and_enforce

    return check_and_enforce


# ---------------------------------------------------------------------------------------------- redaction
def identifier_pattern(record: Record) -> re.Pattern[str]:
    """Regex matching the ways a record can be named in a message.

    It matches the absolute and real path, the source id, the file name and the stem (each with or without
    extensions), so that ``/data/site/00042_hr.dat`` and ``00042_hr`` are both caught.
    """
    forms: set[str] = set()
    for s in (record.path, os.path.realpath(record.path), record.source_id):
        if not s:
            continue
        forms.add(s)
        forms.add(os.path.splitext(s)[0])
        base = os.path.basename(s.rstrip("/"))
        forms.add(base)
        forms.add(base.split(".", 1)[0])
    ordered = sorted((f for f in forms if f), key=len, reverse=True)
    alternation = "|".join(re.escape(f) for f in ordered)
    return re.compile(rf"(?<![\w])(?:{alternation})(?:\.[A-Za-z0-9]+)*(?![\w])")


_redact_state = threading.local()
_factory_lock = threading.Lock()
_factory_users = 0
_previous_factory: Callable[..., logging.LogRecord] | None = None


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous_factory is not None
    rec = _previous_factory(*args, **kwargs)
    state = getattr(_redact_state, "current", None)
    if state is not None:
        pattern, replacement = state
        try:
            msg = rec.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call must not break scoring
            msg = str(rec.msg)
        rec.msg = pattern.sub(replacement, msg)
        rec.args = ()
        if rec.exc_info:
            rec.msg += f" [{getattr(rec.exc_info[0], '__name__', 'exception')}]"
            rec.exc_info = None
            rec.exc_text = None
        rec.stack_info = None
    return rec


@contextlib.contextmanager
def redact_logs() -> Iterator[None]:
    """Install (reference-counted) a log-record factory that redacts the record being read.

    While active, log records created in a thread inside :func:`reading` have the current record's
    identifiers replaced (message formatted first, traceback dropped). Other threads are not affected.
    """
    global _factory_users, _previous_factory
    with _factory_lock:
        if _factory_users == 0:
            _previous_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_redacting_factory)
        _factory_users += 1
    try:
        yield
    finally:
        with _factory_lock:
            _factory_users -= 1
            if _factory_users == 0:
                if logging.getLogRecordFactory() is _redacting_factory and _previous_factory is not None:
                    logging.setLogRecordFactory(_previous_factory)
                _previous_factory = None


@contextlib.contextmanager
def reading(record: Record) -> Iterator[list[warnings.WarningMessage]]:
    """Context of reading one record: its identifiers are redacted from log records of this thread, and the
    warnings raised are caught (counted in a debug line, never shown with the file name)."""
    previous = getattr(_redact_state, "current", None)
    _redact_state.current = (identifier_pattern(record), f"record #{record.index}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        _redact_state.current = previous


# ---------------------------------------------------------------------------------------------- precision
def bf16_native() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), as read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, config: Any = None) -> str:
    """``fp32``/``bf16`` as asked, or for ``auto``: bf16 only where the CPU computes it natively *and* the
    model's card records a bf16 AUROC check (``config.extra["bf16_checked"]`` true: change < 0.005 on its reported
    folds), else fp32.

    Raises:
        SpecError: unknown precision.
    """
    if precision not in PRECISIONS:
        raise SpecError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    checked = bool(getattr(config, "extra", {}).get("bf16_checked")) if config is not None else False
    return "bf16" if checked and bf16_native() else "fp32"


# ---------------------------------------------------------------------------------------------- engine
class Engine:
    """Reads, checks, preprocesses and scores records with one loaded model and/or a registered scorer.

    Args:
        model: A :func:`medzs.registry.create_model` model (``encode_signal``, ``config.input_spec``); None with a
            ``criteria`` scorer alone.
        class_scorer: A :class:`medzs.scoring.ClassScorer` (the task's class side, prepared once); None without a
            model, or when only embeddings are wanted (``embeddings=True``).
        criteria: A registered scorer (:func:`medzs.registry.create_scorer`, e.g. ``ecg-criteria.kb``): alone
            (``model=None``) its scores are the output; with a model they are fused (``fusion``).
        task: The task (name or :class:`~medzs.data.tasks.Task`) the criteria scorer scores; required with it.
        fusion: ``"per-record"`` (fused here, :func:`medzs.scoring.fuse_per_record`) or ``"rank-average"`` (the
            rows carry both parts; the caller fuses over the run, :func:`medzs.scoring.fuse_rank_average`).
        fusion_weight: Weight of the criteria score.
        softmax: The class scorer's scores are probabilities (needed to map them for per-record fusion).
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (:func:`resolve_precision`).
        embeddings: Also return each record's ``(D,)`` embedding (for linear probes).
        quality: Run the modality's plausibility checks (:mod:`medzs.quality`).
        modality: Overrides the model's modality (``"ecg"`` for a criteria scorer alone).
        explain: With a criteria scorer, add each record's per-class criteria explanation
            (:meth:`medzs.criteria.CriteriaScorer.explain`) to its row as ``criteria_explanation``.
        pre_transform: ``sample -> sample`` applied right after reading, before the checks (e.g. a benchmark's
            published pre-step, :func:`medzs.benchmarks.merl.cpsc_first_2500`).
    """

    def __init__(self, model: Any = None, class_scorer: Any = None, criteria: Any = None, task: Any = None,
                 fusion: str = "per-record", fusion_weight: float = 0.5, softmax: bool = False,
                 precision: str = "fp32", embeddings: bool = False, quality: bool = True,
                 modality: str | None = None, pre_transform: Callable[[Any], Any] | None = None,
                 explain: bool = False) -> None:
        if model is None and criteria is None:
            raise SpecError("Engine: give a model, a criteria scorer, or both")
        if model is not None and class_scorer is None and not embeddings:
            raise SpecError("Engine: a model needs a class scorer (or embeddings=True)")
        from medzs.scoring import FUSIONS

        if fusion not in FUSIONS:
            raise SpecError(f"scoring.fusion: expected one of {FUSIONS}, got {fusion!r}")
        self.model = model
        self.spec = model.config.input_spec if model is not None else None
        self.modality = modality or (self.spec.modality if self.spec is not None else "ecg")
        self.class_scorer = class_scorer
        self.criteria = criteria
        if criteria is not None:
            if task is None:
                raise SpecError("Engine: a criteria scorer needs the task")
            if isinstance(task, str):
                from medzs.data.tasks import get_task

                task = get_task(task)
        self.task = task
        self.fusion = fusion
        self.fusion_weight = float(fusion_weight)
        self.softmax = bool(softmax)
        self.precision = resolve_precision(precision, model.config if model is not None else None)
        self.embeddings = bool(embeddings)
        self.pre_transform = pre_transform
        self.explain = bool(explain) and criteria is not None
        self._prep = preprocessor(self.spec) if self.spec is not None else None
        self._quality = quality_check(self.modality) if quality else None
        if class_scorer is not None:
            self.n_classes = int(class_scorer.n_classes)
        elif task is not None and not isinstance(task, str):
            self.n_classes = len(task.classes)
        else:
            self.n_classes = 0

    @classmethod
    def load(cls, model_name: str | None, class_scorer: Any = None, weights: str | None = None,
             torch_threads: int | None = None, criteria: str | None = None, task: Any = None,
             **options: Any) -> Engine:
        """Build the model (CPU, eval mode) and/or the named scorer, and an engine around them (once per Ray
        actor). ``options`` go to :class:`Engine`."""
        import torch

        from medzs import registry

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        model = registry.create_model(model_name, weights=weights) if model_name else None
        scorer = registry.create_scorer(criteria) if criteria else None
        return cls(model, class_scorer, criteria=scorer, task=task, **options)

    def _missing_leads(self, sample: Mapping[str, Any]) -> list[str]:
        """Leads of an ECG spec that accepts masked input which the record lacks (absent or all-NaN)."""
        spec = self.spec
        if spec is None or not getattr(spec, "accepts_masked", False) or "leads" not in sample:
            return []
        from medzs.transforms.ecg import lead_key

        sig = np.asarray(sample.get("signal"))
        have = set()
        for i, name in enumerate(sample["leads"]):
            row = sig[i] if sig.ndim == 2 and i < sig.shape[0] else None
            if row is None or not np.isnan(row).all():
                have.add(lead_key(name))
        return [name for name in spec.leads if lead_key(name) not in have]

    # -- one record -------------------------------------------------------------------------------------
    def read(self, record: Record) -> dict[str, Any]:
        """Read one record, run the quality rule and the criteria measurements; never raises.

        Returns:
            ``{"format", "sample" (to preprocess), "m" (criteria measurements or None), "flags",
            "error" (exception or None)}``; :meth:`read_batch` adds ``"x"``, the preprocessed array.
        """
        out: dict[str, Any] = {"format": record.format, "x": None, "m": None, "flags": None, "error": None}
        with reading(record) as caught:
            try:
                fmt, sample = read_record(record, self.modality)
                out["format"] = fmt
                if self.pre_transform is not None:
                    sample = self.pre_transform(sample)
                if self._quality is not None:
                    out["flags"] = self._quality(sample)
                missing = self._missing_leads(sample)
                if missing:  # masked input: say which of the encoder's leads the record lacks
                    note = f"missing_leads:{len(missing)}:{','.join(missing)}"
                    out["flags"] = f"{out['flags']};{note}" if out["flags"] else note
                if self._prep is not None:
                    out["sample"] = sample  # preprocessed per batch (:meth:`read_batch`)
                if self.criteria is not None:  # measured on the signal as read (measure_ecg resamples itself)
                    out["m"] = self.criteria.measure([sample])[0]
            except ImportError as exc:  # an optional reader package: say which extra installs it
                out["error"] = RecordError(missing_package_message(record, exc))
            except Exception as exc:  # noqa: BLE001 - every failure of one record becomes an error row
                out["error"] = exc
                if out["flags"] is None:
                    out["flags"] = getattr(exc, "quality_flags", None)
        if caught:
            logger.debug("record #%d: %d warning(s) while reading (%s)", record.index, len(caught),
                         ", ".join(sorted({w.category.__name__ for w in caught})))
        return out

    def read_batch(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        """:meth:`read` each record, then preprocess the batch from the InputSpec (ECGs: one band-pass call per
        group of equal length, :func:`medzs.transforms.ecg.preprocess_many`); never raises."""
        read = [self.read(r) for r in records]
        todo = [i for i, r in enumerate(read) if r["error"] is None and r.get("sample") is not None]
        if not todo:
            return read
        from medzs.spec import ECGInputSpec

        if isinstance(self.spec, ECGInputSpec):
            from medzs.transforms.ecg import preprocess_many

            with redact_logs():
                results = preprocess_many([read[i]["sample"] for i in todo], self.spec)
        else:
            results = []
            for i in todo:
                with reading(records[i]):
                    try:
                        results.append(self._prep(read[i]["sample"]))
                    except Exception as exc:  # noqa: BLE001
                        results.append(exc)
        for i, res in zip(todo, results, strict=True):
            if isinstance(res, BaseException):
                read[i]["error"] = res
            else:
                read[i]["x"] = res
            read[i].pop("sample", None)
        return read

    # -- a batch of read records -------------------------------------------------------------------------
    def _forward(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(np.stack(xs), dtype=np.float32))
        with torch.inference_mode():
            if self.precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    emb = self.model.encode_signal(x)
            else:
                emb = self.model.encode_signal(x)
        return emb.float().numpy()

    def _scores(self, items: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        from medzs.scoring import fuse_per_record

        out: dict[str, np.ndarray] = {}
        sims = crit = None
        if self.model is not None:
            emb = self._forward([it["x"] for it in items])
            if self.embeddings:
                out["embedding"] = emb.astype(np.float32)
            if self.class_scorer is not None:
                sims = np.asarray(self.class_scorer(emb), dtype=np.float64)
        if self.criteria is not None:
            crit = np.asarray(self.criteria.score_measurements([it["m"] for it in items], self.task).scores,
                              dtype=np.float64)
        if sims is not None and crit is not None:
            out["embedding_scores"] = sims.astype(np.float32)
            out["criteria_scores"] = crit.astype(np.float32)
            out["scores"] = (fuse_per_record(sims, crit, softmax=self.softmax, weight=self.fusion_weight)
                             if self.fusion == "per-record" else sims).astype(np.float32)
        elif sims is not None:
            out["scores"] = sims.astype(np.float32)
        elif crit is not None:
            out["scores"] = crit.astype(np.float32)
        return out

    def score_read(self, records: Sequence[Record], read: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score records already read by :meth:`read`; never raises for a bad record.

        Returns:
            One row per record, in order: ``record_index``, ``source_format``, ``status`` (``"ok"``/``"error"``),
            ``error_class``, ``error_message`` (unredacted), ``quality_flags`` (str or None), ``scores``
            (``(C,)`` float32, NaN for errors) and, when asked or fused by rank, ``embedding``,
            ``embedding_scores``, ``criteria_scores``.
        """
        rows: list[dict[str, Any]] = []
        ok: list[int] = []
        for rec, r in zip(records, read, strict=True):
            row = {"record_index": rec.index, "source_format": r["format"], "status": "ok", "error_class": None,
                   "error_message": None, "quality_flags": r["flags"],
                   "scores": np.full(self.n_classes, np.nan, dtype=np.float32)}
            exc = r["error"]
            if exc is not None:
                row.update(status="error", error_class=type(exc).__name__, error_message=str(exc) or None)
            else:
                ok.append(len(rows))
            rows.append(row)
        if ok:
            try:
                parts = self._scores([read[i] for i in ok])
            except Exception:  # noqa: BLE001 - isolate the record that breaks the batch
                parts = None
            for j, i in enumerate(ok):
                if self.explain:
                    rows[i]["criteria_explanation"] = self.criteria.explain(read[i]["m"], self.task)
                if parts is not None:
                    rows[i].update({k: v[j] for k, v in parts.items()})
                    continue
                try:
                    rows[i].update({k: v[0] for k, v in self._scores([read[i]]).items()})
                except Exception as exc:  # noqa: BLE001
                    rows[i].update(status="error", error_class=type(exc).__name__, error_message=str(exc) or None)
        n_err = sum(r["status"] == "error" for r in rows)
        if n_err:
            classes = Counter(r["error_class"] for r in rows if r["status"] == "error")
            logger.info("batch: %d of %d records failed (%s)", n_err, len(rows),
                        ", ".join(f"{k}={v}" for k, v in sorted(classes.items())))
        return rows

    def score(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        """Read and score a batch of records (:meth:`read` + :meth:`score_read`); never raises for a bad record."""
        with redact_logs():
            return self.score_read(records, self.read_batch(records))

    def stream(self, records: Iterable[Record], batch_size: int = 64, prefetch: bool = True,
               progress: Callable[[int], None] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Score records batch by batch, reading the next batch in a background thread while the encoder runs.

        Args:
            records: Records, in order (any iterable; consumed lazily).
            batch_size: Records per encoder batch.
            prefetch: Read ahead one batch in a thread (reading and the forward pass overlap).
            progress: Called with the number of records of each finished batch.

        Yields:
            The rows of each batch (:meth:`score_read`), in order.
        """
        if batch_size < 1:
            raise SpecError(f"batch_size: expected >= 1, got {batch_size}")

        def batches() -> Iterator[list[Record]]:
            buf: list[Record] = []
            for r in records:
                buf.append(r)
                if len(buf) == batch_size:
                    yield buf
                    buf = []
            if buf:
                yield buf

        read_batch = self.read_batch

        with redact_logs():
            if not prefetch:
                for batch in batches():
                    rows = self.score_read(batch, read_batch(batch))
                    if progress:
                        progress(len(batch))
                    yield rows
                return
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medzs-read") as pool:
                it = batches()
                current = next(it, None)
                pending = pool.submit(read_batch, current) if current is not None else None
                while current is not None:
                    read = pending.result()
                    nxt = next(it, None)
                    pending = pool.submit(read_batch, nxt) if nxt is not None else None
                    rows = self.score_read(current, read)
                    if progress:
                        progress(len(current))
                    yield rows
                    current = nxt


# ---------------------------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """What an execution backend (local, Ray) needs to score the missing shards of a run.

    Attributes:
        records: All records of the run.
        pending: Shard ranges ``(start, end)`` still to score, ascending.
        model_name: Registry name of the embedding model (None: the criteria scorer alone).
        weights: Checkpoint override (None: the config's).
        class_scorer: The prepared :class:`medzs.scoring.ClassScorer` (None without a model).
        batch_size: Records per encoder batch.
        engine: A built :class:`Engine` when the driver has one (the local backend reuses it).
        torch_threads: Torch intra-op threads of the local backend (None: torch's default).
        progress: Called with the number of records just finished.
        options: Backend options (Ray: ``address``, ``num_actors``, ``cpus_per_actor``, ``num_cpus``,
            ``show_progress``).
        criteria: Registry name of a scorer (:data:`medzs.registry.SCORERS`), alone or fused with the model.
        task: Task name (needed by the criteria scorer).
        engine_options: Keyword arguments of :class:`Engine` (softmax, fusion, precision, quality...).
    """

    records: Sequence[Record]
    pending: Sequence[tuple[int, int]]
    model_name: str | None
    weights: str | None
    class_scorer: Any
    batch_size: int
    engine: Engine | None = None
    torch_threads: int | None = None
    progress: Callable[[int], None] = lambda n: None
    options: dict[str, Any] = field(default_factory=dict)
    criteria: str | None = None
    task: Any = None
    engine_options: dict[str, Any] = field(default_factory=dict)


def local_engine(job: Job) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
    """Score the pending shards in this process, streaming batches (:meth:`Engine.stream`).

    Yields:
        ``(start, end, rows)`` per shard, in order.
    """
    import torch

    previous = torch.get_num_threads()
    if job.torch_threads:
        torch.set_num_threads(int(job.torch_threads))
    try:
        engine = job.engine or Engine.load(job.model_name, job.class_scorer, job.weights, criteria=job.criteria,
                                           task=job.task, **job.engine_options)
        for start, end in job.pending:
            rows: list[dict[str, Any]] = []
            for batch_rows in engine.stream(job.records[start:end], job.batch_size, progress=job.progress):
                rows.extend(batch_rows)
            yield start, end, rows
    finally:
        torch.set_num_threads(previous)


def check_rows(rows: Sequence[Mapping[str, Any]], start: int, end: int, backend: str) -> None:
    """Raise RuntimeError when a backend returned a shard incomplete or out of order (a bug, not bad input)."""
    if [int(r["record_index"]) for r in rows] != list(range(start, end)):
        raise RuntimeError(f"engine {backend}: shard {start}-{end} came back incomplete or out of order")
