"""What README.md and docs/*.md point at must exist: the files, the `file::symbol`s, the tests
(`tests/...py::test_name`), the links and their anchors, the `python -m` modules and the drills.

The interview map sends a reader to a test by name; a walk through the README found two of those
names stale (a renamed test, a typo) with nothing failing. Parsed, not imported: fast, no fixtures.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PATH_REF = re.compile(r"`((?:[a-z_][\w-]*/)+[\w.-]+\.(?:py|yaml|yml|json|md|toml|png|sh))(?:::([\w.]+))?")
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::([\w]+(?:::[\w]+)?)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MODULE = re.compile(r"python -m ([a-z_]+(?:\.[a-z_]+)+)")
DRILL = re.compile(r"`driftlight drill ([a-z][a-z-]+)")


@cache
def names_in(path: Path) -> frozenset[str]:
    """Top-level functions, classes and assigned names; methods as `Class.method`, `Class::method` or by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.AnnAssign | ast.Assign):
                        name = getattr(sub, "name", None) or _target(sub)
                        if name:
                            out |= {name, f"{node.name}.{name}", f"{node.name}::{name}"}  # a method by its name too
        elif isinstance(node, ast.Assign | ast.AnnAssign) and (name := _target(node)):
            out.add(name)
    return frozenset(out)


def _target(node: ast.AST) -> str | None:
    target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
    return target.id if isinstance(target, ast.Name) else None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        in_code ^= line.startswith("```")
        if not in_code and (m := re.match(r"#+\s+(.*)", line)):
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return frozenset(out)


def broken(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    out = []
    for path, symbol in TEST_REF.findall(text):
        if not (ROOT / path).exists():
            out.append(f"no test file {path}")
        elif symbol not in names_in(ROOT / path):
            out.append(f"no test {path}::{symbol}")
    for path, symbol in PATH_REF.findall(text):
        if not (ROOT / path).exists():
            out.append(f"no file {path}")
        elif symbol and path.endswith(".py") and not path.startswith("tests/") and symbol not in names_in(ROOT / path):
            out.append(f"no {symbol} in {path}")
    for link in LINK.findall(text):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        target, _, anchor = link.partition("#")
        file = (doc.parent / target) if target else doc
        if not file.exists():
            out.append(f"broken link {link}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            out.append(f"no heading for the anchor {link}")
    for module in MODULE.findall(text):
        rel = module.replace(".", "/")
        if not ((ROOT / f"{rel}.py").exists() or (ROOT / rel / "__main__.py").exists()):
            out.append(f"no module {module}")
    from drills.catalogue import BY_NAME

    out += [f"no drill {name}" for name in DRILL.findall(text) if name not in BY_NAME]
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_reference_in_the_docs_exists(doc):
    assert broken(doc) == []


def test_the_checks_can_fail(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "`tests/unit/test_doc_references.py::test_gone` `monitoring/policy.py::no_such_rule` `core/nothing.py`"
        " [a](#no-such-heading) `python -m drills.nowhere` `driftlight drill no-such-drill`\n# A heading\n",
        encoding="utf-8",
    )
    assert broken(doc) == [
        "no test tests/unit/test_doc_references.py::test_gone",
        "no no_such_rule in monitoring/policy.py",
        "no file core/nothing.py",
        "no heading for the anchor #no-such-heading",
        "no module drills.nowhere",
        "no drill no-such-drill",
    ]
