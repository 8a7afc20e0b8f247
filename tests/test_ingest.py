"""`medzs kb ingest`: Markdown, CSV, text and PDF documents into separate named Chroma collections, with the
source file and page/row recorded; reopened by another process; readers while another process ingests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medzs.errors import KnowledgeBaseError
from medzs.knowledge.ingest import check_collection_name, discover_files, document_passages, ingest

REPO = Path(__file__).resolve().parents[1]
COLLECTION = "hospital-ecg"


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A small text PDF, one page per string (matplotlib's PDF backend, TrueType fonts so text is extractable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
        for text in pages:
            fig = plt.figure(figsize=(6, 2))
            fig.text(0.05, 0.5, text, fontsize=9)
            pdf.savefig(fig)
            plt.close(fig)
    return path


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "guide.md").write_text(textwrap.dedent("""\
        # Local ECG criteria

        ## Left bundle branch block

        QRS duration of 120 ms or more with broad notched R waves in I, aVL, V5 and V6.

        ## First-degree AV block

        PR interval longer than 200 ms with every P wave conducted.
        """), encoding="utf-8")
    (d / "criteria.csv").write_text(
        "condition,criterion\nLBBB,QRS duration >= 120 ms\nAFIB,\"Irregularly irregular RR intervals, no P waves\"\n",
        encoding="utf-8")
    (d / "sub" / "notes.txt").write_text("Brugada pattern type 1: coved ST elevation of 2 mm or more in V1-V2.\n",
                                         encoding="utf-8")
    make_pdf(d / "handbook.pdf", ["Wellens syndrome: deeply inverted T waves in V2 and V3.",
                                  "Osborn waves: a notch at the J point in hypothermia."])
    (d / ".hidden.md").write_text("should not be ingested")
    (d / "image.png").write_bytes(b"\x89PNG")
    return d


def test_discover_and_passages(docs: Path):
    root, files = discover_files(docs)
    assert [f.relative_to(root).as_posix() for f in files] == ["criteria.csv", "guide.md", "handbook.pdf",
                                                               "sub/notes.txt"]
    pdf = document_passages(docs / "handbook.pdf", root)
    assert [p.id for p in pdf] == ["doc:handbook.pdf#page-1-c0", "doc:handbook.pdf#page-2-c0"]
    assert "Wellens" in pdf[0].text and "Osborn" in pdf[1].text
    assert [p.metadata["page"] for p in pdf] == [1, 2]
    assert pdf[0].metadata["source"] == str((docs / "handbook.pdf").resolve())
    csv = document_passages(docs / "criteria.csv", root)
    assert [p.metadata["row"] for p in csv] == [1, 2] and "Irregularly irregular" in csv[1].text
    md = document_passages(docs / "guide.md", root)
    assert [p.metadata["section"] for p in md] == ["Local ECG criteria > Left bundle branch block",
                                                   "Local ECG criteria > First-degree AV block"]
    txt = document_passages(docs / "sub" / "notes.txt", root)
    assert txt[0].entry_id == "doc:sub/notes.txt" and txt[0].field == "document"
    assert txt[0].sources == ("file:sub/notes.txt",)


def test_collection_names_and_bad_inputs(tmp_path: Path, docs: Path):
    assert check_collection_name("hospital-ecg") == "hospital-ecg"
    for bad in ("medzs-ecg", "MEDZS-mine", "a", "bad name", "-x-", "a..b"):
        with pytest.raises(KnowledgeBaseError, match="collection"):
            check_collection_name(bad)
    with pytest.raises(KnowledgeBaseError, match="unsupported document type"):
        discover_files(docs / "image.png")
    with pytest.raises(KnowledgeBaseError, match="no such file"):
        discover_files(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KnowledgeBaseError, match="no supported documents"):
        discover_files(tmp_path / "empty")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(KnowledgeBaseError, match="broken.pdf"):
        document_passages(tmp_path / "broken.pdf")


_REOPEN = """
import json, sys
from medzs.knowledge.kb import KnowledgeBase
kb = KnowledgeBase(sys.argv[1], collection=sys.argv[2], create=False)
hits = kb.query(sys.argv[3], k=2)
pdf = kb.retrieve("doc:handbook.pdf", k=None)
print(json.dumps({"count": kb.count(), "entries": kb.entry_ids(),
                  "hits": [{"id": p.id, "meta": p.metadata, "sources": list(p.sources)} for p in hits],
                  "pdf_pages": [p.metadata.get("page") for p in pdf]}))
