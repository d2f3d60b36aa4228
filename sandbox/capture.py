"""What every backend reads back from a run: output text, output files, the cause of death.

Shared so that the process and Docker backends report the same facts the same way.
"""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from sandbox.base import OutputCallback

MAX_CAPTURED_CHARS = 8 * 1024 * 1024
"""Output kept per stream; a runaway labeler printing gigabytes must not exhaust the host."""

# How a process reports that an allocation failed under an address-space limit: Python's
# MemoryError, errno ENOMEM from C code, C++ bad_alloc, torch's CPU allocator.
_OUT_OF_MEMORY = re.compile(
    r"\bMemoryError\b|Cannot allocate memory|std::bad_alloc|out of memory"
    r"|can't allocate memory",
    re.IGNORECASE,
)
_OOM_TAIL_CHARS = 8192
_MAX_LINE_BYTES = 64 * 1024


def looks_out_of_memory(returncode: int, stderr: str) -> bool:
    """Heuristic: did a failed run die because an allocation failed?

    Only the end of stderr is searched, since that is where the fatal traceback is; a run
    that logged and survived a MemoryError early on, then failed for another reason, is not
    counted. It can still be fooled by a program that prints these words and exits non-zero.
    """
    return returncode != 0 and bool(_OUT_OF_MEMORY.search(stderr[-_OOM_TAIL_CHARS:]))


def keep_tail(text: str, limit: int = MAX_CAPTURED_CHARS) -> str:
    """The last ``limit`` characters of ``text``, marked when something was cut."""
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


class LineCapture:
    """Collects a byte stream as text (bounded) and passes each line to a callback.

    A callback that raises stops being called; its exception is kept so the backend can
    re-raise it once the sandboxed process has been cleaned up, instead of hiding it.
    """

    def __init__(self, on_line: OutputCallback | None = None) -> None:
        self._on_line = on_line
        self._chunks: deque[str] = deque()
        self._size = 0
        self._cut = 0
        self._partial = b""
        self.callback_error: BaseException | None = None

    def feed(self, data: bytes) -> None:
        """Add raw bytes; complete lines go to the callback."""
        if not data:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._add(line.decode("utf-8", errors="replace") + "\n")
        if len(self._partial) > _MAX_LINE_BYTES:  # progress bars redraw with \r, never \n
            self._add(self._partial.decode("utf-8", errors="replace"))
            self._partial = b""

    def close(self) -> None:
        """Flush a last line that had no newline."""
        if self._partial:
            self._add(self._partial.decode("utf-8", errors="replace"))
            self._partial = b""

    def text(self) -> str:
        prefix = f"[... {self._cut} characters cut ...]\n" if self._cut else ""
        return prefix + "".join(self._chunks)

    def _add(self, line: str) -> None:
        self._chunks.append(line)
        self._size += len(line)
        while self._size > MAX_CAPTURED_CHARS and len(self._chunks) > 1:
            dropped = self._chunks.popleft()
            self._size -= len(dropped)
            self._cut += len(dropped)
        if self._on_line is not None and self.callback_error is None:
            try:
                self._on_line(line.rstrip("\n"))
            except Exception as error:  # re-raised by the backend after cleanup
                self.callback_error = error


def pump(stream: IO[bytes], capture: LineCapture) -> threading.Thread:
    """Start a daemon thread copying ``stream`` into ``capture`` until EOF."""

    def run() -> None:
        with stream:
            for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
                capture.feed(chunk)
        capture.close()

    thread = threading.Thread(target=run, name="sandbox-output", daemon=True)
    thread.start()
    return thread


def chunks_to_capture(chunks: Iterable[bytes], capture: LineCapture) -> None:
    """Feed an iterator of byte chunks (Docker's log stream) into ``capture``."""
    for chunk in chunks:
        capture.feed(chunk)
    capture.close()


def list_output_files(workdir: Path) -> tuple[str, ...]:
    """Files under ``workdir``, as sorted POSIX paths relative to it (links not followed)."""
    found = []
    for folder, _dirs, files in os.walk(workdir):
        for name in files:
            found.append((Path(folder) / name).relative_to(workdir).as_posix())
    return tuple(sorted(found))
