"""The sandbox probe's own side: runs INSIDE the sandbox, like a labeler, stdlib and torch only.

:mod:`agent.packaging.probe` copies this file into a throwaway package as
``autoannotator_sandbox_probe.py`` and starts it with ``python -m`` through the same
``run_package`` as every labeler run. It reports each step as one JSON event on stderr
(``{"event": "probe", "step": ..., "ok": ..., "detail": ...}``) and stops at the first step
that fails, so the parent can name exactly what broke.

Usage: ``python -m autoannotator_sandbox_probe INPUT PORT [base-image]``: INPUT is a read-only
file holding a token to copy into the work folder (the current folder); PORT is a TCP listener
the parent opened on 127.0.0.1, which a sandbox that cuts the network must not let us reach.
``base-image``: the probe runs in the base image package images are built on (Docker), which
needs pip to install the package's dependencies, not torch (the build installs it).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys

MARKER = "probe-marker.txt"
"""The file written into the work folder; the parent reads it back on the host."""
BASE_IMAGE_MODE = "base-image"


def emit(step: str, ok: bool, detail: str) -> None:
    event = {"event": "probe", "step": step, "ok": ok, "detail": detail}
    print(json.dumps(event), file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    input_path, port = argv[0], int(argv[1])
    emit("interpreter", True, f"Python {platform.python_version()} at {sys.executable}")
    module = "pip" if argv[2:] == [BASE_IMAGE_MODE] else "torch"
    try:
        imported = __import__(module)
    except BaseException as error:  # noqa: BLE001 - whatever stops the import is the finding
        emit(module, False, f"{type(error).__name__}: {error}")
        return 3
    emit(module, True, f"{module} {imported.__version__}")
    try:
        with open(input_path, encoding="utf-8") as source:
            token = source.read()
    except OSError as error:
        emit("input", False, f"{type(error).__name__}: {error}")
        return 4
    emit("input", True, input_path)
    try:
        with open(MARKER, "w", encoding="utf-8") as marker:
            marker.write(token)
    except OSError as error:
        emit("workdir", False, f"{type(error).__name__}: {error}")
        return 5
    emit("workdir", True, os.getcwd())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    except OSError as error:
        emit("network", True, f"{type(error).__name__}: {error}")
    else:
        emit("network", False, f"connected to 127.0.0.1:{port}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
