"""The package's modules import one another without a cycle at module level."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import optuna_rnn

ROOT = Path(optuna_rnn.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: not in functions, classes or
    ``if TYPE_CHECKING:`` blocks."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            todo += node.orelse if _is_type_checking(node) else node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody
            todo += [n for handler in node.handlers for n in handler.body]
        elif isinstance(node, (ast.With, ast.For, ast.While)):
            todo += node.body
    return found


def _all_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def import_graph(find_imports=_module_level_imports) -> dict[str, set[str]]:
    """Each optuna_rnn module and the optuna_rnn modules it imports at module level.

    ``from package import name`` imports the submodule ``package.name`` where there is
    one, else ``package`` itself. A module's parent packages, which Python always
    initialises first, are no edge unless named.
    """
    paths = sorted(ROOT.rglob("*.py"))
    modules = {_module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in find_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def test_the_graph_sees_known_imports() -> None:
    graph = import_graph()
    assert "optuna_rnn.hyperparameters" in graph["optuna_rnn.objective"]
    assert "optuna_rnn.keys" in graph["optuna_rnn.study"]
    assert "optuna_rnn.cli.args" in graph["optuna_rnn.cli.search"]
    assert "optuna_rnn.kernels.gemm" in graph["optuna_rnn.kernels.fused"]
    # Function-level and TYPE_CHECKING imports are not module-level edges.
    assert "optuna_rnn.train" not in graph["optuna_rnn.objective"]
    assert "optuna_rnn.tasks" not in graph["optuna_rnn.objective"]


def test_a_cycle_is_found() -> None:
    graph = {**import_graph(), "optuna_rnn.keys": {"optuna_rnn.study"}}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        assert {"optuna_rnn.keys", "optuna_rnn.study"} <= set(err.args[1])
    else:
        raise AssertionError("the cycle keys -> study -> keys went unnoticed")


def test_no_module_level_import_cycle() -> None:
    _check_acyclic(import_graph())


def _check_acyclic(graph: dict[str, set[str]]) -> None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        raise AssertionError("import cycle: " + " -> ".join(err.args[1])) from None


def test_the_objective_and_the_study_helpers_import_no_circle_even_lazily() -> None:
    """objective -> dashboard -> study -> objective was a circle through a function-level
    import; the objective's modules now form none, even counting those."""
    graph = import_graph(_all_imports)
    mine = {
        f"optuna_rnn.{m}"
        for m in (
            "objective",
            "dashboard",
            "study",
            "hyperparameters",
            "keys",
            "export",
            "multitask",
        )
    }
    _check_acyclic({m: graph.get(m, set()) & mine for m in mine})
