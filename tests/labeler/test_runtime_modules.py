"""The package's runtime modules: they import without a rendered spec, form no import cycle,
keep labeling apart from fitting, and stay small enough to read."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "templates" / "labeler" / "pkg"
MODULES = sorted(path.stem for path in RUNTIME.glob("*.py"))
ENTRY_POINTS = {"__main__"}
"""Modules run as commands, never imported: they alone may import ``cli``."""
FITTING = {"cli", "finetune", "learn", "learners", "learned_vote", "trainee"}
"""Commands and what only they use: labeling (``engine``, ``ray_engine``) never reaches them."""
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
DYNAMIC_IMPORT = re.compile(r"\.([a-z_]+)(?::\w+)?")
"""A string naming a sibling module to import later (``".embedding:EmbeddingVoter"``)."""


def imported_siblings(module: str) -> set[str]:
    """The sibling modules ``module`` imports anywhere: at the top, inside functions, or
    by a relative name it hands to ``importlib``."""
    tree = ast.parse((RUNTIME / f"{module}.py").read_text(encoding="utf-8"))
    # Pieces of f-strings name commands (``python -m {__package__}.learn``), not imports.
    formatted = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in formatted:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:
                found.update(alias.name for alias in node.names)
            else:
                found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = DYNAMIC_IMPORT.fullmatch(node.value)
            if match:
                found.add(match.group(1))
    return found & set(MODULES)


def import_graph() -> dict[str, set[str]]:
    return {module: imported_siblings(module) for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            cycle = visit(target, path + [module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def reached_from(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for target in graph[stack.pop()] - seen:
            seen.add(target)
            stack.append(target)
    return seen


@pytest.mark.slow
def test_every_runtime_module_imports_without_a_rendered_spec(tmp_path):
    package = tmp_path / "bare_labeler"
    package.mkdir()
    for path in RUNTIME.glob("*.py"):
        shutil.copyfile(path, package / path.name)
    assert (package / "__init__.py").is_file() and not (package / "spec.py").exists()
    importable = [module for module in MODULES if module not in ENTRY_POINTS]
    # A fresh interpreter per module, so none imports only thanks to another imported first.
    runs = {
        module: subprocess.Popen(
            [sys.executable, "-c", f"import bare_labeler.{module}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module in importable
    }
    failures = {}
    for module, run in runs.items():
        _, err = run.communicate(timeout=120)
        if run.returncode != 0:
            failures[module] = err.strip().splitlines()[-1]
    assert failures == {}


def test_runtime_modules_import_no_cycle_counting_imports_inside_functions():
    assert find_cycle(import_graph()) is None


def test_a_cycle_is_found_where_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_dynamic_imports_of_voter_kinds_are_edges():
    assert {"transformer", "embedding", "lexicon"} <= imported_siblings("kinds")


def test_only_entry_points_import_the_cli_and_labeling_never_reaches_fitting():
    graph = import_graph()
    importers_of_cli = {module for module, targets in graph.items() if "cli" in targets}
    assert importers_of_cli == ENTRY_POINTS
    for labeling in ("engine", "ray_engine", "vote"):
        assert reached_from(graph, labeling) & FITTING == set(), labeling


def function_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function, not counting argparse option declarations."""
    lines = function.end_lineno - function.lineno + 1
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "add_argument"
        ):
            lines -= node.end_lineno - node.lineno + 1
    return lines


def test_runtime_modules_and_their_functions_stay_small():
    too_long = []
    for module in MODULES:
        source = (RUNTIME / f"{module}.py").read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{module}.py: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if function_lines(node) > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {function_lines(node)} lines")
    assert too_long == []
