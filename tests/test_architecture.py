"""The layout keeps one home per idea, and docs/architecture.md describes the tree that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "latentscope"
MODULES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)
MAX_LINES = 600


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def test_no_module_is_too_long():
    long = {_rel(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_only_store_and_stream_ask_whether_a_source_is_a_store():
    pat = re.compile(r"isinstance\([^)]*\bZStore\b")
    bad = [_rel(p) for p in MODULES
           if p.parent.name not in ("store", "stream") and pat.search(p.read_text())]
    assert not bad, f"take sources through latentscope.stream.as_zsource instead: {bad}"


def test_only_the_neighbours_package_imports_faiss():
    users = []
    for p in MODULES:
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(n.split(".")[0] == "faiss" for n in names):
                users.append(_rel(p))
    assert users and all(u.startswith("latentscope/neighbors/") for u in users), users


@pytest.mark.parametrize("name", ["_jsonable", "save_png", "check_positive", "as_zsource", "run_pass",
                                  "run_blocks", "single_blas_thread", "nearest_distances"])
def test_one_definition_per_helper(name):
    homes = [_rel(p) for p in MODULES
             for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name]
    assert len(homes) == 1, f"{name} is defined in {homes}"


def test_one_byte_budget():
    pat = re.compile(r"(?i)^.*bytes.*\b\d+\s*<<\s*20\b.*$", re.M)
    bad = {_rel(p): pat.findall(p.read_text()) for p in MODULES if p.name != "_policy.py"}
    bad = {k: v for k, v in bad.items() if v}
    # the budgets live in store/_policy.py (DEFAULT_MAX_BYTES, below the engine) and
    # stream/_policy.py (WORK_UNIT_BYTES); a memory cap of another kind (e.g. an image
    # cache in GiB) is written with << 30
    assert not bad, f"use latentscope.stream.DEFAULT_MAX_BYTES: {bad}"


def test_architecture_doc_names_every_package_and_only_real_paths():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    packages = sorted(p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    missing = [p for p in packages if f"latentscope/{p}/" not in doc and f"`{p}`" not in doc]
    assert not missing, f"docs/architecture.md does not describe: {missing}"
    paths = set(re.findall(r"`((?:latentscope|backends|tests|benchmarks|examples|docs)/[\w/.\-]+)`", doc))
    assert paths, "docs/architecture.md names no files"
    gone = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert not gone, f"docs/architecture.md names paths that do not exist: {gone}"
