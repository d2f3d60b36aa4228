"""What ``POST /v1/label`` accepts and answers.

A body is ``{"texts": ["...", ...]}`` or ``{"records": [{<text column>: "...", ...}, ...]}``.
The answer holds one row per text, in order: for texts the result columns the batch command
adds (:mod:`.columns`), for records each record's own fields (renamed as the batch command
renames clashing input columns, ``label`` -> ``label_input``) followed by those columns.

Anything else is refused before any row is queued: 422 for a body of the wrong shape, 413
for too many texts or a text that is too long. A text is made safe as it is read, as the
batch command reads a file's (:func:`.tabular.safe_text`: lone surrogates become U+FFFD,
NULs are dropped), so a poison text is labeled and fails nobody's batch; a record's other
fields are answered as they came.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .columns import added_columns, input_renames
from .tabular import safe_text

BODY_SHAPE = (
    'the body must be a JSON object with either "texts" (a list of strings) or "records" '
    "(a list of objects)"
)


class RequestError(Exception):
    """A request refused with ``status`` and a JSON error body."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = {} if retry_after is None else {"Retry-After": str(retry_after)}

    def body(self) -> dict[str, str]:
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> dict[str, str]:
    """Every error the service answers: a stable code and one sentence."""
    return {"error": code, "message": message}


@dataclass(frozen=True)
class Limits:
    max_texts: int
    """Texts (or records) in one request."""
    max_text_chars: int
    """Characters in one text."""
    max_body_bytes: int
    """Bytes in one request body."""


@dataclass(frozen=True)
class LabelRequest:
    texts: list[str]
    records: list[dict[str, Any]] | None
    """The records the texts came from, or None when the body held bare texts."""
    unsafe_texts: int = 0
    """Texts made safe as they were read."""


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names.update({list: "an array", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def parse_label_request(body: bytes, text_column: str, limits: Limits) -> LabelRequest:
    """The texts (and records) of a body, or :class:`RequestError`."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise RequestError(422, "invalid_json", f"the body is not JSON: {error}") from None
    if not isinstance(payload, dict) or len(payload) != 1:
        raise RequestError(422, "invalid_body", BODY_SHAPE)
    key, items = next(iter(payload.items()))
    if key not in ("texts", "records") or not isinstance(items, list):
        raise RequestError(422, "invalid_body", BODY_SHAPE)
    if len(items) > limits.max_texts:
        raise RequestError(
            413,
            "too_many_texts",
            f"{len(items)} {key} in one request; the service takes at most {limits.max_texts}",
        )
    if key == "texts":
        texts = [checked_text(item, f"texts[{index}]", limits) for index, item in enumerate(items)]
        return _made_safe(texts, None, text_column)
    for index, record in enumerate(items):
        if not isinstance(record, dict):
            raise RequestError(
                422, "invalid_record", f"records[{index}] is {json_type(record)}, not an object"
            )
        if text_column not in record:
            raise RequestError(
                422,
                "missing_text_column",
                f"records[{index}] has no {text_column!r} field (the text column)",
            )
    texts = [
        checked_text(record[text_column], f"records[{index}].{text_column}", limits)
        for index, record in enumerate(items)
    ]
    return _made_safe(texts, items, text_column)


def _made_safe(
    texts: list[str], records: list[dict[str, Any]] | None, text_column: str
) -> LabelRequest:
    """The request with its texts made safe (and each record's text as labeled)."""
    read = [safe_text(text) for text in texts]
    unsafe = sum(changed for _, changed in read)
    texts = [text for text, _ in read]
    if unsafe and records is not None:
        records = [
            record | {text_column: text} for record, text in zip(records, texts, strict=True)
        ]
    return LabelRequest(texts, records, unsafe)


def checked_text(value: Any, where: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise RequestError(422, "invalid_text", f"{where} is {json_type(value)}, not a string")
    if len(value) > limits.max_text_chars:
        raise RequestError(
            413,
            "text_too_long",
            f"{where} has {len(value)} characters; the service takes at most "
            f"{limits.max_text_chars}",
        )
    return value


def answer_rows(
    request: LabelRequest, results: Sequence[dict[str, Any]], voter_names: Sequence[str]
) -> list[dict[str, Any]]:
    """The rows the batch command would write for the request's texts or records."""
    if request.records is None:
        return list(results)
    added = added_columns(voter_names)
    rows = []
    for record, result in zip(request.records, results, strict=True):
        renames = input_renames(list(record), added)
        rows.append({**{renames.get(k, k): v for k, v in record.items()}, **result})
    return rows
