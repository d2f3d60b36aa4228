"""Labeling a whole file: stream chunks through the voters, vote, write results.

Each finished chunk's results are saved as a part file next to the output, so
an interrupted run resumes at the first unfinished chunk with no row lost or
duplicated. The output itself is assembled, atomically, only at the end.
Within a chunk, texts go to the voters in slices, so progress shows before a
whole chunk is done.

On CPU, transformer voters can run in int8 (``quantize``, see :mod:`.precision`): by
default at the precision pinned for each when the package was built, measured on no row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import adapters, tabular
from .cached import (
    cached_probabilities,
    decision_identity,
    remember_identities,
    replay_decision,
    voter_identity,
)
from .columns import (
    AGREEMENT,
    CONFIDENCE,
    LABEL,
    NEEDS_REVIEW,
    added_columns,
    input_renames,
    voter_label_column,
    voter_probability_column,
)
from .config import LabelerSpec
from .feature_cache import FeatureCache
from .kinds import load_voter
from .part_store import PartStore
from .precision import (
    DEFAULT_QUANTIZE,
    INT8_MIN_AGREEMENT,
    NOT_MEASURED_ON_CUDA,
    QUANTIZE_MODES,
    apply_pinned,
    int8_candidates,
    not_measured,
    record_precision,
    replay_or_pin,
    sample_rows,
)
from .transformer import Int8Decision, try_int8, use_int8
from .vote import LearnedVote, current_vote, pooled_vote, vote
from .voters import Runtime, Voter

PROBABILITY_DECIMALS = 6
ProgressCallback = Callable[[int, int], None]
Int8Callback = Callable[[Int8Decision], None]

SLICE_ROWS = 2048
"""Texts given to the voters at once (at least 8 batches): progress is reported per slice."""


class Labeler:
    """The voters of one spec, loaded once, labeling lists of texts."""

    def __init__(
        self, spec: LabelerSpec, runtime: Runtime, quantize: str = DEFAULT_QUANTIZE
    ) -> None:
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, not {quantize!r}")
        if quantize == "int8" and runtime.device != "cpu":
            raise ValueError("int8 runs on CPU only; on CUDA the voters run in bf16")
        self.spec = spec
        self.runtime = runtime
        self.quantize = quantize
        self.learned_vote: LearnedVote | None = current_vote(runtime.package_root, spec)
        """The vote fitted on verified rows, if one is installed; else the plain vote."""
        self.voters: list[Voter] = [load_voter(v, spec.labels, runtime) for v in spec.voters]
        self.int8_decisions: list[Int8Decision] | None = None
        self.cache: FeatureCache | None = runtime.cache
        """Where probabilities, embeddings and int8 decisions are kept between runs."""
        self._identities: tuple[dict[str, str], list[dict]] | None = None
        self._measured: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        """The probabilities the int8 check computed for its rows, per voter, with the model
        kept: the first slice, when it holds those rows, is not computed again."""

    def use_cache(self, cache: FeatureCache) -> None:
        """Keep and reuse the voters' probabilities in ``cache`` from now on."""
        self.cache = cache

    def settle_precision(self, sample: Sequence[str] = ()) -> list[Int8Decision]:
        """Apply ``quantize`` once, before labeling; ``sample`` holds the texts ``auto`` and
        ``measure`` check. With a cache, the precision applied is recorded there."""
        if self.int8_decisions is None:
            self.int8_decisions = self._decide_int8(sample)
            self._record_precision(self.int8_decisions)
        return self.int8_decisions

    def _decide_int8(self, sample: Sequence[str]) -> list[Int8Decision]:
        if self.runtime.device != "cpu":
            measure = self.quantize == "measure"
            return not_measured(self.voters, NOT_MEASURED_ON_CUDA) if measure else []
        if self.quantize == "none":
            return []
        if self.quantize == "pinned":
            return apply_pinned(self.voters)
        return [self._decide_one(voter, sample) for voter in int8_candidates(self.voters)]

    def _decide_one(self, voter: Voter, sample: Sequence[str]) -> Int8Decision:
        """``auto``, ``measure`` or ``int8`` for one voter; with a cache, ``auto`` and ``int8``
        replay the decision they took the first time."""
        if self.cache is not None and self.quantize != "measure":
            replayed = replay_decision(voter, self.cache, self._decision_key(voter), self.quantize)
            if replayed is not None:
                return replayed
        if self.quantize == "int8":
            use_int8(voter)
            return Int8Decision(voter.config.name, True, None, 0, "int8 requested")
        decision, probabilities = try_int8(voter, sample, INT8_MIN_AGREEMENT)
        if probabilities is not None:
            self._measured[voter.config.name] = (tuple(sample), probabilities)
        return decision

    def _decision_key(self, voter: Voter) -> dict:
        return decision_identity(voter, self.spec.labels, self.runtime.package_root)

    def _record_precision(self, decisions: Sequence[Int8Decision]) -> None:
        """Keep in the cache the precision each model runs at (``learn`` replays it)."""
        if self.cache is not None and self.runtime.device == "cpu":
            record_precision(self.voters, decisions, self.cache, self._decision_key, self.quantize)

    def replay_precision(self) -> None:
        """Apply the precisions the last labeling with the cache ran at, whatever ``quantize``
        chose them (``learn`` computes what the labeler computed); the pinned ones where the
        cache holds none."""
        decisions = []
        if self.runtime.device == "cpu":
            decisions = replay_or_pin(self.voters, self.cache, self._decision_key)
        self.int8_decisions = decisions

    def learned(self) -> dict[str, str | None]:
        """What the voters learned: each one's adapter and learned version, and the vote's."""
        root = self.runtime.package_root
        versions: dict[str, str | None] = {
            "vote": self.learned_vote.version if self.learned_vote else None
        }
        for voter in self.voters:
            name = voter.config.name
            versions[f"adapter:{name}"] = adapters.current_version(root, name)
            versions[f"learned:{name}"] = getattr(voter, "version", None)
        return versions

    def precisions(self) -> dict[str, str]:
        """Each voter's number format: ``int8``, ``bf16`` (CUDA) or ``fp32``; voters sharing
        an encoder share its format."""
        int8 = {decision.voter for decision in self.int8_decisions or () if decision.int8}
        default = "bf16" if self.runtime.device == "cuda" else "fp32"
        return {
            v.config.name: getattr(v, "precision", None)
            or ("int8" if v.config.name in int8 else default)
            for v in self.voters
        }

    def identities(self) -> list[dict]:
        """Each voter's identity in the cache (kept while the precisions stay), recorded there
        for ``learn``."""
        precisions = self.precisions()
        if self._identities is None or self._identities[0] != precisions:
            root, labels = self.runtime.package_root, self.spec.labels
            found = [
                voter_identity(v, labels, root, precisions[v.config.name]) for v in self.voters
            ]
            self._identities = (precisions, found)
            if self.cache is not None:
                remember_identities(self.cache, self.voters, found, labels, self.runtime)
        return self._identities[1]

    def probabilities(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each voter's probabilities for ``texts``, through the cache when there is one."""
        if self.cache is None:
            return [self._predict(voter, texts) for voter in self.voters]
        return cached_probabilities(
            self.voters, texts, self.cache, self.identities(), self._predict
        )

    def _predict(self, voter: Voter, texts: Sequence[str]) -> np.ndarray:
        """``voter.predict(texts)``, or what the int8 check computed when it ran on ``texts``."""
        measured = self._measured.pop(voter.config.name, None)
        if measured is not None and measured[0] == tuple(texts):
            return measured[1]
        return voter.predict(texts)

    def label_in_slices(
        self,
        texts: Sequence[str],
        min_agreement: float,
        on_rows: Callable[[int], None],
        min_confidence: float = 0.0,
    ) -> list[dict[str, Any]]:
        """:meth:`label_texts` a slice at a time; ``on_rows(rows done)`` after all but the last."""
        step = max(SLICE_ROWS, 8 * self.runtime.batch_size)
        results: list[dict[str, Any]] = []
        for start in range(0, len(texts), step):
            if results:
                on_rows(len(results))
            results += self.label_texts(texts[start : start + step], min_agreement, min_confidence)
        return results

    def label_texts(
        self, texts: Sequence[str], min_agreement: float, min_confidence: float = 0.0
    ) -> list[dict[str, Any]]:
        """One dict of result columns per text; a row needs review when its winning vote share
        is below ``min_agreement`` or the voters' mean probability for it below
        ``min_confidence``."""
        if not texts:
            return []
        probabilities = self.probabilities(texts)
        if self.learned_vote is not None:
            result = pooled_vote(probabilities, self.learned_vote.weights, self.learned_vote.bias)
        else:
            result = vote(probabilities, [voter.config.weight for voter in self.voters])
        labels = self.spec.labels
        rows = []
        for row in range(len(texts)):
            agreement = float(result.agreement[row])
            confidence = round(float(result.confidence[row]), PROBABILITY_DECIMALS)
            record: dict[str, Any] = {
                LABEL: labels[result.label_index[row]],
                CONFIDENCE: confidence,
                AGREEMENT: agreement,
                NEEDS_REVIEW: agreement < min_agreement or confidence < min_confidence,
            }
            for index, voter in enumerate(self.voters):
                name = voter.config.name
                abstained = result.abstained[index, row]
                own_label = labels[result.voter_label_index[index, row]]
                record[voter_label_column(name)] = None if abstained else own_label
                record[voter_probability_column(name)] = round(
                    float(result.voter_confidence[index, row]), PROBABILITY_DECIMALS
                )
            rows.append(record)
        return rows


@dataclass(frozen=True)
class LabelingSummary:
    rows: int
    needs_review: int
    chunks: int
    resumed_chunks: int
    output: str
    unsafe_texts: int = 0
    """Texts made safe as they were read (:func:`.tabular.safe_text`) in the chunks labeled."""


def text_of(value: Any) -> str:
    """A text to label, made safe (:func:`.tabular.safe_text`)."""
    return tabular.safe_text(value)[0]


def count_rows(path: Path) -> int:
    return sum(len(chunk) for chunk in tabular.iter_chunks(path, 50_000))


def label_file(
    labeler: Labeler,
    input_path: Path,
    output_path: Path,
    *,
    text_column: str,
    chunk_size: int,
    min_agreement: float,
    on_progress: ProgressCallback | None = None,
    on_int8: Int8Callback | None = None,
    min_confidence: float = 0.0,
    cache: Path | None = None,
) -> LabelingSummary:
    """Label every row of ``input_path`` into ``output_path``; resumable chunk by chunk.

    ``on_progress(rows done, total)`` is called once before labeling (rows done are
    those of resumed chunks) and after every slice; ``on_int8`` once per precision
    decision (:mod:`.precision`: per model measured, or pinned). With ``cache`` (a
    folder), the voters' probabilities, embeddings and int8 decisions are kept there and
    reused (:mod:`.feature_cache`): the output is the same, only what changed is computed.
    """
    if cache is not None:
        labeler.use_cache(FeatureCache(cache))
    input_columns = tabular.require_columns(input_path, text_column)
    total = count_rows(input_path)
    # The first rows decide int8 even when resuming, so a resumed run decides alike.
    rows = sample_rows(labeler.quantize, total, chunk_size)
    sample = _first_texts(input_path, text_column, rows) if rows else []
    for decision in labeler.settle_precision(sample):
        if on_int8 is not None:
            on_int8(decision)
    run = (text_column, chunk_size, min_agreement, min_confidence)
    parts = PartStore(output_path, _fingerprint_run(labeler, input_path, *run))
    resumed = parts.completed()
    done, needs_review = parts.counts(resumed)
    report = on_progress or (lambda done, total: None)
    report(done, total)
    chunks = unsafe = 0
    for index, chunk in enumerate(tabular.iter_chunks(input_path, chunk_size)):
        chunks += 1
        if index < resumed:
            continue
        read = [tabular.safe_text(row.get(text_column)) for row in chunk]
        texts = [text for text, _ in read]
        unsafe += sum(changed for _, changed in read)
        results = labeler.label_in_slices(
            texts,
            min_agreement,
            lambda rows, before=done: report(before + rows, total),
            min_confidence,
        )
        parts.write(index, results)
        needs_review += sum(1 for result in results if result[NEEDS_REVIEW])
        done += len(chunk)
        report(done, total)
    _assemble(labeler.spec, input_path, text_column, input_columns, output_path, parts, chunk_size)
    parts.remove()
    resumed = min(resumed, chunks)
    return LabelingSummary(done, needs_review, chunks, resumed, str(output_path), unsafe)


def _first_texts(input_path: Path, text_column: str, rows: int) -> list[str]:
    first = next(tabular.iter_chunks(input_path, rows), [])
    return [text_of(row.get(text_column)) for row in first]


def _assemble(spec, input_path, text_column, input_columns, output_path, parts, chunk_size):
    """The output file: each input row as read (its text as labeled, made safe), then the
    labeler's columns."""
    extra = added_columns([voter.name for voter in spec.voters])
    renames = input_renames(input_columns, extra)
    columns = [renames.get(column, column) for column in input_columns] + extra
    with tabular.TableWriter(output_path, columns) as writer:
        for index, chunk in enumerate(tabular.iter_chunks(input_path, chunk_size)):
            results = parts.read(index)
            if len(results) != len(chunk):
                raise RuntimeError(f"part {index} has {len(results)} rows, expected {len(chunk)}")
            for row in chunk:
                if text_column in row:
                    row[text_column] = text_of(row[text_column])
            writer.write(
                {**{renames.get(k, k): v for k, v in row.items()}, **result}
                for row, result in zip(chunk, results, strict=True)
            )


def _fingerprint_run(
    labeler: Labeler,
    input_path: Path,
    text_column: str,
    chunk_size: int,
    min_agreement: float,
    min_confidence: float,
) -> str:
    """What a resumed run must share with the run whose parts it finds."""
    return _fingerprint(
        labeler.spec,
        input_path,
        text_column,
        chunk_size,
        min_agreement,
        labeler.precisions(),
        min_confidence,
        labeler.learned(),
    )


def _fingerprint(
    spec: LabelerSpec,
    input_path: Path,
    text_column: str,
    chunk_size: int,
    min_agreement: float,
    precisions: dict[str, str],
    min_confidence: float = 0.0,
    learned: dict[str, str | None] | None = None,
) -> str:
    stat = Path(input_path).stat()
    identity = {
        "spec": asdict(spec),
        "input": [str(Path(input_path).resolve()), stat.st_size, stat.st_mtime_ns],
        "text_column": text_column,
        "chunk_size": chunk_size,
        "min_agreement": min_agreement,
        "min_confidence": min_confidence,
        "precisions": precisions,
        "learned": learned or {},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
