"""Which model licences discovery accepts.

A generated labeler package names its voters and is meant to be shipped, so a
discovered model must carry a licence that allows that without conditions on
use: the permissive licences below. Copyleft (GPL, CC-BY-SA), non-commercial
(CC-BY-NC), use-restricted (OpenRAIL, Llama) and undeclared licences are
refused by default: a model without a licence is, legally, all rights reserved.
``AUTOANNOTATOR_LICENSES`` replaces the list (include ``unknown`` to accept
models that declare none). Models the user names with ``--model`` are the
user's decision and are not filtered; their licence is still recorded.
"""

from __future__ import annotations

from collections.abc import Iterable

UNKNOWN = "unknown"
"""What a model that declares no licence is recorded as."""

PERMISSIVE_LICENSES: tuple[str, ...] = (
    "apache-2.0",
    "mit",
    "bsd",
    "bsd-2-clause",
    "bsd-3-clause",
    "bsd-3-clause-clear",
    "isc",
    "zlib",
    "bsl-1.0",
    "ecl-2.0",
    "afl-3.0",
    "artistic-2.0",
    "postgresql",
    "unlicense",
    "wtfpl",
    "cc0-1.0",
    "pddl",
    "odc-by",
    "cc-by-2.0",
    "cc-by-2.5",
    "cc-by-3.0",
    "cc-by-4.0",
)
"""Hub licence ids (lowercase) that allow use and redistribution with attribution at most."""


def normalize_license(name: str | None) -> str:
    """Hub licence ids are case-insensitive; missing or blank means :data:`UNKNOWN`."""
    value = (name or "").strip().lower()
    return value or UNKNOWN


def license_problem(name: str | None, allowed: Iterable[str]) -> str | None:
    """Why a model's licence is refused, or None when it is on the allow-list."""
    license_id = normalize_license(name)
    if license_id in {normalize_license(entry) for entry in allowed}:
        return None
    if license_id == UNKNOWN:
        return "declares no licence (add 'unknown' to AUTOANNOTATOR_LICENSES to accept such models)"
    return f"licence {license_id} is not on the allow-list (AUTOANNOTATOR_LICENSES)"
