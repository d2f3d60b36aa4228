"""LLM prompts: Jinja files next to the node that uses them, versioned.

A prompt file starts with a ``{# version: N #}`` comment; the version goes
into cache keys and manifests, so changing a prompt is visible downstream.
Prompts are rendered with ``StrictUndefined``; texts under labeling are only
ever passed in as JSON data, never spliced into instructions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2

_VERSION = re.compile(r"\{#\s*version:\s*(\S+)\s*#\}")
_environment = jinja2.Environment(
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False
)


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user: str

    @property
    def id(self) -> str:
        return f"{self.name}/v{self.version}"


def _source(name: str) -> str:
    return (resources.files("agent.nodes") / f"{name}.prompt.jinja").read_text(encoding="utf-8")


def prompt_version(name: str) -> str:
    """The version of prompt ``name`` (its ``{# version: N #}`` comment), without rendering it."""
    match = _VERSION.search(_source(name))
    if match is None:
        raise ValueError(f"prompt {name} has no version comment")
    return match.group(1)


def load_prompt(name: str, **values: Any) -> Prompt:
    """Render ``agent/nodes/<name>.prompt.jinja``; its ``{% block system %}`` and ``user`` parts."""
    source = _source(name)
    match = _VERSION.search(source)
    if match is None:
        raise ValueError(f"prompt {name} has no version comment")
    template = _environment.from_string(source)
    context = template.new_context(values)
    system = "".join(template.blocks["system"](context)).strip()
    user = "".join(template.blocks["user"](context)).strip()
    return Prompt(name=name, version=match.group(1), system=system, user=user)
