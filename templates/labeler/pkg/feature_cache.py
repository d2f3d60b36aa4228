"""A folder of what voters computed, so that relabeling reruns only what changed.

``label --cache DIR`` (and ``learn --cache DIR``) store, per slice of texts the voters
were given, each voter's probabilities and each encoder's embeddings, keyed by what
decides them (an *identity*: a JSON object) and by a hash of the slice's texts:

- ``DIR/texts/<slice>.npy``: uint64, one hash per row of the slice (the first 8 bytes of
  the sha256 of its text), so that rows can also be found by text, whatever their slice;
- ``DIR/<namespace>/<identity hash>/identity.json``: the identity, for people;
- ``DIR/<namespace>/<identity hash>/<slice>.npy``: the rows' array (float64
  ``probabilities``, float32 ``embeddings``);
- ``DIR/precision/<identity hash>.json``: a voter's int8 decision, taken once;
- ``DIR/identities/<recipe hash>.json``: the identity the last labeling used for a voter's
  probabilities and for its encoder's embeddings, under what decides it before any model
  is loaded (:mod:`.cached`): ``learn`` reads stored rows without loading a model.

Arrays are written atomically (a temporary file, then ``os.replace``) and read with
``allow_pickle=False``. The cache is an optimisation only: a missing, corrupt or
mismatched file is computed again and rewritten, never an error; a folder that cannot be
written (mounted read-only, full) is read, and what could not be stored is said once on
stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FORMAT = 1
"""Part of every identity: a new layout of the cache ignores the old files."""
DTYPES = {"probabilities": np.float64, "embeddings": np.float32}
TEXTS = "texts"
PRECISION = "precision"
IDENTITIES = "identities"


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """(texts,) uint64: the first 8 bytes of each text's sha256."""
    digests = b"".join(hashlib.sha256(text.encode("utf-8")).digest()[:8] for text in texts)
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def slice_key(hashes: np.ndarray) -> str:
    return hashlib.sha256(hashes.tobytes()).hexdigest()[:32]


def identity_key(identity: dict) -> str:
    text = json.dumps({"format": FORMAT, **identity}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def write_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_array(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


class FeatureCache:
    """Arrays of rows of texts, per identity, in a folder (see the module's docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.writable = True

    def _store(self, path: Path, write) -> None:
        """Write ``path`` atomically; when the folder cannot be written, say so once and
        store nothing more (the cache is an optimisation, never an error)."""
        if not self.writable:
            return
        try:
            write_atomically(path, write)
        except OSError as error:
            self.writable = False
            reason = error.strerror or type(error).__name__
            print(
                f"note: the cache {self.folder} cannot be written ({reason}): "
                "what is computed now is not stored",
                file=sys.stderr,
            )

    def _folder(self, namespace: str, identity: dict) -> Path:
        return self.folder / namespace / identity_key(identity)

    def get(self, namespace: str, identity: dict, texts: Sequence[str]) -> np.ndarray | None:
        """The stored array for exactly these texts, or None."""
        hashes = text_hashes(texts)
        array = load_array(self._folder(namespace, identity) / f"{slice_key(hashes)}.npy")
        if array is None or array.ndim != 2 or array.shape[0] != len(texts):
            return None
        return array.astype(np.float64)

    def put(self, namespace: str, identity: dict, texts: Sequence[str], array) -> None:
        hashes = text_hashes(texts)
        key = slice_key(hashes)
        folder = self._folder(namespace, identity)
        record = folder / "identity.json"
        if not record.is_file():
            text = json.dumps(identity, indent=2, sort_keys=True, default=str).encode("utf-8")
            self._store(record, lambda handle: handle.write(text))
        texts_file = self.folder / TEXTS / f"{key}.npy"
        stored = load_array(texts_file)
        if stored is None or not np.array_equal(stored, hashes):
            self._store(texts_file, lambda handle: np.save(handle, hashes))
        values = np.asarray(array, dtype=DTYPES[namespace])
        self._store(folder / f"{key}.npy", lambda handle: np.save(handle, values))

    def rows(
        self, namespace: str, identity: dict, texts: Sequence[str]
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """Each text's row from any stored slice: (array, found mask); rows not found are 0."""
        wanted = {int(h): row for row, h in enumerate(text_hashes(texts))}
        found = np.zeros(len(texts), dtype=bool)
        result: np.ndarray | None = None
        for path in sorted(self._folder(namespace, identity).glob("*.npy")):
            array = load_array(path)
            hashes = load_array(self.folder / TEXTS / path.name)
            if array is None or hashes is None or array.ndim != 2 or len(array) != len(hashes):
                continue
            for position, value in enumerate(hashes.tolist()):
                row = wanted.get(value)
                if row is None or found[row]:
                    continue
                if result is None:
                    result = np.zeros((len(texts), array.shape[1]))
                if array.shape[1] == result.shape[1]:
                    result[row], found[row] = array[position], True
            if found.all():
                break
        return result, found

    def note(self, namespace: str, key: dict) -> dict | None:
        """The JSON object stored under ``key`` in ``namespace``, or None."""
        try:
            path = self.folder / namespace / f"{identity_key(key)}.json"
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def save_note(self, namespace: str, key: dict, record: dict) -> None:
        """Store ``record`` under ``key`` in ``namespace`` (unless it is stored already)."""
        if self.note(namespace, key) == record:
            return
        text = json.dumps(record, sort_keys=True, default=str).encode("utf-8")
        path = self.folder / namespace / f"{identity_key(key)}.json"
        self._store(path, lambda handle: handle.write(text))

    def decision(self, identity: dict) -> dict | None:
        return self.note(PRECISION, identity)

    def save_decision(self, identity: dict, record: dict) -> None:
        self.save_note(PRECISION, identity, record)
