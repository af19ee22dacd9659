"""The package's floors (README "Layout"): every import of s4dconf's own modules runs down a floor or stays in its
package, and no chain of imports comes back to where it started. Read with `ast` from the source files, deferred
imports inside functions included, so a loop cannot hide in a function body. Test modules are leaves and are not
walked."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# package -> (folder, floor); an import may go to a lower floor or within its own package
PACKAGES = {
    "s4dconf.reference": ("reference", 0),
    "s4dconf.fixedpoint": ("fixedpoint", 1),
    "s4dconf.goldens": ("goldens", 2),
    "s4dconf.backends": ("backends", 2),
    "s4dconf.measure": ("measure", 3),
    "s4dconf.conformance": ("conformance", 4),
    "s4dconf.training": ("training", 4),
    "s4dconf.reports": ("reports", 5),
    "s4dconf.cli": ("s4dconf/cli.py", 6),
    "s4dconf.check_output": ("s4dconf/check_output.py", 6),
    "s4dconf": ("s4dconf/__init__.py", 0),  # the version only
}


def _is_test(path: Path) -> bool:
    return path.name.startswith("test_") or path.name == "conftest.py"


def source_modules(root: Path = ROOT) -> dict[str, Path]:
    """module name -> file, for every non-test module of the installed package."""
    mods = {}
    for pkg, (where, _) in PACKAGES.items():
        p = root / where
        files = [p] if p.suffix == ".py" else sorted(p.rglob("*.py"))
        for f in files:
            if _is_test(f):
                continue
            rel = f.relative_to(p).with_suffix("").parts if p.is_dir() else ()
            parts = [x for x in rel if x != "__init__"]
            mods[".".join([pkg, *parts])] = f
    return mods


ONE_ROOM = {"s4dconf.check_output": "s4dconf.cli"}  # the CLI's modules: one room on the top floor


def package_of(module: str) -> str:
    p = max((p for p in PACKAGES if module == p or module.startswith(p + ".")), key=len)
    return ONE_ROOM.get(p, p)


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported s4dconf module, line) for every import statement in the file, nested ones included."""
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - node.level + 1]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import name`: name may be a submodule
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        for t in targets:
            if t == "s4dconf" or t.startswith("s4dconf."):
                while t not in known and "." in t:
                    t = t.rsplit(".", 1)[0]
                out.append((t, node.lineno))
    return out


def import_graph(root: Path = ROOT) -> dict[str, list[tuple[str, int]]]:
    mods = source_modules(root)
    return {m: [(t, ln) for t, ln in imports_of(m, f, set(mods)) if t != m] for m, f in mods.items()}


def upward_edges(graph) -> list[str]:
    bad = []
    for m, edges in graph.items():
        a = package_of(m)
        for t, line in edges:
            b = package_of(t)
            if a != b and PACKAGES[b][1] >= PACKAGES[a][1]:
                bad.append(f"{m} (floor {PACKAGES[a][1]}) line {line} imports {t} (floor {PACKAGES[b][1]})")
    return bad


def cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _ in graph.get(v, ()):
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
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_whole_package():
    graph = import_graph()
    assert {"s4dconf.reference.model", "s4dconf.fixedpoint.engine", "s4dconf.goldens.store",
            "s4dconf.backends.numpy_fxp", "s4dconf.reports.report", "s4dconf.cli"} <= set(graph)
    assert ("s4dconf.fixedpoint.engine", 0) not in graph["s4dconf.backends.numpy_fxp"]
    assert any(t == "s4dconf.fixedpoint.engine" for t, _ in graph["s4dconf.backends.numpy_fxp"])


def test_no_import_runs_up_a_floor():
    bad = upward_edges(import_graph())
    assert not bad, "imports from a lower floor to a higher one (README Layout):\n" + "\n".join(bad)


def test_no_import_loop():
    found = cycles(import_graph())
    assert not found, "import loops:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("edge, expect", [
    ({"s4dconf.reference.model": [("s4dconf.backends.base", 3)], "s4dconf.backends.base": []}, "up"),
    ({"s4dconf.goldens.store": [("s4dconf.goldens.integer", 1)],
      "s4dconf.goldens.integer": [("s4dconf.goldens.store", 9)]}, "loop"),
])
def test_the_checks_can_fail(edge, expect):
    if expect == "up":
        assert upward_edges(edge) == ["s4dconf.reference.model (floor 0) line 3 imports s4dconf.backends.base (floor 2)"]
    else:
        assert cycles(edge) == [["s4dconf.goldens.integer", "s4dconf.goldens.store"]]
