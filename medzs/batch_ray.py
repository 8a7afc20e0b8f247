"""Ray engine of :mod:`medzs.batch`: the same job on Ray Data, locally or on a cluster.

Pipeline: ``ray.data.from_items(records)`` -> ``map_batches(RayScorer, compute=ActorPoolStrategy(size=k))``
(each actor builds the model - and/or the criteria scorer - **once** and scores batches with
:class:`medzs.engine.Engine`, exactly as the local backend does) -> the driver streams the small score rows back (``iter_batches``, order preserved) and writes
each shard atomically as soon as all its rows have arrived. Signals are read on the workers and never travel;
only paths go out and scores come back. Resumption, the output schema, id hashing and the final merge are those
of :func:`medzs.batch.score_files` (``engine="ray"``), so a run killed under Ray resumes with either engine.

Ray is imported lazily (``pip install 'medzs[ray]'``). Without an address (and without ``$RAY_ADDRESS``) a local
instance is started with ``num_cpus=min(2, os.cpu_count())``, no dashboard, and shut down afterwards; with an
address the job connects to that cluster, whose workers need medzs installed and the model weights at the same
path.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from medzs.engine import Engine, Job, Record

logger = logging.getLogger(__name__)

__all__ = ["RayScorer", "init_ray", "ray_engine"]

#: Environment passed to Ray workers (offline Hugging Face stack, no Chroma telemetry).
_WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
#: Object store of a local instance, bytes (small: only paths and scores pass through it).
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024


def init_ray(address: str | None = None, num_cpus: int | None = None,
             object_store_memory: int | None = LOCAL_OBJECT_STORE_BYTES) -> bool:
    """Connect to Ray: an existing connection, a cluster (``address`` or ``$RAY_ADDRESS``), else a local instance.

    Args:
        address: Cluster address (``ray://host:10001`` or ``host:6379``); None: ``$RAY_ADDRESS`` or local.
        num_cpus: CPUs of a local instance (default ``min(2, os.cpu_count())``).
        object_store_memory: Object store of a local instance, bytes.

    Returns:
        True when this call started Ray (the caller shuts it down), False when it was already initialised.
    """
    import ray

    if ray.is_initialized():
        return False
    env = {k: os.environ.get(k, v) for k, v in _WORKER_ENV.items()}
    common: dict[str, Any] = {"include_dashboard": False, "runtime_env": {"env_vars": env},
                              "logging_level": logging.WARNING}
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        logger.info("ray: connecting to a cluster")
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=num_cpus or min(2, os.cpu_count() or 1), object_store_memory=object_store_memory,
                 **common)
    return True


class RayScorer:
    """Ray Data callable class: builds the engine once per actor, then scores batches of records.

    Args:
        model_name: Registry name (None: the criteria scorer alone). weights: Checkpoint override (None: the
            config's).
        class_scorer: The :class:`medzs.scoring.ClassScorer` prepared by the driver (None without a model).
        torch_threads: Torch intra-op threads of this actor.
        criteria: Registered scorer (``ecg-criteria.kb``), alone or fused with the model. task: Its task name.
        engine_options: Keyword arguments of :class:`medzs.engine.Engine`.
    """

    def __init__(self, model_name: str | None, weights: str | None, class_scorer: Any,
                 torch_threads: int = 1, criteria: str | None = None, task: str | None = None,
                 engine_options: dict[str, Any] | None = None) -> None:
        for k, v in _WORKER_ENV.items():
            os.environ.setdefault(k, v)
        self.engine = Engine.load(model_name, class_scorer, weights=weights, torch_threads=torch_threads,
                                  criteria=criteria, task=task, **(engine_options or {}))
        self.n_classes = self.engine.n_classes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [Record(int(i), str(p), str(s), str(f) or None)
                   for i, p, s, f in zip(batch["record_index"], batch["path"], batch["source_id"], batch["format"],
                                         strict=True)]
        rows = self.engine.score(records)

        def col(key: str) -> np.ndarray:
            return np.array(["" if r[key] is None else str(r[key]) for r in rows], dtype=object)

        return {
            "record_index": np.array([r["record_index"] for r in rows], dtype=np.int64),
            "source_format": col("source_format"),
            "status": col("status"),
            "error_class": col("error_class"),
            "error_message": col("error_message"),
            "quality_flags": col("quality_flags"),
            "scores": (np.stack([r["scores"] for r in rows]).astype(np.float32) if rows
                       else np.zeros((0, self.n_classes), np.float32)),
        }


def _none(value: Any) -> str | None:
    s = str(value)
    return s if s else None


def ray_engine(job: Job) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
    """Score the pending shards with Ray Data; yields ``(start, end, raw rows)`` per shard, in order.

    ``job.options``: ``address``, ``num_actors`` (default: CPUs // ``cpus_per_actor``), ``cpus_per_actor``
    (default 1; also the torch threads per actor), ``num_cpus`` (local instance), ``show_progress``.
    """
    import ray
    import ray.data

    opts = job.options
    cpus_per_actor = float(opts.get("cpus_per_actor") or 1.0)
    started = init_ray(opts.get("address"), opts.get("num_cpus"))
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    try:
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = bool(opts.get("show_progress", False))
        items = [{"record_index": r.index, "path": r.path, "source_id": r.source_id, "format": r.format or ""}
                 for s, e in job.pending for r in job.records[s:e]]
        n_batches = max(1, math.ceil(len(items) / job.batch_size))
        n_actors = opts.get("num_actors")
        if not n_actors:
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            n_actors = max(1, int(cpus // cpus_per_actor))
        n_actors = max(1, min(int(n_actors), n_batches))
        logger.info("ray: %d records, %d batches, %d actors x %g CPU", len(items), n_batches, n_actors,
                    cpus_per_actor)
        ds = ray.data.from_items(items, override_num_blocks=min(n_batches, 1000))
        ds = ds.map_batches(
            RayScorer,
            fn_constructor_kwargs={"model_name": job.model_name, "weights": job.weights,
                                   "class_scorer": job.class_scorer, "torch_threads": max(1, int(cpus_per_actor)),
                                   "criteria": job.criteria, "task": job.task,
                                   "engine_options": dict(job.engine_options)},
            batch_size=job.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=cpus_per_actor,
        )
        starts = [s for s, _ in job.pending]
        buffers: dict[int, list[dict[str, Any]]] = {}
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            idx = batch["record_index"]
            for j in range(len(idx)):
                k = bisect.bisect_right(starts, int(idx[j])) - 1
                buffers.setdefault(k, []).append({
                    "record_index": int(idx[j]),
                    "source_format": _none(batch["source_format"][j]),
                    "status": str(batch["status"][j]),
                    "error_class": _none(batch["error_class"][j]),
                    "error_message": _none(batch["error_message"][j]),
                    "quality_flags": _none(batch["quality_flags"][j]),
                    "scores": np.asarray(batch["scores"][j], dtype=np.float32),
                })
            job.progress(len(idx))
            for k in sorted(buffers):
                s, e = job.pending[k]
                if len(buffers[k]) == e - s:
                    rows = sorted(buffers.pop(k), key=lambda r: r["record_index"])
                    yield s, e, rows
        if buffers:
            raise RuntimeError(f"ray: {len(buffers)} shard(s) came back incomplete")
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        if started:
            ray.shutdown()
