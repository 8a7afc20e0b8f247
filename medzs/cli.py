"""Command-line interface: ``medzs zeroshot | train | kb | prompts | models | data``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="medzs: zero-shot classification of ECGs, chest radiographs and CT with clinical-knowledge "
                       "grounding.")
kb_app = typer.Typer(no_args_is_help=True, help="Knowledge base: build, query, stats.")
prompts_app = typer.Typer(no_args_is_help=True, help="Class prompts (CKEPE): build and show.")
train_app = typer.Typer(no_args_is_help=True, help="Train models.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: download from their official homes.")
bench_app = typer.Typer(no_args_is_help=True, help="Reproduce published benchmarks (faithful and corrected).")
app.add_typer(kb_app, name="kb")
app.add_typer(prompts_app, name="prompts")
app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="benchmark")


def _version(value: bool) -> None:
    if value:
        from medzs import __version__

        typer.echo(f"medzs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the medzs version and exit."),
) -> None:
    """medzs: zero-shot ECG classification with clinical-knowledge grounding."""


def _no_file(value: Optional[Path]) -> Optional[Path]:
    """Option callback: a folder option (store, output folder) must not name an existing file."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is a file (expected a folder)")
    return value


def _not_a_folder(value: Optional[Path]) -> Optional[Path]:
    """Option callback: a file option (checkpoint, output file) must not name an existing folder."""
    if value is not None and value.is_dir():
        raise typer.BadParameter(f"{value} is a folder (expected a file path)")
    return value


def _ecg_ids(value: Optional[str]) -> Optional[str]:
    """Option callback: comma-separated positive integers."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise typer.BadParameter(f"{value!r} (expected comma-separated positive integer ecg_ids, e.g. 1,2,17)")
    return value


def _setup(verbose: bool) -> None:
    from medzs.pipeline import default_env

    default_env()
    from rich.logging import RichHandler

    from rich.console import Console

    # logs go to stderr so that a JSON summary on stdout stays parseable
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(show_path=False, console=Console(stderr=True))])
    try:  # quieten the Hugging Face weight-loading bars in a CLI run
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - transformers always present with medzs
        pass


@app.command()
def zeroshot(
    pipeline: Path = typer.Argument(..., help="Pipeline YAML, e.g. pipelines/ptbxl-super.yaml"),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: the pipeline's `output`)."),
    model: Optional[str] = typer.Option(None, help="Registry name overriding the pipeline's model."),
    weights: Optional[Path] = typer.Option(None, help="Checkpoint path overriding the model's weights."),
    precision: Optional[str] = typer.Option(None, help="fp32 | bf16 | auto: encoder precision (default: the "
                                                       "pipeline's engine.precision)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Score a dataset zero-shot and print AUROC per condition (with n positives and 95 % CI)."""
    _setup(verbose)
    from rich.console import Console

    from medzs.engine import PRECISIONS
    from medzs.errors import SpecError
    from medzs.pipeline import load_pipeline, run_zeroshot
    from medzs.report import format_table

    if precision is not None and precision not in PRECISIONS:
        raise SpecError(f"--precision: expected one of {PRECISIONS}, got {precision!r}")
    if out is not None and out.is_file():
        raise SpecError(f"--out: {out} is a file (expected a folder for scores.csv, metrics.json, report.html)")
    if weights is not None and not weights.is_file():
        raise SpecError(f"--weights: {weights} is not a file (expected a checkpoint)")
    cfg = load_pipeline(pipeline)
    if model:
        from medzs import registry

        if model not in registry.list_models() and model not in registry.SCORERS:
            raise SpecError(f"--model: unknown model {model!r} (see `medzs models`)")
        cfg.model["name"] = model
    if weights:
        cfg.model["weights"] = str(weights)
    if precision:
        cfg.engine["precision"] = precision
    err = Console(stderr=True)
    res = run_zeroshot(cfg, out_dir=out, stage=lambda text: err.print(f"[dim]{text} ...[/dim]", highlight=False))
    console = Console()
    if res.get("benchmark"):
        console.print(res["text"], soft_wrap=True, highlight=False)
        for name, path in res["files"].items():
            console.print(f"{name}: {path}")
        return
    model_label = cfg.model["name"] + (f" + {cfg.model['hybrid']}" if cfg.model.get("hybrid") else "")
    title = f"{cfg.name}: zero-shot AUROC ({res['n_records']} records, {model_label})"
    if getattr(res.get("dataset"), "partial", False):
        title += f"\n(partial local mirror of {res['dataset'].name}: {res['dataset'].root}; not comparable with " \
                 "results on the full dataset)"
    if res.get("n_errors"):
        title += f"; {res['n_errors']} record(s) could not be scored (listed in metrics.json)"
    console.print(format_table(res["table"], res["macro"], title=title, names=res["task"].display_names),
                  soft_wrap=True, highlight=False)
    for name, path in res["files"].items():
        console.print(f"{name}: {path}")


