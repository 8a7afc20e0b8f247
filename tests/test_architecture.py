"""Architecture contracts (docs/architecture.md): no import cycles between medzs modules (function-level imports
included), scoring rules in one module, one engine."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "medzs"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != mod and not mod.startswith(t + ".") and t != "medzs":
                    graph[mod].add(t)
            # registry-style "module:attr" strings are imports too
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("medzs.") \
                    and ":" in node.value:
                t = node.value.split(":")[0]
                if t in modules and t != mod:
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    for start in graph:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    found.append(path + [start])
                elif nxt not in seen and not nxt.startswith(start + "."):
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = _graph()
    assert "medzs.engine" in graph and "medzs.batch" in graph
    mutual = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, set())})
    assert mutual == [], f"modules importing each other: {mutual}"


def test_engine_and_scoring_sit_low_in_the_flow() -> None:
    graph = _graph()
    # scoring depends on nothing of medzs but errors; the engine never imports the writers of results
    assert graph["medzs.scoring"] <= {"medzs.errors"}
    assert not graph["medzs.engine"] & {"medzs.batch", "medzs.batch_ray", "medzs.pipeline", "medzs.report",
                                          "medzs.metrics", "medzs.cli"}
    assert "medzs.batch" not in graph["medzs.batch_ray"]


def test_scoring_rules_are_defined_in_one_module() -> None:
    rules = {"similarity", "class_embeddings", "posneg_scores", "map_max", "fuse_per_record", "fuse_rank_average",
             "score_prompts", "softmax_rows"}
    where: dict[str, list[str]] = {}
    for path in PKG.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name in rules:
                where.setdefault(node.name, []).append(_module_name(path))
    assert where == {r: ["medzs.scoring"] for r in rules}
