"""The output contract: the columns the labeler adds to a table, and how its flags are read.

Every labeled row gets the result columns (``label``, ``confidence``, ``agreement``,
``needs_review``), then, per voter in the spec's order, the voter's own label
(``label_<voter>``, empty where it abstained) and the probability it gave that label
(``prob_<voter>``). Input columns whose names clash are renamed (``label`` ->
``label_input``). Whoever reads a labeled table, this package or the agent that
generated it, spells the columns through this module.

``needs_review`` is a flag: a bool in JSON Lines and Parquet, the text ``true`` or
``false`` in CSV and TSV (:func:`flag_text`). :func:`read_flag` reads it back from
any of them.
"""

from __future__ import annotations

from collections.abc import Sequence

LABEL = "label"
CONFIDENCE = "confidence"
AGREEMENT = "agreement"
NEEDS_REVIEW = "needs_review"
RESULT_COLUMNS = (LABEL, CONFIDENCE, AGREEMENT, NEEDS_REVIEW)
"""The vote's outcome, first among the added columns."""
VOTER_LABEL_PREFIX = "label_"
VOTER_PROBABILITY_PREFIX = "prob_"
TRUE_TEXT = "true"
FALSE_TEXT = "false"
ARROW_TYPES = {
    LABEL: "string",
    CONFIDENCE: "float64",
    AGREEMENT: "float64",
    NEEDS_REVIEW: "bool",
}
"""Arrow types of the result columns (``label_<voter>``: string, ``prob_<voter>``: float64)."""


def voter_label_column(voter: str) -> str:
    """The column of a voter's own label."""
    return f"{VOTER_LABEL_PREFIX}{voter}"


def voter_probability_column(voter: str) -> str:
    """The column of the probability a voter gave its own label."""
    return f"{VOTER_PROBABILITY_PREFIX}{voter}"


def added_columns(voter_names: Sequence[str]) -> list[str]:
    """Columns the labeler adds: the result, then each voter's own label and probability."""
    columns = list(RESULT_COLUMNS)
    for name in voter_names:
        columns += [voter_label_column(name), voter_probability_column(name)]
    return columns


def input_renames(input_columns: Sequence[str], reserved: Sequence[str]) -> dict[str, str]:
    """New names for input columns that clash with the labeler's (``label`` -> ``label_input``)."""
    taken = set(input_columns) | set(reserved)
    renames = {}
    for column in input_columns:
        if column in reserved:
            new_name = f"{column}_input"
            while new_name in taken:
                new_name += "_"
            taken.add(new_name)
            renames[column] = new_name
    return renames


def arrow_type(column: str) -> str:
    """The Arrow type of an added column."""
    if column in ARROW_TYPES:
        return ARROW_TYPES[column]
    return "float64" if column.startswith(VOTER_PROBABILITY_PREFIX) else "string"


def flag_text(value: bool) -> str:
    """A flag as CSV and TSV hold it."""
    return TRUE_TEXT if value else FALSE_TEXT


def read_flag(value: object) -> bool:
    """A flag as the labeler wrote it: a bool (JSON Lines, Parquet) or its text (CSV, TSV).

    Anything else was not written by the labeler, and is refused rather than guessed at.
    """
    if isinstance(value, bool):
        return value
    if value == TRUE_TEXT:
        return True
    if value == FALSE_TEXT:
        return False
    raise ValueError(f"{value!r} is not a flag the labeler writes ({TRUE_TEXT} or {FALSE_TEXT})")