@app.command()
def models() -> None:
    """List registered models by modality (embedding encoders and scorers), with input, weights and description."""
    import textwrap

    from rich.console import Console
    from rich.markup import escape

    from medzs import registry

    console = Console()
    width = max(60, min(console.width, 120))
    titles = {"ecg": "ECG", "cxr": "Chest radiographs", "ct": "CT"}
    rows: dict[str, list[tuple[str, str, str, str]]] = {m: [] for m in registry.MODALITY_ORDER}
    for name in sorted(registry.list_models()):
        c = registry.get_config(name)
        weights = Path(c.weights).name if c.weights else "none shipped: give a local checkpoint (weights=)"
        if c.extra.get("checkpoint_format") is None and not c.weights:
            weights = "random initialisation"
        rows[c.modality].append((f"{name}  (embedding model)", c.input_spec.describe(), weights, c.description))
    for name in registry.list_scorers():
        rows["ecg"].append((f"{name}  (scorer)", "12-lead ECG as read (measured)", "no weights",
                            registry.SCORERS[name][1]))
    for modality, items in rows.items():
        if not items:
            continue
        console.print(f"[bold]{titles.get(modality, modality)}[/bold]")
        for name, inp, weights, desc in items:
            # the name is never cut: users copy it
            console.print(f"  [cyan]{escape(name)}[/cyan]", soft_wrap=True)
            for label, text in (("input", inp), ("weights", weights), ("", desc)):
                prefix = f"      {label + ': ' if label else ''}"
                for line in textwrap.wrap(text, width=width - len(prefix)) or [""]:
                    console.print(escape(prefix + line), soft_wrap=True, highlight=False)
                    prefix = " " * len(prefix)
        console.print()