"""


def test_ingest_separate_collection_reopened_by_another_process(tmp_path: Path, docs: Path):
    from medzs.knowledge.kb import KnowledgeBase
    from medzs.knowledge.loader import load_entries

    store = tmp_path / "chroma"
    curated = KnowledgeBase(store)
    curated.build([e for e in load_entries(modality="ecg") if e.id == "ecg.scp.CLBBB"])
    n_curated = curated.count()
    report = ingest(docs, COLLECTION, store, modality="ecg")
    assert report.files == ["criteria.csv", "guide.md", "handbook.pdf", "sub/notes.txt"]
    assert report.n_passages == 7 and len(report.added) == 7 and not report.deleted
    assert curated.count() == n_curated  # the curated collection is untouched
    assert all(not e.startswith("doc:") for e in curated.entry_ids())

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.run([sys.executable, "-c", _REOPEN, str(store), COLLECTION, "deeply inverted T waves"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["count"] == 7
    assert out["entries"] == ["doc:criteria.csv", "doc:guide.md", "doc:handbook.pdf", "doc:sub/notes.txt"]
    top = out["hits"][0]
    assert top["id"] == "doc:handbook.pdf#page-1-c0" and top["meta"]["page"] == 1
    assert top["meta"]["file"] == "handbook.pdf" and top["meta"]["modality"] == "ecg"
    assert top["meta"]["source"] == str((docs / "handbook.pdf").resolve()) and top["sources"] == ["file:handbook.pdf"]
    assert out["pdf_pages"] == [1, 2]

    # re-ingest: nothing re-embedded; an edited file updates its chunks and loses the ones it no longer has
    again = ingest(docs, COLLECTION, store, modality="ecg")
    assert len(again.unchanged) == 7 and not again.added and not again.updated
    (docs / "guide.md").write_text("# Local ECG criteria\n\n## Left bundle branch block\n\nQRS of 130 ms or more.\n")
    edited = ingest(docs / "guide.md", COLLECTION, store)
    assert edited.updated == ["doc:guide.md#s0-c0"] and edited.deleted == ["doc:guide.md#s1-c0"]
    kb = KnowledgeBase(store, collection=COLLECTION, create=False)
    assert kb.count() == 6 and "130 ms" in kb.get(["doc:guide.md#s0-c0"])[0].text


_INGEST_MANY = """
import sys
from medzs.knowledge.ingest import ingest
ingest(sys.argv[1], sys.argv[2], sys.argv[3])
print("done")
"""


def test_concurrent_readers_while_another_process_ingests(tmp_path: Path):
    """A reader polls (count, semantic query, entry ids) while a subprocess ingests 24 files, one locked write
    per file: no read fails, neither the count nor the passages a query finds ever go down, and once the
    ingest is over a fresh reader finds every passage.

    Chroma's vector index reaches another process's readers a little after the rows do (a fresh client loads the
    index as last flushed), so during the ingest a query may find fewer passages than ``count()`` says."""
    from medzs.knowledge.ingest import open_collection

    docs = tmp_path / "many"
    docs.mkdir()
    n_files = 24
    for i in range(n_files):
        (docs / f"note-{i:02d}.md").write_text(
            f"# Note {i}\n\nCriterion {i}: QRS duration of {100 + i} ms in lead V{i % 6 + 1}.\n")
    store = tmp_path / "chroma"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    writer = subprocess.Popen([sys.executable, "-c", _INGEST_MANY, str(docs), "notes", str(store)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    counts: list[int] = []
    found: list[int] = []
    errors: list[str] = []
    opened = False
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            done = writer.poll() is not None
            try:
                kb = open_collection(store, "notes")  # a fresh view, as a new reader process would have
                opened = True
                n = kb.count()
                counts.append(n)
                if n:
                    hits = kb.query("QRS duration in V1", k=n_files + 5)
                    found.append(len(hits))
                    if not all(h.id.startswith("doc:note-") for h in hits):
                        errors.append(f"query returned foreign passages: {[h.id for h in hits]}")
                    # reads are not one snapshot: the writer may add passages between two reads, never remove
                    if len(kb.entry_ids()) < n:
                        errors.append(f"count {n} but {len(kb.entry_ids())} entry ids")
            except KnowledgeBaseError as exc:
                if opened:  # the collection existed before: reading it must not fail
                    errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - any reader error fails the test
                errors.append(f"{type(exc).__name__}: {exc}")
            if done:
                break
            time.sleep(0.05)
        out, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, err[-2000:]
    assert errors == [], errors[:5]
    assert counts == sorted(counts), "passage count went down while reading"
    assert found == sorted(found), f"a query found fewer passages than an earlier one: {found}"
    assert counts[-1] == n_files
    assert len(set(counts)) >= 2, f"the reader never saw the collection grow: {sorted(set(counts))}"
    after = open_collection(store, "notes")
    assert after.count() == n_files and len(after.query("QRS duration", k=n_files + 5)) == n_files


def test_stale_handle_is_refreshed_by_open_collection(tmp_path: Path, docs: Path):
    """A handle opened before another process wrote keeps its view; open_collection sees the new passages."""
    from medzs.knowledge.ingest import open_collection

    store = tmp_path / "chroma"
    ingest(docs / "criteria.csv", COLLECTION, store)
    old = open_collection(store, COLLECTION)
    assert len(old.query("Brugada coved ST elevation", k=10)) == 2
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.run([sys.executable, "-c", _INGEST_MANY, str(docs / "sub"), COLLECTION, str(store)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = open_collection(store, COLLECTION)
    assert fresh.count() == 3
    assert fresh.query("Brugada coved ST elevation", k=1)[0].id == "doc:notes.txt#c0"


def test_cli_ingest_and_query(tmp_path: Path, docs: Path):
    from typer.testing import CliRunner

    from medzs.cli import app

    store = tmp_path / "chroma"
    runner = CliRunner()
    res = runner.invoke(app, ["kb", "ingest", str(docs / "criteria.csv"), "--collection", "my-csv",
                              "--store", str(store)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["collection"] == "my-csv" and summary["passages"] == 2
    res = runner.invoke(app, ["kb", "query", "irregular RR intervals", "--collection", "my-csv", "--path", str(store),
                              "-k", "1"])
    assert res.exit_code == 0, res.output
    assert "doc:criteria.csv#row-2-c0" in res.output and "row=2" in res.output
    res = runner.invoke(app, ["kb", "ingest", str(docs), "--collection", "medzs-ecg", "--store", str(store)])
    assert res.exit_code != 0 and "reserved" in str(res.exception)
