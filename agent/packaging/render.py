"""Rendering the labeler package from its templates.

Copier's rule: under ``templates/labeler/`` every ``*.jinja`` file is rendered
from one typed :class:`~agent.packaging.spec.PackageSpec`, every other file is copied
as it is, and ``pkg/`` becomes the package's module folder. Templates render
with ``StrictUndefined``, and every value that lands in generated code goes
through a filter that emits a literal of the target language, so no label,
model id or column name can break or inject code. The same spec always
renders to byte-identical files.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any
from urllib.parse import quote

import jinja2

from agent.errors import TemplateError
from agent.packaging.spec import PackageSpec, Provenance

TEMPLATE_ROOT = "labeler"
MODULE_FOLDER = "pkg"
SOURCE_TREE_ONLY = frozenset({"__pycache__", "__init__.py"})
"""Not rendered or copied: what makes the templates importable from the agent's source tree
(a package's own ``__init__.py`` is rendered from ``__init__.py.jinja``)."""
_SAFE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]#|<>&~]|^[-+])")
_REQUIREMENT = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?"
    r"((===?|~=|!=|<=?|>=?)[A-Za-z0-9.*+!_-]+(,(===?|~=|!=|<=?|>=?)[A-Za-z0-9.*+!_-]+)*)?"
)


def python_literal(value: Any) -> str:
    """``value`` as a Python literal that evaluates back to an equal value."""
    _check_literal(value)
    return repr(value)


def _check_literal(value: Any) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError(f"cannot emit the non-finite number {value!r} as a literal")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_literal(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"cannot emit a dict key of type {type(key).__name__}")
            _check_literal(item)
        return
    raise TemplateError(f"cannot emit a {type(value).__name__} as a literal")


def toml_literal(value: Any) -> str:
    """A TOML basic string, number or boolean."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise TemplateError(f"cannot emit {value!r} in TOML: not encodable") from None
        # JSON string escapes are a subset of TOML's, given raw (not \u-escaped) non-ASCII.
        return json.dumps(value, ensure_ascii=False)
    raise TemplateError(f"cannot emit a {type(value).__name__} in TOML")


def markdown_text(value: Any) -> str:
    """Inline Markdown text: specials escaped, line breaks folded to spaces."""
    text = " ".join(str(value).split())
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def safe_word(value: Any) -> str:
    """A word safe in a shell command, a Dockerfile or a code span; anything else is refused."""
    text = str(value)
    if not _SAFE_WORD.fullmatch(text):
        raise TemplateError(f"refusing to emit {text!r} as a bare word")
    return text


def shell_word(value: Any) -> str:
    """One word of a shell command, quoted as needed (a Dockerfile ``RUN`` line); a value
    with a line break, which would end the instruction, is refused."""
    text = str(value)
    if not text or any(char in text for char in "\n\r\0"):
        raise TemplateError(f"refusing to emit {text!r} as a shell word")
    return shlex.quote(text)


def url_path(value: Any) -> str:
    """A URL path, percent-encoded (``/`` kept), safe in a Markdown link."""
    return quote(str(value), safe="/")


def requirement(value: Any) -> str:
    """A requirement line (``name[extra]==1.0``) for a requirements file; nothing else."""
    text = str(value)
    if not _REQUIREMENT.fullmatch(text):
        raise TemplateError(f"refusing to emit {text!r} as a requirement")
    return text


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(
        py=python_literal,
        toml=toml_literal,
        md=markdown_text,
        word=safe_word,
        req=requirement,
        sh=shell_word,
        url=url_path,
    )
    return env


def template_root() -> Traversable:
    return resources.files("templates") / TEMPLATE_ROOT


def _walk(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    entries = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        relative = f"{prefix}{entry.name}"
        if entry.name in SOURCE_TREE_ONLY:
            continue
        if entry.is_dir():
            entries += _walk(entry, relative + "/")
        else:
            entries.append((relative, entry))
    return entries


def render_package(
    spec: PackageSpec, provenance: Provenance, root: Traversable | None = None
) -> dict[str, str]:
    """Every text file of the package: relative path -> content (``root``: another skeleton)."""
    env = environment()
    files: dict[str, str] = {}
    for relative, entry in _walk(root or template_root()):
        target = relative
        if target.startswith(MODULE_FOLDER + "/"):
            target = spec.module + target[len(MODULE_FOLDER) :]
        source = entry.read_text(encoding="utf-8")
        if target.endswith(".jinja"):
            target = target[: -len(".jinja")]
            try:
                source = env.from_string(source).render(spec=spec)
            except jinja2.TemplateError as error:
                raise TemplateError(f"template {relative}: {error}") from error
        files[target] = source
    files["models.lock.json"] = _json(spec.lock())
    # The labeler checks bundled weights against the lock, so it ships inside the module too.
    files[module_lock(spec.module)] = files["models.lock.json"]
    files["manifest.json"] = _json(provenance.manifest(spec))
    return files


def module_lock(module: str) -> str:
    """Where the module's copy of ``models.lock.json`` is, in the package."""
    return f"{module}/models.lock.json"


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
