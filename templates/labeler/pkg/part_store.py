"""Part files of a labeling run: each finished chunk's results, so that an interrupted run
resumes at the first unfinished chunk."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .columns import NEEDS_REVIEW


class PartStore:
    """Finished chunks' results, saved as ``<output>.parts/part-NNNNNN.jsonl``.

    A fingerprint of the spec, the input and the chunking guards against mixing
    parts of a different run; a mismatch discards the old parts.
    """

    def __init__(self, output_path: Path, fingerprint: str) -> None:
        output_path = Path(output_path)
        self.folder = output_path.with_name(output_path.name + ".parts")
        stamp = self.folder / "fingerprint"
        if self.folder.exists() and (
            not stamp.exists() or stamp.read_text(encoding="utf-8") != fingerprint
        ):
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint, encoding="utf-8")

    def _path(self, index: int) -> Path:
        return self.folder / f"part-{index:06d}.jsonl"

    def completed(self) -> int:
        """Number of leading chunks already finished."""
        count = 0
        while self._path(count).exists():
            count += 1
        return count

    def write(self, index: int, results: list[dict[str, Any]]) -> None:
        temporary = self._path(index).with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps(result, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._path(index))

    def read(self, index: int) -> list[dict[str, Any]]:
        with open(self._path(index), encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    def counts(self, parts: int) -> tuple[int, int]:
        """Rows, and rows that need review, in the first ``parts`` parts."""
        rows = needs_review = 0
        for index in range(parts):
            results = self.read(index)
            rows += len(results)
            needs_review += sum(1 for result in results if result[NEEDS_REVIEW])
        return rows, needs_review

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
