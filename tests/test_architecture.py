"""The shape of the code (docs/architecture.md): one-way imports, short functions, no config default in code.

Each check reads the source with ``ast``; each names the offending file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fedcl", "strategies", "simulations")
MAX_FUNCTION_LINES = 60
# functions allowed to be longer, and why
LONG_FUNCTIONS = {
    "simulations/deploy/cli.py:_parser": "one argparse table of every deployment sub-command, read top to bottom",
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (every import, also inside functions; ``from pkg import mod``
    counts as importing ``pkg`` too, as ``../shared/tools/import_cycles.py`` does)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)] if node.level > 1 else [pkg]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):
                    found.add(t)
        graph[name] = found
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path ``a -> b -> ... -> a``), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return [*stack[stack.index(w):], w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_no_import_cycle_among_the_project_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = import_graph()
    graph["fedcl.keys"] = {*graph["fedcl.keys"], "strategies.fedavg"}  # strategies.fedavg imports fedcl.keys
    assert find_cycle(graph) is not None


def test_imports_flow_one_way() -> None:
    graph = import_graph()
    # the server never reaches into the launchers; the library never into the server's parts
    for name, deps in graph.items():
        if name.startswith("strategies"):
            assert not any(d.startswith("simulations") for d in deps), (name, deps)
    client = {n: d for n, d in graph.items() if n.startswith("fedcl.client") or n.startswith("fedcl.privacy")}
    for name, deps in client.items():
        assert not any(d.startswith("strategies") for d in deps), (name, deps)
    # mods wrap handlers without importing the app or a handler
    for mod in ("fedcl.privacy.client_mod", "fedcl.privacy.secagg_client"):
        assert not graph[mod] & {"fedcl.client.app", "fedcl.client.train", "fedcl.fot.client",
                                 "fedcl.unlearning.client"}, (mod, graph[mod])


def long_functions() -> list[str]:
    out = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                key = f"{path.relative_to(ROOT)}:{node.name}"
                if lines > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS:
                    out.append(f"{key} ({lines} lines)")
    return out


def test_no_function_over_60_lines_outside_the_justified_ones() -> None:
    assert long_functions() == []


CONFIG_NAMES = ("cfg", "config", "run_config", "ucfg", "scfg")


def _receiver_is_config(node: ast.expr) -> bool:
    """Whether an expression reads from a config object (``cfg``, ``self.cfg.x``, ``instr.cfg.unlearning``...)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute) and node.attr in CONFIG_NAMES:
            return True
        node = node.value
    return isinstance(node, ast.Name) and node.id in CONFIG_NAMES


def config_fallbacks(source: str, where: str = "") -> list[str]:
    """Every ``<config>.get(key, default)``: a default the code supplies beside the schema / YAML."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and _receiver_is_config(node.func.value) and (len(node.args) > 1 or node.keywords)):
            out.append(f"{where}:{node.lineno} {ast.unparse(node)}")
    return out


def test_no_config_default_in_code() -> None:
    found = [f for path in _modules().values() for f in config_fallbacks(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


@pytest.mark.parametrize("planted", [
    'cfg.unlearning.get("eval_samples", 500)',
    'self.cfg.method.get("naive", {})',
    'run_config.get("run-dir", "")',
])
def test_the_fallback_check_sees_a_planted_default(planted: str) -> None:
    assert config_fallbacks(f"x = {planted}\n")
