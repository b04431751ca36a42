"""The layers (DESIGN.md) hold, and the check that guards them can fail.

`make lint` runs import-linter with the contracts in pyproject.toml. Here: the contracts pass on
the code as it is; a copy of the code with one upward import (service -> training) fails them;
and no module imports itself back through a cycle (grimp's import graph, Tarjan's SCCs).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["data_contracts", "features", "monitoring", "core", "service", "training", "drills", "driftlight"]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.unit


def lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(where / "pyproject.toml"), "--no-cache"],
        cwd=where,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_tree(tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    dst.mkdir()
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.json", "*.yaml"))
    return dst


def test_the_layer_contracts_hold(tmp_path):
    out = lint(copy_tree(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("service/upward.py", "import training.train\n", "service never imports training"),
        ("monitoring/upward.py", "from core import settings\n", "pure statistics do no I/O"),
        ("core/upward.py", "import driftlight.cli\n", "Layers"),
    ],
)
def test_an_upward_import_breaks_a_contract(tmp_path, module, line, broken):
    repo = copy_tree(tmp_path)
    (repo / module).write_text(line)
    out = lint(repo)
    assert out.returncode != 0, out.stdout
    assert broken in out.stdout.replace("\n", " ")


def test_no_module_import_cycle():
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    edges = {m: {d for d in graph.find_modules_directly_imported_by(m) if d.split(".")[0] in PACKAGES} for m in graph.modules}
    assert strongly_connected(edges) == []


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the components with more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
