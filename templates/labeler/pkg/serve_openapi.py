"""The service's OpenAPI document, and a plain ``/docs`` page made from it.

The page is self-contained HTML (no script, no stylesheet or font from elsewhere), so it
works on a machine with no network, as the service is meant to run.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from .columns import (
    AGREEMENT,
    CONFIDENCE,
    LABEL,
    NEEDS_REVIEW,
    voter_label_column,
    voter_probability_column,
)
from .config import LabelerSpec
from .serve_requests import Limits

OPENAPI_VERSION = "3.1.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _row_schema(spec: LabelerSpec, voters: Sequence[str]) -> dict[str, Any]:
    labels = list(spec.labels)
    properties: dict[str, Any] = {
        LABEL: {"type": "string", "enum": labels, "description": "the vote's label"},
        CONFIDENCE: {
            "type": "number",
            "description": "the voters' (weighted) mean probability for the label",
        },
        AGREEMENT: {"type": "number", "description": "the share of votes the label won"},
        NEEDS_REVIEW: {"type": "boolean", "description": "true when the vote is not sure"},
    }
    for name in voters:
        properties[voter_label_column(name)] = {
            "type": ["string", "null"],
            "enum": [*labels, None],
            "description": f"voter {name}'s own label (null where it abstained)",
        }
        properties[voter_probability_column(name)] = {
            "type": "number",
            "description": f"the probability voter {name} gave its own label",
        }
    return {"type": "object", "properties": properties, "required": list(properties)}


def _schemas(spec: LabelerSpec, text_column: str, voters: Sequence[str], limits: Limits):
    text = {"type": "string", "maxLength": limits.max_text_chars}
    return {
        "TextsRequest": {
            "type": "object",
            "properties": {"texts": {"type": "array", "items": text, "maxItems": limits.max_texts}},
            "required": ["texts"],
            "additionalProperties": False,
        },
        "RecordsRequest": {
            "type": "object",
            "properties": {
                "records": {
                    "type": "array",
                    "maxItems": limits.max_texts,
                    "items": {
                        "type": "object",
                        "properties": {text_column: text},
                        "required": [text_column],
                        "description": "a row of a table: its fields come back with the results",
                    },
                }
            },
            "required": ["records"],
            "additionalProperties": False,
        },
        "LabeledRow": _row_schema(spec, voters),
        "LabelResponse": {
            "type": "object",
            "properties": {"results": {"type": "array", "items": _ref("LabeledRow")}},
            "required": ["results"],
        },
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            "required": ["error", "message"],
        },
    }


def _label_operation(limits: Limits) -> dict[str, Any]:
    error = _ref("Error")
    retry = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return {
        "summary": "Label texts or records",
        "description": "One row per text, in order: exactly what the batch command writes "
        "for it. Rows of concurrent requests share model batches.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [_ref("TextsRequest"), _ref("RecordsRequest")]},
                    "example": {"texts": ["first text", "second text"]},
                }
            },
        },
        "responses": {
            "200": _json(_ref("LabelResponse"), "the labeled rows"),
            "413": _json(
                error,
                f"more than {limits.max_texts} texts, a text longer than "
                f"{limits.max_text_chars} characters, or a body over {limits.max_body_bytes} bytes",
            ),
            "422": _json(error, "a body that is not JSON or not of the shape above"),
            "503": {
                **_json(error, "voters still loading, or the queue is full"),
                "headers": retry,
            },
        },
    }


def openapi_document(
    spec: LabelerSpec, text_column: str, voters: Sequence[str], limits: Limits, version: str
) -> dict[str, Any]:
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": spec.name,
            "version": version,
            "description": f"Labels for this task: {spec.task}. Labels: {', '.join(spec.labels)}.",
        },
        "paths": {
            "/v1/label": {"post": _label_operation(limits)},
            "/healthz": {
                "get": {
                    "summary": "The process is up",
                    "responses": {"200": _json(status, "up")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The voters are loaded and requests are taken",
                    "responses": {
                        "200": _json(status, "ready"),
                        "503": _json(status, "still loading"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format)",
                    "responses": {
                        "200": {
                            "description": "the metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": _schemas(spec, text_column, voters, limits)},
    }


def docs_page(document: dict[str, Any]) -> str:
    """A plain HTML page describing every operation, with the full document at the end."""
    info = document["info"]
    items = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            codes = ", ".join(operation["responses"])
            items.append(
                f"<li><code>{method.upper()} {html.escape(path)}</code>: "
                f"{html.escape(operation['summary'])} (answers {codes})</li>"
            )
    example = json.dumps(
        document["paths"]["/v1/label"]["post"]["requestBody"]["content"]["application/json"][
            "example"
        ]
    )
    full = json.dumps(document, indent=2, ensure_ascii=False)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(info['title'])}: API</title></head><body>"
        f"<h1>{html.escape(info['title'])}</h1><p>{html.escape(info['description'])}</p>"
        f"<h2>Operations</h2><ul>{''.join(items)}</ul>"
        "<h2>Example</h2><pre>curl -s http://HOST:PORT/v1/label -H 'Content-Type: "
        f"application/json' -d '{html.escape(example)}'</pre>"
        "<h2>OpenAPI document</h2><p>Also at <a href='/openapi.json'>/openapi.json</a>.</p>"
        f"<pre>{html.escape(full)}</pre></body></html>\n"
    )
