"""When the run learns from its verified rows: the policy the graph and the nodes share.

Which learning step is due after a round of verification (a LoRA fine-tuning stage; the
learned voters and the learned vote) and why one is not. The nodes that do the learning
(``finetune_voters``, ``learn_voters``) and the router after ``verify_round`` all ask here,
so the rules are written once. The
policy decides from the state's records alone (how many rows are verified, of how many
labels, how many earlier stages saw): it reads no file. A learning pass reads its training
rows through a :class:`Reservoir`, so it holds at most ``--learning-max-rows`` of them
whatever the size of the data.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Generic, TypeVar

from agent.labeler_runtime import LEARNED_KINDS
from agent.settings import Settings
from agent.state import RunState

TUNABLE_KINDS = ("hf-sequence-classifier", "embedding")

EXAMPLE_TEXT, EXAMPLE_LABEL = "text", "label"
"""The columns of the training files the agent writes for the package's ``learn`` and
``finetune`` commands (whatever the data's own columns are called)."""


def example_column_arguments() -> list[str]:
    """The package command's flags that name those columns."""
    return ["--text-column", EXAMPLE_TEXT, "--label-column", EXAMPLE_LABEL]


FIRST_STAGE_MIN = 50
"""Verified rows the first stage needs: a fifth is held out, and 10 rows is the least."""


def tunable(state: RunState) -> bool:
    return any(voter.kind in TUNABLE_KINDS for voter in state.voters)


def verified_counts(state: RunState) -> tuple[int, int]:
    """(rows an LLM or a person verified so far, the pilot's included; distinct labels among
    them), as the node that verified last recorded them."""
    if state.verification is not None:
        return state.verification.verified, state.verification.verified_labels
    if state.pilot_verification is not None:
        return state.pilot_verification.verified, state.pilot_verification.verified_labels
    return 0, 0


def training_count(state: RunState) -> int:
    """Verified rows a learning step may train on: the held-out ones (the pilot's verified
    rows and each round's held-out slice, as the latest round record counts them) excluded."""
    verified, _ = verified_counts(state)
    if state.rounds:
        heldout = state.rounds[-1].heldout + state.rounds[-1].chosen_heldout
    elif state.pilot_verification is not None:
        heldout = state.pilot_verification.verified
    else:
        heldout = 0
    return max(verified - heldout, 0)


def finetune_blocker(state: RunState, settings: Settings) -> str | None:
    """Why no fine-tuning stage can run now, or None when one is due. Stages train on the
    verified rows less the held-out ones, so those are what is counted."""
    if len(state.finetune) >= settings.finetune_stages:
        return f"the {settings.finetune_stages} fine-tuning stages asked for are done"
    if not tunable(state):
        return "no voter can be fine-tuned (only transformer and embedding voters can)"
    training = training_count(state)
    fresh = training - (state.finetune[-1].verified_in_all if state.finetune else 0)
    if not state.finetune and fresh < FIRST_STAGE_MIN:
        return (
            f"{fresh} verified training rows (held-out rows excluded) are too few for a first "
            f"stage (at least {FIRST_STAGE_MIN}: a fifth is held out to judge each stage)"
        )
    if fresh <= 0:
        return "no rows were verified since the last stage"
    return None


def finetune_shortfall(state: RunState, settings: Settings) -> str | None:
    """One line on why fewer fine-tuning stages ran than ``--finetune-stages`` asked for (None
    when they all ran): a flag that could not act says so."""
    asked, ran = settings.finetune_stages, len(state.finetune)
    if ran >= asked:
        return None
    reason = finetune_blocker(state, settings) or "the run ended before another stage was due"
    return f"--finetune-stages {asked}: {ran} of {asked} fine-tuning stages ran; {reason}"


def should_finetune(state: RunState, settings: Settings) -> bool:
    """Another stage is due, a voter can learn, and rows were verified since the last one."""
    return finetune_blocker(state, settings) is None


def learn_blocker(state: RunState, settings: Settings, training: int, labels: int) -> str | None:
    """Why the learned voters and vote are not trained now, or None when they are due.
    ``training``: verified rows they may train on (held-out rows excluded), of ``labels``
    distinct labels."""
    if not settings.learn_vote and not any(
        v.origin == "learned" or v.kind in LEARNED_KINDS for v in state.voters
    ):
        return "nothing learns (--no-learn-vote and no learned voters)"
    if training < settings.vote_min_examples or labels < 2:
        return (
            f"{training} verified training rows are too few (at least "
            f"{settings.vote_min_examples}, of two labels or more)"
        )
    latest = max((record.examples for record in state.learned), default=0)
    if state.votes:
        latest = max(latest, state.votes[-1].examples)
    if latest >= training:
        return "no rows were verified since the last training"
    return None


T = TypeVar("T")


class Reservoir(Generic[T]):
    """At most ``size`` items of a stream: all of them, in order, while they fit; past that a
    uniform sample, seeded (Algorithm R). A learning pass reads a data set of any size this
    way and holds ``size`` rows, and a set that fits is read exactly as a list would be."""

    def __init__(self, size: int, seed: str) -> None:
        self.size = size
        self.items: list[T] = []
        self.seen = 0
        self._random = random.Random(f"reservoir:{seed}")

    def add(self, item: T) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.size:
            self.items[slot] = item

    def extend(self, items: Iterable[T]) -> Reservoir[T]:
        for item in items:
            self.add(item)
        return self

    @property
    def sampled(self) -> bool:
        """Whether the stream was larger than the reservoir (the items are a sample)."""
        return self.seen > self.size
