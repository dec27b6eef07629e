"""The import graph of the product (issue 20): no cycles, and no module imports a layer above its own.

This extends ``tests/test_cli.py::test_the_pure_layer_never_reaches_up`` (roofline/ never imports torch or the
layers above) from one package to all three, module by module, counting every import: those inside functions
too (a lazy import is still a dependency; it only hides a cycle from the interpreter).

The layers, lowest first; a module may import its own layer and those below:

    0 theory      roofline.*, except the two rooms below   (formats, hardware, operators, predict, ...)
    1 reports     roofline.reports.*                       (export schema, plots, runs, compare, history)
    2 theory CLI  roofline.cli.*                           (options shared by every layer's commands)
    3 kernels     roofline_kernels.*                       (measurement)
    4 its CLI     roofline_kernels.cli                     (measure, calibrate, selftest, doctor)
    5 quantize    roofline_quantize.*
    6 its CLI     roofline_quantize.cli
    7 the root    roofline.__main__                        (the one composition root: names every layer)

An import of a package counts as one of its ``__init__``; the parent package a submodule's import runs
implicitly does not (``roofline.cli`` registers its own command modules, which import ``roofline.cli.options``).
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("roofline", "roofline_kernels", "roofline_quantize")
LAYERS = [  # (name, predicate on a module's dotted name), highest first: the first match wins
    ("the root", lambda m: m == "roofline.__main__"),
    ("quantize CLI", lambda m: m == "roofline_quantize.cli"),
    ("quantize", lambda m: m.split(".")[0] == "roofline_quantize"),
    ("kernels CLI", lambda m: m == "roofline_kernels.cli"),
    ("kernels", lambda m: m.split(".")[0] == "roofline_kernels"),
    ("theory CLI", lambda m: m.startswith("roofline.cli")),
    ("reports", lambda m: m.startswith("roofline.reports")),
    ("theory", lambda m: m.split(".")[0] == "roofline"),
]
RANK = {name: len(LAYERS) - 1 - i for i, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str:
    return next(name for name, match in LAYERS if match(module))


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the three packages under ``root``."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (function bodies included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule where one exists, else the package's name
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # ``import a.b.c`` of an attribute path: the longest module prefix
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph(root: Path = REPO) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({layer_of(a)}) -> {b} ({layer_of(b)})" for a, deps in g.items() for b in deps
                  if RANK[layer_of(b)] > RANK[layer_of(a)])


def test_the_import_graph_has_no_cycles():
    g = graph()
    assert len(g) > 60 and sum(map(len, g.values())) > 150  # the walk saw the packages, not an empty tree
    assert cycles(g) == []


def test_no_module_imports_a_layer_above_its_own():
    assert upward(graph()) == []


def test_only_the_composition_root_names_the_layers_above_the_theory():
    g = graph()
    assert {b for b in g["roofline.__main__"]} >= {"roofline_kernels.cli", "roofline_quantize.cli"}
    reach_up = {a for a, deps in g.items() if a.split(".")[0] == "roofline"
                for b in deps if b.split(".")[0] != "roofline"}
    assert reach_up == {"roofline.__main__"}


def test_each_module_has_a_layer_and_the_layers_are_ordered():
    assert [layer_of(m) for m in ("roofline.predict", "roofline.reports.svg", "roofline.cli.options",
                                  "roofline_kernels.ops", "roofline_kernels.cli", "roofline_quantize.apply",
                                  "roofline_quantize.cli", "roofline.__main__")] == [n for n, _ in reversed(LAYERS)]


@pytest.fixture
def tree(tmp_path):
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def plant(path: Path, line: str) -> None:
    """Append a function whose body is ``line``: an import inside a function, which the walk must see too."""
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {line}\n")


@pytest.mark.parametrize("file, line, caught", [
    # the cycles issue 20 found, planted back (lazily, as they were)
    ("roofline_kernels/telemetry.py", "from .region import RegionMonitor", "cycle"),
    ("roofline_kernels/kernel.py", "from .torchao_paths import PATHS", "cycle"),
    ("roofline/cli/options.py", "from .theory import add_commands", "cycle"),
    # upward imports: the theory reaching for the CLI, the reports or measurement; kernels for quantize
    ("roofline/predict.py", "from roofline.cli.options import fmt_time", "upward"),
    ("roofline/plan.py", "from roofline.reports.runs import fmt_s", "upward"),
    ("roofline/reports/svg.py", "import roofline_kernels.timer", "upward"),
    ("roofline_kernels/measure.py", "from roofline_quantize import configs", "upward"),
    ("roofline_kernels/spot.py", "from . import cli", "upward"),
])
def test_the_checks_catch_a_planted_cycle_or_upward_import(tree, file, line, caught):
    assert cycles(graph(tree)) == [] and upward(graph(tree)) == []  # the copy is clean
    plant(tree / file, line)
    g = graph(tree)
    assert (cycles(g) if caught == "cycle" else upward(g)), f"{file}: {line!r} was not caught"


def test_the_readme_names_every_module_of_the_layout():
    """The README's layout table and module lists keep up with the tree: a new module without a line fails."""
    readme = (REPO / "README.md").read_text()
    files = [path for path in modules(REPO).values() if path.name != "__init__.py"]
    names = [path.name for path in files]
    # a name two modules share (cli.py, energy.py, efficiency.py) counts only by its path from the root
    missing = sorted(str(path.relative_to(REPO)) for path in files
                     if f"`{path.relative_to(REPO)}`" not in readme
                     and (names.count(path.name) > 1 or f"`{path.name}`" not in readme))
    assert missing == []
    for room in ("roofline/reports/", "roofline/cli/", "roofline_kernels/cli.py", "roofline_quantize/cli.py",
                 "roofline/__main__.py"):
        assert f"`{room}`" in readme, room
