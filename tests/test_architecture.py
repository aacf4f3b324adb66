"""The direction of imports (docs/architecture.md): base → data → models → appearance / ssl → evaluate → report,
with plan and tracking beside. The layers are read from the table of docs/architecture.md, so the page and the
code cannot drift apart silently."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "tmf"
LAYERS = ("base", "data", "models", "stage", "evaluation", "maps", "report")  # lowest first
ENTRY_EXTRA = ("tmf.cli", "tmf.tracking", "tmf.versioning")  # what cli modules may import besides their package's


def package_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """package → (layer, or "beside"; for beside packages the layers/packages it may import)."""
    text = (REPO / "docs/architecture.md").read_text()
    out = {}
    for line in text.split("<!-- the table tests/test_architecture.py reads")[1].splitlines():
        m = re.match(r"\|\s*(`tmf[^|]*)\|\s*([^|]+)\|", line)
        if not m:
            continue
        layer = m.group(2).strip()
        names = re.findall(r"`(tmf[\w.]*)`", m.group(1))
        if layer.startswith("beside:"):
            spec = ("beside", tuple(x.strip() for x in layer.removeprefix("beside:").split(",")))
        else:
            assert layer in LAYERS, f"docs/architecture.md: unknown layer {layer!r} of {names}"
            spec = (layer, ())
        for n in names:
            out[n] = spec
    return out


def owner(module: str, table: dict) -> str:
    """The table entry a module belongs to (the longest matching package name)."""
    hits = [p for p in table if module == p or module.startswith(p + ".")]
    if not hits:
        raise AssertionError(f"{module}: no package of docs/architecture.md owns it; add it to the table")
    return max(hits, key=len)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from tmf import device` imports tmf.device
            found.update(f"tmf.{a.name}" for a in node.names) if node.module == "tmf" else found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "tmf" or m.startswith("tmf.")}


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(("tmf", *parts)).removesuffix(".__init__")
        out.append((name, path))
    return out


def rank(layer: str) -> int:
    return LAYERS.index(layer)


def allowed(src_pkg: str, dst_pkg: str, table: dict) -> bool:
    if src_pkg == dst_pkg:
        return True
    s_layer, s_may = table[src_pkg]
    d_layer, d_may = table[dst_pkg]
    if s_layer == "beside":
        return (d_layer != "beside" and d_layer in s_may) or dst_pkg.removeprefix("tmf.") in s_may
    if d_layer == "beside":
        # usable from every layer above what the beside package itself builds on (no cycle)
        return all(m not in LAYERS or rank(s_layer) > rank(m) for m in d_may) and src_pkg.removeprefix("tmf.") not in d_may
    return rank(d_layer) < rank(s_layer)


def test_table_covers_every_package():
    table = package_table()
    for name, _ in modules():
        if name not in ("tmf", "tmf.cli"):
            owner(name.removesuffix(".cli"), table)


def test_imports_follow_the_direction_of_docs_architecture():
    table = package_table()
    wrong = []
    for name, path in modules():
        if name in ("tmf", "tmf.cli"):
            continue  # the package root and the command line sit above everything
        entry = name.endswith(".cli")
        src_pkg = owner(name.removesuffix(".cli") if entry else name, table)
        for target in imports(path):
            if target == "tmf":
                if not entry:
                    wrong.append(f"{name} imports tmf (the root)")
                continue
            if entry and any(target == e or target.startswith(e + ".") for e in ENTRY_EXTRA):
                continue
            if target == "tmf.cli" or target.startswith("tmf.cli."):
                wrong.append(f"{name} imports tmf.cli (only cli modules may)")
                continue
            dst_pkg = owner(target, table)
            if not allowed(src_pkg, dst_pkg, table):
                wrong.append(f"{name} ({table[src_pkg][0]}) imports {target} ({table[dst_pkg][0]})")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize("src_pkg, dst_pkg, ok", [
    ("tmf.evaluate", "tmf.data", True), ("tmf.data", "tmf.evaluate", False), ("tmf.ssl", "tmf.appearance", False),
    ("tmf.evaluate", "tmf.plan", True), ("tmf.data", "tmf.plan", False), ("tmf.plan", "tmf.data", True),
    ("tmf.plan", "tmf.models", False), ("tmf.tracking", "tmf.config", True), ("tmf.tracking", "tmf.data", False),
    ("tmf.report", "tmf.tracking", True), ("tmf.versioning", "tmf.tracking", True),
])
def test_the_rule_itself(src_pkg, dst_pkg, ok):
    assert allowed(src_pkg, dst_pkg, package_table()) is ok


def test_no_module_over_400_lines():
    long = [f"{p.relative_to(REPO)}: {n}" for _, p in modules() if (n := len(p.read_text().splitlines())) > 400]
    assert not long, "modules by noun, under ~400 lines (docs/architecture.md):\n" + "\n".join(long)
