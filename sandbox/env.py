"""The environment a sandboxed command sees: built from nothing, never inherited.

Every backend starts from an empty mapping so that the parent's secrets (LLM API keys, Hub
tokens, cloud credentials) cannot leak by accident, then adds what a labeler needs to run
offline and reproducibly. Secret-looking variables are dropped even when the caller passes
them on purpose: a labeler never needs one, and a generated script that prints its
environment must not be able to show one.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

from sandbox.base import Limits

logger = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Name segments (split on "_") that mark a secret: HF_TOKEN, AWS_SECRET_ACCESS_KEY, OPENAI_KEY...
# Whole segments, so TOKENIZERS_PARALLELISM is kept while GITHUB_TOKEN is not.
_SECRET_SEGMENTS = frozenset(
    {
        "TOKEN",
        "TOKENS",
        "SECRET",
        "SECRETS",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "CREDENTIAL",
        "CREDENTIALS",
        "APIKEY",
        "AUTH",
        "COOKIE",
    }
)
_SECRET_PHRASES = ("API_KEY", "ACCESS_KEY", "PRIVATE_KEY", "SECRET", "PASSWORD")
# Values that are secrets whatever the name: OpenAI/HF/GitHub/Slack tokens, AWS key ids.
_SECRET_VALUE = re.compile(
    r"^(sk-|hf_|ghp_|gho_|ghs_|github_pat_|xox[abpr]-|AKIA)[A-Za-z0-9_\-]{16,}"
)

# Offline, quiet, deterministic: the labeler must never try the network (there is none) and
# must not wait on a timeout before finding out.
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def is_secret(name: str, value: str = "") -> bool:
    """Whether an environment variable looks like a credential (by name or by value)."""
    upper = name.upper()
    segments = upper.split("_")
    if _SECRET_SEGMENTS.intersection(segments) or segments[-1] in {"KEY", "KEYS"}:
        return True
    if any(phrase in upper for phrase in _SECRET_PHRASES):
        return True
    return bool(_SECRET_VALUE.match(value))


def inherited_threads() -> int | None:
    """The thread count this process was started with (``OMP_NUM_THREADS``), if any: a
    user who limits the agent's threads limits its sandboxed commands too."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def scrubbed_env(
    env: Mapping[str, str] | None,
    *,
    home: str,
    tmpdir: str,
    limits: Limits,
    path: str = DEFAULT_PATH,
) -> dict[str, str]:
    """The complete environment for one sandboxed command.

    ``home`` is the work folder (caches a library writes under ``~`` stay inside it);
    ``env`` is applied last so the caller can point ``HF_HOME`` or ``HF_HUB_CACHE`` at a
    read-only mount, but secret-looking entries are dropped (and logged by name only).
    """
    threads = str(limits.threads or inherited_threads() or os.cpu_count() or 1)
    result = {
        "PATH": path,
        "HOME": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": tmpdir,
        **_OFFLINE,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
    }
    dropped = []
    for name, value in (env or {}).items():
        if is_secret(name, value):
            dropped.append(name)
        else:
            result[name] = value
    if dropped:
        logger.warning("not passing secret-looking variables to the sandbox: %s", sorted(dropped))
    return result