@train_app.command("ecg")
def train_ecg(
    data: Optional[Path] = typer.Option(None, "--data", "--root",
                                        help="PTB-XL folder (default: $MEDZS_PTBXL_ROOT or the shared mirror)."),
    out: Optional[Path] = typer.Option(None, help="Checkpoint to write (default: a new file under "
                                                  "$MEDZS_HOME/models; see --replace-default).",
                                       callback=_not_a_folder),
    replace_default: bool = typer.Option(False, "--replace-default",
                                         help="Write over the shipped medzs/weights/ecg-resnet18.medzs-ptbxl.pt."),
    epochs: Optional[int] = typer.Option(None, min=1,
                                         help="Training epochs (default: the recipe's, see docs/model-card.md)."),
    seed: int = typer.Option(0, help="Seed."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads (default: the recipe's; the AUROCs "
                                                            "reproduce for a fixed torch build and thread count)."),
    max_records: Optional[int] = typer.Option(None, min=1, help="Use only the first N training records (smoke runs)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the embedded default ECG model on PTB-XL folds 1-8 (contrastive, knowledge-grounded text)."""
    _setup(verbose)
    from medzs.recipes import train_ecg as _train

    if data is not None and not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder (expected a PTB-XL folder)", param_hint="--data")
    card = _train(data, out, replace_default=replace_default, epochs=epochs, seed=seed, threads=threads,
                  max_records=max_records)
    typer.echo(json.dumps({k: card.get(k) for k in ("weights", "sha256", "n_train", "seconds")}, indent=2,
                          default=str))


def _train_imaging(kind: str, out: Optional[Path], root: Optional[Path], epochs: Optional[int], seed: int,
                   max_images: Optional[int], verbose: bool) -> None:
    _setup(verbose)
    from medzs.recipes_imaging import train_default

    card = train_default(kind, out=out, root=root, epochs=epochs, seed=seed, max_images=max_images)
    typer.echo(json.dumps({k: card.get(k) for k in ("weights", "sha256", "n_train", "seconds")}, indent=2,
                          default=str))


@train_app.command("cxr")
def train_cxr(
    out: Optional[Path] = typer.Option(None, help="Checkpoint to write (default: runs/train/...; the shipped weights "
                                                  "are replaced only when named here).", callback=_not_a_folder),
    root: Optional[Path] = typer.Option(None, help="Kermany-style folder (default: the shared mirror)."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs (default: the recipe's, chosen by CV)."),
    seed: int = typer.Option(0, help="Seed."),
    max_images: Optional[int] = typer.Option(None, min=1, help="Use only the first N training images (smoke runs)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the embedded chest-radiograph default (pneumonia, Kermany training part; docs/model-card-imaging.md)."""
    _train_imaging("cxr", out, root, epochs, seed, max_images, verbose)


@train_app.command("ct")
def train_ct(
    out: Optional[Path] = typer.Option(None, help="Checkpoint to write (default: runs/train/...; the shipped weights "
                                                  "are replaced only when named here).", callback=_not_a_folder),
    root: Optional[Path] = typer.Option(None, help="COVID-CT slices folder (default: the shared mirror)."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs (default: the recipe's, chosen by CV)."),
    seed: int = typer.Option(0, help="Seed."),
    max_images: Optional[int] = typer.Option(None, min=1, help="Use only the first N training images (smoke runs)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the embedded CT-slice default (COVID-19, source-group-disjoint training part)."""
    _train_imaging("ct", out, root, epochs, seed, max_images, verbose)


@kb_app.command("build")
def kb_build(
    path: Optional[Path] = typer.Option(None, help="Chroma folder (default: $MEDZS_HOME/chroma).", callback=_no_file),
    rebuild: bool = typer.Option(False, help="Embed everything again into a new collection, then swap it in."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Load knowledge/*.yaml into a persistent Chroma collection (offline embeddings)."""
    _setup(verbose)
    from medzs.knowledge.kb import KnowledgeBase
    from medzs.knowledge.loader import load_entries

    entries = load_entries()
    kb = KnowledgeBase(path)
    kb.build(entries, rebuild=rebuild)
    typer.echo(f"{len(entries)} entries, {kb.count()} passages in {kb.path}")


@kb_app.command("query")
def kb_query(
    text: str = typer.Argument(..., help="Free-text query, e.g. 'wide QRS with notched R in V6'."),
    k: int = typer.Option(5, "-k", min=1, help="Passages to show."),
    path: Optional[Path] = typer.Option(None, help="Chroma folder (default: $MEDZS_HOME/chroma).", callback=_no_file),
    collection: Optional[str] = typer.Option(None, "--collection", "-c",
                                             help="Collection (default: the curated one; or an ingested one)."),
) -> None:
    """Show the passages nearest to a query, with ids and sources (reads only: run `medzs kb build` first)."""
    _setup(False)
    from rich.console import Console

    from medzs.errors import KnowledgeBaseError
    from medzs.knowledge.kb import DEFAULT_COLLECTION, KnowledgeBase

    kb = KnowledgeBase(path, collection=collection or DEFAULT_COLLECTION, create=False)  # never writes
    if kb.count() == 0:
        raise KnowledgeBaseError(f"{kb.path}: collection {kb.collection_name!r} is empty (expected passages; "
                                 "run `medzs kb build` or `medzs kb ingest` first)")
    console = Console()
    for p in kb.query(text, k=k):
        score = f"{p.score:.3f}" if p.score is not None else "-"
        where = "".join(f"  {key}={p.metadata[key]}" for key in ("file", "page", "row", "section")
                        if key in p.metadata)
        console.print(f"[bold]{p.id}[/bold]  score={score}  sources={', '.join(p.sources)}{where}")
        console.print(f"  {p.text}")


@kb_app.command("ingest")
def kb_ingest(
    path: Path = typer.Argument(..., help="A Markdown, CSV, text or PDF file, or a folder of them."),
    collection: str = typer.Option(..., "--collection", "-c", help="Named collection to ingest into."),
    store: Optional[Path] = typer.Option(None, help="Chroma folder (default: $MEDZS_HOME/chroma).", callback=_no_file),
    chunk_size: int = typer.Option(1000, min=1, help="Maximum characters per passage."),
    chunk_overlap: int = typer.Option(100, min=0, help="Characters shared by neighbouring passages."),
    modality: Optional[str] = typer.Option(None, help="Modality recorded on the passages (ecg, cxr, ct)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Ingest your own documents into a separate, named collection (source file, page/row recorded)."""
    _setup(verbose)
    from medzs.knowledge.ingest import ingest

    report = ingest(path, collection, store, chunk_size=chunk_size, chunk_overlap=chunk_overlap, modality=modality)
    typer.echo(json.dumps(report.to_dict(), indent=2))


@kb_app.command("stats")
def kb_stats() -> None:
    """Count entries per modality, with codes, criteria, rules and sources."""
    from medzs.knowledge.loader import kb_stats as _stats
    from medzs.knowledge.loader import load_entries

    typer.echo(json.dumps(_stats(load_entries()), indent=2, default=str))


@prompts_app.command("build")
def prompts_build(
    task: str = typer.Option(..., help="Task, e.g. ptbxl-super."),
    writer: str = typer.Option("grounded", help="grounded | names (ignored with --llm)"),
    llm: Optional[str] = typer.Option(None, help="LLM writer backend: gguf:PATH | openai:MODEL@BASE_URL | "
                                                 "ollama:MODEL or ollama:MODEL@URL | none (default: no LLM)."),
    cache: Optional[Path] = typer.Option(None, help="Cache file (default: knowledge/prompts/<task>.<writer>.json, "
                                                    "<task>.llm-<model>.json with --llm)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Retrieve each class's passages and write its prompts into the cache."""
    _setup(verbose)
    from medzs.data.tasks import get_task
    from medzs.pipeline import REPO_ROOT, task_prompts
    from medzs.prompts.backends import model_slug, parse_llm_setting

    t = get_task(task)
    setting = parse_llm_setting(llm)
    if setting is not None:
        writer = "llm"
    tag = f"llm-{model_slug(setting)}" if setting is not None else writer
    cache = cache or REPO_ROOT / "knowledge" / "prompts" / f"{task}.{tag}.json"
    before = _fingerprint(cache)
    prompts = task_prompts(t, writer, cache, llm=llm if setting is not None else None)
    for c in t.classes:
        n_drop = len(prompts[c].dropped)
        typer.echo(f"{c}: {len(prompts[c].prompts)} prompts" + (f", {n_drop} dropped" if n_drop else ""))
    after = _fingerprint(cache)
    how = ("created" if before is None else
           "used: every class came from the cache, nothing written" if before == after else
           "updated: some classes were written and stored")
    typer.echo(f"cache: {cache} ({how})")
    if setting is not None:
        from medzs.prompts.validator import validator_log_path

        typer.echo(f"validator log: {validator_log_path(cache)}")


def _fingerprint(path: Path) -> Optional[str]:
    """sha256 over a cache file (or the files of a cache folder); None when it does not exist."""
    import hashlib

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if f != path else "").encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


@app.command()
def score(
    inputs: list[str] = typer.Argument(..., help="Folders (recursive), files, glob patterns (quoted) or manifest "
                                                 "CSVs (column `path`, optional `record_id`)."),
    model: str = typer.Option(..., help="Registry name (see `medzs models`): an embedding model or a scorer "
                                        "(ecg-criteria.kb)."),
    task: str = typer.Option(..., help="Task, e.g. ptbxl-super: one score column per class."),
    out: Path = typer.Option(..., help="Output Parquet file (shards go to OUT.shards/ until the merge)."),
    hybrid: Optional[str] = typer.Option(None, help="Fuse a scorer (ecg-criteria.kb) with the embedding model, per "
                                                    "record (docs/batch.md)."),
    engine: str = typer.Option("local", help="local | ray"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS or local)."),
    ray_actors: Optional[int] = typer.Option(None, help="Ray scoring actors (default: one per CPU)."),
    hash_ids: bool = typer.Option(False, "--hash-ids", help="Write a salted SHA-256 (HMAC) of each source id."),
    salt_env: str = typer.Option("MEDZS_ID_SALT", help="Environment variable holding the salt for --hash-ids."),
    batch_size: int = typer.Option(64, min=1, max=4096, help="Records per encoder batch."),
    shard_size: int = typer.Option(1024, min=1, help="Records per Parquet shard (unit of resumption)."),
    weights: Optional[Path] = typer.Option(None, help="Checkpoint path overriding the model's weights."),
    prompts_writer: str = typer.Option("grounded", help="grounded | names"),
    prompts_cache: Optional[Path] = typer.Option(
        None, help="Prompt cache file (default: knowledge/prompts/<task>.<writer>.json)."),
    softmax: bool = typer.Option(False, "--softmax", help="Per-record class probabilities instead of cosines."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard OUT.shards/ of a different run."),
    keep_shards: bool = typer.Option(False, "--keep-shards", help="Keep OUT.shards/ after the merge."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch threads of the local engine (default: torch's)."),
    precision: str = typer.Option("fp32", help="fp32 | bf16 | auto (bf16 only where the CPU computes it natively "
                                               "and the model card records an AUROC check)."),
    quality: bool = typer.Option(True, "--quality/--no-quality", help="Run the plausibility checks "
                                                                      "(quality_flags column; docs/batch.md)."),
    max_error_rate: Optional[float] = typer.Option(None, min=0.0, max=1.0,
                                                   help="Exit with code 1 when more than this fraction of rows are "
                                                        "error rows (the Parquet file is still written)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Score ECG files of any supported format into a Parquet file; resumable (docs/batch.md)."""
    import os

    _setup(verbose)
    from medzs.batch import score_files
    from medzs.engine import PRECISIONS
    from medzs.errors import SpecError
    from medzs.pipeline import REPO_ROOT

    if out.is_dir():
        raise SpecError(f"--out: {out} is a folder (expected a .parquet file path)")
    if not out.parent.exists():
        raise SpecError(f"--out: folder {out.parent} does not exist")
    if precision not in PRECISIONS:
        raise SpecError(f"--precision: expected one of {PRECISIONS}, got {precision!r}")
    if engine not in ("local", "ray"):
        raise SpecError(f"--engine: expected 'local' or 'ray', got {engine!r}")
    if weights is not None and not weights.is_file():
        raise SpecError(f"--weights: {weights} is not a file (expected a checkpoint)")

    salt = None
    if hash_ids:
        salt = os.environ.get(salt_env, "")
        if not salt:
            raise typer.BadParameter(f"--hash-ids: environment variable {salt_env} is not set or empty",
                                     param_hint="--salt-env")
    cache = prompts_cache or REPO_ROOT / "knowledge" / "prompts" / f"{task}.{prompts_writer}.json"
    res = score_files(inputs, out, model=model, task=task, weights=weights, engine=engine,
                      batch_size=batch_size, shard_size=shard_size, hash_ids=hash_ids, salt=salt,
                      prompts_writer=prompts_writer, prompts_cache=cache, softmax=softmax, overwrite=overwrite,
                      keep_shards=keep_shards, progress=progress, torch_threads=threads, ray_address=ray_address,
                      ray_actors=ray_actors, hybrid=hybrid, precision=precision, quality=quality)
    typer.echo(json.dumps(res.to_dict(), indent=2))
    if max_error_rate is not None and res.n_records and res.n_error / res.n_records > max_error_rate:
        typer.echo(f"medzs: {res.n_error} of {res.n_records} rows are error rows "
                   f"({res.n_error / res.n_records:.1%} > --max-error-rate {max_error_rate:g})", err=True)
        raise typer.Exit(1)


@bench_app.command("merl")
def benchmark_merl(
    protocol: str = typer.Option("corrected", help="faithful (MERL's published preprocessing, label columns and "
                                                   "raw cosines) | corrected (exact-match labels, each encoder's "
                                                   "own preprocessing, rare classes dropped and listed)"),
    model: Optional[str] = typer.Option(None, help="Registry name (default: ecg-resnet18.medzs-ptbxl for corrected, "
                                                   "merl-resnet18.release for faithful)."),
    weights: Optional[Path] = typer.Option(None, help="Checkpoint (e.g. a MERL *_bestZeroShotAll_ckpt.pth)."),
    text_model: Optional[Path] = typer.Option(None, help="Local text-encoder folder the checkpoint needs "
                                                         "(e.g. MedCPT-Query-Encoder for MERL)."),
    prompts_file: Optional[Path] = typer.Option(None, help="Prompt file in MERL's published JSON format (class code "
                                                           "-> descriptor string); default: medzs's CKEPE prompts."),
    linear_probe: Optional[str] = typer.Option(None, help="Training fractions for linear probes, e.g. "
                                                          "0.01,0.1,1.0 (C chosen on the val split only)."),
    benchmarks: Optional[str] = typer.Option(None, help="Comma-separated subset of ptbxl-super, ptbxl-sub, "
                                                        "ptbxl-form, ptbxl-rhythm, cpsc2018, chapman."),
    splits_root: Optional[Path] = typer.Option(None, help="Published split files (default: $MEDZS_MERL_SPLITS or "
                                                          "the shared mirror)."),
    ptbxl_root: Optional[Path] = typer.Option(None, help="PTB-XL records (default: the local mirror)."),
    cpsc_root: Optional[Path] = typer.Option(None, help="CPSC2018 records."),
    chapman_root: Optional[Path] = typer.Option(None, help="Chapman-Shaoxing-Ningbo records."),
    min_test_positives: int = typer.Option(10, min=1, help="corrected: classes with fewer test positives are "
                                                          "dropped and listed."),
    n_boot: int = typer.Option(1000, min=0, max=100_000, help="Bootstrap resamples for the CIs."),
    out: Path = typer.Option(Path("runs/benchmark-merl"), help="Folder for results.json and report.html."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Zero-shot (and linear-probe) macro AUROC on MERL's six ECG benchmarks, with the published splits."""
    _setup(verbose)
    from medzs.benchmarks.merl import benchmark_cli

    if protocol not in ("faithful", "corrected"):
        raise typer.BadParameter(f"expected faithful or corrected, got {protocol!r}", param_hint="--protocol")
    fractions = None
    if linear_probe:
        try:
            fractions = [float(x) for x in linear_probe.split(",") if x.strip()]
        except ValueError:
            raise typer.BadParameter(f"expected fractions like 0.01,0.1,1.0, got {linear_probe!r}",
                                     param_hint="--linear-probe") from None
        if not fractions or any(not 0 < f <= 1 for f in fractions):
            raise typer.BadParameter(f"fractions must be in (0, 1], got {linear_probe!r}", param_hint="--linear-probe")
    for name, pth, kind in (("--weights", weights, "file"), ("--prompts-file", prompts_file, "file"),
                            ("--text-model", text_model, "dir"), ("--splits-root", splits_root, "dir"),
                            ("--ptbxl-root", ptbxl_root, "dir"), ("--cpsc-root", cpsc_root, "dir"),
                            ("--chapman-root", chapman_root, "dir")):
        if pth is not None and not (pth.is_file() if kind == "file" else pth.is_dir()):
            raise typer.BadParameter(f"{pth} is not a {'file' if kind == 'file' else 'folder'}", param_hint=name)
    if out.is_file():
        raise typer.BadParameter(f"{out} is a file (expected a folder)", param_hint="--out")
    res = benchmark_cli(protocol=protocol, model=model, weights=weights, text_model=text_model,
                        prompts_file=prompts_file, linear_probe=fractions,
                        benchmarks=[b.strip() for b in benchmarks.split(",")] if benchmarks else None,
                        splits_root=splits_root,
                        records_roots={k: v for k, v in (("ptbxl", ptbxl_root), ("cpsc2018", cpsc_root),
                                                         ("chapman", chapman_root)) if v is not None},
                        min_test_positives=min_test_positives, n_boot=n_boot, out=out)
    typer.echo(res["text"])
    for name, path in res["files"].items():
        typer.echo(f"{name}: {path}")


@app.command()
def predict(
    files: list[str] = typer.Argument(..., help="ECG files (any supported format), folders or glob patterns; a "
                                                "WFDB record may be named without its extension."),
    task: str = typer.Option("ptbxl-super", help="Conditions to rank (a task, e.g. ptbxl-super, ptbxl-rhythm)."),
    model: str = typer.Option("ecg-resnet18.medzs-ptbxl", help="ECG embedding model (see `medzs models`)."),
    top: int = typer.Option(3, min=1, help="Conditions shown per record."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON (stdout) instead of text."),
    weights: Optional[Path] = typer.Option(None, help="Checkpoint overriding the model's weights.",
                                           callback=_not_a_folder),
    calibration: Optional[Path] = typer.Option(None, help="Calibration JSON (default: next to the weights).",
                                               callback=_not_a_folder),
    criteria: bool = typer.Option(True, "--criteria/--no-criteria",
                                  help="Measure the ECG and check each condition's KB criteria."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """What does this ECG show? Top conditions with calibrated probabilities and cited evidence (KB passages,
    measured criteria)."""
    _setup(verbose)
    from medzs.predict import predict as _predict
    from medzs.predict import render_text

    res = _predict(files, task=task, model=model, top=top, weights=weights, criteria=criteria,
                   calibration=calibration)
    if as_json:
        typer.echo(json.dumps(res, indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    render_text(res, Console(highlight=False, soft_wrap=False))


@data_app.command("ptbxl")
def data_ptbxl(
    dest: Path = typer.Argument(..., help="Folder to download PTB-XL into (PhysioNet layout)."),
    ids: Optional[str] = typer.Option(None, help="Comma-separated ecg_ids (default: all 21,799 records).",
                                      callback=_ecg_ids),
) -> None:
    """Download PTB-XL (or a subset) from PhysioNet (Wagner et al., Sci Data 2020; CC-BY-4.0)."""
    _setup(True)
    from medzs.data.ptbxl import download

    if dest.exists() and not dest.is_dir():
        raise typer.BadParameter(f"{dest} is a file (expected a folder)", param_hint="DEST")
    ecg_ids = [int(i) for i in ids.split(",")] if ids else None
    download(dest, ecg_ids=ecg_ids)
    typer.echo(str(dest))


def main() -> None:
    """Console entry point: user errors (bad file, field, option or name) print one line and exit 2, no traceback.

    Option errors (a value out of range, a file where a folder is expected...) are found by typer/click before
    any work and reported the same way: ``medzs: error: <option>: <what was wrong and expected>``. Set
    ``MEDZS_DEBUG=1`` to see the traceback.
    """
    import os
    import sys

    from typer import Abort

    try:  # recent typer vendors click as typer._click
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:  # pragma: no cover - typer on click
        from click.exceptions import NoArgsIsHelpError, UsageError

    from medzs.errors import MedzsError

    try:
        rc = app(standalone_mode=False, prog_name="medzs")
    except NoArgsIsHelpError as exc:  # bare `medzs kb`: show the help, as click would
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except UsageError as exc:
        if os.environ.get("MEDZS_DEBUG"):
            raise
        hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        print(f"medzs: error: {exc.format_message()}{hint}", file=sys.stderr)  # noqa: T201 - CLI output
        raise SystemExit(exc.exit_code) from None
    except Abort:
        print("medzs: aborted", file=sys.stderr)  # noqa: T201 - CLI output
        raise SystemExit(1) from None
    except (MedzsError, FileNotFoundError, KeyError) as exc:
        if os.environ.get("MEDZS_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"medzs: error: {type(exc).__name__}: {msg}", file=sys.stderr)  # noqa: T201 - CLI output
        raise SystemExit(2) from None
    if isinstance(rc, int) and rc:
        raise SystemExit(rc)


if __name__ == "__main__":  # pragma: no cover
    main()
