"""Files a crash cannot leave half-written, and one writer per run folder.

A file is written whole to a temporary name beside its target, flushed to the disk, then
renamed over the target, and the folder's entry is flushed too: after a power cut a reader
finds the old file or the new one, never a torn one or an empty one.

A run folder has one writer at a time: :func:`hold_run_folder` takes an OS lock
(``flock``) on its lock file for as long as the process works on it. Two resumes of one
run, or a ``review import`` while the run goes on, would each read the verdicts and write
them back, and one of them would lose the other's (or pay twice for the same rows). The
kernel drops the lock when the process ends however it ends, so a killed run leaves no
stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.errors import RunStateError

LOCK_FILE = ".lock"
"""In the run folder: the file whose ``flock`` marks the folder's one writer."""


def replace_durably(temporary: Path | str, target: Path | str) -> None:
    """Flush ``temporary`` to the disk, rename it over ``target``, flush the folder's entry."""
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    sync_folder(Path(target).parent)


def sync_folder(folder: Path | str) -> None:
    """Flush a folder's entries (a rename in it) to the disk, where the system allows it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is atomic
    finally:
        os.close(descriptor)


def write_text_atomically(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file, flushed, then renamed."""
    path = Path(path)
    # A name of its own: threads and processes writing the same file never share a temporary.
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        replace_durably(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def hold_run_folder(run_dir: Path | str, run_id: str) -> Iterator[None]:
    """Be the one writer of ``run_dir`` while the block runs; a second writer is refused with
    one line (:class:`RunStateError`, exit 2) before it changes anything."""
    path = Path(run_dir) / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise RunStateError(
                f"run {run_id} is in use by another process{who}: wait for it to finish "
                "(a resume, a review import or a finetune of the same run)"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(descriptor)  # closing drops the lock
