"""The lint gate: every rendered file is formatted and checked before it is used.

Python files are formatted with black, then must parse (``ast.parse``),
compile, and pass ``ruff check`` (pyflakes and pycodestyle rules); TOML and
JSON files must parse. The package's ``pyproject.toml`` must carry exactly these black
and ruff settings (:func:`tool_settings`), so ``black --check .`` and ``ruff check .``
pass inside the package with its own configuration. A failure here is a bug in our
templates, reported as a :class:`TemplateError` naming the file and the problem.
"""

from __future__ import annotations

import ast
import json
import subprocess
import tomllib
from pathlib import Path

import black

from agent.errors import TemplateError

LINE_LENGTH = 100
RUFF_RULES = ("F", "E", "W")
RUFF_IGNORED = ("E501",)  # black decides line length; long string literals are fine
SKIPPED_FOLDERS = frozenset({"models", "learned", "adapters", "__pycache__"})
TARGET_VERSION = "py310"


def tool_settings() -> dict[str, dict]:
    """The gate's settings as the package's ``pyproject.toml`` states them (``[tool.*]``)."""
    return {
        "black": {"line-length": LINE_LENGTH, "target-version": [TARGET_VERSION]},
        "ruff": {
            "line-length": LINE_LENGTH,
            "extend-exclude": sorted(SKIPPED_FOLDERS - {"__pycache__"}),
            "lint": {"select": list(RUFF_RULES), "ignore": list(RUFF_IGNORED)},
        },
    }


def check_tool_settings(pyproject: dict, name: str = "pyproject.toml") -> None:
    """The package's black and ruff settings must be the gate's (else its checks differ)."""
    declared = pyproject.get("tool", {})
    for tool, expected in tool_settings().items():
        if declared.get(tool) != expected:
            raise TemplateError(
                f"{name}: [tool.{tool}] is {declared.get(tool)!r}, the lint gate uses {expected!r}"
            )


def black_mode() -> black.Mode:
    target = black.TargetVersion[TARGET_VERSION.upper()]
    return black.Mode(line_length=LINE_LENGTH, target_versions={target})


def format_python(source: str, name: str) -> str:
    """black-formatted ``source``; a TemplateError when black cannot parse it."""
    try:
        return black.format_str(source, mode=black_mode())
    except black.InvalidInput as error:
        raise TemplateError(f"{name}: black cannot parse the rendered file ({error})") from None


def check_python(source: str, name: str) -> None:
    try:
        tree = ast.parse(source, filename=name)
        compile(tree, name, "exec")
    except SyntaxError as error:
        raise TemplateError(f"{name}:{error.lineno}: {error.msg}") from None


def _files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not SKIPPED_FOLDERS.intersection(path.relative_to(folder).parts)
    )


def ruff_check(folder: Path) -> None:
    from ruff import find_ruff_bin

    command = [
        find_ruff_bin(),
        "check",
        "--isolated",
        "--no-cache",
        "--quiet",
        "--output-format",
        "concise",
        "--select",
        ",".join(RUFF_RULES),
        "--ignore",
        ",".join(RUFF_IGNORED),
        "--line-length",
        str(LINE_LENGTH),
        "--exclude",
        ",".join(sorted(SKIPPED_FOLDERS)),
        str(folder),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        report = (result.stdout or result.stderr).strip().splitlines()
        first = report[0].replace(str(folder) + "/", "") if report else "ruff failed"
        more = f" (and {len(report) - 1} more)" if len(report) > 1 else ""
        raise TemplateError(f"ruff: {first}{more}")


def format_and_lint(folder: Path) -> list[str]:
    """Format every Python file in place and check every file; returns the files checked."""
    checked = []
    for path in _files(folder):
        name = str(path.relative_to(folder))
        if path.suffix == ".py":
            formatted = format_python(path.read_text(encoding="utf-8"), name)
            check_python(formatted, name)
            path.write_text(formatted, encoding="utf-8")
        elif path.suffix == ".toml":
            try:
                parsed = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as error:
                raise TemplateError(f"{name}: invalid TOML ({error})") from None
            if name == "pyproject.toml":
                check_tool_settings(parsed, name)
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                raise TemplateError(f"{name}: invalid JSON ({error})") from None
        checked.append(name)
    ruff_check(folder)
    return checked
